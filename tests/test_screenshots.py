"""installer/screenshots.py: the real app under Xvfb in the light and the dark palette; every PNG it
writes is a window with content (not blank, not one colour), and the dark shots are darker."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ("main_window", "voice_panel_recording", "models_dialog", "project_window")


def _mean_lightness_and_colours(path: Path) -> tuple[float, int]:
    from PySide6.QtGui import QImage

    image = QImage(str(path))
    assert not image.isNull() and image.width() >= 300 and image.height() >= 200, path
    small = image.scaled(64, 48)
    colours = {small.pixel(x, y) for x in range(small.width()) for y in range(small.height())}
    lightness = [small.pixelColor(x, y).lightness() for x in range(small.width()) for y in range(small.height())]
    return sum(lightness) / len(lightness), len(colours)


@pytest.mark.slow
def test_screenshots_in_light_and_dark(tmp_path, qapp):
    tools = [t for t in ("xvfb-run", "espeak-ng", "sox", "pulseaudio") if shutil.which(t) is None]
    if tools:
        assert not os.environ.get("CI"), f"CI must install {tools} (scripts/test.sh does)"
        pytest.skip(f"needs {', '.join(tools)}")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "QT_QPA_PLATFORM")}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, str(ROOT / "installer" / "screenshots.py"), str(tmp_path)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in SHOTS:
        light, light_colours = _mean_lightness_and_colours(tmp_path / f"{name}-light.png")
        dark, dark_colours = _mean_lightness_and_colours(tmp_path / f"{name}-dark.png")
        assert light_colours > 8 and dark_colours > 8, name  # widgets drawn, not a blank window
        assert dark < light - 40, (name, dark, light)
