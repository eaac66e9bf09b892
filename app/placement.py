"""Default window sizes that fit the screen the window opens on."""
from __future__ import annotations

from PySide6.QtWidgets import QApplication, QWidget


def place_on_screen(window: QWidget, size: tuple[int, int]) -> None:
    """Give a top-level window `size` (px), shrunk to fit the available screen, centred on it."""
    screen = window.screen() or QApplication.primaryScreen()
    if screen is None:
        window.resize(*size)
        return
    area = screen.availableGeometry()
    width = min(size[0], max(area.width() - 40, window.minimumWidth()))
    height = min(size[1], max(area.height() - 60, window.minimumHeight()))  # room for the title bar
    window.resize(width, height)
    frame = window.frameGeometry()
    frame.moveCenter(area.center())
    window.move(max(frame.left(), area.left()), max(frame.top(), area.top()))
