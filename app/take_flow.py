"""The main window's take making: Generate (encoding an unsaved clip first), live audio, stop, the
end of a take, and the take history's play / export / reuse.

A mixin of MainWindow (it uses the window's bridge, settings, voice panel, script view, player and
history). The previous take stays in the player until the new take's first audio arrives.
"""
from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path

import numpy as np
from PySide6.QtCore import Slot

from app.menus import ask_export_path
from app.take_history import Take
from engine.audio.clip import SAMPLE_RATE
from engine.errors import EngineError

log = logging.getLogger("llasa.app")


class TakeFlow:
    """MainWindow's generation and take-history methods."""

    # --- generation -----------------------------------------------------------------------------
    @Slot()
    def generate(self) -> None:
        """Speak the text in the voice the panel shows (an unsaved clip is encoded first); plays live.
        The previous take stays in the player until the new one's first audio arrives."""
        text = self.script_view.text().strip()
        choice = self._choice
        if not (self._models_ready and text) or self.is_generating() or choice.problem is not None:
            return
        try:
            params = self.settings.to_sampling_params()
            voice = choice.saved.to_voice() if choice.kind == "library" else None  # models loaded: torch is in
        except EngineError as e:
            self.show_error(str(e))
            return
        if params.seed is None:  # pick the seed here, so the history can make the take again
            params = dataclasses.replace(params, seed=random.randrange(2**31))
        self._request = dict(text=text, voice=choice.label, voice_id=choice.saved.id if choice.saved else None,
                             params=params, clip_key=choice.clip_key() if choice.kind == "clip" else None)
        self._streaming = False
        if choice.kind == "clip":
            if self._clip_voice is not None and self._clip_voice[0] == self._request["clip_key"]:
                voice = self._clip_voice[1]
            else:
                self._clip_encode_id = self.bridge.encode_voice(choice.samples, choice.transcript)
                self.script_view.set_busy("Encoding the clip…")
                self._update_actions()
                return
        self._start_take(voice)

    def _start_take(self, voice) -> None:
        r = self._request
        self._generate_id = self.bridge.generate(r["text"], voice, r["params"])
        self.script_view.set_busy("Generating…")
        self._update_actions()

    @Slot()
    def stop(self) -> None:
        """Cancel the generation in progress (and its live playback)."""
        if not self.is_generating():
            return
        for request_id in (self._generate_id, self._clip_encode_id):  # only this window's take: a narration keeps running
            self.bridge.cancel(request_id)
        if self._clip_encode_id is not None:  # encoding is not interruptible: no take after it
            self._request["stopped"] = True
        if self._streaming:
            self.player.stop()
        self.script_view.set_stage_text("Stopping…")

    @Slot(object)
    def _on_progress(self, event) -> None:
        if event.request_id not in (None, self._load_id, self._generate_id, self._encode_id, self._export_id,
                                    self._clip_encode_id):
            return
        self.script_view.set_progress(event.stage, event.done, event.total, event.segment, event.segments)

    @Slot(object)
    def _on_chunk(self, event) -> None:
        if event.request_id == self._generate_id:
            if not self._streaming:  # the new take exists now: it replaces the shown one
                self._streaming = True
                self.player.clear()
            self.player.append_chunk(event.samples)

    @Slot(object)
    def _on_generated(self, event) -> None:
        if event.request_id != self._generate_id:
            return
        self._generate_id = None
        self.script_view.set_idle()
        if self._streaming:
            self.player.end_stream()
        self._last_take = np.asarray(event.audio, dtype=np.float32)
        self.player.set_audio(self._last_take)
        seconds = len(self._last_take) / SAMPLE_RATE
        for warning in event.warnings:
            log.warning("generation: %s", warning)
        self.statusBar().showMessage(" ".join(event.warnings) or f"Generated {seconds:.1f} s.", 10_000)
        self._record_take(self._last_take)
        self._update_actions()

    def _end_take(self) -> None:
        """The take being made stopped or failed: the previous take stays shown unless audio had begun."""
        self._generate_id = self._clip_encode_id = None
        if self._streaming:
            self.player.end_stream()
        self.script_view.set_idle()
        self._update_actions()

    @Slot(object)
    def _on_cancelled(self, event) -> None:
        if event.request_id is not None and event.request_id in (self._generate_id, self._clip_encode_id):
            self._end_take()
            self.statusBar().showMessage("Stopped.", 5_000)

    @Slot(object)
    def _on_failed(self, event) -> None:
        rid = event.request_id
        mine = (self._load_id, self._generate_id, self._encode_id, self._export_id, self._clip_encode_id)
        if rid is not None and rid not in mine:
            return  # another window's job (a narration project): that window shows it
        if rid is not None and rid in (self._generate_id, self._clip_encode_id):
            self._end_take()
        elif rid is not None and rid == self._encode_id:
            self._encode_id = None
            self.voice_panel.set_encode_failed()
        elif rid is not None and rid == self._export_id:
            self._export_id = None
        elif self._loading and rid in (None, self._load_id):
            self._load_id = None
            self._on_load_failed(event.message)
        self.script_view.set_idle()
        self._update_actions()
        self.show_error(event.message)

    # --- take history ---------------------------------------------------------------------------
    def _record_take(self, audio: np.ndarray) -> None:
        r = self._request
        sampling = {k: v for k, v in dataclasses.asdict(r["params"]).items() if k != "seed"}
        try:
            take = self.history.add(audio, r["text"], r["voice"], r["voice_id"], r["params"].seed, sampling)
        except EngineError as error:
            self.show_error(f"The take was not added to the history: {error}")
            return
        self.history_panel.add(take)

    @Slot(object)
    def play_take(self, take: Take) -> None:
        """Put a take from the history in the player (it becomes the take Export saves) and play it."""
        audio = self.history_panel.load(take)
        if audio is None or self.is_generating():
            return
        self._last_take = audio
        self.player.set_audio(audio)
        if self.player.available:
            self.player.play()
        self._update_actions()

    @Slot(object)
    def choose_take_export(self, take: Take) -> None:
        if (path := ask_export_path(self, f"take-{take.id}.wav")):
            self.export_take(take, path)

    def export_take(self, take: Take, path: str | Path) -> str | None:
        """Write a history take to `path` on the engine thread; returns the request id (None on error)."""
        audio = self.history_panel.load(take)
        return None if audio is None else self._export(audio, path)

    @Slot(object)
    def reuse_take(self, take: Take) -> None:
        """Put a take's text back, select its voice (if still in the library) and use its sampling and seed."""
        self.script_view.set_text(take.text)
        if take.voice_id is not None and any(v.id == take.voice_id for v in self.library.list()):
            self.voice_panel.select_voice(take.voice_id)
        s = self.settings
        for key, value in take.sampling.items():
            if hasattr(type(s), key):
                setattr(s, key, value)
        s.seed = take.seed
        s.sync()
        self.statusBar().showMessage(f"Settings of the take reused: seed {take.seed} (change it in Preferences).",
                                     10_000)
