"""The voice library list: pick the voice to speak with (or the random voice), and play, rename,
delete, import and export saved voices.

Dumb widget: the choice goes out as `voice_selected`, playback as `play_requested` (the owner has the
audio player); the only work done here is light (listing the library, reading and writing voice files).
"""
from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView, QFileDialog, QGroupBox, QHBoxLayout, QListWidget, QListWidgetItem, QMessageBox,
    QPushButton, QVBoxLayout, QWidget,
)

from app.settings import documents_dir
from engine.audio.clip import load_audio
from engine.errors import EngineError
from engine.voices import SavedVoice, VoiceLibrary

log = logging.getLogger("llasa.app")

VOICE_FILTER = "Llasa voice (*.llasavoice)"
UNSAVED = ":unsaved-clip:"  # list id of the unsaved clip in the editor (never a voice id: ids have no colons)
_ID_ROLE = Qt.ItemDataRole.UserRole


def named(widget: QWidget, name: str, tip: str = "") -> QWidget:
    """`widget` with an accessible name and a tooltip."""
    widget.setAccessibleName(name)
    if tip:
        widget.setToolTip(tip)
    return widget


def named_button(text: str, tip: str, slot) -> QPushButton:
    """A push button named after its text (without "…"), with a tooltip, calling `slot` on click."""
    b = named(QPushButton(text), text.rstrip("…"), tip)
    b.clicked.connect(slot)
    return b


def row(*items) -> QHBoxLayout:
    """A row of widgets; (widget, stretch) pairs stretch, (None, stretch) is empty space."""
    layout = QHBoxLayout()
    for item in items:
        widget, stretch = item if isinstance(item, tuple) else (item, 0)
        layout.addStretch(stretch) if widget is None else layout.addWidget(widget, stretch)
    return layout


def attempt(parent: QWidget, title: str, action, *args):
    """action(*args), or None after showing an EngineError's message under `title` (True for a None result)."""
    try:
        result = action(*args)
    except EngineError as error:
        QMessageBox.warning(parent, title, str(error))
        return None
    return True if result is None else result


class VoiceLibraryView(QWidget):
    """The saved voices, with "No reference (random voice)" first."""

    voice_selected = Signal(object)  # SavedVoice, None for "no reference (random voice)", or UNSAVED
    play_requested = Signal(object)  # float32 [n] at 16 kHz: the selected voice's reference recording

    def __init__(self, library: VoiceLibrary, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._library = library
        self._audio_ok = False
        self._recording = False
        self._unsaved_label: str | None = None  # the unsaved clip's list entry, when there is one

        self.voice_list = named(QListWidget(), "Saved voices", "Pick the voice to speak with; F2 renames")
        self.voice_list.setEditTriggers(
            QAbstractItemView.EditTrigger.EditKeyPressed | QAbstractItemView.EditTrigger.DoubleClicked
        )
        self.voice_list.currentItemChanged.connect(self._on_current_changed)
        self.voice_list.itemChanged.connect(self._on_item_renamed)
        self.play_voice_button = named_button("Play", "Play the selected voice's reference", self.play_selected)
        self.rename_button = named_button("Rename", "Rename the selected voice", self.rename_selected)
        self.delete_button = named_button("Delete", "Delete the selected voice", self.delete_selected)
        self.import_voice_button = named_button("Import…", "Add a voice from a .llasavoice file",
                                                self.choose_voice_file)
        self.export_voice_button = named_button("Export…", "Save the selected voice as one file",
                                                self.choose_export_path)
        library_box = QGroupBox("Voice library")
        lib_layout = QVBoxLayout(library_box)
        lib_layout.addWidget(self.voice_list, 1)
        lib_layout.addLayout(row(self.play_voice_button, self.rename_button, self.delete_button,
                                 self.import_voice_button, self.export_voice_button))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(library_box)
        self.refresh_library()

    # --- listing and selection ------------------------------------------------------------------
    @Slot()
    def refresh_library(self, select: str | None = None, notify: bool = True) -> None:
        """Re-list the library; keeps (or moves to `select`) the selected voice; `notify`: emit voice_selected."""
        keep = select if select is not None else self.selected_id()
        self.voice_list.blockSignals(True)
        self.voice_list.clear()
        random_item = QListWidgetItem("No reference (random voice)")
        random_item.setData(_ID_ROLE, None)
        random_item.setToolTip("Speak in a random voice")
        self.voice_list.addItem(random_item)
        current = random_item
        if self._unsaved_label is not None:
            clip_item = QListWidgetItem(self._unsaved_label)
            clip_item.setData(_ID_ROLE, UNSAVED)
            clip_item.setToolTip("The clip in the editor above, not saved yet: Generate encodes it each session")
            font = clip_item.font()
            font.setItalic(True)
            clip_item.setFont(font)
            self.voice_list.insertItem(0, clip_item)
            current = clip_item if keep == UNSAVED else current
        for voice in self._library.list():
            item = QListWidgetItem(voice.name)
            item.setData(_ID_ROLE, voice.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            item.setToolTip(f"“{voice.transcript}”\nSaved {voice.created} · {voice.codec}")
            self.voice_list.addItem(item)
            if voice.id == keep:
                current = item
        self.voice_list.setCurrentItem(current)
        self.voice_list.blockSignals(False)
        self._update_buttons()
        if notify:
            self._on_current_changed()

    def set_unsaved_clip(self, name: str | None, select: bool = False) -> None:
        """List (name) or unlist (None) the unsaved clip as the first entry; `select` picks it silently."""
        self._unsaved_label = None if name is None else f"Unsaved clip: {name or 'untitled'}"
        keep = UNSAVED if select else self.selected_id()
        if name is None and keep == UNSAVED:
            keep = None
        self.refresh_library(select=keep if keep is not None else "", notify=False)

    def selected_id(self) -> str | None:
        """The selected voice's id; None for the random voice, UNSAVED for the unsaved clip."""
        item = self.voice_list.currentItem()
        return None if item is None else item.data(_ID_ROLE)

    def selected_voice(self) -> SavedVoice | None:
        voice_id = self.selected_id()
        try:
            return None if voice_id in (None, UNSAVED) else self._library.get(voice_id)
        except EngineError:  # deleted or damaged behind our back
            log.warning("selected voice %s is gone", voice_id)
            return None

    def select_voice(self, voice_id: str | None) -> None:
        for index in range(self.voice_list.count()):
            if self.voice_list.item(index).data(_ID_ROLE) == voice_id:
                self.voice_list.setCurrentRow(index)
                return

    def _on_current_changed(self, *_: object) -> None:
        self._update_buttons()
        self.voice_selected.emit(UNSAVED if self.selected_id() == UNSAVED else self.selected_voice())

    # --- rename, delete, import, export, play ---------------------------------------------------
    def _on_item_renamed(self, item: QListWidgetItem) -> None:
        voice_id, name = item.data(_ID_ROLE), item.text().strip()
        if voice_id in (None, UNSAVED):
            return
        attempt(self, "Cannot rename the voice", self._library.rename, voice_id, name)
        self.refresh_library(select=voice_id)  # shows the stored name, also after a refusal

    @Slot()
    def rename_selected(self) -> None:
        item = self.voice_list.currentItem()
        if item is not None and item.data(_ID_ROLE) not in (None, UNSAVED):
            self.voice_list.editItem(item)

    @Slot()
    def delete_selected(self) -> None:
        voice = self.selected_voice()
        if voice is None:
            return
        answer = QMessageBox.question(
            self, "Delete voice", f"Delete the voice “{voice.name}”? This cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No,
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        self._library.delete(voice.id)
        self.refresh_library(select="")

    @Slot(str)
    def import_voice_file(self, path: str) -> SavedVoice | None:
        """Add a voice from a .llasavoice file and select it."""
        voice = attempt(self, "Cannot import the voice", self._library.import_file, Path(path))
        if voice is not None:
            self.refresh_library(select=voice.id)
        return voice

    @Slot(str)
    def export_selected(self, path: str) -> bool:
        """Write the selected voice to `path` as one .llasavoice file."""
        voice = self.selected_voice()
        if voice is None:
            return False
        return attempt(self, "Cannot export the voice", self._library.export, voice.id, Path(path)) is not None

    def choose_voice_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a voice", str(documents_dir()), VOICE_FILTER)
        if path:
            self.import_voice_file(path)

    def choose_export_path(self) -> None:
        voice = self.selected_voice()
        if voice is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export voice", str(documents_dir() / f"{voice.name}.llasavoice"),
                                              VOICE_FILTER)
        if path:
            self.export_selected(path if path.endswith(".llasavoice") else path + ".llasavoice")

    @Slot()
    def play_selected(self) -> None:
        """Ask to play the selected saved voice's reference recording."""
        voice = self.selected_voice()
        if voice is None:
            return
        samples = attempt(self, "Cannot play the voice", load_audio, voice.audio_path)
        if samples is not None:
            self.play_requested.emit(samples)

    # --- state ----------------------------------------------------------------------------------
    @Slot(bool, str)
    def set_audio_available(self, available: bool, reason: str = "") -> None:
        """Offer Play only when audio works; otherwise `reason` (why it does not) is Play's tooltip."""
        self._audio_ok = bool(available)
        self.play_voice_button.setToolTip("Play the selected voice's reference" if available else reason)
        self._update_buttons()

    @Slot(bool)
    def set_recording(self, recording: bool) -> None:
        """No playing while the owner records."""
        self._recording = bool(recording)
        self._update_buttons()

    def _update_buttons(self) -> None:
        saved = self.selected_id() not in (None, UNSAVED)
        self.play_voice_button.setEnabled(self._audio_ok and not self._recording and saved)
        for b in (self.rename_button, self.delete_button, self.export_voice_button):
            b.setEnabled(saved)
