"""The main window: voice panel, script pane, player, status bar and menus.

Layout and wiring only: intent from the widgets goes to the EngineBridge (passed in, never built
here), and the bridge's event signals come back to the widgets' set_* slots.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QDialog, QLabel, QMainWindow, QMessageBox, QSplitter, QVBoxLayout, QWidget,
)

from app.menus import (
    APP_TITLE, TEXT_SUFFIXES, VOICE_SUFFIX, ask_export_path, ask_text_file, ask_voice_file, build_commands,
    droppable_files,
)
from app.player import PlayerWidget
from app.project_window import ProjectWindows
from app.resources import app_icon
from app.script_view import ScriptView
from app.transcription import AutoTranscriber
from app.settings import AppSettings, SettingsDialog
from app.voice_panel import VoicePanel
from engine.audio import clip as audio
from engine.audio.clip import FRAME_RATE, SAMPLE_RATE
from engine.errors import EngineError
from engine.voices import SavedVoice, VoiceLibrary

log = logging.getLogger("llasa.app")

MEMORY_POLL_MS = 2000


class MainWindow(QMainWindow):
    """The app's window. Public pieces for tests and the app: voice_panel, script_view, player, the
    *_action QActions, last_take(); text_edit, count_label, generate_button, stop_button, progress_bar and
    progress_label are the script view's."""

    def __init__(
        self,
        bridge,
        settings: AppSettings,
        library: VoiceLibrary,
        parent: QWidget | None = None,
        memory_source: Callable[[], str] | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.settings = settings
        self.library = library
        self._memory_source = memory_source or getattr(bridge, "memory_text", None)
        self._models_ready = False
        self._loading = False
        self._codec = ""  # the codec the loaded models use (stored with saved voices)
        self._voice: SavedVoice | None = None
        self._generate_id: str | None = None
        self._encode_id: str | None = None
        self._export_id: str | None = None
        self._last_take: np.ndarray | None = None
        self.last_message: QMessageBox | None = None  # the latest error box (non-blocking)

        self.setWindowTitle(APP_TITLE)
        self.setWindowIcon(app_icon())
        self.setMinimumSize(900, 600)
        self.setAcceptDrops(True)
        self._build_widgets()
        self.projects = ProjectWindows(self, lambda: self._models_ready)  # open narration project windows
        build_commands(self)
        self._build_status_bar()
        self._wire()
        self.transcriber = AutoTranscriber(self.voice_panel, bridge, settings, self.show_error, self)
        self._memory_timer = QTimer(self)
        self._memory_timer.setInterval(MEMORY_POLL_MS)
        self._memory_timer.timeout.connect(self._poll_memory)
        geometry = settings.qsettings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1200, 760)
        self._update_actions()

    # --- construction -------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        self.voice_panel = VoicePanel(self.library, self)
        self.voice_panel.setAccessibleName("Voice")
        self.script_view = ScriptView(self)
        sv = self.script_view  # its widgets, under the names tests and shortcuts use
        self.text_edit, self.count_label = sv.text_edit, sv.count_label
        self.generate_button, self.stop_button = sv.generate_button, sv.stop_button
        self.progress_bar, self.progress_label = sv.progress_bar, sv.progress_label
        self.player = PlayerWidget(self, output_device=self.settings.output_device)
        self.player.setAccessibleName("Player")
        self.player.setMaximumHeight(120)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.voice_panel)
        splitter.addWidget(self.script_view)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([440, 760])
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.player)
        self.setCentralWidget(central)

    def _build_status_bar(self) -> None:
        labels = QLabel("Models not loaded"), QLabel(), QLabel()
        self.device_label, self.model_label, self.memory_label = labels
        for label, name in zip(labels, ("Compute device", "Loaded model", "Memory use")):
            label.setAccessibleName(name)
            self.statusBar().addPermanentWidget(label)

    def _wire(self) -> None:
        b = self.bridge
        b.models_loaded.connect(self._on_models_loaded)
        b.progress_changed.connect(self._on_progress)
        b.voice_encoded.connect(self._on_voice_encoded)
        b.chunk_ready.connect(self._on_chunk)
        b.generated.connect(self._on_generated)
        b.exported.connect(self._on_exported)
        b.failed.connect(self._on_failed)
        b.cancelled.connect(self._on_cancelled)
        self.script_view.generate_requested.connect(self.generate)
        self.script_view.stop_requested.connect(self.stop)
        self.script_view.text_changed.connect(self._update_actions)
        self.script_view.failed.connect(self.show_error)
        self.voice_panel.encode_requested.connect(self._encode_voice)
        self.voice_panel.voice_selected.connect(self._on_voice_selected)
        self.player.failed.connect(self.show_error)
        self.player.play_toggled.connect(lambda _: self._update_actions())

    # --- state --------------------------------------------------------------------------------
    def is_generating(self) -> bool:
        return self._generate_id is not None

    def last_take(self) -> np.ndarray | None:
        """The last finished take (float32 [n], 16 kHz), kept for export; None before the first."""
        return self._last_take

    def _update_actions(self, *_: object) -> None:
        has_text = bool(self.script_view.text().strip())
        can_generate = self._models_ready and has_text and not self.is_generating()
        self.generate_action.setEnabled(can_generate)
        self.script_view.set_can_generate(can_generate, (
            "Load the models first (Models → Manage models…)" if not self._models_ready
            else "Type some text first" if not has_text
            else "Generating…" if self.is_generating()
            else "Speak the text in the chosen voice (Ctrl+Enter)"
        ))
        self.stop_action.setEnabled(self.is_generating())
        self.script_view.set_generating(self.is_generating())
        self.export_action.setEnabled(self._last_take is not None)
        self.play_action.setEnabled(len(self.player.audio()) > 0)  # the player says why it cannot play

    def set_memory_text(self, text: str) -> None:
        """Show a memory summary (e.g. "RAM 1.2 GB · GPU 3.4 GB") in the status bar."""
        self.memory_label.setText(text)

    @Slot()
    def _poll_memory(self) -> None:
        if self._memory_source is None:
            return
        try:
            self.set_memory_text(self._memory_source())
        except Exception:  # noqa: BLE001 - a status readout must never break the window
            log.exception("memory summary failed")
            self._memory_timer.stop()

    @Slot(str)
    def show_error(self, message: str) -> None:
        """Show an error as a (non-blocking) warning box; the traceback, if any, is in the log."""
        box = QMessageBox(QMessageBox.Icon.Warning, APP_TITLE, message, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.last_message = box
        self.statusBar().showMessage(message, 10_000)

    # --- models ---------------------------------------------------------------------------------
    @Slot()
    def start(self) -> None:
        """After the window is up: load the configured models, or open the Models dialog first time."""
        from engine.models.resolve import resolve_model  # no torch; only looks on disk

        try:
            choice = self.settings.to_model_choice()
            resolve_model(choice.lm, "speech model")
            resolve_model(choice.codec, "codec")
        except EngineError:
            self.open_models_dialog(first_run=True)
            return
        self.load_models()

    @Slot()
    def load_models(self) -> None:
        """Ask the engine to load the models chosen in the settings."""
        try:
            choice = self.settings.to_model_choice()
        except EngineError as e:
            self.show_error(str(e))
            return
        self._models_ready, self._loading, self._codec = False, True, choice.codec
        self.device_label.setText("Loading models…")
        self.script_view.set_busy("Loading models…")
        self._update_actions()
        self.bridge.load_models(choice)

    @Slot(object)
    def _on_models_loaded(self, event) -> None:
        self._models_ready, self._loading = True, False
        self.script_view.set_idle()
        self.device_label.setText(event.device)
        self.model_label.setText(f"{Path(event.lm).name} · {event.quantization}")
        for notice in event.notices:
            log.info("model notice: %s", notice)
        self.statusBar().showMessage(" ".join(event.notices) or "Models loaded.", 10_000)
        self._poll_memory()
        self._memory_timer.start()
        self._update_actions()

    @Slot()
    def open_models_dialog(self, first_run: bool = False) -> None:
        """Models → Manage models… (or the first-run setup); saves the choice and (re)loads the models."""
        from app.models_dialog import ModelsDialog

        try:
            before = self.settings.to_model_choice()
        except EngineError:
            before = None
        dialog = ModelsDialog(self, first_run=first_run, current=before)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        self.settings.lm = dialog.chosen_lm()
        self.settings.codec = dialog.chosen_codec()
        self.settings.quantization = dialog.chosen_quantization()
        self.settings.backend, self.settings.gguf_precision = dialog.chosen_backend(), dialog.chosen_gguf_precision()
        self.settings.sync()
        if not (self._models_ready or self._loading) or self.settings.to_model_choice() != before:
            self.load_models()

    @Slot()
    def open_preferences(self) -> None:
        before = self.settings.to_model_choice()
        dialog = SettingsDialog(self.settings, self)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        self.player.set_output_device(self.settings.output_device)
        self.transcriber.refresh()
        if self.settings.to_model_choice() != before and (self._models_ready or self._loading):
            self.load_models()

    # --- voices -------------------------------------------------------------------------------
    @Slot(object, str)
    def _encode_voice(self, samples: np.ndarray, transcript: str) -> None:
        if not self._models_ready:
            self.voice_panel.set_encode_failed()
            self.show_error("Load the models before saving a voice (Models → Manage models…).")
            return
        self._encode_id = self.bridge.encode_voice(samples, transcript)
        self.script_view.set_busy("Encoding voice…")

    @Slot(object)
    def _on_voice_encoded(self, event) -> None:
        if event.request_id != self._encode_id:
            return
        self._encode_id = None
        self.script_view.set_idle()
        self.voice_panel.set_voice_encoded(tuple(event.voice.codes), self._codec)

    @Slot(object)
    def _on_voice_selected(self, voice: SavedVoice | None) -> None:
        self._voice = voice
        self.script_view.set_reference_seconds(len(voice.codes) / FRAME_RATE if voice else 0.0)
        self._update_actions()

    # --- generation -----------------------------------------------------------------------------
    @Slot()
    def generate(self) -> None:
        """Speak the text in the selected voice (plays live while it is generated)."""
        text = self.script_view.text().strip()
        if not (self._models_ready and text) or self.is_generating():
            return
        try:
            params = self.settings.to_sampling_params()
            voice = self._voice.to_voice() if self._voice is not None else None  # models loaded: torch is in
        except EngineError as e:
            self.show_error(str(e))
            return
        self.player.clear()
        self._generate_id = self.bridge.generate(text, voice, params)
        self.script_view.set_busy("Generating…")
        self._update_actions()

    @Slot()
    def stop(self) -> None:
        """Cancel the generation in progress (and its live playback)."""
        if not self.is_generating():
            return
        self.bridge.cancel()
        self.player.stop()
        self.script_view.set_stage_text("Stopping…")

    @Slot(object)
    def _on_progress(self, event) -> None:
        if event.request_id not in (None, self._generate_id, self._encode_id, self._export_id):
            return
        self.script_view.set_progress(event.stage, event.done, event.total)

    @Slot(object)
    def _on_chunk(self, event) -> None:
        if event.request_id == self._generate_id:
            self.player.append_chunk(event.samples)

    @Slot(object)
    def _on_generated(self, event) -> None:
        if event.request_id != self._generate_id:
            return
        self._generate_id = None
        self.script_view.set_idle()
        self.player.end_stream()
        self._last_take = np.asarray(event.audio, dtype=np.float32)
        self.player.set_audio(self._last_take)
        seconds = len(self._last_take) / SAMPLE_RATE
        for warning in event.warnings:
            log.warning("generation: %s", warning)
        self.statusBar().showMessage(" ".join(event.warnings) or f"Generated {seconds:.1f} s.", 10_000)
        self._update_actions()

    @Slot(object)
    def _on_cancelled(self, event) -> None:
        if event.request_id == self._generate_id:
            self._generate_id = None
            self.script_view.set_idle()
            self.player.end_stream()
            self.statusBar().showMessage("Stopped.", 5_000)
            self._update_actions()

    @Slot(object)
    def _on_failed(self, event) -> None:
        rid = event.request_id
        if rid is not None and rid not in (self._generate_id, self._encode_id, self._export_id):
            return  # another window's job (a narration project): that window shows it
        if rid is not None and rid == self._generate_id:
            self._generate_id = None
            self.player.end_stream()
        elif rid is not None and rid == self._encode_id:
            self._encode_id = None
            self.voice_panel.set_encode_failed()
        elif rid is not None and rid == self._export_id:
            self._export_id = None
        elif self._loading:
            self._loading = False
            self.device_label.setText("Models not loaded")
        self.script_view.set_idle()
        self._update_actions()
        self.show_error(event.message)

    # --- files ----------------------------------------------------------------------------------
    def open_text_file(self, path: str | Path) -> bool:
        """Put a UTF-8 text file's content in the editor; shows the problem and returns False if unreadable."""
        return self.script_view.open_file(path)

    @Slot()
    def choose_text_file(self) -> None:
        if path := ask_text_file(self):
            self.open_text_file(path)

    @Slot()
    def choose_voice_import(self) -> None:
        if path := ask_voice_file(self):
            self.import_voice(path)

    def import_voice(self, path: str | Path) -> None:
        """A .llasavoice file goes to the library; an audio file becomes the clip being edited."""
        if str(path).lower().endswith(VOICE_SUFFIX):
            self.voice_panel.import_voice_file(str(path))
        else:
            self.voice_panel.import_file(str(path))

    @Slot()
    def choose_export_path(self) -> None:
        if self._last_take is not None and (path := ask_export_path(self)):
            self.export_audio(path)

    def export_audio(self, path: str | Path) -> str | None:
        """Write the last take to `path` on the engine thread; returns the request id (None on error)."""
        if self._last_take is None:
            return None
        try:
            dest = audio.check_output_path(path)
        except EngineError as e:
            self.show_error(str(e))
            return None
        self._export_id = self.bridge.export(self._last_take, str(dest))
        self.script_view.set_busy("Exporting…")
        return self._export_id

    @Slot(object)
    def _on_exported(self, event) -> None:
        if event.request_id == self._export_id:
            self._export_id = None
            self.script_view.set_idle()
            self.statusBar().showMessage(f"Saved {event.path}", 10_000)

    # --- drag and drop ---------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt name)
        if droppable_files(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt name)
        files = droppable_files(event.mimeData())
        if not files:
            event.ignore()
            return
        event.acceptProposedAction()
        for path in files:
            if path.suffix.lower() in TEXT_SUFFIXES:
                self.open_text_file(path)
            else:
                self.import_voice(path)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt name)
        if self.is_generating():
            self.bridge.cancel()
        self.player.stop()
        self.voice_panel.shutdown()  # a recording or clip playback must not outlive the window
        self.projects.close_all()
        self._memory_timer.stop()
        self.settings.qsettings.setValue("window/geometry", self.saveGeometry())
        super().closeEvent(event)
