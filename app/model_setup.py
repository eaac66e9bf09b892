"""The main window's model handling: load at start-up, the Models dialog, and what a failed load shows.

A mixin of MainWindow (it uses the window's settings, bridge, banner, status labels and script view).
A model choice is written to the settings only once it has loaded, so a broken choice is never kept;
a failed load at start-up opens the Models dialog with the reason.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtWidgets import QDialog

from app.settings_dialog import SettingsDialog
from engine.errors import EngineError

log = logging.getLogger("llasa.app")


class ModelSetup:
    """MainWindow's model methods: start, load_models, open_models_dialog, open_preferences."""

    # --- models ---------------------------------------------------------------------------------
    @Slot()
    def start(self) -> None:
        """After the window is up: load the configured models, or open the Models dialog first time.
        When they fail to load (moved, corrupt), the Models dialog opens with the reason."""
        from engine.models.resolve import resolve_model  # no torch; only looks on disk

        self.voice_server.sync(self.settings)
        try:
            choice = self.settings.to_model_choice()
            resolve_model(choice.lm, "speech model")
            resolve_model(choice.codec, "codec")
        except EngineError as error:
            first = self.settings.qsettings.value(type(self.settings).lm.key) is None
            self.open_models_dialog(first_run=first, problem="" if first else str(error))
            return
        self._setup_on_failure = True
        self.load_models()

    @Slot()
    def load_models(self, choice=None) -> None:
        """Ask the engine to load `choice` (an engine.config.ModelChoice; default: the settings' models).
        A new choice is written to the settings only once it has loaded, so a broken one is never kept."""
        try:
            choice = choice or self.settings.to_model_choice()
        except EngineError as e:
            self.show_error(str(e))
            return
        self._pending_choice = choice
        self._models_ready, self._loading, self._codec = False, True, choice.codec
        self.device_label.setText("Loading models…")
        self.model_label.clear()
        self.script_view.set_busy("Loading models…")
        self._update_actions()
        self._load_id = self.bridge.load_models(choice)

    @Slot(object)
    def _on_models_loaded(self, event) -> None:
        self._models_ready, self._loading, self._setup_on_failure = True, False, False
        if self._pending_choice is not None:
            self._remember_models(self._pending_choice)
            self._pending_choice = None
        self.script_view.set_idle()
        self.device_label.setText(event.device)
        fast = {"off": " · fast path off", "llama.cpp": " · llama.cpp"}.get(event.fast_path, "")
        self.model_label.setText(f"{Path(event.lm).name} · {event.quantization}{fast}")
        for notice in event.notices:
            log.info("model notice: %s", notice)
        self.statusBar().showMessage(" ".join(event.notices) or "Models loaded.", 10_000)
        self._poll_memory()
        self._memory_timer.start()
        self._update_actions()

    def _remember_models(self, choice) -> None:
        s = self.settings
        s.lm, s.codec, s.quantization = choice.lm, choice.codec, choice.quantization
        lm = Path(choice.lm).expanduser()
        if lm.is_dir():  # a local folder: offer its parent again next time one is chosen
            s.last_models_folder = str(lm.parent)
        s.sync()

    def _on_load_failed(self, message: str) -> None:
        self._loading, self._pending_choice = False, None
        self.device_label.setText("Models not loaded")
        self.model_label.clear()
        self.banner.set_message(f"The models could not be loaded. {message}")
        if self._setup_on_failure:
            self._setup_on_failure = False
            QTimer.singleShot(0, lambda: self.open_models_dialog(problem=message))

    @Slot()
    def open_models_dialog(self, first_run: bool = False, problem: str = "") -> None:
        """Models → Manage models… (or the first-run setup): window-modal; the choice is loaded when
        accepted, and kept in the settings once it has loaded. `problem`: why the current models failed."""
        from app.models_dialog import ModelsDialog

        if self.models_dialog is not None:
            self.models_dialog.raise_()
            return
        try:
            before = self.settings.to_model_choice()
        except EngineError:
            before = None
        dialog = ModelsDialog(self, first_run=first_run, current=before,
                              last_folder=self.settings.last_models_folder or "", problem=problem)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.models_dialog = dialog

        def done(result: int) -> None:
            self.models_dialog = None
            if result != QDialog.DialogCode.Accepted:
                return
            choice = dataclasses.replace(dialog.chosen(), device=self.settings.device)
            if not (self._models_ready or self._loading) or choice != before:
                self.load_models(choice)

        dialog.finished.connect(done)
        dialog.open()

    @Slot()
    def open_preferences(self) -> None:
        before = self.settings.to_model_choice()
        dialog = SettingsDialog(self.settings, self)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        self.player.set_output_device(self.settings.output_device)
        self.transcriber.refresh()
        self.voice_server.sync(self.settings)
        if self.settings.to_model_choice() != before and (self._models_ready or self._loading):
            self.load_models()
