"""The script pane: the text to speak, its length estimate, Generate/Stop and the progress readout.

Dumb widget: clicks go out as `generate_requested` / `stop_requested`, edits as `text_changed`;
the window decides what is allowed and tells it through the set_* slots.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal, Slot
from PySide6.QtCore import QSize
from PySide6.QtWidgets import (
    QGroupBox, QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar, QPushButton, QStyle, QVBoxLayout, QWidget,
)

from engine.audio.clip import FRAME_RATE

CHARS_PER_SECOND = 14.0  # typical read speech (~150 words/min); only for the length estimate
STAGE_NAMES = {"load": "Loading models…", "encode": "Encoding voice…", "generate": "Generating…",
               "convert": "Converting the voice model for llama.cpp (once)…"}


class ScriptView(QWidget):
    """Text editor + Generate/Stop + progress. Public pieces: text_edit, count_label, generate_button,
    stop_button, progress_bar, progress_label."""

    generate_requested = Signal()
    stop_requested = Signal()
    text_changed = Signal(str)  # the whole text, as typed
    failed = Signal(str)  # a user-facing message (e.g. an unreadable text file)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.text_edit = QPlainTextEdit()
        self.text_edit.setPlaceholderText("Type or paste the text to speak…")
        self.text_edit.setAccessibleName("Text to speak")
        self.text_edit.setToolTip("The text to speak (Ctrl+Enter generates)")
        self.text_edit.setAcceptDrops(False)  # files dropped on it go to the window's handler
        self.count_label = QLabel()
        self.count_label.setAccessibleName("Text length")
        self.generate_button = QPushButton("Generate")
        self.generate_button.setAccessibleName("Generate speech")
        self.generate_button.setDefault(True)
        self.generate_button.setObjectName("primaryAction")  # the one obvious next step, styled below
        self.generate_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
        self.generate_button.setIconSize(QSize(20, 20))
        self.generate_button.setMinimumSize(150, 40)
        self.generate_button.setStyleSheet(
            "#primaryAction { font-weight: bold; padding: 6px 18px; border-radius: 5px;"
            " background: palette(highlight); color: palette(highlighted-text); }"
            "#primaryAction:disabled { background: palette(button); color: palette(mid); }"
        )
        self.stop_button = QPushButton("Stop")
        self.stop_button.setAccessibleName("Stop generating")
        self.stop_button.setToolTip("Stop generating (Esc)")
        self.stop_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaStop))
        self.stop_button.setMinimumHeight(40)
        self.voice_label = QLabel()
        self.voice_label.setAccessibleName("Voice used")
        self.voice_label.setWordWrap(True)
        self.progress_label = QLabel()
        self.progress_label.setAccessibleName("Progress stage")
        self.progress_bar = QProgressBar()
        self.progress_bar.setAccessibleName("Progress")
        self.progress_bar.setTextVisible(False)
        self.progress_bar.setMaximumHeight(12)
        self.progress_bar.hide()

        controls = QHBoxLayout()
        info = QVBoxLayout()
        info.addWidget(self.voice_label)
        info.addWidget(self.count_label)
        controls.addLayout(info, 1)
        controls.addWidget(self.generate_button)
        controls.addWidget(self.stop_button)
        progress = QHBoxLayout()
        progress.addWidget(self.progress_label)
        progress.addWidget(self.progress_bar, 1)
        box = QGroupBox("Text to speak")
        column = QVBoxLayout(box)
        column.addWidget(self.text_edit, 1)
        column.addLayout(controls)
        column.addLayout(progress)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(box)

        self.generate_button.clicked.connect(self.generate_requested)
        self.stop_button.clicked.connect(self.stop_requested)
        self.text_edit.textChanged.connect(self._on_text_changed)
        self._update_count()

    # --- text -----------------------------------------------------------------------------------
    def text(self) -> str:
        return self.text_edit.toPlainText()

    @Slot(str)
    def set_text(self, text: str) -> None:
        self.text_edit.setPlainText(text)

    def open_file(self, path: str | Path) -> bool:
        """Put a UTF-8 text file's content in the editor; emits `failed` and returns False if unreadable."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            self.failed.emit(f"{p} is not UTF-8 text; save it as UTF-8 and try again.")
            return False
        except OSError as e:
            self.failed.emit(f"Cannot read {p}: {e.strerror or e}.")
            return False
        self.set_text(text)
        return True

    def _update_count(self) -> None:
        text = self.text().strip()
        seconds = len(text) / CHARS_PER_SECOND
        minutes = f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
        self.count_label.setText(f"{len(text)} characters · about {minutes} of speech")

    @Slot()
    def _on_text_changed(self) -> None:
        self._update_count()
        self.text_changed.emit(self.text())

    # --- buttons --------------------------------------------------------------------------------
    @Slot(bool, str)
    def set_can_generate(self, enabled: bool, reason: str = "") -> None:
        """Enable Generate; `reason` is its tooltip (why it is off, or what it does)."""
        self.generate_button.setEnabled(bool(enabled))
        if reason:
            self.generate_button.setToolTip(reason)

    @Slot(str, object)
    def set_voice_text(self, label: str, problem: str | None = None) -> None:
        """Say which voice Generate speaks with (and what is missing to use it)."""
        self.voice_label.setText(f"Voice: {label}" + (f" — {problem}" if problem else ""))

    @Slot(bool)
    def set_generating(self, generating: bool) -> None:
        """Stop is offered only while a take is being generated."""
        self.stop_button.setEnabled(bool(generating))

    # --- progress -------------------------------------------------------------------------------
    @Slot(str)
    def set_busy(self, stage: str) -> None:
        """Show `stage` (display text) with an indeterminate bar."""
        self.progress_label.setText(stage)
        self.progress_bar.setRange(0, 0)
        self.progress_bar.show()

    @Slot(str)
    def set_stage_text(self, text: str) -> None:
        """Change the stage text only (e.g. "Stopping…"), leaving the bar as it is."""
        self.progress_label.setText(text)

    @Slot(str, int, int)
    def set_progress(self, stage: str, done: int, total: int, segment: int = 0, segments: int = 1) -> None:
        """An engine Progress event: `stage` is its key ("load", "encode", "generate"), done/total its
        counts (speech tokens at 50 per second while generating), segment/segments where a long text stands."""
        total, done = max(int(total), 0), max(int(done), 0)
        if stage == "generate" and segments > 1:
            text = f"Generating segment {segment + 1} of {segments}… {done / FRAME_RATE:.1f} s of speech"
        elif stage == "generate":
            text = f"Generating… {done / FRAME_RATE:.1f} s of speech"
        else:
            text = STAGE_NAMES.get(stage, stage)
        self.progress_label.setText(text)
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(min(done, total))
        self.progress_bar.show()

    @Slot()
    def set_idle(self) -> None:
        """Hide the progress readout."""
        self.progress_label.clear()
        self.progress_bar.hide()
