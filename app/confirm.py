"""Ask before closing a window that would stop work in progress."""
from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget


def confirm_stop(parent: QWidget, title: str, text: str, stop_label: str) -> bool:
    """A modal question: True when the user chose `stop_label` (stop the work and close), False to keep working."""
    box = QMessageBox(QMessageBox.Icon.Question, title, text, QMessageBox.StandardButton.NoButton, parent)
    stop = box.addButton(stop_label, QMessageBox.ButtonRole.AcceptRole)
    keep = box.addButton("Keep working", QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(keep)
    box.setEscapeButton(keep)
    box.exec()
    return box.clickedButton() is stop
