"""Fixes from a first-use walk-through of the main window, driven like a user with the real engine thread
and tiny models: nothing on screen is lost to a refused take, Generate speaks with the voice on screen,
a call to action while no models are loaded, broken models never stick, closing asks while a take is
being made, and the take history (play, export, reuse, delete, kept across sessions)."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings, Qt  # noqa: E402

from app.bridge import EngineBridge  # noqa: E402
from app.main_window import MainWindow  # noqa: E402
from app.menus import about_text, export_start_path, show_about  # noqa: E402
from app.settings import AppSettings, documents_dir  # noqa: E402
from app.take_history import TakeHistory  # noqa: E402
from app.voice_library_view import UNSAVED  # noqa: E402
from engine.voices import VoiceLibrary  # noqa: E402
from gui_session import WAIT_MS, answer_next_question, running_main_window  # noqa: E402

REFERENCE_CODES = 1800  # 36 s at 50 codes/s: leaves the tiny LM ~150 tokens, a take in about a second
REFERENCE_TEXT = "The reference clip says these words, slowly and clearly, for the test of the window."
TOO_LONG = "Unsplittable" + "o" * 600  # one 'word' that cannot fit beside the long reference even alone


@pytest.fixture
def settings(tmp_path, tiny_models) -> AppSettings:
    s = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    s.voices_folder, s.device = tmp_path / "voices", "cpu"
    s.lm, s.codec, s.temperature = str(tiny_models["lm"]), str(tiny_models["codec"]), 0.8
    return s


@pytest.fixture
def library(settings) -> VoiceLibrary:
    lib = VoiceLibrary(settings.voices_folder)
    codes = np.random.default_rng(0).integers(0, 65536, REFERENCE_CODES)
    lib.add("Long reference", np.full(16000, 0.01, np.float32), REFERENCE_TEXT, codes, "tiny")
    return lib


@pytest.fixture
def window(qtbot, settings, library):
    yield from running_main_window(qtbot, settings, library)


def generate(qtbot, w, text: str):
    """Click Generate and return the Generated event (texts stay under ~5 characters: the long references
    leave room for about that much)."""
    w.text_edit.setPlainText(text)
    assert w.generate_button.isEnabled(), w.generate_button.toolTip()
    done = []

    def keep(event) -> None:
        done.append(event)

    w.bridge.generated.connect(keep)
    qtbot.mouseClick(w.generate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not w.is_generating(), timeout=WAIT_MS)
    w.bridge.generated.disconnect(keep)
    assert done, w.last_message.text() if w.last_message else "no take"
    return done[0]


def test_refused_text_keeps_the_take_and_the_history_plays_exports_reuses_deletes(qtbot, window, settings, tmp_path):
    w = window
    voice = w.library.list()[0]
    w.voice_panel.select_voice(voice.id)
    # selecting a saved voice shows its clip, transcript and name (what Generate will use)
    assert w.voice_panel.transcript() == REFERENCE_TEXT and w.voice_panel.name_edit.text() == "Long reference"
    assert w.voice_panel.waveform.duration_s() == pytest.approx(1.0)
    assert w.script_view.voice_label.text() == "Voice: Long reference"

    first = generate(qtbot, w, "Hi.")
    second = generate(qtbot, w, "Yes.")
    take = np.asarray(second.audio, np.float32)
    np.testing.assert_array_equal(w.player.audio(), take)

    # 1. a text the engine refuses: the take on screen stays playable and exportable
    w.text_edit.setPlainText(TOO_LONG)
    with qtbot.waitSignal(w.bridge.failed, timeout=WAIT_MS) as failed:
        w.generate()
    assert "does not fit" in failed.args[0].message
    np.testing.assert_array_equal(w.player.audio(), take)
    np.testing.assert_array_equal(w.last_take(), take)
    assert w.export_action.isEnabled() and w.play_action.isEnabled() and not w.is_generating()

    # the history lists both takes, newest first, with what made them
    takes = w.history.takes
    assert [t.text for t in takes] == ["Yes.", "Hi."]
    assert w.history_panel.take_list.count() == 2
    newest, oldest = takes
    assert newest.voice == oldest.voice == "Long reference" and newest.voice_id == voice.id
    assert isinstance(newest.seed, int) and newest.seed != oldest.seed  # a fresh seed per take, recorded
    assert newest.duration_s == pytest.approx(len(take) / 16000, abs=0.01)
    assert newest.sampling["temperature"] == 0.8 and len(newest.created) == 19
    assert str(takes[0].created[11:16]) in w.history_panel.take_list.item(0).text()

    # play the older take: it becomes the player's (and Export's) take
    w.history_panel.take_list.setCurrentRow(1)
    qtbot.mouseClick(w.history_panel.play_button, Qt.MouseButton.LeftButton)
    np.testing.assert_allclose(w.player.audio(), np.asarray(first.audio), atol=1e-4)  # 16-bit FLAC
    out = tmp_path / "older.wav"
    with qtbot.waitSignal(w.bridge.exported, timeout=WAIT_MS):
        assert w.export_take(oldest, out) is not None
    np.testing.assert_allclose(sf.read(out, dtype="float32")[0], np.asarray(first.audio), atol=1e-4)

    # reuse the older take's settings: same text, voice and seed make the same take again
    qtbot.mouseClick(w.history_panel.reuse_button, Qt.MouseButton.LeftButton)
    assert w.text_edit.toPlainText() == "Hi." and settings.seed == oldest.seed
    again = generate(qtbot, w, w.text_edit.toPlainText())
    np.testing.assert_array_equal(np.asarray(again.audio), np.asarray(first.audio))
    assert w.history.takes[0].seed == oldest.seed and w.history_panel.take_list.count() == 3

    # delete one; the list is kept on disk (written atomically) for the next session
    w.history_panel.take_list.setCurrentRow(0)
    deleted = w.history.takes[0]
    qtbot.mouseClick(w.history_panel.delete_button, Qt.MouseButton.LeftButton)
    assert w.history_panel.take_list.count() == 2 and not w.history.audio_path(deleted).exists()
    reopened = TakeHistory(settings.history_folder())
    assert [t.id for t in reopened.takes] == [t.id for t in w.history.takes]
    assert not list(settings.history_folder().glob(".history-*"))  # no temporary files left


def _long_clip(tmp_path, speech_clip_16k):
    """A long clip (the 4.5 s speech clip repeated; import keeps up to about 15 s of it)."""
    samples, _ = speech_clip_16k
    path = tmp_path / "interview.wav"
    sf.write(path, np.tile(samples, 8)[: 36 * 16000], 16000)
    return path


@pytest.mark.slow
def test_generate_speaks_with_the_clip_on_screen(qtbot, window, tmp_path, speech_clip_16k):
    w, panel = window, window.voice_panel
    panel.select_voice(w.library.list()[0].id)
    # 2. an imported clip replaces the saved voice on screen; Generate uses it (encoding it first)
    panel.import_file(str(_long_clip(tmp_path, speech_clip_16k)))
    clip_s = panel.waveform.duration_s()  # the longest usable stretch of the file (load_reference picks it)
    assert panel.library_view.selected_id() == UNSAVED
    assert panel.voice_list.currentItem().text() == "Unsaved clip: interview"
    # 3. a new clip brings its own name and an empty transcript
    assert panel.name_edit.text() == "interview" and panel.transcript() == ""
    w.text_edit.setPlainText("Hi.")
    assert not w.generate_button.isEnabled() and "transcript" in w.generate_button.toolTip()
    assert "unsaved clip" in w.script_view.voice_label.text()
    panel.set_transcript(REFERENCE_TEXT)
    assert w.generate_button.isEnabled()
    with qtbot.waitSignal(w.bridge.voice_encoded, timeout=WAIT_MS):
        w.generate()
        assert w.is_generating() and "Encoding" in w.progress_label.text()
    qtbot.waitUntil(lambda: not w.is_generating(), timeout=WAIT_MS)
    assert w.last_take() is not None
    assert w.history.takes[0].voice == "interview (unsaved clip)" and w.history.takes[0].voice_id is None
    # the same clip again: its encoding is reused
    with qtbot.assertNotEmitted(w.bridge.voice_encoded):
        generate(qtbot, w, "Hey.")

    # picking the saved voice shows it; picking the unsaved clip brings it back as it was left
    panel.select_voice(w.library.list()[0].id)
    assert panel.transcript() == REFERENCE_TEXT and panel.waveform.duration_s() == pytest.approx(1.0)
    assert w.script_view.voice_label.text() == "Voice: Long reference"
    panel.select_voice(UNSAVED)
    assert panel.name_edit.text() == "interview" and panel.waveform.duration_s() == pytest.approx(clip_s)
    assert panel.transcript() == REFERENCE_TEXT
    # Stop while an edited clip is being encoded: no take is started after the encoding
    panel.waveform.set_trim_range(0.0, clip_s - 1.0)
    takes = len(w.history.takes)
    ended = []  # the encoding ends encoded, or cancelled when Stop came before the engine thread took it up
    w.bridge.voice_encoded.connect(ended.append)
    w.bridge.cancelled.connect(ended.append)
    w.generate()
    encode_id = w._clip_encode_id
    assert w.is_generating() and encode_id is not None
    qtbot.mouseClick(w.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: any(e.request_id == encode_id for e in ended), timeout=WAIT_MS)
    w.bridge.voice_encoded.disconnect(ended.append)
    w.bridge.cancelled.disconnect(ended.append)
    assert not w.is_generating() and len(w.history.takes) == takes

    # the random voice is an explicit choice: the editor is empty
    panel.select_voice(None)
    assert panel.waveform.duration_s() == 0 and w.script_view.voice_label.text() == "Voice: Random voice"


def test_no_models_banner_and_a_broken_model_never_sticks(qtbot, settings, library, tiny_models, tmp_path):
    bridge = EngineBridge()
    w = MainWindow(bridge, settings, library)
    qtbot.addWidget(w)
    w.show()
    try:
        # 4. no models: a call to action in the window itself
        assert w.banner.isVisible() and w.banner.setup_button.text() == "Set up models…"
        qtbot.mouseClick(w.banner.setup_button, Qt.MouseButton.LeftButton)
        assert w.models_dialog is not None and w.models_dialog.isVisible()
        w.models_dialog.reject()
        assert w.models_dialog is None
        with qtbot.waitSignal(bridge.models_loaded, timeout=WAIT_MS):
            w.start()
        assert not w.banner.isVisible()
        assert settings.last_models_folder == str(tiny_models["lm"].parent)

        # 5. a corrupt model chosen in the dialog is refused there, with the reason; the working choice is kept
        broken = tmp_path / "broken"
        shutil.copytree(tiny_models["lm"].parent, broken)
        weights = broken / "lm" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
        w.open_models_dialog()
        dialog = w.models_dialog
        assert dialog.last_folder == str(tiny_models["lm"].parent)  # the last working folder is offered
        assert not dialog.use_local_folder(str(broken))  # the weights are checked when the folder is chosen
        assert "unreadable or truncated" in dialog.status_label.text()
        assert dialog.use_local_folder(str(tiny_models["lm"].parent))  # a folder holding lm/ and codec/ is understood
        assert dialog.chosen_lm() == str(tiny_models["lm"]) and dialog.chosen_codec() == str(tiny_models["codec"])
        dialog.reject()
        assert settings.lm == str(tiny_models["lm"])

        # models that broke since the last run: the load fails with a readable error, the banner says so,
        # and the Models dialog opens with the reason; the broken choice is not kept as working
        settings.lm = str(broken / "lm")
        with qtbot.waitSignal(bridge.failed, timeout=WAIT_MS) as failed:
            w.start()
        message = failed.args[0].message
        assert "unreadable or truncated" in message and "Unexpected" not in message
        qtbot.waitUntil(lambda: w.models_dialog is not None and w.models_dialog.isVisible())
        assert "unreadable or truncated" in w.models_dialog.status_label.text()
        assert w.device_label.text() == "Models not loaded" and w.model_label.text() == ""
        assert w.banner.isVisible() and "could not be loaded" in w.banner.message_label.text()
        w.models_dialog.reject()
    finally:
        w.close()
        assert bridge.shutdown(10.0)


def test_closing_while_generating_asks_first(qtbot, window):
    w = window  # the random voice: a take of ~2,000 tokens, long enough to close during it
    w.voice_panel.select_voice(None)
    w.text_edit.setPlainText("Speak for a while so that the window is closed during the take.")
    w.generate()
    qtbot.waitUntil(lambda: len(w.player.audio()) > 0, timeout=WAIT_MS)
    seen = answer_next_question("Keep working")
    w.close()
    assert "being generated" in seen[0] and w.isVisible() and w.is_generating()
    answer_next_question("Stop and quit")
    with qtbot.waitSignal(w.bridge.cancelled, timeout=WAIT_MS):
        w.close()
    assert not w.isVisible()


def test_about_shows_the_version_and_dialogs_start_in_documents(qtbot, settings, library):
    assert "Version 0.1.0" in about_text()
    assert export_start_path() == str(documents_dir() / "take.wav")
    bridge = EngineBridge()
    w = MainWindow(bridge, settings, library)
    qtbot.addWidget(w)
    try:
        box = show_about(w)
        assert "Version 0.1.0" in box.text()
        box.close()
        assert w.voice_panel.save_button.text() == "Save voice"  # it opens no dialog: no ellipsis
        area = w.screen().availableGeometry()
        assert w.height() <= area.height()  # the default size fits the screen
    finally:
        w.close()
        assert bridge.shutdown(10.0)


def test_dark_palette_run(qtbot, qapp, settings, library):
    """The window in the dark palette: dark window and base colours, light text, a primary action that
    stands out; the app's palette and style are restored after."""
    from PySide6.QtGui import QPalette

    from app.theme import apply_theme, is_dark

    style, pal = qapp.style().name(), qapp.palette()
    bridge = EngineBridge()
    try:
        assert apply_theme(qapp, "dark")
        w = MainWindow(bridge, settings, library)
        qtbot.addWidget(w)
        w.show()
        assert is_dark(w.palette()) and is_dark(w.text_edit.palette())
        assert w.palette().color(QPalette.ColorRole.Base).lightness() < 60
        image = w.grab().toImage().scaled(80, 60)
        mean = sum(image.pixelColor(x, y).lightness() for x in range(80) for y in range(60)) / 4800
        assert mean < 100  # a dark window on screen, not just a palette object
        assert w.generate_button.objectName() == "primaryAction" and not w.generate_button.icon().isNull()
        assert not w.export_action.icon().isNull() and not w.open_text_action.icon().isNull()
        assert not apply_theme(qapp, "light") and not is_dark(qapp.palette())
        w.close()
    finally:
        qapp.setStyle(style)
        qapp.setPalette(pal)
        assert bridge.shutdown(10.0)
