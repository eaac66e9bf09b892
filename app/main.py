"""Start the desktop app: Qt application, per-user logging, first run, main window, clean shutdown."""
from __future__ import annotations

import logging
import logging.handlers
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

APP_NAME = "Llasa Studio"
ORGANIZATION = "LlasaStudio"
log = logging.getLogger("llasa.app")


def setup_logging() -> None:
    """Log to a rotating file in the per-user log folder (and to stderr when there is one)."""
    from app.settings import logs_folder

    folder = logs_folder()
    folder.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        folder / "llasa-studio.log", maxBytes=2_000_000, backupCount=3, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    if sys.stderr is not None:  # None in a windowed (frozen) build
        root.addHandler(logging.StreamHandler(sys.stderr))


def _install_excepthook() -> None:
    """Unexpected exceptions on the GUI thread: log the traceback, show a readable message."""
    from app.settings import logs_folder

    def hook(kind, value, traceback) -> None:
        log.error("unexpected error", exc_info=(kind, value, traceback))
        QMessageBox.critical(
            None, APP_NAME, f"Unexpected error: {kind.__name__}: {value}\n\nDetails are in the log ({logs_folder()})."
        )

    sys.excepthook = hook


def run_app(argv: list[str] | None = None) -> int:
    """Open the main window; returns the process exit code."""
    app = QApplication(argv if argv is not None else sys.argv)
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(ORGANIZATION)
    from app.resources import app_icon

    app.setWindowIcon(app_icon())
    setup_logging()
    _install_excepthook()

    from app.bridge import EngineBridge
    from app.main_window import MainWindow
    from app.settings import AppSettings
    from engine.voices import VoiceLibrary

    settings = AppSettings()
    from app.theme import apply_theme

    apply_theme(app, settings.theme or "auto")
    library = VoiceLibrary(settings.voices_folder)
    bridge = EngineBridge()
    window = MainWindow(bridge, settings, library)
    window.show()
    app.aboutToQuit.connect(lambda: bridge.shutdown(5.0))
    QTimer.singleShot(0, window.start)  # first-run dialog or model load, after the window is up
    try:
        return app.exec()
    finally:
        # Delete the window (with every dialog it parents) and the bridge while the QApplication still
        # exists. Left to Python's garbage collection at return, the order is arbitrary and Qt could
        # crash on quit ("shared QObject was deleted directly", then a segfault).
        import shiboken6

        for qobject in (window, bridge):
            if shiboken6.isValid(qobject):
                shiboken6.delete(qobject)
