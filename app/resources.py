"""Find files shipped in resources/, both from a source checkout and inside a PyInstaller bundle."""
from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtGui import QIcon

ICON_SVG = "icons/llasa-studio.svg"  # the app icon, relative to resources/
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)  # px: its PNG renditions, icons/llasa-studio-<size>.png


def resource_path(name: str) -> Path:
    """Absolute path of resources/<name>: under sys._MEIPASS when frozen, else the repository root.

    The file may not exist; callers that need it should check.
    """
    frozen_root = getattr(sys, "_MEIPASS", None)
    root = Path(frozen_root) if frozen_root else Path(__file__).resolve().parents[1]
    return root / "resources" / name


def app_icon() -> QIcon:
    """The application icon: the SVG (sharp at any DPI) plus PNG renditions for platforms without SVG."""
    icon = QIcon()
    svg = resource_path(ICON_SVG)
    if svg.is_file():
        icon.addFile(str(svg))
    for size in ICON_SIZES:
        png = resource_path(f"icons/llasa-studio-{size}.png")
        if png.is_file():
            icon.addFile(str(png))
    return icon
