"""The engine thread: one long-lived thread owns every torch object and runs jobs in order.

Jobs go in through `EngineSession.submit`; immutable events come out through the `emit` callback,
called on the engine thread (the GUI's bridge re-emits them as Qt signals). torch is imported on the
engine thread only, so importing this module is cheap. Every job ends with exactly one final event:
ModelsLoaded / VoiceEncoded / Generated / Transcribed / Exported, Failed (with a message a user can read) or
Cancelled (and nothing else after it). Every job carries a request_id (optional for LoadModels) and
`cancel(request_id)` stops only that job, so one window's Stop never ends another window's job. Transcribe -> Transcribed uses a Whisper kept on this thread
(engine.book.quality.VerifierModels, shared with quality-mode narration). Narration-project jobs (CreateProject, Narrate, ExportProject)
live in engine.book.jobs, their events (ProjectCreated, NarrationProgressed, Narrated) with all the
others in engine.events; both are re-exported here; they load the project's models first when others are loaded.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.audio.clip import SAMPLE_RATE
from engine.config import ModelChoice, SamplingParams
from engine.text.plan import TextOptions
from engine.errors import (
    CancelledError, EngineError, InputTextError, ReferenceAudioError, is_out_of_memory, out_of_memory_error,
)
from engine.book.quality import VerifierModels
from engine.verify.scoring import DEFAULT_ASR
from engine.events import (  # noqa: F401 (re-exported: every event the session emits)
    AudioChunk, Cancelled, Exported, Failed, Generated, ModelsLoaded, Narrated, NarrationProgressed, Progress,
    ProjectCreated, SpeedMeasured, Transcribed, VoiceEncoded, VoiceMeasured,
)
from engine.book.jobs import (  # noqa: F401 (re-exported: the session's project jobs)
    PROJECT_JOBS, CreateProject, ExportProject, Narrate, run_project_job,
)

if TYPE_CHECKING:
    from engine.speech.synth import Synthesizer, Voice

log = logging.getLogger("llasa.engine")

MIN_REFERENCE_S = 1.0  # shortest clip EncodeVoice accepts (as engine.audio.clip.load_reference)


# ---- jobs (GUI -> engine) ----
@dataclass(frozen=True)
class LoadModels:
    """Load (or switch to) these models; answered by ModelsLoaded. Progress/Failed/ModelsLoaded carry
    `request_id` (None when not given). A load is not interrupted by cancel once it runs."""

    choice: ModelChoice
    request_id: str | None = None


@dataclass(frozen=True)
class EncodeVoice:
    """Encode a reference clip (float32 [n], 16 kHz) and its transcript; answered by VoiceEncoded."""

    request_id: str
    samples: np.ndarray
    transcript: str


@dataclass(frozen=True)
class Generate:
    """Speak `text` in `voice` (a random voice when None); AudioChunk events, then Generated."""

    request_id: str
    text: str
    voice: "Voice | None"
    params: SamplingParams = field(default_factory=SamplingParams)
    options: TextOptions = field(default_factory=TextOptions)  # pauses, pronunciations, language


@dataclass(frozen=True)
class MeasureSpeed:
    """Time the loaded models on a fixed paragraph (engine.speech.speed); answered by SpeedMeasured."""

    request_id: str


@dataclass(frozen=True)
class Transcribe:
    """Write down what a clip (float32 [n], 16 kHz) says with Whisper `model` (hub id or folder; loaded
    once on the models' device and kept); `language` ("en", "zh", ...) or None to detect it. Answered
    by Transcribed."""

    request_id: str
    samples: np.ndarray
    language: str | None = None
    model: str = DEFAULT_ASR


@dataclass(frozen=True)
class ExportAudio:
    """Write float32 [n] 16 kHz audio to `path` (format from the extension), atomically."""

    request_id: str
    wave: np.ndarray
    path: str | Path


class EngineSession:
    """Runs jobs one at a time on a daemon thread that owns the Synthesizer."""

    def __init__(self, emit: Callable[[object], None]) -> None:
        self._emit_callback = emit
        self._thread = threading.Thread(target=self._run, name="llasa-engine", daemon=True)
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)  # notified when a job is queued or on shutdown
        self._pending: deque[tuple[object, int]] = deque()  # (job, epoch when submitted), oldest first
        self._epoch = 0  # cancel() count: Generates/Narrates submitted before the latest cancel() are dropped
        self._running: tuple[str | None, threading.Event] | None = None  # running job's (request_id, cancel flag)
        self._stopping = False
        self._synth: Synthesizer | None = None  # touched on the engine thread only
        self._choice: ModelChoice | None = None  # what self._synth was loaded with (engine thread only)
        self._verifiers = VerifierModels()  # Whisper / WavLM, kept until the speech models change

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: object) -> None:
        """Queue a job (LoadModels, EncodeVoice, Generate, ExportAudio or a project job); returns at once."""
        if self._stopping:
            raise RuntimeError("the engine session is shut down")
        with self._wakeup:
            self._pending.append((job, self._epoch))
            self._wakeup.notify()

    def cancel(self, request_id: str | None = None) -> None:
        """Cancel one job, or with no id everything that renders (used on shutdown).

        With `request_id`: if that job runs, it stops at its next check (every token when generating);
        if it is queued, it is dropped and Cancelled(request_id) is emitted at once, on the calling thread.
        Other jobs, running or queued, are untouched; an unknown or finished id does nothing.
        Without: the running job stops and queued Generates and Narrates are dropped (each emits
        Cancelled on the engine thread when its turn comes); queued loads, encodes and exports still run.
        A cancelled running job emits Cancelled, except a Narrate: it ends with
        Narrated(result.cancelled=True), its finished takes kept.
        """
        dropped: list[object] = []
        with self._lock:
            if request_id is None:
                self._epoch += 1
            elif self._pending:
                kept = deque(item for item in self._pending if getattr(item[0], "request_id", None) != request_id)
                dropped = [job for job, _ in self._pending if getattr(job, "request_id", None) == request_id]
                self._pending = kept
            if self._running is not None and request_id in (None, self._running[0]):
                self._running[1].set()
        for _ in dropped:
            self._emit(Cancelled(request_id))

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Cancel, skip queued jobs, stop the thread; True when it stopped within `timeout` seconds."""
        self._stopping = True
        self.cancel()
        with self._wakeup:
            self._wakeup.notify()
        if not self._thread.is_alive():
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("Engine thread did not stop within %.1f s; it is still running a job.", timeout)
            return False
        return True

    # ---- engine thread ----
    def _emit(self, event: object) -> None:
        try:
            self._emit_callback(event)
        except Exception:  # a broken receiver must not kill the engine thread
            log.exception("Engine event receiver failed on %r", type(event).__name__)

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not (self._pending or self._stopping):
                    self._wakeup.wait()
                if self._stopping:  # queued jobs are skipped
                    break
                job, epoch = self._pending.popleft()
                request_id = getattr(job, "request_id", None)
                if isinstance(job, (Generate, Narrate)) and epoch < self._epoch:
                    cancel = None
                else:
                    cancel = threading.Event()
                    self._running = (request_id, cancel)
            if cancel is None:
                self._emit(Cancelled(request_id))
                continue
            try:
                self._handle(job, cancel)
            except CancelledError:
                self._emit(Cancelled(request_id))
            except EngineError as error:
                self._emit(Failed(request_id, str(error)))
            except Exception as error:
                if is_out_of_memory(error):  # the engine stays usable: the GPU cache is freed, a smaller job can run
                    log.warning("Out of memory in engine job %s: %s", type(job).__name__, error)
                    self._emit(Failed(request_id, str(out_of_memory_error(error, "running the job"))))
                    continue
                log.exception("Unexpected error in engine job %s", type(job).__name__)
                message = f"Unexpected error: {type(error).__name__}: {error} — details are in the log."
                self._emit(Failed(request_id, message))
            finally:
                with self._lock:
                    self._running = None
        self._synth = None  # free the models with the thread
        self._verifiers.clear()

    def _handle(self, job: object, cancel: threading.Event) -> None:
        if isinstance(job, LoadModels):
            self._load(job, job.request_id)
        elif isinstance(job, EncodeVoice):
            self._encode(job)
        elif isinstance(job, Generate):
            self._generate(job, cancel)
        elif isinstance(job, ExportAudio):
            from engine.audio.clip import write_audio

            write_audio(job.path, job.wave)
            self._emit(Exported(job.request_id, Path(job.path)))
        elif isinstance(job, MeasureSpeed):
            from engine.speech.speed import measure_speed

            self._emit(SpeedMeasured(job.request_id, measure_speed(self._models(), cancel=cancel)))
        elif isinstance(job, Transcribe):
            asr = self._verifiers.asr(job.model, self._device())
            self._emit(Transcribed(job.request_id, asr.transcribe(job.samples, job.language)))
        elif isinstance(job, PROJECT_JOBS):
            run_project_job(job, self._models_for, self._emit, cancel,
                            lambda project: self._verifiers.renderer(project, self._device()))
        else:
            raise TypeError(f"unknown engine job {job!r}")

    def _models(self) -> "Synthesizer":
        if self._synth is None:
            raise EngineError("Models are not loaded yet: choose a model in Models… and wait until it has loaded.")
        return self._synth

    def _device(self) -> str:
        """The device the speech models were loaded for; verifiers go there too."""
        return self._choice.device if self._choice else "auto"

    def _models_for(self, settings, request_id: str) -> "Synthesizer":
        """The models a project (engine.book.project.NarrationSettings) is narrated with, loaded first
        (ModelsLoaded, Progress with this request id) when none or others are loaded."""
        wanted = settings.model_choice(self._choice.device if self._choice else "auto")
        if self._synth is None or self._choice != wanted:
            self._load(LoadModels(wanted, request_id), request_id)
        return self._models()

    def _load(self, job: LoadModels, request_id: str | None = None) -> None:
        import torch

        from engine.speech.synth import Synthesizer

        self._emit(Progress(request_id, "load", 0, 1))
        if self._synth is not None:  # free the old models (and verifiers) before loading new ones
            self._synth, self._choice = None, None
            self._verifiers.clear()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        synth = Synthesizer.load(job.choice, on_progress=lambda stage, fraction: self._emit(
            Progress(request_id, "convert", round(fraction * 1000), 1000)))  # llama.cpp: GGUF made once
        self._synth, self._choice = synth, job.choice
        device = synth.lm.device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        self._emit(Progress(request_id, "load", 1, 1))
        fast_path = ("captured" if synth.lm.fast_path else "off") if device.type == "cuda" else "eager"
        if synth.lm.backend == "llamacpp":
            fast_path = "llama.cpp"
        self._emit(ModelsLoaded(name, str(job.choice.lm), synth.lm.quantization, tuple(synth.notices), request_id,
                                fast_path))

    def _encode(self, job: EncodeVoice) -> None:
        from engine.audio.clip import ReferenceClip
        synth = self._models()
        if not job.transcript.strip():
            raise InputTextError("The reference transcript is empty: type exactly what the reference clip says.")
        samples = np.array(job.samples, dtype=np.float32).reshape(-1)
        seconds = len(samples) / SAMPLE_RATE
        if not np.isfinite(samples).all():
            raise ReferenceAudioError("The reference clip holds invalid samples; record or import it again.")
        if seconds < MIN_REFERENCE_S:
            raise ReferenceAudioError(
                f"The reference clip is only {seconds:.1f} s; record at least {MIN_REFERENCE_S:g} s, ideally 8-15 s."
            )
        self._emit(Progress(job.request_id, "encode", 0, 1))
        clip = ReferenceClip(samples=samples, source=Path("recording"), original_duration_s=seconds)
        voice = synth.encode_reference(clip, job.transcript)
        self._emit(VoiceEncoded(job.request_id, voice))

    def _generate(self, job: Generate, cancel: threading.Event) -> None:
        """Speak any text through the render path: live AudioChunks as each segment is generated, then
        the whole take (the full decode, the same bytes as `synth` with the same seed)."""
        from engine.speech.render import RenderProgress, render

        rid = job.request_id

        def progress(p: RenderProgress) -> None:
            self._emit(Progress(rid, "generate", p.tokens, p.budget, p.segment, p.segments))

        def audio(chunk: np.ndarray) -> None:
            if len(chunk):
                self._emit(AudioChunk(rid, chunk))

        self._emit(Progress(rid, "generate", 0, 0))  # started; the budget is known after the prompt
        result = render(self._models(), job.text, job.voice, job.params, options=job.options, cancel=cancel,
                        on_progress=progress, on_audio=audio)
        self._emit(Generated(rid, result.audio, result.codes, result.warnings, result.seed))


def _process_rss_bytes() -> int | None:
    """Resident memory of this process in bytes (peak RSS where only that is known), or None."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS: bytes, others: KiB


def memory_summary() -> str:
    """e.g. "RAM 1.2 GB · GPU 3.4 GB"; the GPU part only once CUDA is in use. Never imports torch."""
    parts = []
    rss = _process_rss_bytes()
    if rss is not None:
        parts.append(f"RAM {rss / 1e9:.1f} GB")
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        parts.append(f"GPU {torch.cuda.memory_allocated() / 1e9:.1f} GB")
    return " · ".join(parts) or "memory unknown"
