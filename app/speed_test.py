"""Help ▸ Speed test…: time the loaded models on this machine and show the result.

The engine measures (engine.speech.speed); this module only asks and shows: a dialog with the table,
and "× N real time" in the main window's status bar.
"""
from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Slot
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QLabel, QMessageBox, QWidget


class SpeedTest(QObject):
    """Runs one speed test at a time through the bridge; `label` shows the last result."""

    def __init__(self, bridge, parent: QWidget, label: QLabel) -> None:
        super().__init__(parent)
        self.bridge, self.window, self.label = bridge, parent, label
        self.request_id: str | None = None
        self.last = None  # engine.speech.speed.SpeedResult of the last test
        bridge.speed_measured.connect(self._on_measured)
        bridge.failed.connect(self._on_failed)
        bridge.cancelled.connect(self._on_failed)

    def running(self) -> bool:
        return self.request_id is not None

    @Slot()
    def start(self) -> None:
        if self.running():
            return
        self.request_id = self.bridge.measure_speed()
        self.label.setText("Measuring speed…")

    @Slot(object)
    def _on_measured(self, event) -> None:
        if event.request_id != self.request_id:
            return
        self.request_id, self.last = None, event.result
        self.label.setText(f"× {event.result.realtime_x:.1f} real time")
        self.label.setToolTip(event.result.table())
        box = QMessageBox(QMessageBox.Icon.Information, "Speed test", "How fast the loaded models speak here:",
                          QMessageBox.StandardButton.Ok, self.window)
        box.setInformativeText(event.result.table())
        box.setStyleSheet("QLabel { font-family: %s; }" % QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont).family())
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    @Slot(object)
    def _on_failed(self, event) -> None:
        if event.request_id == self.request_id:
            self.request_id = None
            self.label.setText("")
