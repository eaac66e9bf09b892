"""Narration project dialogs. New project: pick a book, its chapters, the narrator voice and a folder;
the engine plans and writes the project (it needs the loaded model's tokenizer) and the dialog closes
when it exists. Export: format, one file or one per chapter, destination."""
from __future__ import annotations

import dataclasses
import re
import secrets
from pathlib import Path

from PySide6.QtCore import QStandardPaths, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QLabel, QLineEdit, QListWidget,
    QListWidgetItem, QMessageBox, QPushButton, QVBoxLayout, QWidget,
)

from app.voice_library_view import named, named_button, row
from engine.book.importer import BOOK_SUFFIXES, Book, import_book
from engine.errors import EngineError
from engine.book.project import NarrationSettings
from engine.book.quality import verifier_problem
from engine.voices import VoiceLibrary

APP_TITLE = "Llasa Studio"
EXPORT_FORMATS = {"m4b": "M4B audiobook (chapters)", "mp3": "MP3 (chapters)", "flac": "FLAC", "wav": "WAV"}
QUALITY_CHOICES = {1: "Off (one take per segment)", 2: "2 takes, verifier-picked", 4: "4 takes, verifier-picked",
                   8: "8 takes, verifier-picked"}
QUALITY_NOTE = ("Quality mode renders several takes of every segment and keeps the one Whisper (and the WavLM "
                "speaker model, when downloaded) judge best; it needs the Whisper model and takes longer. "
                "Segments whose best take still has over 15 % of the words wrong are marked needs check.")
BOOK_FILTER = f"Books ({' '.join('*' + s for s in BOOK_SUFFIXES)});;All files (*)"


def warn(parent: QWidget, message: str) -> QMessageBox:
    """Show an error as a non-blocking warning box (the traceback, if any, is in the log); returns it."""
    box = QMessageBox(QMessageBox.Icon.Warning, APP_TITLE, message, QMessageBox.StandardButton.Ok, parent)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


def default_project_folder(title: str) -> Path:
    """<Documents>/<title made filename-safe>."""
    documents = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation) or str(Path.home())
    safe = re.sub(r'[\x00-\x1f<>:"/\\|?*]+', " ", title).strip(" .")[:80] or "Narration"
    return Path(documents) / safe


def narration_settings(settings, candidates: int = 1) -> NarrationSettings:
    """NarrationSettings from the app's model and sampling preferences (app.settings.AppSettings); with
    candidates > 1 quality mode, verified by the settings' Whisper and, when it is on disk, speaker model."""
    seed = settings.seed if settings.seed is not None else secrets.randbelow(2**31)
    quality = {} if candidates <= 1 else {
        "candidates": candidates, "asr": settings.asr,
        "speaker": settings.speaker if settings.speaker and not verifier_problem(settings.speaker, "speaker") else None}
    return NarrationSettings(lm=settings.lm, codec=settings.codec, quantization=settings.quantization,
                             temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k,
                             repetition_penalty=settings.repetition_penalty, base_seed=seed, **quality)


def ask_export(parent: QWidget, title: str, start: Path | None = None) -> tuple[Path, str, bool, tuple[str, ...]] | None:
    """Destination (file, or folder per chapter; the dialogs start in `start`, e.g. the project folder),
    format, per-chapter choice and subtitle sidecars; None when cancelled."""
    dialog = QDialog(parent)
    dialog.setWindowTitle("Export audiobook")
    formats = named(QComboBox(), "Export format", "The audio format to write")
    for fmt, name in EXPORT_FORMATS.items():
        formats.addItem(name, fmt)
    per_chapter = named(QCheckBox("One file per chapter"), "One file per chapter", "Write each chapter as a file")
    subtitles = named(QCheckBox("Subtitles and timings (SRT, WebVTT, JSON)"), "Subtitles",
                      "Also write .srt, .vtt and .timings.json beside each file: one cue per segment")
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
    buttons.accepted.connect(dialog.accept)
    buttons.rejected.connect(dialog.reject)
    form = QFormLayout(dialog)
    form.addRow("Format", formats)
    form.addRow(per_chapter)
    form.addRow(subtitles)
    form.addRow(buttons)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    fmt, each = formats.currentData(), per_chapter.isChecked()
    if each:
        path = QFileDialog.getExistingDirectory(parent, "Export the chapters into", str(start or ""))
    else:
        path, _ = QFileDialog.getSaveFileName(parent, "Export audiobook", str(Path(start or "") / f"{title}.{fmt}"), f"{fmt.upper()} (*.{fmt})")
        path = path if not path or path.lower().endswith(f".{fmt}") else f"{path}.{fmt}"
    sidecars = ("srt", "vtt", "json") if subtitles.isChecked() else ()
    return (Path(path), fmt, each, sidecars) if path else None


class NewProjectDialog(QDialog):
    """Non-modal use: open(), then `created` fires with the new folder once the engine has written it."""

    created = Signal(object)  # Path: the new project folder

    def __init__(self, bridge, library: VoiceLibrary, settings, models_ready: bool,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New narration project")
        self.setMinimumWidth(560)
        self._bridge, self._settings, self._models_ready = bridge, settings, models_ready
        self._book: Book | None = None
        self._request: str | None = None
        self._folder_auto = True  # the folder follows the title until the user edits it
        self.last_message: QMessageBox | None = None

        self.book_edit = named(QLineEdit(), "Book file", "A .txt, .md or .epub file")
        self.book_edit.setReadOnly(True)
        self.book_button = named_button("Choose…", "Choose the book to narrate", self.choose_book)
        self.title_edit = named(QLineEdit(), "Title", "The audiobook's title")
        self.title_edit.textEdited.connect(self._follow_title)
        self.author_edit = named(QLineEdit(), "Author", "The audiobook's author")
        self.chapter_list = named(QListWidget(), "Chapters", "Checked chapters are narrated")
        self.voice_combo = named(QComboBox(), "Narrator voice", "A voice from your voice library")
        for voice in library.list():
            self.voice_combo.addItem(voice.name, voice)
        if not self.voice_combo.count():
            self.voice_combo.setPlaceholderText("No saved voices: save one in the main window first")
        self.cast_list = named(QListWidget(), "Cast", "Other voices: checked ones read the book's [voice: Name] passages")
        self.cast_list.setMaximumHeight(90)
        for voice in library.list():
            item = QListWidgetItem(voice.name)
            item.setData(Qt.ItemDataRole.UserRole, voice)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            self.cast_list.addItem(item)
        self.folder_edit = named(QLineEdit(), "Project folder", "A new or empty folder for the project")
        self.folder_edit.textEdited.connect(lambda _: setattr(self, "_folder_auto", False))
        self.folder_button = named_button("Browse…", "Choose the project folder", self.choose_folder)
        self.quality_combo = named(QComboBox(), "Quality mode", "Takes per segment; the verifiers keep the best")
        for candidates, text in QUALITY_CHOICES.items():
            self.quality_combo.addItem(text, candidates)
        self.quality_note = named(QLabel(QUALITY_NOTE), "About quality mode")
        self.quality_note.setWordWrap(True)
        self.status_label = named(QLabel(), "Status")
        self.status_label.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.create_button = named(QPushButton("Create"), "Create", "Plan the book and write the project folder")
        self.create_button.setDefault(True)
        self.buttons.addButton(self.create_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        form = QFormLayout()
        form.addRow("Book", row((self.book_edit, 1), self.book_button))
        form.addRow("Title", self.title_edit)
        form.addRow("Author", self.author_edit)
        form.addRow("Chapters", self.chapter_list)
        form.addRow("Narrator", self.voice_combo)
        form.addRow("Cast", self.cast_list)
        form.addRow("Folder", row((self.folder_edit, 1), self.folder_button))
        form.addRow("Quality mode", self.quality_combo)
        form.addRow(self.quality_note)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.status_label)
        layout.addWidget(self.buttons)
        if not models_ready:
            self.status_label.setText("Load the models first (Models → Manage models…): planning the segments "
                                      "needs the model's tokenizer.")
        bridge.project_created.connect(self._on_created)
        bridge.failed.connect(self._on_failed)

    # --- inputs ---------------------------------------------------------------------------------
    def choose_book(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a book", "", BOOK_FILTER)
        if path:
            self.load_book(path)

    def cast_voices(self) -> tuple:
        """The checked cast voices (SavedVoice), the narrator left out."""
        narrator = self.voice_combo.currentData()
        items = [self.cast_list.item(i) for i in range(self.cast_list.count())]
        return tuple(v for item in items if item.checkState() == Qt.CheckState.Checked
                     and (v := item.data(Qt.ItemDataRole.UserRole)) is not None and v != narrator)

    def _check_cast_named_in(self, text: str) -> None:
        """Check the library voices the book's [voice: Name] markup names."""
        from engine.text.cast_markup import voice_names_used

        used = voice_names_used(text)
        for i in range(self.cast_list.count()):
            item = self.cast_list.item(i)
            if item.text().casefold() in used:
                item.setCheckState(Qt.CheckState.Checked)

    def load_book(self, path: str | Path) -> bool:
        """Import a book (on the GUI thread: it is quick); shows why when it cannot."""
        try:
            book = import_book(path)
        except EngineError as error:
            self.last_message = warn(self, str(error))
            return False
        self._book = book
        self.book_edit.setText(str(path))
        self.title_edit.setText(book.title)
        self.author_edit.setText(book.author)
        self.chapter_list.clear()
        for chapter in book.chapters:
            item = QListWidgetItem(chapter.title or "(untitled)")
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            item.setToolTip(chapter.text[:300])
            self.chapter_list.addItem(item)
        self._check_cast_named_in("\n".join(c.text for c in book.chapters))
        self._follow_title(book.title)
        return True

    def _follow_title(self, title: str) -> None:
        if self._folder_auto:
            self.folder_edit.setText(str(default_project_folder(title)))

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Project folder", self.folder_edit.text())
        if folder:
            self._folder_auto = False
            self.folder_edit.setText(folder)

    def checked_chapters(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.chapter_list.count())
                     if self.chapter_list.item(i).checkState() == Qt.CheckState.Checked)

    def problem(self) -> str | None:
        """Why the project cannot be created yet, or None."""
        if not self._models_ready:
            return "Load the models first (Models → Manage models…)."
        if self._book is None:
            return "Choose the book to narrate first."
        if not self.title_edit.text().strip():
            return "Give the audiobook a title."
        if not self.checked_chapters():
            return "Check at least one chapter to narrate."
        if self.voice_combo.currentData() is None:
            return "Choose a narrator voice (save one in the main window first)."
        if not self.folder_edit.text().strip():
            return "Choose a folder for the project."
        if self.quality_combo.currentData() > 1 and (problem := verifier_problem(self._settings.asr)):
            return f"Quality mode needs a Whisper model: {problem} Or choose Quality mode: Off."
        return None

    # --- create ---------------------------------------------------------------------------------
    @Slot()
    def accept(self) -> None:
        """Ask the engine to create the project; the dialog closes when it exists."""
        if self._request is not None:
            return
        if (problem := self.problem()) is not None:
            self.last_message = warn(self, problem)
            return
        try:
            settings = narration_settings(self._settings, self.quality_combo.currentData())
        except EngineError as error:
            self.last_message = warn(self, str(error))
            return
        book = dataclasses.replace(self._book, title=self.title_edit.text().strip(),
                                   author=self.author_edit.text().strip())
        folder = Path(self.folder_edit.text().strip()).expanduser()
        self._request = self._bridge.create_project(folder, book, self.voice_combo.currentData(), settings,
                                                    self.checked_chapters(), self.cast_voices())
        self.create_button.setEnabled(False)
        self.status_label.setText("Creating the project…")

    @Slot(object)
    def _on_created(self, event) -> None:
        if event.request_id == self._request:
            self._request = None
            self.created.emit(event.folder)
            super().accept()

    @Slot(object)
    def _on_failed(self, event) -> None:
        if event.request_id == self._request:
            self._request = None
            self.create_button.setEnabled(True)
            self.status_label.clear()
            self.last_message = warn(self, event.message)

    def done(self, result: int) -> None:  # noqa: D102 - disconnect from the long-lived bridge
        for signal, slot in ((self._bridge.project_created, self._on_created), (self._bridge.failed, self._on_failed)):
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError):
                pass
        super().done(result)
