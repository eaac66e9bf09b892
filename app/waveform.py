"""A waveform view: min/max envelope, optional trim handles, playhead, click to seek.

The envelope is computed with numpy once per size or clip change, so painting stays cheap while a
playhead moves. Trim handles are draggable with the mouse; with the keyboard, Home/End pick the
start/end handle (Up/Down toggle) and Left/Right move it (Shift: by a whole second).
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QLineF, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QKeyEvent, QMouseEvent, QPainter, QPaintEvent, QPalette, QPen, QResizeEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

from engine.audio.clip import SAMPLE_RATE

ACCENT = QColor(0x2E, 0x86, 0xDE)  # the waveform accent: readable on light and dark bases
_HANDLE_GRAB_PX = 8  # a press this close to a handle drags it
_KEY_STEP_S = 0.1  # s: one Left/Right press; Shift moves by _KEY_BIG_STEP_S
_KEY_BIG_STEP_S = 1.0
_MIN_TRIM_S = 0.1  # s: the handles never get closer than this


def envelope(samples: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (min, max) of float32 [n] split into `columns` equal spans → two float32 [columns]."""
    n = len(samples)
    if n == 0 or columns <= 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    starts = np.minimum((np.arange(columns) * n) // columns, n - 1)
    return np.minimum.reduceat(samples, starts), np.maximum.reduceat(samples, starts)


class WaveformView(QWidget):
    """Shows a clip; with trim enabled, two handles select the part to keep."""

    trim_changed = Signal(float, float)  # (start_s, end_s) after a handle moved
    seek_requested = Signal(float)  # s: the user clicked this position

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._samples = np.zeros(0, np.float32)
        self._rate = SAMPLE_RATE
        self._lines: list[QLineF] = []  # envelope, one vertical line per pixel column
        self._trim_enabled = False
        self._trim = [0.0, 0.0]  # s: start, end
        self._active = 0  # the handle the keyboard moves: 0 start, 1 end
        self._dragging: int | None = None
        self._playhead: float | None = None
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setMinimumSize(120, 48)
        self.setAccessibleName("Waveform")
        self.setToolTip("Click to seek. With trim on: drag the handles, or Home/End then Left/Right.")
        self._describe()

    # --- public API -----------------------------------------------------------------------------
    def set_samples(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
        """Show float32 [n] mono at sample_rate (Hz); resets the trim to the whole clip."""
        self._samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._rate = int(sample_rate)
        self._trim = [0.0, self.duration_s()]
        self._playhead = None
        self._rebuild()
        self._describe()
        self.update()

    def clear(self) -> None:
        """Show nothing."""
        self.set_samples(np.zeros(0, np.float32), self._rate)

    def duration_s(self) -> float:
        return len(self._samples) / self._rate

    def set_trim_enabled(self, enabled: bool) -> None:
        self._trim_enabled = bool(enabled)
        self._describe()
        self.update()

    def trim_enabled(self) -> bool:
        return self._trim_enabled

    def trim_range(self) -> tuple[float, float]:
        """(start_s, end_s) of the kept part; the whole clip when trim is off."""
        if not self._trim_enabled:
            return 0.0, self.duration_s()
        return self._trim[0], self._trim[1]

    def set_trim_range(self, start_s: float, end_s: float) -> None:
        """Move both handles (clamped to the clip); emits trim_changed when they moved."""
        self._move_handle(0, start_s)
        self._move_handle(1, end_s)

    def set_active_handle(self, which: int) -> None:
        """Choose the handle Left/Right moves: 0 = start, 1 = end."""
        self._active = 1 if which else 0
        self.update()

    def set_playhead(self, seconds: float | None) -> None:
        """Draw the playhead at `seconds` (None or < 0 hides it)."""
        self._playhead = None if seconds is None or seconds < 0 else float(seconds)
        self.update()

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QSize(480, 96)

    # --- geometry -------------------------------------------------------------------------------
    def _x_of(self, seconds: float) -> float:
        duration = self.duration_s()
        return 0.0 if duration <= 0 else seconds / duration * self.width()

    def _seconds_at(self, x: float) -> float:
        return min(max(x / max(1, self.width()), 0.0), 1.0) * self.duration_s()

    def _rebuild(self) -> None:
        lo, hi = envelope(self._samples, self.width())
        mid, half = self.height() / 2.0, self.height() / 2.0 - 2.0
        ys_lo = mid - np.clip(lo, -1, 1) * half
        ys_hi = mid - np.clip(hi, -1, 1) * half
        self._lines = [
            QLineF(x + 0.5, float(a), x + 0.5, float(b) + 0.5) for x, (a, b) in enumerate(zip(ys_hi, ys_lo))
        ]

    def _move_handle(self, which: int, seconds: float) -> None:
        duration = self.duration_s()
        if which == 0:
            value = min(max(seconds, 0.0), max(0.0, self._trim[1] - _MIN_TRIM_S))
        else:
            value = max(min(seconds, duration), min(duration, self._trim[0] + _MIN_TRIM_S))
        if abs(value - self._trim[which]) < 1e-9:
            return
        self._trim[which] = value
        self._describe()
        self.update()
        self.trim_changed.emit(self._trim[0], self._trim[1])

    def _describe(self) -> None:
        text = f"{self.duration_s():.1f} s clip" if len(self._samples) else "No clip"
        if self._trim_enabled and len(self._samples):
            which = "start" if self._active == 0 else "end"
            text += f"; keeping {self._trim[0]:.1f}-{self._trim[1]:.1f} s; {which} handle selected"
        self.setAccessibleDescription(text)

    # --- events ---------------------------------------------------------------------------------
    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        self._rebuild()
        super().resizeEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        p = QPainter(self)
        pal = self.palette()
        rect = QRectF(self.rect())
        p.fillRect(rect, pal.color(QPalette.ColorRole.Base))
        p.setPen(QPen(pal.color(QPalette.ColorRole.Mid), 1))
        p.drawLine(QLineF(0, rect.height() / 2, rect.width(), rect.height() / 2))
        p.setPen(QPen(ACCENT, 1))
        p.drawLines(self._lines)
        if self._trim_enabled and len(self._samples):
            shade = QColor(pal.color(QPalette.ColorRole.Window))
            shade.setAlpha(190)
            x0, x1 = self._x_of(self._trim[0]), self._x_of(self._trim[1])
            p.fillRect(QRectF(0, 0, x0, rect.height()), shade)
            p.fillRect(QRectF(x1, 0, rect.width() - x1, rect.height()), shade)
            for which, x in enumerate((x0, x1)):
                active = which == self._active and self.hasFocus()
                color = pal.color(QPalette.ColorRole.Highlight if active else QPalette.ColorRole.Text)
                p.setPen(QPen(color, 3 if active else 2))
                p.drawLine(QLineF(x, 0, x, rect.height()))
                p.setBrush(color)
                tip = 1 if which == 0 else -1
                p.drawPolygon([QPointF(x, 0), QPointF(x + 7 * tip, 0), QPointF(x, 9)])
        if self._playhead is not None and len(self._samples):
            p.setPen(QPen(pal.color(QPalette.ColorRole.Text), 1))
            x = self._x_of(self._playhead)
            p.drawLine(QLineF(x, 0, x, rect.height()))
        if self.hasFocus():
            p.setPen(QPen(pal.color(QPalette.ColorRole.Highlight), 1, Qt.PenStyle.DotLine))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRect(rect.adjusted(0.5, 0.5, -0.5, -0.5))
        p.end()

    def _handle_near(self, x: float) -> int | None:
        if not (self._trim_enabled and len(self._samples)):
            return None
        distances = [abs(x - self._x_of(t)) for t in self._trim]
        best = int(np.argmin(distances))
        return best if distances[best] <= _HANDLE_GRAB_PX else None

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() != Qt.MouseButton.LeftButton or not len(self._samples):
            return super().mousePressEvent(event)
        x = event.position().x()
        handle = self._handle_near(x)
        if handle is None:
            self.seek_requested.emit(self._seconds_at(x))
        else:
            self._dragging = self._active = handle
            self._describe()
            self.update()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._dragging is None:
            return super().mouseMoveEvent(event)
        self._move_handle(self._dragging, self._seconds_at(event.position().x()))

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._dragging is not None:
            self._move_handle(self._dragging, self._seconds_at(event.position().x()))
            self._dragging = None
        else:
            super().mouseReleaseEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        key = event.key()
        if not (self._trim_enabled and len(self._samples)):
            return super().keyPressEvent(event)
        if key in (Qt.Key.Key_Home, Qt.Key.Key_End):
            self.set_active_handle(0 if key == Qt.Key.Key_Home else 1)
            self._describe()
        elif key in (Qt.Key.Key_Up, Qt.Key.Key_Down):
            self.set_active_handle(1 - self._active)
            self._describe()
        elif key in (Qt.Key.Key_Left, Qt.Key.Key_Right):
            step = _KEY_BIG_STEP_S if event.modifiers() & Qt.KeyboardModifier.ShiftModifier else _KEY_STEP_S
            sign = -1 if key == Qt.Key.Key_Left else 1
            self._move_handle(self._active, self._trim[self._active] + sign * step)
        else:
            super().keyPressEvent(event)
