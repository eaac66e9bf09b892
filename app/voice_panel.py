"""The voice panel: record or import a reference clip, trim it, type its transcript and save it to the
voice library; below it the library list (app/voice_library_view.py) picks the voice to speak with.

Dumb widget: encoding goes out as `encode_requested` and comes back through `set_voice_encoded`;
the only work done here is light (reading a file; app/clip_audio.py polls the recorder and the player).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PySide6.QtCore import Signal, Slot
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView, QComboBox, QFileDialog, QGroupBox, QLabel, QLineEdit, QListWidget, QPlainTextEdit,
    QProgressBar, QStyle, QVBoxLayout, QWidget,
)

from app.clip_audio import METER_FLOOR_DB, ClipAudioMixin, _clock
from app.settings import documents_dir
from app.voice_choice import VoiceChoice
from app.voice_library_view import UNSAVED, VoiceLibraryView, attempt, named, named_button, row
from app.waveform import WaveformView
from engine.audio.clip import SAMPLE_RATE, load_audio, load_reference, quality_hints
from engine.voices import SavedVoice, VoiceLibrary

log = logging.getLogger("llasa.app")

AUDIO_FILTER = "Audio files (*.wav *.flac *.ogg *.mp3 *.aiff *.aif);;All files (*)"


class VoicePanel(ClipAudioMixin, QWidget):
    """Reference clip editor + voice library. Recording and playback are app.clip_audio's; the library's
    widgets and methods (voice_list, play_voice_button, …, refresh_library, selected_voice, …) are the
    library view's, reachable here."""

    voice_selected = Signal(object)  # SavedVoice, or None for "no reference (random voice)"
    choice_changed = Signal(object)  # app.voice_choice.VoiceChoice: the voice Generate would use now
    encode_requested = Signal(object, str)  # (float32 [n] trimmed clip at 16 kHz, transcript)
    transcribe_requested = Signal(object)  # float32 [n] trimmed clip at 16 kHz (verifier hook)
    voice_saved = Signal(object)  # SavedVoice just added to the library

    def __init__(self, library: VoiceLibrary, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._library = library
        self._clip = np.zeros(0, np.float32)  # the whole current clip, float32 [n] at 16 kHz
        self._load_warnings: tuple[str, ...] = ()
        self._pending: tuple[str, np.ndarray, str] | None = None  # (name, samples, transcript)
        self._shown: SavedVoice | None = None  # the library voice whose clip is in the editor, if any
        self._unsaved: dict | None = None  # the unsaved clip, kept while a saved voice is shown instead
        self._init_audio()
        self.setAcceptDrops(True)
        self._build()
        self._audio_widgets = (self.device_combo, self.record_button, self.play_clip_button)
        self._tips = {w: w.toolTip() for w in self._audio_widgets}  # restored when audio comes back
        self.refresh_devices()  # the library view lists the library itself
        self._update_buttons()

    # --- layout ---------------------------------------------------------------------------------
    def _build(self) -> None:
        self.device_combo = named(QComboBox(), "Input device", "Microphone to record from")
        self.record_button = named_button("Record", "Record up to 15 s (8-15 s works best)", self.toggle_recording)
        self.timer_label = named(QLabel("No clip"), "Clip length", "Length of the kept (trimmed) clip")
        self.level_meter = named(QProgressBar(), "Input level", "Microphone level while recording (peak dBFS)")
        self.level_meter.setRange(0, int(-METER_FLOOR_DB * 10))
        self.level_meter.setTextVisible(True)
        self.level_meter.setFormat("")
        self.level_meter.setMaximumHeight(14)
        self.level_label = QLabel("Mic level")
        self.level_label.setBuddy(self.level_meter)
        for w in (self.level_meter, self.level_label):
            w.hide()  # shown only while recording: idle, it looked like a stuck progress bar
        self.unavailable_label = named(QLabel(), "Recording unavailable")
        self.unavailable_label.setWordWrap(True)
        self.unavailable_label.hide()
        self.import_button = named_button("Import file…", "Use an audio file as the reference", self.choose_file)
        self.import_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_DialogOpenButton))
        self.play_clip_button = named_button("Play clip", "Play the trimmed clip", self.play_clip)
        self.play_clip_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
        self.waveform = named(WaveformView(), "Reference waveform")
        self.waveform.set_trim_enabled(True)
        self.waveform.trim_changed.connect(self._on_trim_changed)
        self.hints_list = named(QListWidget(), "Quality hints", "What could make the clone sound better")
        self.hints_list.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.hints_list.setMaximumHeight(72)
        self.transcript_edit = named(QPlainTextEdit(), "Transcript", "The exact words spoken in the trimmed clip")
        self.transcript_edit.setPlaceholderText("Type exactly what the clip says")
        self.transcript_edit.setTabChangesFocus(True)
        self.transcript_edit.setMaximumHeight(64)
        self.transcript_edit.textChanged.connect(self._update_buttons)
        self.transcript_edit.textChanged.connect(self._emit_choice)
        self.transcribe_button = named_button("Auto-transcribe", "Needs a Whisper speech recognition model", self._transcribe)
        self.transcribe_button.setEnabled(False)
        self.name_edit = named(QLineEdit(), "Voice name", "Name of the voice in the library")
        self.name_edit.setPlaceholderText("Voice name")
        self.name_edit.textChanged.connect(self._update_buttons)
        self.save_button = named_button("Save voice", "Encode the trimmed clip once and keep it in the library",
                                        self.save_voice)
        self.save_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_DialogSaveButton))
        clip_box = QGroupBox("Reference clip")
        clip_layout = QVBoxLayout(clip_box)
        clip_layout.addLayout(row((self.device_combo, 1), self.record_button, self.timer_label))
        clip_layout.addLayout(row(self.level_label, (self.level_meter, 1)))
        clip_layout.addWidget(self.unavailable_label)
        clip_layout.addLayout(row(self.import_button, self.play_clip_button, (None, 1)))
        for w in (self.waveform, self.hints_list):
            clip_layout.addWidget(w)
        clip_layout.addLayout(row((self.transcript_edit, 1), self.transcribe_button))
        clip_layout.addLayout(row((self.name_edit, 1), self.save_button))

        self.library_view = VoiceLibraryView(self._library)
        lib = self.library_view  # its widgets, under the names they had before the split
        self.voice_list, self.play_voice_button = lib.voice_list, lib.play_voice_button
        self.rename_button, self.delete_button = lib.rename_button, lib.delete_button
        self.import_voice_button, self.export_voice_button = lib.import_voice_button, lib.export_voice_button
        lib.play_requested.connect(lambda samples: self._play(samples, None))
        lib.voice_selected.connect(self._on_library_selected)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(clip_box)
        layout.addWidget(self.library_view, 1)

    # --- the clip -------------------------------------------------------------------------------
    def set_clip(self, samples: np.ndarray, warnings: tuple[str, ...] = (), name: str = "",
                 transcript: str = "", saved: SavedVoice | None = None) -> None:
        """Make float32 [n] at 16 kHz the current clip (whole clip kept until trimmed), with its name and
        transcript: a new clip replaces both, so a voice is never saved with another clip's words.
        `saved` is the library voice the clip belongs to (None: a new, unsaved clip)."""
        self._clip = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._load_warnings = tuple(warnings)
        self._shown = saved
        self.waveform.set_samples(self._clip, SAMPLE_RATE)
        for edit, text in ((self.name_edit, name), (self.transcript_edit, transcript)):
            edit.blockSignals(True)
            edit.setPlainText(text) if isinstance(edit, QPlainTextEdit) else edit.setText(text)
            edit.blockSignals(False)
        if saved is None and len(self._clip):  # a new clip: listed and selected as "Unsaved clip: <name>"
            self._unsaved = {}
            self.library_view.set_unsaved_clip(name, select=True)
        self._update_hints()
        self._update_clock()
        self._update_buttons()
        self._emit_choice()

    def _clear_clip(self) -> None:
        self.set_clip(np.zeros(0, np.float32), saved=None)

    def _keep_unsaved(self) -> None:
        """Before showing another voice: remember the unsaved clip as edited (trim, transcript, name)."""
        if self._unsaved is not None and self._shown is None and len(self._clip):
            self._unsaved = dict(samples=self._clip, warnings=self._load_warnings, name=self.name_edit.text(),
                                 transcript=self.transcript_edit.toPlainText(), trim=self.waveform.trim_range())

    def _restore_unsaved(self) -> None:
        u = self._unsaved or {}
        if not u:
            return  # it is on screen already
        self.set_clip(u["samples"], u["warnings"], u["name"], u["transcript"])
        self.waveform.set_trim_range(*u["trim"])

    def _update_clock(self) -> None:
        """Not recording: the kept length of the clip (and the whole length when trimmed)."""
        if self._recorder is not None:
            return
        total = len(self._clip) / SAMPLE_RATE
        kept = len(self.trimmed_samples()) / SAMPLE_RATE
        if not len(self._clip):
            self.timer_label.setText("No clip")
        elif abs(total - kept) < 0.05:
            self.timer_label.setText(f"Clip {_clock(total)}")
        else:
            self.timer_label.setText(f"Clip {_clock(kept)} of {_clock(total)}")

    def _on_trim_changed(self, *_: float) -> None:
        self._update_hints()
        self._update_clock()
        self._emit_choice()

    def current_choice(self) -> VoiceChoice:
        """The voice Generate uses: what the panel shows (see app.voice_choice)."""
        if not len(self._clip):
            return VoiceChoice("random")
        saved = self._shown
        edited = saved is None or self.transcript() != saved.transcript.strip() or (
            len(self.trimmed_samples()) != len(self._clip))
        if not edited:
            return VoiceChoice("library", saved=saved, name=saved.name)
        return VoiceChoice("clip", samples=self.trimmed_samples().copy(), transcript=self.transcript(),
                           name=self.name_edit.text().strip())

    def _emit_choice(self, *_: object) -> None:
        self.choice_changed.emit(self.current_choice())

    @Slot(object)
    def _on_library_selected(self, voice) -> None:
        """A library pick shows that voice's clip, transcript and name (random voice: an empty editor;
        the unsaved clip: that clip again, as it was left)."""
        if voice == UNSAVED:
            self._restore_unsaved()
            self._emit_choice()
            return
        self._keep_unsaved()
        if voice is None:
            self._clear_clip()
        else:
            samples = attempt(self, "Cannot show the voice", load_audio, voice.audio_path)
            if samples is None or samples is True:
                samples = np.zeros(0, np.float32)
            self.set_clip(samples, name=voice.name, transcript=voice.transcript, saved=voice)
        self.voice_selected.emit(voice)

    @Slot(str)
    def import_file(self, path: str) -> bool:
        """Load an audio file as the current clip; shows the error and returns False when unusable."""
        clip = attempt(self, "Cannot use this file", load_reference, path)
        if clip is None:
            return False
        self.set_clip(clip.samples, clip.warnings, Path(path).stem)
        return True

    @Slot()
    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a reference clip", str(documents_dir()), AUDIO_FILTER)
        if path:
            self.import_file(path)

    def trimmed_samples(self) -> np.ndarray:
        """The kept part of the current clip: float32 [m] at 16 kHz."""
        start, end = self.waveform.trim_range()
        return self._clip[int(round(start * SAMPLE_RATE)) : int(round(end * SAMPLE_RATE))]

    def hints(self) -> tuple[str, ...]:
        """The hints shown: the file's load warnings, then quality hints on the trimmed clip."""
        if not len(self._clip):
            return ()
        return self._load_warnings + quality_hints(self.trimmed_samples())

    def _update_hints(self, *_: float) -> None:
        self.hints_list.clear()
        hints = self.hints()
        if len(self._clip) and not hints:
            self.hints_list.addItem("Looks good.")
        self.hints_list.addItems(list(hints))

    def transcript(self) -> str:
        return self.transcript_edit.toPlainText().strip()

    @Slot(str)
    def set_transcript(self, text: str) -> None:
        """Fill the transcript (the auto-transcription answer)."""
        self.transcript_edit.setPlainText(text)

    @Slot(bool)
    def set_transcribe_available(self, available: bool, reason: str = "") -> None:
        """Offer Auto-transcribe when a Whisper model can answer transcribe_requested; `reason` is the
        tooltip saying why not (what to download)."""
        self.transcribe_button.setEnabled(bool(available))
        self.transcribe_button.setToolTip(
            "Write the transcript from the clip (you can edit it)" if available
            else reason or "Needs a Whisper speech recognition model"
        )

    def _transcribe(self) -> None:
        if len(self._clip):
            self.transcribe_requested.emit(self.trimmed_samples().copy())

    # --- saving ---------------------------------------------------------------------------------
    @Slot()
    def save_voice(self) -> None:
        """Ask the engine to encode the trimmed clip; set_voice_encoded finishes the save."""
        samples, transcript, name = self.trimmed_samples().copy(), self.transcript(), self.name_edit.text().strip()
        if not (len(samples) and transcript and name):
            return
        self._pending = (name, samples, transcript)
        self.save_button.setText("Encoding…")
        self._update_buttons()
        self.encode_requested.emit(samples, transcript)

    @Slot(object, str)
    def set_voice_encoded(self, codes: tuple[int, ...], codec: str) -> SavedVoice | None:
        """Store the clip being saved with its speech codes, list it and select it."""
        if self._pending is None:
            log.warning("voice encoded but no save was pending; ignored")
            return None
        (name, samples, transcript), self._pending = self._pending, None
        self._reset_save_button()
        voice = attempt(self, "Cannot save the voice", self._library.add, name, samples, transcript,
                              tuple(int(c) for c in codes), codec)
        if voice is None:
            return None
        if self._shown is None:  # the unsaved clip is saved now: it is that library voice from here on
            self._unsaved = None
            self.library_view.set_unsaved_clip(None)
        self.refresh_library(select=voice.id)
        self.voice_saved.emit(voice)
        return voice

    @Slot()
    def set_encode_failed(self) -> None:
        """The engine could not encode (the window shows why): allow saving again."""
        self._pending = None
        self._reset_save_button()

    def _reset_save_button(self) -> None:
        self.save_button.setText("Save voice")
        self._update_buttons()

    # --- library (delegated to the library view) ------------------------------------------------
    @Slot()
    def refresh_library(self, select: str | None = None) -> None:
        """Re-list the library; keeps (or moves to `select`) the selected voice."""
        self.library_view.refresh_library(select)

    def selected_voice(self) -> SavedVoice | None:
        return self.library_view.selected_voice()

    def select_voice(self, voice_id: str | None) -> None:
        self.library_view.select_voice(voice_id)

    @Slot()
    def rename_selected(self) -> None:
        self.library_view.rename_selected()

    @Slot()
    def delete_selected(self) -> None:
        self.library_view.delete_selected()

    @Slot(str)
    def import_voice_file(self, path: str) -> SavedVoice | None:
        """Add a voice from a .llasavoice file and select it."""
        return self.library_view.import_voice_file(path)

    @Slot(str)
    def export_selected(self, path: str) -> bool:
        """Write the selected voice to `path` as one .llasavoice file."""
        return self.library_view.export_selected(path)

    @Slot()
    def play_selected(self) -> None:
        """Play the selected saved voice's reference recording."""
        self.library_view.play_selected()

    def choose_voice_file(self) -> None:
        self.library_view.choose_voice_file()

    def choose_export_path(self) -> None:
        self.library_view.choose_export_path()

    # --- state ----------------------------------------------------------------------------------
    def _update_buttons(self) -> None:
        recording, has_clip = self._recorder is not None, len(self._clip) > 0
        audio = self._audio_ok
        self.device_combo.setEnabled(audio and not recording)
        self.record_button.setEnabled(audio)
        self.import_button.setEnabled(not recording)
        self.play_clip_button.setEnabled(audio and has_clip and not recording)
        ready = has_clip and bool(self.transcript()) and bool(self.name_edit.text().strip())
        self.save_button.setEnabled(ready and self._pending is None and not recording)
        self.save_button.setToolTip(
            "Encode the trimmed clip once and keep it" if ready
            else "Record or import a clip, type its transcript and a name first"
        )
        self.library_view.set_recording(recording)

    # --- drag and drop --------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            return
        event.acceptProposedAction()
        if paths[0].endswith(".llasavoice"):
            self.import_voice_file(paths[0])
        else:
            self.import_file(paths[0])
