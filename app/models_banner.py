"""The call to action shown across the main window while no speech models are loaded."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QStyle, QWidget

NO_MODELS_TEXT = "No voice model is loaded yet: set one up to start speaking (it is downloaded once, then works offline)."


class ModelsBanner(QFrame):
    """A highlighted strip: what is wrong with the models and a "Set up models…" button."""

    setup_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelsBanner")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        self.setAccessibleName("Models needed")
        self.setStyleSheet("#modelsBanner { background: palette(highlight); border-radius: 4px; }"
                           "#modelsBanner QLabel { color: palette(highlighted-text); }")
        icon = QLabel()
        icon.setPixmap(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxInformation).pixmap(24, 24))
        self.message_label = QLabel(NO_MODELS_TEXT)
        self.message_label.setWordWrap(True)
        self.message_label.setAccessibleName("Models status")
        self.setup_button = QPushButton("Set up models…")
        self.setup_button.setAccessibleName("Set up models")
        self.setup_button.setToolTip("Download a voice model or choose model folders (Models → Manage models…)")
        self.setup_button.clicked.connect(self.setup_requested)
        layout = QHBoxLayout(self)
        layout.addWidget(icon)
        layout.addWidget(self.message_label, 1)
        layout.addWidget(self.setup_button)

    def set_message(self, text: str) -> None:
        self.message_label.setText(text)
