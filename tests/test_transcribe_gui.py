"""Auto-transcribe in the voice panel: the real window, bridge and engine thread with a tiny random
Whisper (engine.models.tiny_verifiers; its text is gibberish, so it is compared with WhisperASR run directly),
disabled with a tooltip when no Whisper is on disk, errors as messages, the Whisper setting."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings, Qt  # noqa: E402

from app.bridge import EngineBridge  # noqa: E402
from app.main_window import MainWindow  # noqa: E402
from app.settings import AppSettings  # noqa: E402
from app.settings_dialog import SettingsDialog  # noqa: E402
from engine.models.tiny_verifiers import write_tiny_wavlm_sv, write_tiny_whisper  # noqa: E402
from engine.verify.scoring import DEFAULT_ASR, WhisperASR  # noqa: E402
from engine.voices import VoiceLibrary  # noqa: E402

WAIT_MS = 120_000  # only guards against a hang


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    return write_tiny_whisper(tmp_path_factory.mktemp("asr") / "whisper")


def make_window(qtbot, tmp_path, asr: str):
    settings = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    settings.voices_folder, settings.device, settings.asr = tmp_path / "voices", "cpu", asr
    bridge = EngineBridge()
    window = MainWindow(bridge, settings, VoiceLibrary(settings.voices_folder))
    qtbot.addWidget(window)
    window.show()
    return window


@pytest.fixture
def closing():
    windows = []
    yield windows.append
    for window in windows:
        window.close()
        assert window.bridge.shutdown(10.0)


def test_auto_transcribe_fills_the_editable_transcript(qtbot, tmp_path, whisper_dir, speech_clip_16k, closing):
    window = make_window(qtbot, tmp_path, str(whisper_dir))
    closing(window)
    panel = window.voice_panel
    assert AppSettings.defaults().asr == DEFAULT_ASR
    panel.set_clip(speech_clip_16k[0])
    button = panel.transcribe_button
    assert button.isEnabled() and "edit" in button.toolTip()
    with qtbot.waitSignal(window.bridge.transcribed, timeout=WAIT_MS):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        assert not button.isEnabled()  # one at a time
    expected = WhisperASR(whisper_dir, device="cpu").transcribe(panel.trimmed_samples(), None)
    qtbot.waitUntil(lambda: button.isEnabled(), timeout=WAIT_MS)
    assert panel.transcript_edit.toPlainText() == expected
    assert not panel.transcript_edit.isReadOnly()
    panel.transcript_edit.setPlainText("")
    qtbot.keyClicks(panel.transcript_edit, "Corrected by hand")
    assert panel.transcript() == "Corrected by hand"


def test_disabled_with_a_tooltip_without_whisper(qtbot, tmp_path, closing):
    missing = make_window(qtbot, tmp_path / "a", "nobody-here/whisper-missing")
    closing(missing)
    button = missing.voice_panel.transcribe_button
    assert not button.isEnabled()
    assert "hf download nobody-here/whisper-missing" in button.toolTip() and "Preferences" in button.toolTip()
    wrong = make_window(qtbot, tmp_path / "b", str(write_tiny_wavlm_sv(tmp_path / "wavlm")))
    closing(wrong)
    assert not wrong.voice_panel.transcribe_button.isEnabled()
    assert "expected 'whisper'" in wrong.voice_panel.transcribe_button.toolTip()


def test_a_whisper_that_cannot_load_is_an_error_message(qtbot, tmp_path, whisper_dir, speech_clip_16k, closing):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (broken / name).write_bytes((whisper_dir / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"not weights")
    window = make_window(qtbot, tmp_path, str(broken))
    closing(window)
    panel = window.voice_panel
    panel.set_clip(speech_clip_16k[0])
    assert panel.transcribe_button.isEnabled()  # looks like a Whisper folder on disk
    with qtbot.waitSignal(window.bridge.failed, timeout=WAIT_MS):
        qtbot.mouseClick(panel.transcribe_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.transcriber.is_busy() is False, timeout=WAIT_MS)
    assert window.last_message is not None and "Whisper" in window.last_message.text()
    assert "Traceback" not in window.last_message.text() and panel.transcribe_button.isEnabled()
    assert panel.transcript() == ""


def test_settings_dialog_edits_the_whisper_model(qtbot, tmp_path, whisper_dir):
    settings = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    settings.voices_folder = tmp_path / "voices"
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    assert dialog.asr_edit.text() == DEFAULT_ASR and dialog.asr_edit.accessibleName()
    dialog.asr_edit.setText(str(tmp_path / "no-such-folder"))
    dialog.accept()
    assert "does not exist" in dialog.error_text() and settings.asr == DEFAULT_ASR
    dialog.asr_edit.setText(str(whisper_dir))
    dialog.accept()
    assert dialog.error_text() == "" and settings.asr == str(whisper_dir)
