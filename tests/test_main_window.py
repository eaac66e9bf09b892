"""MainWindow with the real EngineBridge, a real VoiceLibrary and tiny models: wiring, shortcuts,
enabling rules, drag and drop, errors, generate / stop / export, and no torch in the GUI process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QMimeData, QPointF, Qt, QTimer, QUrl  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402
from PySide6.QtWidgets import QAbstractButton, QComboBox, QLineEdit, QPlainTextEdit  # noqa: E402

from app.bridge import EngineBridge  # noqa: E402
from app.main_window import MainWindow  # noqa: E402
from app.settings import AppSettings  # noqa: E402
from engine.voices import VoiceLibrary  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LOAD_TIMEOUT_MS = 120_000  # tiny models load in seconds; generous for a loaded CI machine
REFERENCE_CODES = 1800  # 36 s at 50 codes/s
REFERENCE_TEXT = "The reference clip says these words, slowly and clearly, for the test of the window."
LONG_TEXT = "This sentence is long enough that the tiny model is still speaking when we stop it. " * 3


@pytest.fixture
def bridge():
    b = EngineBridge()
    yield b
    assert b.shutdown(10.0)


@pytest.fixture
def settings(tmp_path) -> AppSettings:
    s = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    s.voices_folder = tmp_path / "voices"
    s.device = "cpu"
    return s


@pytest.fixture
def window(qtbot, bridge, settings):
    w = MainWindow(bridge, settings, VoiceLibrary(settings.voices_folder))
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow)
    return w


@pytest.fixture
def ready_window(qtbot, window, settings, tiny_models):
    settings.lm, settings.codec = str(tiny_models["lm"]), str(tiny_models["codec"])
    settings.temperature, settings.seed = 0.8, 1  # reproducible takes
    with qtbot.waitSignal(window.bridge.models_loaded, timeout=LOAD_TIMEOUT_MS):
        window.load_models()
    return window


def select_long_voice(window) -> None:
    """Save and select a voice whose 36 s reference fills most of the 2,048-token window.

    The tiny random LM never stops by itself, so a take runs to the token budget; with this voice the
    budget is ~150 tokens (a take in about a second) instead of ~2,000.
    """
    codes = np.random.default_rng(0).integers(0, 65536, REFERENCE_CODES)
    voice = window.library.add("Long reference", np.zeros(16000, np.float32), REFERENCE_TEXT, codes, "tiny")
    window.voice_panel.refresh_library(select=voice.id)
    assert window._voice is not None and window._voice.id == voice.id


def test_window_layout_and_accessible_names(window):
    assert window.minimumWidth() >= 900 and window.minimumHeight() >= 600
    assert window.text_edit.placeholderText() == "Type or paste the text to speak…"
    titles = [a.text() for a in window.menuBar().actions()]
    assert titles[:5] == ["&File", "&Edit", "&Models", "&Settings", "&Help"]
    controls = [
        w for cls in (QAbstractButton, QComboBox, QLineEdit, QPlainTextEdit)
        for w in window.findChildren(cls) if w.isVisibleTo(window)
    ]
    unnamed = [
        w for w in controls
        if not w.accessibleName() and not (isinstance(w, QAbstractButton) and w.text())
        and not isinstance(w.parent(), QComboBox)
    ]
    assert unnamed == [], [type(w).__name__ + ":" + w.objectName() for w in unnamed]
    assert not window.windowIcon().isNull()


def test_generate_needs_models_and_text_stop_only_while_generating(qtbot, window):
    window.text_edit.setPlainText("Hello there.")
    assert not window.generate_button.isEnabled() and not window.generate_action.isEnabled()
    assert "Load the models" in window.generate_button.toolTip()
    assert not window.stop_button.isEnabled() and not window.stop_action.isEnabled()


def test_failed_model_load_is_shown_as_a_message(qtbot, window, settings, tmp_path):
    settings.lm = str(tmp_path / "no-such-model")
    with qtbot.waitSignal(window.bridge.failed, timeout=LOAD_TIMEOUT_MS):
        window.load_models()
    assert window.last_message is not None and "no-such-model" in window.last_message.text()
    assert "Traceback" not in window.last_message.text()
    window.text_edit.setPlainText("Hello.")
    assert not window.generate_button.isEnabled()


def test_dropping_a_text_file_sets_the_text(qtbot, window, tmp_path):
    path = tmp_path / "script.txt"
    path.write_text("Words dropped from a file.\n", encoding="utf-8")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert event.isAccepted()
    assert window.text_edit.toPlainText() == "Words dropped from a file.\n"
    assert window.count_label.text().startswith("26 characters")


def test_dropping_an_audio_file_imports_it_into_the_voice_panel(window, speech_clip_16k):
    _, path = speech_clip_16k
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert len(window.voice_panel.trimmed_samples()) > 16000  # the clip is now being edited


def test_unusable_drops_are_refused(window, tmp_path):
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "image.png"))])
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert not event.isAccepted() and window.text_edit.toPlainText() == ""


def test_space_plays_only_when_the_text_editor_does_not_have_focus(qtbot, window):
    window.player.set_audio(np.zeros(1600, np.float32))
    window._update_actions()
    window.text_edit.setFocus()
    qtbot.waitUntil(window.text_edit.hasFocus)
    with qtbot.assertNotEmitted(window.play_action.triggered):
        qtbot.keyClick(window.text_edit, Qt.Key.Key_Space)
    assert window.text_edit.toPlainText() == " "
    window.player.waveform.setFocus()
    qtbot.waitUntil(window.player.waveform.hasFocus)
    with qtbot.waitSignal(window.play_action.triggered, timeout=2_000):
        qtbot.keyClick(window.player.waveform, Qt.Key.Key_Space)


def test_export_to_a_missing_folder_says_so(window, tmp_path):
    window._last_take = np.zeros(1600, np.float32)
    assert window.export_audio(tmp_path / "missing" / "take.wav") is None
    assert "does not exist" in window.last_message.text()


def test_memory_text_is_shown(window):
    window.set_memory_text("RAM 1.0 GB")
    assert window.memory_label.text() == "RAM 1.0 GB"


def test_models_loaded_enables_generate_and_shortcuts_drive_it(qtbot, ready_window, tmp_path):
    w = ready_window
    assert w.device_label.text() and w.device_label.text() != "Models not loaded"
    assert not w.generate_button.isEnabled()  # no text yet
    select_long_voice(w)
    w.text_edit.setFocus()
    qtbot.keyClicks(w.text_edit, "Hi.")
    assert w.generate_button.isEnabled() and w.generate_action.isEnabled()

    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    with qtbot.waitSignal(w.bridge.generated, timeout=LOAD_TIMEOUT_MS) as done:
        with qtbot.waitSignal(w.generate_action.triggered, timeout=2_000):
            qtbot.keyClick(w.text_edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
        assert w.is_generating() and w.stop_button.isEnabled() and not w.generate_button.isEnabled()
    timer.stop()
    assert len(ticks) > 0  # the event loop kept running while the engine worked
    take = w.last_take()
    assert take is not None and len(take) == 320 * len(done.args[0].codes)  # 320 samples per code at 16 kHz
    np.testing.assert_array_equal(w.player.audio(), take)
    np.testing.assert_array_equal(take, done.args[0].audio)
    assert not w.stop_button.isEnabled() and w.generate_button.isEnabled() and w.export_action.isEnabled()

    out = tmp_path / "take.flac"
    with qtbot.waitSignal(w.bridge.exported, timeout=30_000):
        w.export_audio(out)
    data, rate = sf.read(out, dtype="float32")
    assert rate == 16000 and len(data) == len(take)


def test_escape_stops_a_generation(qtbot, ready_window):
    w = ready_window  # random voice: a ~2,000-token take, many seconds on the tiny model
    w.text_edit.setPlainText(LONG_TEXT)
    w.generate()
    assert w.is_generating()
    qtbot.waitUntil(lambda: len(w.player.audio()) > 0, timeout=LOAD_TIMEOUT_MS)  # audio is streaming
    with qtbot.waitSignal(w.bridge.cancelled, timeout=LOAD_TIMEOUT_MS):
        with qtbot.waitSignal(w.stop_action.triggered, timeout=2_000):
            qtbot.keyClick(w.player.waveform, Qt.Key.Key_Escape)
    assert not w.is_generating() and not w.stop_button.isEnabled() and w.generate_button.isEnabled()
    assert w.last_take() is None  # a stopped take is not kept for export


def test_the_window_imports_no_torch(tmp_path):
    code = (
        "import os, sys\n"
        "os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
        "from pathlib import Path\n"
        "from PySide6.QtCore import QSettings\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from app.bridge import EngineBridge\n"
        "from app.main_window import MainWindow\n"
        "from app.settings import AppSettings\n"
        "from engine.voices import VoiceLibrary\n"
        f"settings = AppSettings(QSettings({str(tmp_path / 's.ini')!r}, QSettings.Format.IniFormat))\n"
        f"bridge = EngineBridge()\n"
        f"window = MainWindow(bridge, settings, VoiceLibrary(Path({str(tmp_path / 'voices')!r})))\n"
        "window.show()\n"
        "app.processEvents()\n"
        "loaded = 'torch' in sys.modules\n"
        "bridge.shutdown(10.0)\n"
        "print('torch loaded' if loaded else 'no torch')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "no torch"


def test_a_text_of_several_paragraphs_is_spoken_segment_by_segment(qtbot, ready_window):
    """Any length in the main window: the render path splits the text; progress names the segment."""
    w = ready_window
    select_long_voice(w)
    w.text_edit.setPlainText("Hi there.\n\nAnd bye.")
    shown = []
    w.bridge.progress_changed.connect(lambda _: shown.append(w.script_view.progress_label.text()))
    with qtbot.waitSignal(w.bridge.generated, timeout=LOAD_TIMEOUT_MS) as done:
        w.generate()
    import re

    counts = {int(m[1]) for text in shown if (m := re.match(r"Generating segment \d+ of (\d+)", text))}
    assert len(counts) == 1 and (n := counts.pop()) >= 2, shown  # a paragraph each, or smaller: the voice's budget
    assert any(text.startswith(f"Generating segment 1 of {n}") for text in shown)
    assert any(text.startswith(f"Generating segment {n} of {n}") for text in shown)
    np.testing.assert_array_equal(w.last_take(), done.args[0].audio)
