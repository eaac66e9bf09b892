"""Without PortAudio the app still starts, says why recording and live playback are off, and can
generate and export. PortAudio's absence is simulated the way it shows up for real: importing
sounddevice raises OSError (the no_portaudio_path fixture)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication
    from app.bridge import EngineBridge
    from app.main_window import MainWindow
    from app.settings import AppSettings
    from engine.voices import VoiceLibrary

    lm, codec, work = sys.argv[1:4]

    def wait(signal, ms=240_000):
        loop, got, failures = QEventLoop(), [], []
        signal.connect(lambda *a: (got.append(a), loop.quit()))
        bridge.failed.connect(lambda e: (failures.append(e.message), loop.quit()))
        QTimer.singleShot(ms, loop.quit)
        loop.exec()
        assert not failures, failures
        assert got, f"timed out waiting for {signal}"
        return got[0][0]

    app = QApplication([])
    settings = AppSettings(QSettings(work + "/s.ini", QSettings.Format.IniFormat))
    settings.lm, settings.codec, settings.voices_folder, settings.device = lm, codec, work + "/voices", "cpu"
    library = VoiceLibrary(settings.voices_folder)
    # A long reference leaves ~150 tokens of budget, so the tiny (never-ending) LM finishes quickly.
    codes = np.random.default_rng(0).integers(0, 65536, 1800)
    library.add("Long", np.zeros(16000, np.float32), "These words are said slowly in the long reference clip.", codes, "tiny")
    bridge = EngineBridge()
    window = MainWindow(bridge, settings, library)
    window.show()
    window.load_models()
    wait(bridge.models_loaded)
    panel = window.voice_panel
    panel.select_voice(library.list()[0].id)
    window.text_edit.setPlainText("Hi.")
    window.generate()
    wait(bridge.generated)
    window.export_audio(work + "/take.wav")
    exported = wait(bridge.exported)
    print(json.dumps({
        "record_enabled": panel.record_button.isEnabled(),
        "panel_reason": panel.unavailable_label.text(),
        "player_available": window.player.available,
        "player_reason": window.player.unavailable_reason,
        "exported": str(exported.path),
    }))
    bridge.shutdown(5.0)
""")


def test_app_without_portaudio_generates_and_exports(tiny_models, tmp_path, no_portaudio_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(no_portaudio_path), str(ROOT)]), "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_models["lm"]), str(tiny_models["codec"]), str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads(result.stdout.strip().splitlines()[-1])
    assert not state["record_enabled"]
    assert "PortAudio is not installed" in state["panel_reason"]
    assert not state["player_available"]
    assert "PortAudio is not installed" in state["player_reason"]
    info = sf.info(state["exported"])
    assert info.samplerate == 16000 and info.frames > 0
