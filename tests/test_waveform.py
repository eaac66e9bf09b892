"""WaveformView: envelope, trim handles by keyboard and mouse, seeking, playhead."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from app.waveform import WaveformView, envelope


def test_envelope_min_max_per_column():
    samples = np.array([0.0, 1.0, -1.0, 0.5, 0.25, -0.25], np.float32)
    lo, hi = envelope(samples, 3)
    assert lo.tolist() == [0.0, -1.0, -0.25] and hi.tolist() == [1.0, 0.5, 0.25]
    lo, hi = envelope(samples[:2], 4)  # fewer samples than columns still gives one value per column
    assert len(lo) == len(hi) == 4
    assert envelope(np.zeros(0, np.float32), 10)[0].size == 0


@pytest.fixture
def view(qtbot):
    w = WaveformView()
    qtbot.addWidget(w)
    w.resize(400, 80)
    w.show()
    qtbot.waitExposed(w)
    rng = np.random.default_rng(0)
    w.set_samples((0.3 * rng.standard_normal(16000 * 4)).astype(np.float32), 16000)  # 4.0 s
    return w


def test_trim_by_keyboard(view, qtbot):
    assert view.trim_range() == (0.0, 4.0)  # trim off: the whole clip
    view.set_trim_enabled(True)
    view.setFocus()
    with qtbot.waitSignal(view.trim_changed) as signal:
        QTest.keyClick(view, Qt.Key.Key_Right)  # start handle (selected by default) +0.1 s
    assert signal.args == pytest.approx([0.1, 4.0])
    QTest.keyClick(view, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)  # +1 s
    assert view.trim_range() == pytest.approx((1.1, 4.0))
    QTest.keyClick(view, Qt.Key.Key_End)  # select the end handle
    for _ in range(5):
        QTest.keyClick(view, Qt.Key.Key_Left)
    assert view.trim_range() == pytest.approx((1.1, 3.5))
    QTest.keyClick(view, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)  # clamped at the end
    assert view.trim_range() == pytest.approx((1.1, 4.0))
    QTest.keyClick(view, Qt.Key.Key_Home)
    for _ in range(10):
        QTest.keyClick(view, Qt.Key.Key_Left, Qt.KeyboardModifier.ShiftModifier)
    assert view.trim_range() == pytest.approx((0.0, 4.0))  # clamped at 0
    assert "keeping 0.0-4.0 s" in view.accessibleDescription()


def test_trim_by_mouse_drag_and_click_to_seek(view, qtbot):
    view.set_trim_enabled(True)
    # drag the start handle (x = 0) to the middle: 200 px of 400 = 2.0 s
    QTest.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(1, 40))
    QTest.mouseMove(view, QPoint(100, 40))
    QTest.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(200, 40))
    assert view.trim_range() == pytest.approx((2.0, 4.0))
    # the end handle cannot pass the start handle
    QTest.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(399, 40))
    QTest.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(50, 40))
    assert view.trim_range() == pytest.approx((2.0, 2.1))
    # a click away from the handles seeks
    with qtbot.waitSignal(view.seek_requested) as signal:
        QTest.mouseClick(view, Qt.MouseButton.LeftButton, pos=QPoint(100, 40))
    assert signal.args == [pytest.approx(1.0)]


def test_playhead_clear_and_paint_in_both_palettes(view, qtbot):
    from PySide6.QtGui import QColor, QPalette

    view.set_trim_enabled(True)
    view.set_playhead(1.5)
    dark = QPalette(QColor(30, 30, 30))
    for palette in (view.palette(), dark):
        view.setPalette(palette)
        image = view.grab().toImage()
        assert image.width() >= 400
        base = palette.color(QPalette.ColorRole.Base)
        assert image.pixelColor(300, 2) == base  # above the envelope, inside the kept part
    view.clear()
    assert view.duration_s() == 0.0 and view.trim_range() == (0.0, 0.0)
    view.grab()  # painting an empty view works
    assert view.sizeHint().width() > 0 and view.accessibleName() == "Waveform"
