"""The one place where the GUI meets the engine: jobs in, Qt signals out.

`EngineBridge` owns an `engine.session.EngineSession` (one long-lived thread that owns every torch
object). Methods submit jobs and return a request id; the session's event dataclasses arrive on the
engine thread and are re-emitted here as Qt signals, queued onto the GUI thread. Widgets never touch
the engine directly. torch is imported on the engine thread, so the window appears before it loads.
"""
from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal, Slot

from engine.config import ModelChoice, SamplingParams

log = logging.getLogger("llasa.app")


class EngineBridge(QObject):
    """Qt face of the engine session. Signals carry the engine's immutable event objects."""

    models_loaded = Signal(object)  # engine.session.ModelsLoaded
    progress_changed = Signal(object)  # engine.session.Progress
    voice_encoded = Signal(object)  # engine.session.VoiceEncoded
    chunk_ready = Signal(object)  # engine.session.AudioChunk
    generated = Signal(object)  # engine.session.Generated
    exported = Signal(object)  # engine.session.Exported
    transcribed = Signal(object)  # engine.session.Transcribed
    failed = Signal(object)  # engine.session.Failed
    cancelled = Signal(object)  # engine.session.Cancelled
    project_created = Signal(object)  # engine.session.ProjectCreated
    narration_progressed = Signal(object)  # engine.session.NarrationProgressed
    narrated = Signal(object)  # engine.session.Narrated
    speed_measured = Signal(object)  # engine.session.SpeedMeasured
    voice_measured = Signal(object)  # engine.session.VoiceMeasured
    _event_arrived = Signal(object)  # engine thread -> GUI thread

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        from engine import session
        from engine.book import jobs

        self._session_module, self._jobs = session, jobs
        self._ids = itertools.count(1)
        self._routes = {
            session.ModelsLoaded: self.models_loaded,
            session.Progress: self.progress_changed,
            session.VoiceEncoded: self.voice_encoded,
            session.AudioChunk: self.chunk_ready,
            session.Generated: self.generated,
            session.Exported: self.exported,
            session.Transcribed: self.transcribed,
            session.Failed: self.failed,
            session.Cancelled: self.cancelled,
            session.ProjectCreated: self.project_created,
            session.NarrationProgressed: self.narration_progressed,
            session.Narrated: self.narrated,
            session.SpeedMeasured: self.speed_measured,
            session.VoiceMeasured: self.voice_measured,
        }
        self._event_arrived.connect(self._dispatch, Qt.ConnectionType.QueuedConnection)
        self._session = session.EngineSession(emit=self._event_arrived.emit)
        self._session.start()

    def _next_id(self) -> str:
        return f"r{next(self._ids)}"

    @Slot(object)
    def _dispatch(self, event: object) -> None:
        signal = self._routes.get(type(event))
        if signal is None:
            log.warning("unroutable engine event %r", event)
            return
        signal.emit(event)

    def load_models(self, choice: ModelChoice) -> str:
        """Load (or switch) models; answered by models_loaded or failed (both with the returned request id)."""
        request_id = self._next_id()
        self._session.submit(self._session_module.LoadModels(choice, request_id))
        return request_id

    def encode_voice(self, samples: np.ndarray, transcript: str) -> str:
        """Encode a 16 kHz reference clip; answered by voice_encoded or failed."""
        request_id = self._next_id()
        self._session.submit(self._session_module.EncodeVoice(request_id, samples, transcript))
        return request_id

    def generate(self, text: str, voice, params: SamplingParams) -> str:
        """Speak text in voice (engine.speech.synth.Voice or None); chunk_ready while it runs, then generated."""
        request_id = self._next_id()
        self._session.submit(self._session_module.Generate(request_id, text, voice, params))
        return request_id

    def transcribe(self, samples: np.ndarray, model: str, language: str | None = None) -> str:
        """Write down what a 16 kHz clip says with the Whisper `model`; answered by transcribed or failed."""
        request_id = self._next_id()
        self._session.submit(self._session_module.Transcribe(request_id, samples, language, model))
        return request_id

    def export(self, wave: np.ndarray, path: str) -> str:
        """Write audio atomically; answered by exported or failed."""
        request_id = self._next_id()
        self._session.submit(self._session_module.ExportAudio(request_id, wave, path))
        return request_id

    def create_project(self, folder: Path, book, voice, settings, chapters: tuple[int, ...] | None = None,
                       cast: tuple = ()) -> str:
        """Plan a book (engine.book.importer.Book) for a SavedVoice narrator (and the SavedVoices of the `cast`)
        with NarrationSettings and write a new project folder; answered by project_created or failed."""
        request_id = self._next_id()
        self._session.submit(self._session_module.CreateProject(request_id, Path(folder), book, voice, settings,
                                                                chapters, tuple(cast)))
        return request_id

    def narrate(self, folder: Path, chapters: tuple[int, ...] | None = None,
                segment_ids: tuple[str, ...] | None = None) -> str:
        """Render a project's pending segments (of `chapters`, or just `segment_ids`); narration_progressed
        while it runs, then narrated (result.cancelled after cancel(request id)), or failed."""
        request_id = self._next_id()
        self._session.submit(self._session_module.Narrate(request_id, Path(folder), chapters, segment_ids))
        return request_id

    def export_project(self, folder: Path, dest: Path, fmt: str, per_chapter: bool = False,
                       subtitles: tuple[str, ...] = ()) -> str:
        """Export a project's selected chapters (fmt wav/flac/mp3/m4b; per_chapter: into the folder dest;
        subtitles: "srt"/"vtt"/"json" sidecars); progress_changed (stage "export"), then exported or failed."""
        request_id = self._next_id()
        self._session.submit(self._session_module.ExportProject(request_id, Path(folder), Path(dest), fmt,
                                                                per_chapter, tuple(subtitles)))
        return request_id

    def measure_speed(self) -> str:
        """Time the loaded models (Help ▸ Speed test…); answered by speed_measured or failed."""
        request_id = self._next_id()
        self._session.submit(self._session_module.MeasureSpeed(request_id))
        return request_id

    def measure_voice(self, folder: Path, voice) -> str:
        """A library voice's segment budget on a project's model, to add it to the cast; voice_measured or failed."""
        request_id = self._next_id()
        self._session.submit(self._jobs.MeasureVoice(request_id, Path(folder), voice))
        return request_id

    def regenerate_until_passes(self, folder: Path, segment_ids: tuple[str, ...], max_tries: int = 4) -> str:
        """Quality mode on just these segments, new takes until one passes; narration_progressed, then
        narrated, or failed (e.g. quality mode is off)."""
        request_id = self._next_id()
        self._session.submit(self._jobs.RegenerateUntilPasses(request_id, Path(folder), tuple(segment_ids), max_tries))
        return request_id

    def cancel(self, request_id: str | None) -> None:
        """Cancel only the job `request_id` (running: stops within one token; queued: dropped, answered by
        cancelled). None does nothing: every window cancels its own jobs; shutdown() cancels them all."""
        if request_id is not None:
            self._session.cancel(request_id)

    def memory_text(self) -> str:
        return self._session_module.memory_summary()

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Cancel and stop the engine thread; False (and a log line) if it did not stop in time."""
        stopped = self._session.shutdown(timeout)
        if not stopped:
            log.warning("engine thread did not stop within %.1f s", timeout)
        return stopped
