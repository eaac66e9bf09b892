"""VoicePanel driven like a user: import a real clip, trim it, save it, manage the library, record."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMessageBox

from app.voice_panel import VoicePanel
from deps import missing
from engine.audio.clip import SAMPLE_RATE, load_audio, load_reference
from engine.voices import VoiceLibrary

CODES = tuple(range(100, 350))
CODEC = "HKUSTAudio/xcodec2"
TRANSCRIPT = "The quick brown fox jumps over the lazy dog, near the quiet river bank."


def answer_next_box(qtbot, button: QMessageBox.StandardButton = QMessageBox.StandardButton.Ok) -> list[str]:
    """Answer the next message box with `button`; returns a list that receives its text."""
    seen: list[str] = []

    def answer() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, answer)
            return
        seen.append(box.text())
        box.button(button).click()

    QTimer.singleShot(0, answer)
    return seen


@pytest.fixture
def library(tmp_path) -> VoiceLibrary:
    return VoiceLibrary(tmp_path / "voices")


@pytest.fixture
def panel(qtbot, library) -> VoicePanel:
    p = VoicePanel(library)
    qtbot.addWidget(p)
    p.resize(520, 700)
    p.show()
    return p


def hints_shown(panel: VoicePanel) -> list[str]:
    return [panel.hints_list.item(i).text() for i in range(panel.hints_list.count())]


def test_import_trim_and_hints(panel, speech_clip_16k):
    _, path = speech_clip_16k
    expected = load_reference(path).samples
    assert panel.import_file(str(path))
    assert panel.waveform.duration_s() == pytest.approx(len(expected) / SAMPLE_RATE)
    assert np.array_equal(panel.trimmed_samples(), expected)
    assert hints_shown(panel) == ["Looks good."]
    assert panel.name_edit.text() == path.stem  # a default name from the file
    # keep 1.0 .. 1.0 + ~2 s with the keyboard: the hints update on trim
    panel.waveform.setFocus()
    QTest.keyClick(panel.waveform, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    QTest.keyClick(panel.waveform, Qt.Key.Key_End)
    while panel.waveform.trim_range()[1] > 3.0:
        QTest.keyClick(panel.waveform, Qt.Key.Key_Left)
    start, end = panel.waveform.trim_range()
    assert start == pytest.approx(1.0)
    assert len(panel.trimmed_samples()) == round(end * SAMPLE_RATE) - SAMPLE_RATE
    assert hints_shown(panel) == [f"Short clip ({end - start:.1f} s): 8-15 s works best."]


def test_import_errors_and_load_warnings(panel, qtbot, tmp_path, speech_clip_16k):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    seen = answer_next_box(qtbot)
    assert not panel.import_file(str(bad))
    assert seen and "Cannot read" in seen[0] and "notes.wav" in seen[0]
    assert panel.hints_list.count() == 0 and not panel.save_button.isEnabled()
    # a clipped file: load_reference's warning and the clipping hint are both shown
    import soundfile as sf

    samples, _ = speech_clip_16k
    loud = tmp_path / "loud.wav"
    sf.write(loud, np.clip(4 * samples, -1, 1), SAMPLE_RATE, subtype="FLOAT")
    assert panel.import_file(str(loud))
    shown = hints_shown(panel)
    assert shown[0].startswith("Reference seems clipped") and shown[1].startswith("Clipping: ")


def test_drop_a_file_imports_it(panel, speech_clip_16k):
    _, path = speech_clip_16k
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    panel.dropEvent(event)
    assert panel.waveform.duration_s() > 4


def test_save_voice_encode_round_trip(panel, qtbot, library, speech_clip_16k):
    _, path = speech_clip_16k
    panel.import_file(str(path))
    panel.waveform.set_trim_range(0.5, 4.0)
    assert not panel.save_button.isEnabled()  # no transcript yet
    assert not panel.transcribe_button.isEnabled()
    assert panel.transcribe_button.toolTip() == "Needs a Whisper speech recognition model"
    panel.name_edit.setText("Fox")
    QTest.keyClicks(panel.transcript_edit, TRANSCRIPT)
    assert panel.save_button.isEnabled()
    with qtbot.waitSignal(panel.encode_requested) as request:
        QTest.mouseClick(panel.save_button, Qt.MouseButton.LeftButton)
    samples, transcript = request.args
    assert transcript == TRANSCRIPT
    assert np.array_equal(samples, panel.trimmed_samples()) and len(samples) == round(3.5 * SAMPLE_RATE)
    assert not panel.save_button.isEnabled()  # until the engine answers

    saved, selected = [], []
    panel.voice_saved.connect(saved.append)
    panel.voice_selected.connect(selected.append)
    voice = panel.set_voice_encoded(CODES, CODEC)
    assert saved == [voice] and selected == [voice] and panel.selected_voice() == voice
    assert [v.name for v in library.list()] == ["Fox"]
    assert voice.codes == CODES and voice.codec == CODEC and voice.transcript == TRANSCRIPT
    assert np.allclose(load_audio(voice.audio_path), samples, atol=1e-4)  # 16-bit FLAC
    assert [panel.voice_list.item(i).text() for i in range(panel.voice_list.count())] == [
        "No reference (random voice)", "Fox",
    ]
    assert panel.save_button.isEnabled()
    assert panel.set_voice_encoded(CODES, CODEC) is None  # nothing pending: ignored


def test_encode_failure_allows_saving_again(panel, speech_clip_16k):
    _, path = speech_clip_16k
    panel.import_file(str(path))
    panel.name_edit.setText("Fox")
    panel.set_transcript(TRANSCRIPT)
    panel.save_voice()
    assert panel.save_button.text() == "Encoding…" and not panel.save_button.isEnabled()
    panel.set_encode_failed()
    assert panel.save_button.text() == "Save voice" and panel.save_button.isEnabled()


def test_rename_delete_export_import(panel, qtbot, library, tmp_path):
    one = library.add("Alice", np.full(SAMPLE_RATE, 0.1, np.float32), "Hello there.", CODES, CODEC)
    library.add("Bob", np.full(SAMPLE_RATE, 0.2, np.float32), "Hi.", CODES[:60], CODEC)
    panel.refresh_library()
    assert panel.voice_list.count() == 3 and panel.selected_voice() is None
    assert not panel.delete_button.isEnabled()  # the random voice cannot be deleted

    with qtbot.waitSignal(panel.voice_selected) as selected:
        panel.select_voice(one.id)
    assert selected.args[0].name == "Alice"
    panel.voice_list.currentItem().setText("Alice Smith")  # what an inline edit does
    assert library.get(one.id).name == "Alice Smith" and panel.selected_voice().id == one.id

    exported = tmp_path / "alice.llasavoice"
    assert panel.export_selected(str(exported)) and exported.is_file()

    seen = answer_next_box(qtbot, QMessageBox.StandardButton.Yes)
    QTest.mouseClick(panel.delete_button, Qt.MouseButton.LeftButton)
    assert "Alice Smith" in seen[0]
    assert [v.name for v in library.list()] == ["Bob"] and panel.selected_voice() is None

    seen = answer_next_box(qtbot, QMessageBox.StandardButton.No)  # a "No" keeps the voice
    panel.select_voice(library.list()[0].id)
    panel.delete_selected()
    assert [v.name for v in library.list()] == ["Bob"]

    back = panel.import_voice_file(str(exported))
    assert back.name == "Alice Smith" and back.codes == CODES and back.transcript == "Hello there."
    assert panel.selected_voice() == back

    seen = answer_next_box(qtbot)
    assert panel.import_voice_file(str(tmp_path / "missing.llasavoice")) is None
    assert "does not exist" in seen[0]


def test_record_controls_disabled_with_reason(panel):
    panel.set_recording_available(False, "No audio devices were found.")
    assert not panel.record_button.isEnabled() and not panel.device_combo.isEnabled()
    assert not panel.play_voice_button.isEnabled() and not panel.play_clip_button.isEnabled()
    assert panel.unavailable_label.isVisible()
    assert panel.unavailable_label.text() == "Recording and playback are off: No audio devices were found."
    assert panel.record_button.toolTip() == "No audio devices were found."
    assert panel.import_button.isEnabled()  # importing a file still works
    panel.set_recording_available(True)
    assert panel.record_button.isEnabled() and not panel.unavailable_label.isVisible()
    assert panel.record_button.toolTip() == "Record up to 15 s (8-15 s works best)"


def test_controls_have_accessible_names(panel):
    from PySide6.QtWidgets import QAbstractButton, QComboBox, QLineEdit, QListWidget, QPlainTextEdit

    for kind in (QAbstractButton, QComboBox, QLineEdit, QPlainTextEdit, QListWidget):
        for widget in panel.findChildren(kind):
            if widget.parent() is panel or not isinstance(widget.parent(), (QComboBox,)):
                assert widget.accessibleName(), widget


@pytest.fixture
def null_sink(request):
    """helper A's PulseAudio null sink (tests/conftest_audio.py): default output plays into it and the
    default input records its monitor. Skips where the fixture or PulseAudio is missing."""
    try:
        return request.getfixturevalue("pulse_null_sink")
    except pytest.FixtureLookupError:
        missing("needs the pulse_null_sink fixture (tests/conftest_audio.py)")


def test_real_recording_through_the_null_sink(null_sink, qtbot, library, speech_clip_16k):
    from engine.audio import devices

    speech, _ = speech_clip_16k
    panel = VoicePanel(library)
    qtbot.addWidget(panel)
    assert panel.record_button.isEnabled(), panel.unavailable_label.text()
    levels: list[int] = []
    panel.level_meter.valueChanged.connect(levels.append)
    QTest.mouseClick(panel.record_button, Qt.MouseButton.LeftButton)
    assert panel.is_recording() and panel.record_button.text() == "Stop"
    player = devices.play_audio(speech, SAMPLE_RATE)
    # Wait with the event loop running: the panel's meter timer must tick while the speech plays.
    qtbot.waitUntil(lambda: player.wait(timeout=0), timeout=30_000)
    qtbot.wait(300)  # let the tail reach the recorder
    assert panel.timer_label.text() != "0:00 / 0:15"
    QTest.mouseClick(panel.record_button, Qt.MouseButton.LeftButton)
    assert not panel.is_recording() and panel.record_button.text() == "Record"
    recorded = panel.trimmed_samples()
    duration = len(recorded) / SAMPLE_RATE
    assert len(speech) / SAMPLE_RATE - 0.2 < duration < len(speech) / SAMPLE_RATE + 8.0  # PortAudio start-up and ALSA underruns add time
    assert np.abs(recorded).max() > 0.1  # speech came through, not silence
    assert max(levels) > 300  # the meter moved above -30 dBFS while recording
    assert panel.name_edit.text().startswith("Recording ")


def test_recording_stops_by_itself_at_the_limit(null_sink, qtbot, library, monkeypatch):
    import app.clip_audio as clip_audio

    monkeypatch.setattr(clip_audio, "MAX_RECORD_S", 1.0)
    panel = VoicePanel(library)
    qtbot.addWidget(panel)
    panel.toggle_recording()
    assert panel.is_recording()
    qtbot.waitUntil(lambda: not panel.is_recording(), timeout=10_000)
    assert len(panel.trimmed_samples()) == pytest.approx(SAMPLE_RATE, abs=0.05 * SAMPLE_RATE)


def test_a_new_clip_brings_its_own_name_transcript_and_length(panel, tmp_path, speech_clip_16k):
    samples, path = speech_clip_16k
    assert panel.timer_label.text() == "No clip"
    assert not panel.level_meter.isVisible() and panel.level_label.buddy() is panel.level_meter  # labelled
    panel.import_file(str(path))
    panel.set_transcript(TRANSCRIPT)
    panel.name_edit.setText("Fox")
    whole = panel.waveform.duration_s()  # load_reference keeps the usable stretch of the file
    from app.clip_audio import _clock
    assert panel.timer_label.text() == f"Clip {_clock(whole)}"  # an imported clip has a length too
    panel.waveform.set_trim_range(0.0, 2.5)
    assert panel.timer_label.text() == f"Clip 0:02 of {_clock(whole)}"
    second = tmp_path / "second take.wav"
    import soundfile as sf

    sf.write(second, samples[: 3 * SAMPLE_RATE], SAMPLE_RATE)
    panel.import_file(str(second))
    assert panel.name_edit.text() == "second take" and panel.transcript() == ""  # not the previous clip's words
    assert panel.timer_label.text() == f"Clip {_clock(panel.waveform.duration_s())}" and "of" not in panel.timer_label.text()
    assert panel.voice_list.currentItem().text() == "Unsaved clip: second take"
