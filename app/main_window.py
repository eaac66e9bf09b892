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
    QApplication, QLabel, QMainWindow, QMessageBox, QSplitter, QVBoxLayout, QWidget,
)

from app.speed_test import SpeedTest
from app.confirm import confirm_stop
from app.placement import place_on_screen
from app.menus import (
    APP_TITLE, TEXT_SUFFIXES, VOICE_SUFFIX, ask_export_path, ask_text_file, ask_voice_file, build_commands,
    droppable_files,
)
from app.model_setup import ModelSetup
from app.models_banner import ModelsBanner
from app.player import PlayerWidget
from app.project_windows import ProjectWindows
from app.resources import app_icon
from app.script_view import ScriptView
from app.transcription import AutoTranscriber
from app.settings import AppSettings
from app.take_flow import TakeFlow
from app.take_history import HistoryPanel, TakeHistory
from app.voice_choice import VoiceChoice
from app.voice_panel import VoicePanel
from app.voice_server import VoiceServer
from engine.audio import clip as audio
from engine.errors import EngineError
from engine.voices import SavedVoice, VoiceLibrary

log = logging.getLogger("llasa.app")

MEMORY_POLL_MS = 2000
DEFAULT_SIZE = (1200, 780)  # px: the first window size, shrunk to fit smaller screens


class MainWindow(ModelSetup, TakeFlow, QMainWindow):
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
        self._load_id: str | None = None  # the LoadModels this window asked for last
        self._codec = ""  # the codec the loaded models use (stored with saved voices)
        self._voice: SavedVoice | None = None
        self._choice = VoiceChoice("random")  # the voice Generate uses: what the voice panel shows
        self._clip_voice: tuple[str, object] | None = None  # (clip key, engine Voice) of the last encoded clip
        self._clip_encode_id: str | None = None  # encoding an unsaved clip before a take
        self._request: dict | None = None  # the take being made: text, voice, seed, sampling
        self._streaming = False  # the current take's first audio chunk arrived (the player shows it)
        self._pending_choice = None  # a ModelChoice being loaded: saved to the settings once it loads
        self._setup_on_failure = False  # a failed load opens the Models dialog (at start-up)
        self.models_dialog = None  # the open Models dialog, if any
        self._generate_id: str | None = None
        self._encode_id: str | None = None
        self._export_id: str | None = None
        self._last_take: np.ndarray | None = None
        self.last_message: QMessageBox | None = None  # the latest error box (non-blocking)

        self.setWindowTitle(APP_TITLE)
        self.setWindowIcon(app_icon())
        self.setMinimumSize(900, 600)
        self.setAcceptDrops(True)
        self.history = TakeHistory(settings.history_folder(), persist=bool(settings.keep_history))
        self._build_widgets()
        self.projects = ProjectWindows(self, lambda: self._models_ready)  # open narration project windows
        self._build_status_bar()
        self.speed_test = SpeedTest(self.bridge, self, self.speed_label)  # Help ▸ Speed test…
        build_commands(self)
        self._wire()
        self.transcriber = AutoTranscriber(self.voice_panel, bridge, settings, self.show_error, self)
        self.voice_server = VoiceServer(self)  # Settings → Server: the speech API beside the app
        self.voice_server.state_changed.connect(self._on_voice_server)
        self._memory_timer = QTimer(self)
        self._memory_timer.setInterval(MEMORY_POLL_MS)
        self._memory_timer.timeout.connect(self._poll_memory)
        geometry = settings.qsettings.value("window/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            place_on_screen(self, DEFAULT_SIZE)
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
        self.history_panel = HistoryPanel(self.history, self)
        self.history_panel.setAccessibleName("Take history")
        self.banner = ModelsBanner(self)
        self.banner.setup_requested.connect(self.open_models_dialog)

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.script_view)
        right.addWidget(self.history_panel)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 2)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.voice_panel)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([440, 760])
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addWidget(self.banner)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.player)
        self.setCentralWidget(central)
        v, sv = self.voice_panel, self.script_view  # keyboard order: voice, text, Generate, player, takes
        chain = (v.voice_list, v.record_button, v.import_button, v.transcript_edit, v.name_edit, v.save_button,
                 sv.text_edit, sv.generate_button, sv.stop_button, self.player.play_button,
                 self.history_panel.take_list)
        for first, second in zip(chain, chain[1:]):
            QWidget.setTabOrder(first, second)

    def _build_status_bar(self) -> None:
        labels = QLabel("Models not loaded"), QLabel(), QLabel(), QLabel()
        self.device_label, self.model_label, self.speed_label, self.memory_label = labels
        for label, name in zip(labels, ("Compute device", "Loaded model", "Speed", "Memory use")):
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
        self.voice_panel.choice_changed.connect(self._on_choice_changed)
        hp = self.history_panel
        hp.play_requested.connect(self.play_take)
        hp.export_requested.connect(self.choose_take_export)
        hp.reuse_requested.connect(self.reuse_take)
        hp.failed.connect(self.show_error)
        self.player.failed.connect(self.show_error)
        self.player.play_toggled.connect(lambda _: self._update_actions())

    # --- state --------------------------------------------------------------------------------
    def is_generating(self) -> bool:
        """A take is being made (its unsaved clip being encoded, or the take generated)."""
        return self._generate_id is not None or self._clip_encode_id is not None

    def last_take(self) -> np.ndarray | None:
        """The last finished take (float32 [n], 16 kHz), kept for export; None before the first."""
        return self._last_take

    def _update_actions(self, *_: object) -> None:
        has_text = bool(self.script_view.text().strip())
        problem = self._choice.problem
        can_generate = self._models_ready and has_text and not self.is_generating() and problem is None
        self.generate_action.setEnabled(can_generate)
        self.script_view.set_can_generate(can_generate, (
            "Load the models first (Models → Manage models…)" if not self._models_ready
            else "Type some text first" if not has_text
            else "Generating…" if self.is_generating()
            else problem if problem is not None
            else f"Speak the text as {self._choice.label} (Ctrl+Enter)"
        ))
        self.script_view.set_voice_text(self._choice.label, problem)
        self.banner.setVisible(not (self._models_ready or self._loading))
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

    @Slot(str, str)
    def _on_voice_server(self, state: str, message: str) -> None:
        self.statusBar().showMessage(message)
        if state == "failed":
            self.show_error(f"Serving voices stopped: {message}")

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
        if event.request_id == self._clip_encode_id:  # the unsaved clip of the take being made
            self._clip_encode_id = None
            self._clip_voice = (self._request["clip_key"], event.voice)
            if self._request.get("stopped"):  # Stop was pressed while the clip was encoded
                self._end_take()
                self.statusBar().showMessage("Stopped.", 5_000)
            else:
                self._start_take(event.voice)
            return
        if event.request_id != self._encode_id:
            return
        self._encode_id = None
        self.script_view.set_idle()
        self.voice_panel.set_voice_encoded(tuple(event.voice.codes), self._codec)

    @Slot(object)
    def _on_voice_selected(self, voice: SavedVoice | None) -> None:
        self._voice = voice

    @Slot(object)
    def _on_choice_changed(self, choice: VoiceChoice) -> None:
        self._choice = choice
        self._update_actions()

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
        return None if self._last_take is None else self._export(self._last_take, path)

    def _export(self, wave: np.ndarray, path: str | Path) -> str | None:
        try:
            dest = audio.check_output_path(path)
        except EngineError as e:
            self.show_error(str(e))
            return None
        self._export_id = self.bridge.export(wave, str(dest))
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
        running = [w for w in self.projects.windows if w.is_running()]
        if self.is_generating() or running:
            what = "A take is being generated" if self.is_generating() else "A book is being narrated"
            if not confirm_stop(self, f"Quit {APP_TITLE}?",
                                f"{what}. Quitting stops it; finished takes and narrated segments are kept "
                                "on disk.", "Stop and quit"):
                event.ignore()
                return
            for window in running:
                window.confirmed_close = True
        if self.is_generating():
            self.bridge.cancel(self._generate_id)
        self.player.stop()
        self.voice_panel.shutdown()  # a recording or clip playback must not outlive the window
        self.projects.close_all()
        self.voice_server.stop()
        self._memory_timer.stop()
        self.settings.qsettings.setValue("window/geometry", self.saveGeometry())
        super().closeEvent(event)

