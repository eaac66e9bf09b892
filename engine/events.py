"""What the engine thread tells its callers: immutable event dataclasses (engine -> GUI, CLI, server).

Every event is defined here, once: the jobs of engine.session and of engine.book.jobs (narration projects)
emit them; the GUI's bridge re-emits them as Qt signals. The types they carry from higher layers
(voices, narration results) are imported for annotations only, so this module stays at the bottom layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from engine.book.narration import NarrationProgress, NarrationResult
    from engine.speech.synth import Voice
    from engine.voices import SavedVoice


@dataclass(frozen=True)
class ModelsLoaded:
    device: str  # "NVIDIA GeForce RTX 4090" or "CPU"
    lm: str  # the LM as chosen (repo id or folder)
    quantization: str  # the precision in use: "4bit" | "8bit" | "bf16" | "fp16" | "fp32"
    notices: tuple[str, ...]  # things the user should know, e.g. a CPU fallback
    request_id: str | None = None  # the LoadModels' id, or the project job's that loaded them first
    fast_path: str = "eager"  # decode step: "captured" (CUDA graph), "eager" (CPU/MPS), "off" (failed self-check), "llama.cpp"


@dataclass(frozen=True)
class SpeedMeasured:
    request_id: str
    result: object  # engine.speech.speed.SpeedResult


@dataclass(frozen=True)
class Progress:
    request_id: str | None
    stage: str  # "load" | "encode" | "generate"
    done: int
    total: int  # for "generate": the segment's token budget (the model usually stops earlier)
    segment: int = 0  # "generate": 0-based index of the segment being spoken
    segments: int = 1  # "generate": segments in the text


@dataclass(frozen=True)
class VoiceEncoded:
    request_id: str
    voice: "Voice"


@dataclass(frozen=True)
class AudioChunk:
    request_id: str
    samples: np.ndarray  # float32 [n] at 16 kHz, the next piece of the generated speech


@dataclass(frozen=True)
class Generated:
    request_id: str
    audio: np.ndarray  # float32 [n] at 16 kHz: the full decode of every segment, joined (the AudioChunks
    # were a streamed preview of it)
    codes: tuple[int, ...]
    warnings: tuple[str, ...]
    seed: int | None = None  # the seed the take was made with (drawn when the request had none)


@dataclass(frozen=True)
class Transcribed:
    request_id: str
    text: str  # what Whisper heard ("" for silence)


@dataclass(frozen=True)
class Exported:
    request_id: str
    path: Path


@dataclass(frozen=True)
class Failed:
    request_id: str | None
    message: str  # one line for a dialog; never a traceback


@dataclass(frozen=True)
class Cancelled:
    request_id: str | None


# ---- narration-project events (answers to engine.book.jobs' jobs) ----
@dataclass(frozen=True)
class ProjectCreated:
    request_id: str
    folder: Path  # the new project's folder


@dataclass(frozen=True)
class VoiceMeasured:
    request_id: str
    voice: "SavedVoice"
    max_tokens: int  # speech tokens per segment for this voice
    tokens_per_char: float  # its speaking rate


@dataclass(frozen=True)
class NarrationProgressed:
    """Sent when a run starts, when a segment finishes, and at most every
    engine.book.jobs.PROGRESS_INTERVAL_S between."""

    request_id: str
    progress: "NarrationProgress"


@dataclass(frozen=True)
class Narrated:
    request_id: str
    result: "NarrationResult"  # result.cancelled: stopped by EngineSession.cancel (finished takes kept)
