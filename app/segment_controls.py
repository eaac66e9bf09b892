"""Controls for the segments selected in the segment table (one or many): voice, pauses, keep this
take, and "regenerate until it passes" (quality mode on just those segments, on the engine thread).

Edits go to the window's own NarrationProject; a voice change makes exactly those segments pending
(their take keys change), pauses keep every take. `changed` names the segments to refresh;
`until_pass_requested` asks the window to start the engine run.
"""
from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QLabel, QVBoxLayout, QWidget

from app.voice_library_view import named, named_button, row
from engine.book.project import NarrationProject
from engine.errors import EngineError
from engine.text.pipeline import MAX_PAUSE_SECONDS


def _pause_box(name: str, tip: str) -> QDoubleSpinBox:
    box = named(QDoubleSpinBox(), name, tip)
    box.setRange(0.0, MAX_PAUSE_SECONDS)
    box.setSingleStep(0.1)
    box.setDecimals(2)
    box.setSuffix(" s")
    box.lineEdit().setAccessibleName(name)  # screen readers land on the inner field
    return box


class SegmentControls(QWidget):
    """Voice, pauses, lock and until-it-passes for the selected segments."""

    changed = Signal(object)  # list of segment ids whose rows must be refreshed
    until_pass_requested = Signal(object)  # tuple of segment ids
    error = Signal(str)

    def __init__(self, project: NarrationProject, selected_ids: Callable[[], list[str]],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.project, self.selected_ids = project, selected_ids
        self.summary = named(QLabel(), "Selection", "How many segments the controls change")
        self.voice_combo = named(QComboBox(), "Segment voice", "The cast voice that reads the selected segments")
        self.voice_button = named_button("Set voice", "Give the selected segments this voice (only they are "
                                         "rendered again)", self.apply_voice)
        self.before_box = _pause_box("Pause before", "Silence before each selected segment")
        self.after_box = _pause_box("Pause after", "Silence after each selected segment")
        self.pause_button = named_button("Set pauses", "Use these pauses for the selected segments (takes are kept)",
                                         self.apply_pauses)
        self.lock_button = named_button("Keep take", "Lock the chosen take: kept through edits of settings and rules",
                                        lambda: self.apply_lock(True))
        self.unlock_button = named_button("Unlock", "Release the kept take", lambda: self.apply_lock(False))
        self.until_pass_button = named_button(
            "Regenerate until it passes", "Quality mode on just these segments: new takes until the verifiers pass one",
            self.request_until_pass)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary)
        layout.addLayout(row((self.voice_combo, 1), self.voice_button))
        layout.addLayout(row(QLabel("Before"), self.before_box, QLabel("After"), self.after_box, self.pause_button))
        layout.addLayout(row(self.lock_button, self.unlock_button, self.until_pass_button, (None, 1)))
        layout.addStretch(1)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the cast and the selection."""
        ids = self.selected_ids()
        self.voice_combo.clear()
        for member in self.project.cast.members():
            self.voice_combo.addItem(member.name, member.key)
        segments = [self.project.find(i) for i in ids]
        if segments:
            self.voice_combo.setCurrentIndex(max(self.voice_combo.findData(segments[0].voice), 0))
            self.before_box.setValue(segments[0].pause_before)
            self.after_box.setValue(segments[0].pause_after)
        locked = sum(bool(s.locked) for s in segments)
        self.summary.setText(f"{len(ids)} segment(s) selected" + (f", {locked} kept" if locked else "") if ids
                             else "Select segments in the table (Ctrl/Shift for several).")
        for widget in (self.voice_button, self.pause_button, self.lock_button, self.unlock_button, self.until_pass_button):
            widget.setEnabled(bool(ids))

    def _apply(self, action: Callable[[list[str]], object]) -> None:
        ids = self.selected_ids()
        if not ids:
            return
        try:
            action(ids)
        except EngineError as error:
            self.error.emit(str(error))
            return
        self.refresh()
        self.changed.emit(ids)

    @Slot()
    def apply_voice(self) -> None:
        self._apply(lambda ids: self.project.set_voice(ids, self.voice_combo.currentData()))

    @Slot()
    def apply_pauses(self) -> None:
        self._apply(lambda ids: self.project.set_pauses(ids, before=self.before_box.value(), after=self.after_box.value()))

    def apply_lock(self, locked: bool) -> None:
        self._apply(lambda ids: self.project.lock(ids, locked))

    @Slot()
    def request_until_pass(self) -> None:
        ids = self.selected_ids()
        if ids:
            self.until_pass_requested.emit(tuple(ids))
