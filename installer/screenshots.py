"""Screenshots of the real app for reviewers: `python installer/screenshots.py OUT_DIR`.

Runs the app in a real X window (re-running itself under `xvfb-run` when there is no display),
with tiny random models, a private PulseAudio null sink for the microphone, and throw-away settings
and voice library, so nothing of the user's is touched. Each shot is saved twice, in the light and the
dark palette (NAME-light.png, NAME-dark.png; the README shows them):
  main_window          after one voice was saved and two takes generated (the take history lists them)
  voice_panel_recording  the voice panel mid-recording (an espeak-ng clip plays into the sink)
  models_dialog        the Models dialog
  project_window       a narration project with its first chapter narrated
Needs the test tools (scripts/test.sh installs them) plus, on Debian/Ubuntu, Xvfb and the X libraries
Qt's xcb plugin loads: apt-get install xvfb libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1
libxcb-render-util0 libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 libxcb-shape0 libxcb-randr0.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEECH = "The quick brown fox jumps over the lazy dog, near the quiet river bank."


def _wait(signal, timeout_ms: int = 180_000):
    """Run the Qt event loop until `signal` fires; return its arguments."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop, result = QEventLoop(), []
    signal.connect(lambda *args: (result.append(args), loop.quit()))
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec()
    if not result:
        raise TimeoutError(f"no {signal} within {timeout_ms / 1000:.0f} s")
    return result[0]


def _pause(ms: int) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def _shoot(widget, out: Path, name: str) -> list[Path]:
    """Grab `widget` in the light and then the dark palette; the app is left in the light one."""
    from PySide6.QtWidgets import QApplication

    from app.theme import apply_theme

    paths = []
    for theme in ("light", "dark"):
        apply_theme(QApplication.instance(), theme)
        _pause(300)  # let the palette change repaint
        paths.append(out / f"{name}-{theme}.png")
        widget.grab().save(str(paths[-1]))
    apply_theme(QApplication.instance(), "light")
    return paths


def _speech_clip(folder: Path) -> Path:
    raw, clip = folder / "speech22.wav", folder / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), SPEECH], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", str(clip)], check=True)
    return clip


def take_screenshots(out: Path, work: Path) -> list[Path]:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest_audio import null_sink_server

    from engine.models.tiny import write_tiny_models

    lm, codec = write_tiny_models(work / "tiny")
    clip = _speech_clip(work)
    with null_sink_server(work / "pulse"):
        from PySide6.QtCore import QSettings
        from PySide6.QtWidgets import QApplication

        from app.bridge import EngineBridge
        from app.main_window import MainWindow
        from app.models_dialog import ModelsDialog
        from app.settings import AppSettings
        from engine.audio.clip import load_audio
        from engine.audio.devices import play_audio
        from engine.voices import VoiceLibrary

        app = QApplication([sys.argv[0]])
        from app.theme import apply_theme

        apply_theme(app, "light")
        settings = AppSettings(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
        settings.lm, settings.codec, settings.voices_folder = str(lm), str(codec), str(work / "voices")
        bridge = EngineBridge()
        settings.seed = 7  # the same takes on every run
        window = MainWindow(bridge, settings, VoiceLibrary(work / "voices"))
        window.resize(1280, 800)
        window.show()
        window.load_models()
        _wait(bridge.models_loaded)

        panel = window.voice_panel
        panel.import_file(str(clip))
        panel.set_transcript(SPEECH)
        panel.name_edit.setText("Narrator (espeak)")
        panel.save_voice()
        _wait(panel.voice_saved)
        for text in ("Hello! This is Llasa Studio.", "Hello! This is Llasa Studio speaking in a cloned voice."):
            window.text_edit.setPlainText(text)
            window.generate()
            _wait(bridge.generated)
        _pause(500)
        paths = _shoot(window, out, "main_window")

        player = play_audio(load_audio(clip))  # into the null sink; the panel records its monitor
        panel.toggle_recording()
        _pause(2500)
        paths += _shoot(panel, out, "voice_panel_recording")
        panel.toggle_recording()
        player.stop()

        dialog = ModelsDialog(window, current=settings.to_model_choice())
        dialog.show()
        _pause(500)
        paths += _shoot(dialog, out, "models_dialog")
        dialog.close()
        paths += _project_shot(out, work, window, settings)
        window.close()
        bridge.shutdown(5.0)
        app.quit()
    return paths


def _project_shot(out: Path, work: Path, window, settings) -> list[Path]:
    """A two-chapter book narrated up to the end of chapter one, its second segment selected."""
    from app.new_project_dialog import narration_settings
    from engine.book.importer import import_book

    book = work / "The Clock Book.txt"
    book.write_text("Chapter One\n\nIt was a bright cold day in April.\n\nThe clocks were striking thirteen.\n\n"
                    "Chapter Two\n\nA second chapter begins here.\n\nIt ends soon after.\n", encoding="utf-8")
    voice = window.library.list()[0]
    window.bridge.create_project(work / "project", import_book(book), voice, narration_settings(settings), (0,))
    _wait(window.bridge.project_created)
    shot = window.projects.open_folder(work / "project")
    shot.resize(1100, 680)
    shot.narrate()
    _wait(window.bridge.narrated)
    shot.project.select_chapters([0, 1])
    shot.refresh()
    shot.segment_table.select_segment(shot.project.chapters[0].segments[1].id)
    shot.play_selected()
    _pause(500)
    paths = _shoot(shot, out, "project_window")
    shot.close()
    return paths


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots").resolve()
    if not os.environ.get("DISPLAY"):
        if shutil.which("xvfb-run") is None:
            print("needs a display or xvfb-run (apt-get install xvfb)", file=sys.stderr)
            return 2
        command = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24 -dpi 96", sys.executable, __file__, str(out)]
        return subprocess.run(command).returncode
    os.environ["QT_QPA_PLATFORM"] = "xcb"  # a real window on the X server, not offscreen
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llasa-shots-") as work:
        for path in take_screenshots(out, Path(work)):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
