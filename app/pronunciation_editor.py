"""The project's pronunciation rules: add one from a selected word, preview which segments it changes
(their text before and after), apply it (the book is planned again and exactly those segments are
rendered again), remove one.

Rules are engine.text.pronunciation.PronunciationRule; they live in the project's settings, so
applying goes through NarrationProject.update_settings and the preview through changes_with (nothing
is saved by a preview). `plan_changed` tells the window to re-list segments.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox, QLineEdit, QListWidget, QPlainTextEdit, QVBoxLayout, QWidget,
)

from app.voice_library_view import named, named_button, row
from engine.book.project import NarrationProject
from engine.errors import EngineError
from engine.text.pronunciation import PronunciationRule


def rule_text(rule: PronunciationRule) -> str:
    return f"{rule.pattern} → {rule.replacement}" + (" (regex)" if rule.regex else "")


class PronunciationEditor(QWidget):
    """Rule list, a new rule's fields, Preview / Add / Remove."""

    plan_changed = Signal(object)  # list of segment ids whose chosen take changed
    error = Signal(str)

    def __init__(self, project: NarrationProject, selected_word: Callable[[], str] = lambda: "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.project, self.selected_word = project, selected_word
        self.rule_list = named(QListWidget(), "Pronunciation rules", "Applied in order, before normalization")
        self.pattern_edit = named(QLineEdit(), "Word", "The word (or regular expression) to say differently")
        self.replacement_edit = named(QLineEdit(), "Say it as", "How the narrator should say it, e.g. gooey")
        self.regex_box = named(QCheckBox("Regex"), "Regular expression", "The word is a Python regular expression")
        self.use_selection_button = named_button("Use selected word", "Take the word selected in the segment text",
                                                 self.use_selection)
        self.preview_button = named_button("Preview", "Show which segments the rule changes", self.preview)
        self.add_button = named_button("Add rule", "Add the rule; the segments it changes are rendered again", self.add_rule)
        self.remove_button = named_button("Remove rule", "Remove the selected rule", self.remove_rule)
        self.preview_text = named(QPlainTextEdit(), "Rule preview", "Segments the rule changes: before → after")
        self.preview_text.setReadOnly(True)
        self.preview_text.setMaximumHeight(110)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.rule_list, 1)
        layout.addLayout(row((self.pattern_edit, 1), self.use_selection_button))
        layout.addLayout(row((self.replacement_edit, 1), self.regex_box))
        layout.addLayout(row(self.preview_button, self.add_button, self.remove_button, (None, 1)))
        layout.addWidget(self.preview_text)
        self.refresh()

    def refresh(self) -> None:
        self.rule_list.clear()
        for rule in self.project.settings.pronunciations:
            self.rule_list.addItem(rule_text(rule))

    def _rule(self) -> PronunciationRule:
        return PronunciationRule(self.pattern_edit.text().strip(), self.replacement_edit.text(), self.regex_box.isChecked())

    @Slot()
    def use_selection(self) -> None:
        word = self.selected_word().strip()
        if word:
            self.pattern_edit.setText(word)

    def _with(self, rules: tuple[PronunciationRule, ...]):
        return dataclasses.replace(self.project.settings, pronunciations=rules)

    @Slot()
    def preview(self) -> list[tuple[str, str, str]]:
        """Fill the preview with the segments the new rule changes; returns them."""
        try:
            changes = self.project.changes_with(self._with(self.project.settings.pronunciations + (self._rule(),)))
        except EngineError as error:
            self.error.emit(str(error))
            return []
        lines = [f"{i}: {before} → {after}" for i, before, after in changes]
        self.preview_text.setPlainText(f"{len(changes)} segment(s) change:\n" + "\n".join(lines) if changes
                                       else "No segment changes.")
        return changes

    @Slot()
    def add_rule(self) -> None:
        try:
            changed = self.project.update_settings(self._with(self.project.settings.pronunciations + (self._rule(),)))
        except EngineError as error:
            self.error.emit(str(error))
            return
        self.refresh()
        self.preview_text.setPlainText(f"Rule added: {len(changed)} segment(s) will be rendered again.")
        self.plan_changed.emit(changed)

    @Slot()
    def remove_rule(self) -> None:
        index = self.rule_list.currentRow()
        rules = self.project.settings.pronunciations
        if not 0 <= index < len(rules):
            return
        try:
            changed = self.project.update_settings(self._with(rules[:index] + rules[index + 1:]))
        except EngineError as error:
            self.error.emit(str(error))
            return
        self.refresh()
        self.preview_text.setPlainText(f"Rule removed: {len(changed)} segment(s) change back.")
        self.plan_changed.emit(changed)
