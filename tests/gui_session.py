"""The app's main window on a real engine thread with models loaded, for the GUI tests' fixtures."""
from __future__ import annotations

from collections.abc import Iterator

from app.bridge import EngineBridge
from app.main_window import MainWindow

WAIT_MS = 300_000  # only guards against a hang; nothing is timed


def running_main_window(qtbot, settings, library) -> Iterator[MainWindow]:
    """Yield a shown MainWindow whose models (settings.lm/codec) have loaded; close it and stop the engine after."""
    bridge = EngineBridge()
    window = MainWindow(bridge, settings, library)
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignal(bridge.models_loaded, timeout=WAIT_MS):
        window.load_models()
    yield window
    window.close()
    assert bridge.shutdown(10.0)


def answer_next_question(button_text: str) -> list[str]:
    """Click the button labelled `button_text` in the next modal message box; returns a list that receives
    the box's text (the answer a user would give, given programmatically)."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    seen: list[str] = []

    def answer() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, answer)
            return
        seen.append(box.text())
        next(b for b in box.buttons() if b.text() == button_text).click()

    QTimer.singleShot(0, answer)
    return seen
