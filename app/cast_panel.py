"""The cast of a narration project: the narrator and the voices that read passages and dialogue.

Add a voice from the library (its segment budget is measured on the engine thread first, through the
bridge), rename one (the book's [voice: Name] markup follows), remove one (refused, with the segments
named, while anything uses it), and choose the dialogue voice (quoted speech; the book is planned
again, and only segments whose voice changed are rendered again). Edits go to the window's own
NarrationProject; `plan_changed` tells the window to re-list the segments.
"""
from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QComboBox, QLabel, QLineEdit, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from app.voice_library_view import named, named_button, row
from engine.book.plan import NARRATOR
from engine.book.project import NarrationProject
from engine.errors import EngineError

_KEY_ROLE = 0x0100  # Qt.ItemDataRole.UserRole


class CastPanel(QWidget):
    """Cast list with usage counts, add from library, rename, remove, dialogue voice."""

    plan_changed = Signal()  # the cast or the plan changed: re-list segments
    error = Signal(str)  # a message for the user

    def __init__(self, bridge, project: NarrationProject, library=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge, self.project, self.library = bridge, project, library
        self._measuring: str | None = None  # request id of the voice being measured
        self.cast_list = named(QListWidget(), "Cast", "The project's voices and how many segments each reads")
        self.cast_list.currentRowChanged.connect(self._on_selected)
        self.library_combo = named(QComboBox(), "Library voice", "A voice from your library to add to the cast")
        self.add_button = named_button("Add to cast", "Copy the library voice into the project's cast", self.add_selected)
        self.name_edit = named(QLineEdit(), "Voice name", "The name used in [voice: Name] markup")
        self.rename_button = named_button("Rename", "Rename the selected voice (the markup follows)", self.rename_selected)
        self.remove_button = named_button("Remove", "Remove the selected voice (only when no segment uses it)",
                                          self.remove_selected)
        self.dialogue_combo = named(QComboBox(), "Dialogue voice", "The voice that reads quoted speech")
        self.dialogue_combo.activated.connect(self._on_dialogue_chosen)
        help_text = QLabel("Mark passages in the book with [voice: Name] … [/voice].")
        help_text.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.cast_list, 1)
        layout.addLayout(row((self.library_combo, 1), self.add_button))
        layout.addLayout(row((self.name_edit, 1), self.rename_button, self.remove_button))
        layout.addLayout(row(QLabel("Quoted speech:"), (self.dialogue_combo, 1)))
        layout.addWidget(help_text)
        bridge.voice_measured.connect(self._on_measured)
        bridge.failed.connect(self._on_failed)
        self.refresh()

    def refresh(self) -> None:
        """Re-list the cast, the library voices and the dialogue choice."""
        current = self.selected_key()
        self.cast_list.blockSignals(True)
        self.cast_list.clear()
        for member in self.project.cast.members():
            used = sum(s.voice == member.key for _, s in self.project.segments(list(range(len(self.project.chapters)))))
            item = QListWidgetItem(f"{member.name} — {used} segment{'s' if used != 1 else ''}")
            item.setData(_KEY_ROLE, member.key)
            self.cast_list.addItem(item)
        keys = [m.key for m in self.project.cast.members()]
        self.cast_list.setCurrentRow(keys.index(current) if current in keys else 0)
        self.cast_list.blockSignals(False)
        self._on_selected(self.cast_list.currentRow())
        self.library_combo.clear()
        for voice in self.library.list() if self.library is not None else []:
            self.library_combo.addItem(voice.name, voice.id)
        self.dialogue_combo.clear()
        self.dialogue_combo.addItem("the narrator", None)
        for member in self.project.cast.members()[1:]:
            self.dialogue_combo.addItem(member.name, member.key)
        index = self.dialogue_combo.findData(self.project.settings.dialogue_voice)
        self.dialogue_combo.setCurrentIndex(max(index, 0))
        self._update_actions()

    def selected_key(self) -> str | None:
        item = self.cast_list.currentItem()
        return item.data(_KEY_ROLE) if item is not None else None

    def _update_actions(self) -> None:
        key = self.selected_key()
        self.add_button.setEnabled(self.library_combo.count() > 0 and self._measuring is None)
        for widget in (self.rename_button, self.remove_button, self.name_edit):
            widget.setEnabled(key not in (None, NARRATOR))

    @Slot(int)
    def _on_selected(self, _row: int) -> None:
        key = self.selected_key()
        self.name_edit.setText(self.project.cast.get(key).name if key is not None else "")
        self._update_actions()

    @Slot()
    def add_selected(self) -> None:
        """Measure the chosen library voice on the engine thread; it joins the cast when that answers."""
        if self.library is None or self.library_combo.currentIndex() < 0 or self._measuring is not None:
            return
        try:
            voice = self.library.get(self.library_combo.currentData())
        except EngineError as error:
            self.error.emit(str(error))
            return
        self._measuring = self.bridge.measure_voice(self.project.folder, voice)
        self._update_actions()

    @Slot(object)
    def _on_measured(self, event) -> None:
        if event.request_id != self._measuring:
            return
        self._measuring = None
        try:
            member = self.project.add_voice(event.voice, max_tokens=event.max_tokens, tokens_per_char=event.tokens_per_char)
        except EngineError as error:
            self.error.emit(str(error))
            self._update_actions()
            return
        self.refresh()
        self.cast_list.setCurrentRow([m.key for m in self.project.cast.members()].index(member.key))
        self.plan_changed.emit()

    @Slot(object)
    def _on_failed(self, event) -> None:
        if event.request_id is not None and event.request_id == self._measuring:
            self._measuring = None
            self._update_actions()
            self.error.emit(event.message)

    @Slot()
    def rename_selected(self) -> None:
        key = self.selected_key()
        if key in (None, NARRATOR):
            return
        try:
            self.project.rename_voice(key, self.name_edit.text())
        except EngineError as error:
            self.error.emit(str(error))
            return
        self.refresh()
        self.plan_changed.emit()

    @Slot()
    def remove_selected(self) -> None:
        key = self.selected_key()
        if key in (None, NARRATOR):
            return
        try:
            self.project.remove_voice(key)
        except EngineError as error:
            self.error.emit(str(error))
            return
        self.refresh()
        self.plan_changed.emit()

    @Slot(int)
    def _on_dialogue_chosen(self, index: int) -> None:
        import dataclasses

        key = self.dialogue_combo.itemData(index)
        if key == self.project.settings.dialogue_voice:
            return
        try:
            self.project.update_settings(dataclasses.replace(self.project.settings, dialogue_voice=key))
        except EngineError as error:
            self.error.emit(str(error))
        self.refresh()
        self.plan_changed.emit()
