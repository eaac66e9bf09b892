"""Settings → Server → "Serve voices on this computer": the real window, the real Preferences dialog and a
real `main.py serve` child process on the tiny models; requests only go to 127.0.0.1."""
from __future__ import annotations

import os
import urllib.error

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from app.bridge import EngineBridge  # noqa: E402
from app.main_window import MainWindow  # noqa: E402
from app.settings import AppSettings  # noqa: E402
from app.settings_dialog import SettingsDialog  # noqa: E402
from app.voice_server import ServerTab, serve_command  # noqa: E402
from engine.voices import VoiceLibrary  # noqa: E402
from server_fixtures import WAIT_S, free_port, get_json, make_library  # noqa: E402

WAIT_MS = WAIT_S * 1000


def _settings(tmp_path, tiny_models) -> AppSettings:
    settings = AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    settings.lm, settings.codec, settings.device = str(tiny_models["lm"]), str(tiny_models["codec"]), "cpu"
    settings.voices_folder = tmp_path / "voices"
    return settings


def _set_server_in_preferences(window: MainWindow, on: bool, port: int) -> None:
    """Open Settings (modal, as the menu does), flip the switch, press OK."""
    def answer() -> None:
        dialog = QApplication.activeModalWidget()
        assert isinstance(dialog, SettingsDialog)
        dialog.tabs.setCurrentWidget(dialog.server_tab)
        dialog.server_tab.serve_check.setChecked(on)
        dialog.server_tab.port_spin.setValue(port)
        dialog.accept()
        assert dialog.error_text() == ""

    QTimer.singleShot(0, answer)
    window.open_preferences()


def test_the_switch_is_saved_and_builds_the_serve_command(qtbot, tmp_path, tiny_models):
    settings = _settings(tmp_path, tiny_models)
    assert settings.serve_voices is False and settings.serve_port == 8808
    tab = ServerTab()
    qtbot.addWidget(tab)
    tab.load(settings)
    assert tab.serve_check.isEnabled() and "http://127.0.0.1:8808/v1" in tab.hint_label.text()
    settings.serve_voices, settings.serve_port, settings.quantization = True, 9123, "fp32"
    command = serve_command(settings, settings.serve_port)
    assert command[command.index("serve"):] == [
        "serve", "--host", "127.0.0.1", "--port", "9123", "--voices", str(tmp_path / "voices"),
        "--lm", str(tiny_models["lm"]), "--codec", str(tiny_models["codec"]), "--device", "cpu", "--quant", "fp32"]


@pytest.mark.slow
def test_serve_voices_switch_starts_and_stops_the_api(qtbot, tmp_path, tiny_models):
    settings = _settings(tmp_path, tiny_models)
    make_library(settings.voices_folder, tiny_models)
    bridge = EngineBridge()
    window = MainWindow(bridge, settings, VoiceLibrary(settings.voices_folder))
    qtbot.addWidget(window)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        _set_server_in_preferences(window, True, port)
        assert AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)).serve_voices is True
        qtbot.waitUntil(lambda: window.voice_server.state in ("running", "failed"), timeout=WAIT_MS)
        assert window.voice_server.state == "running", window.voice_server.message
        assert window.statusBar().currentMessage() == f"Serving voices at {url}/v1"
        status, health = get_json(url + "/health")
        assert status == 200 and health["status"] == "ready"
        assert [v["name"] for v in get_json(url + "/v1/voices")[1]["voices"]] == ["Long", "Short"]

        _set_server_in_preferences(window, False, port)  # stop() waits for the process to end
        assert window.voice_server.state == "stopped"
        with pytest.raises(urllib.error.URLError):
            get_json(url + "/health")
        assert window.last_message is None  # no error box
    finally:
        window.close()
        assert bridge.shutdown(10.0)
