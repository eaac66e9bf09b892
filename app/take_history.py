"""The take history: every take generated (this session and, kept on disk, earlier ones), newest first.

`TakeHistory` is the store: a folder with one FLAC per take and history.json listing them, both written
atomically (temporary file + rename), so a crash never leaves a half-written list or take. `HistoryPanel`
is the dumb widget listing them, with play, export, reuse-settings and delete as intent signals.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView, QGroupBox, QListWidget, QListWidgetItem, QStyle, QVBoxLayout, QWidget,
)

from app.voice_library_view import named, named_button, row
from engine.audio.atomic import write_atomic
from engine.audio.clip import SAMPLE_RATE, load_audio, write_audio
from engine.errors import EngineError

log = logging.getLogger("llasa.app")

HISTORY_FILE = "history.json"
MAX_TAKES = 200  # oldest takes (and their audio) are dropped beyond this many
_ID_ROLE = Qt.ItemDataRole.UserRole


@dataclass(frozen=True)
class Take:
    """One generated take, as listed and stored."""

    id: str  # file stem of its audio in the history folder
    text: str  # what was spoken
    voice: str  # the voice's display name (app.voice_choice.VoiceChoice.label)
    voice_id: str | None  # library voice id, None for an unsaved clip or the random voice
    seed: int  # the sampling seed (the app always picks one, so every take can be made again)
    duration_s: float  # seconds of audio
    created: str  # local time it finished, ISO 8601 to the second
    sampling: dict = field(default_factory=dict)  # engine.config.SamplingParams fields (temperature, top_p, …)

    def summary(self) -> str:
        """One line for the list: time, voice, length, seed and the start of the text."""
        text = " ".join(self.text.split())
        text = text if len(text) <= 60 else text[:57] + "…"
        when = self.created[11:16] if len(self.created) >= 16 else self.created
        return f"{when} · {self.voice} · {self.duration_s:.1f} s · seed {self.seed} — {text}"


def _write_json_atomically(path: Path, value: object) -> None:
    write_atomic(path, json.dumps(value, ensure_ascii=False, indent=1).encode("utf-8"))


class TakeHistory:
    """The takes in `folder` (created on first write); `persist=False` keeps them for this session only
    (audio still goes to the folder, and is deleted with each take)."""

    def __init__(self, folder: Path, persist: bool = True) -> None:
        self.folder = Path(folder)
        self.persist = persist
        self.takes: list[Take] = []  # newest first
        if persist:
            self._load()

    def _load(self) -> None:
        path = self.folder / HISTORY_FILE
        if not path.is_file():
            return
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
            takes = [Take(**row) for row in rows]
        except (OSError, ValueError, TypeError) as error:
            log.warning("ignored damaged take history %s: %s", path, error)
            return
        self.takes = [t for t in takes if self.audio_path(t).is_file()]

    def _save(self) -> None:
        if self.persist:
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_json_atomically(self.folder / HISTORY_FILE, [asdict(t) for t in self.takes])

    def audio_path(self, take: Take) -> Path:
        return self.folder / f"{take.id}.flac"

    def add(self, audio: np.ndarray, text: str, voice: str, voice_id: str | None, seed: int,
            sampling: dict) -> Take:
        """Store a finished take (float32 [n] at 16 kHz) and list it first. OutputFileError when the
        folder cannot be written."""
        self.folder.mkdir(parents=True, exist_ok=True)
        take = Take(f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}", text, voice, voice_id, int(seed),
                    round(len(audio) / SAMPLE_RATE, 2), datetime.now().isoformat(timespec="seconds"),
                    dict(sampling))
        write_audio(self.audio_path(take), audio)
        self.takes.insert(0, take)
        for old in self.takes[MAX_TAKES:]:
            self.audio_path(old).unlink(missing_ok=True)
        del self.takes[MAX_TAKES:]
        self._save()
        return take

    def get(self, take_id: str) -> Take | None:
        return next((t for t in self.takes if t.id == take_id), None)

    def load(self, take: Take) -> np.ndarray:
        """The take's audio, float32 [n] at 16 kHz (an EngineError when its file is gone or damaged)."""
        return load_audio(self.audio_path(take))

    def delete(self, take_id: str) -> None:
        take = self.get(take_id)
        if take is None:
            return
        self.takes.remove(take)
        self.audio_path(take).unlink(missing_ok=True)
        self._save()


class HistoryPanel(QWidget):
    """The "Takes" list with Play, Export…, Reuse settings and Delete for the selected take."""

    play_requested = Signal(object)  # Take
    export_requested = Signal(object)  # Take
    reuse_requested = Signal(object)  # Take
    failed = Signal(str)

    def __init__(self, history: TakeHistory, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.history = history
        self.take_list = named(QListWidget(), "Takes", "Every take generated, newest first; double-click plays")
        self.take_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.take_list.currentItemChanged.connect(self._update_buttons)
        self.take_list.itemDoubleClicked.connect(lambda _: self._emit(self.play_requested))
        self.play_button = named_button("Play", "Load the take into the player and play it",
                                        lambda: self._emit(self.play_requested))
        self.export_button = named_button("Export…", "Save the take as an audio file",
                                          lambda: self._emit(self.export_requested))
        self.reuse_button = named_button("Reuse settings", "Put the take's text, voice and seed back, to make it "
                                         "again or vary it", lambda: self._emit(self.reuse_requested))
        self.delete_button = named_button("Delete", "Remove the take from the history", self.delete_selected)
        icons = ((self.play_button, QStyle.StandardPixmap.SP_MediaPlay),
                 (self.export_button, QStyle.StandardPixmap.SP_DialogSaveButton),
                 (self.reuse_button, QStyle.StandardPixmap.SP_BrowserReload),
                 (self.delete_button, QStyle.StandardPixmap.SP_TrashIcon))
        for button, icon in icons:
            button.setIcon(self.style().standardIcon(icon))
        box = QGroupBox("Takes")
        layout = QVBoxLayout(box)
        layout.addWidget(self.take_list, 1)
        layout.addLayout(row(self.play_button, self.export_button, self.reuse_button, (None, 1), self.delete_button))
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(box)
        self.refresh()

    def refresh(self, select: str | None = None) -> None:
        """Re-list the takes; selects `select` (a take id) or keeps the selection."""
        keep = select or self.selected_id()
        self.take_list.blockSignals(True)
        self.take_list.clear()
        for take in self.history.takes:
            item = QListWidgetItem(take.summary())
            item.setData(_ID_ROLE, take.id)
            item.setToolTip(f"{take.text}\n\n{take.voice} · seed {take.seed} · {take.created}")
            self.take_list.addItem(item)
            if take.id == keep:
                self.take_list.setCurrentItem(item)
        self.take_list.blockSignals(False)
        self._update_buttons()

    def add(self, take: Take) -> None:
        self.refresh(select=take.id)

    def selected_id(self) -> str | None:
        item = self.take_list.currentItem()
        return None if item is None else item.data(_ID_ROLE)

    def selected(self) -> Take | None:
        take_id = self.selected_id()
        return None if take_id is None else self.history.get(take_id)

    def _emit(self, signal) -> None:
        if (take := self.selected()) is not None:
            signal.emit(take)

    @Slot()
    def delete_selected(self) -> None:
        take_id = self.selected_id()
        if take_id is not None:
            try:
                self.history.delete(take_id)
            except OSError as error:
                self.failed.emit(f"Cannot update the take history in {self.history.folder}: {error.strerror}.")
            self.refresh()

    def load(self, take: Take) -> np.ndarray | None:
        """The take's audio, or None after telling why it cannot be read."""
        try:
            return self.history.load(take)
        except EngineError as error:
            self.failed.emit(f"Cannot read this take: {error}")
            return None

    def _update_buttons(self, *_: object) -> None:
        has = self.selected_id() is not None
        for b in (self.play_button, self.export_button, self.reuse_button, self.delete_button):
            b.setEnabled(has)
