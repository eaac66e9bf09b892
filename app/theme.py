"""Light and dark palettes on the Fusion style, following the system's colour scheme unless the user
picked one (settings "ui/theme": auto, light or dark). Colours are chosen for contrast, not decoration."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

THEMES = ("auto", "light", "dark")
ACCENT = "#2f6fd6"  # highlight / primary action, readable on both palettes with white text

_LIGHT = {
    "Window": "#f4f5f7", "WindowText": "#1d1f23", "Base": "#ffffff", "AlternateBase": "#eef0f3",
    "Text": "#1d1f23", "Button": "#e9ebef", "ButtonText": "#1d1f23", "ToolTipBase": "#ffffdc",
    "ToolTipText": "#1d1f23", "PlaceholderText": "#7a7f87", "Highlight": ACCENT, "HighlightedText": "#ffffff",
    "Link": "#1f5fbf", "Mid": "#c4c8ce", "Dark": "#9aa0a8", "Light": "#ffffff", "BrightText": "#ffffff",
}
_DARK = {
    "Window": "#25272b", "WindowText": "#e6e7e9", "Base": "#1b1c1f", "AlternateBase": "#2c2e33",
    "Text": "#e6e7e9", "Button": "#32353a", "ButtonText": "#e6e7e9", "ToolTipBase": "#3a3d42",
    "ToolTipText": "#e6e7e9", "PlaceholderText": "#8c9097", "Highlight": ACCENT, "HighlightedText": "#ffffff",
    "Link": "#7fb0ff", "Mid": "#45484e", "Dark": "#15161a", "Light": "#4a4d53", "BrightText": "#ffffff",
}


def palette(dark: bool) -> QPalette:
    """The app's light or dark palette (disabled text greyed out in both)."""
    pal = QPalette()
    for role, color in (_DARK if dark else _LIGHT).items():
        pal.setColor(getattr(QPalette.ColorRole, role), QColor(color))
    grey = QColor("#6d7178" if dark else "#a0a4ab")
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText, QPalette.ColorRole.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, grey)
    return pal


def system_prefers_dark() -> bool:
    """True when the platform reports a dark colour scheme (Qt 6.5+); unknown counts as light."""
    hints = QGuiApplication.styleHints()
    return hasattr(hints, "colorScheme") and hints.colorScheme() == Qt.ColorScheme.Dark


def apply_theme(app: QApplication, theme: str = "auto") -> bool:
    """Use the Fusion style with the light or dark palette (`theme`: auto/light/dark); with "auto" it
    follows later system changes too. Returns True when the dark palette is in use."""
    if theme not in THEMES:
        theme = "auto"
    app.setStyle("Fusion")
    dark = theme == "dark" or (theme == "auto" and system_prefers_dark())
    app.setPalette(palette(dark))
    app.setProperty("llasa_theme", theme)
    hints = QGuiApplication.styleHints()
    if hasattr(hints, "colorSchemeChanged") and not app.property("llasa_theme_hooked"):
        hints.colorSchemeChanged.connect(
            lambda _: app.property("llasa_theme") == "auto" and apply_theme(app, "auto"))
        app.setProperty("llasa_theme_hooked", True)
    return dark


def is_dark(pal: QPalette) -> bool:
    """Whether a palette is a dark one (its window colour is darker than its text)."""
    return pal.color(QPalette.ColorRole.Window).lightness() < pal.color(QPalette.ColorRole.WindowText).lightness()
