"""A speed test users can run on their own machine with the loaded models (`main.py bench`, Help ▸ Speed test…).

It speaks a fixed text through the render path with live audio, as the app does, and measures what a
user feels: tokens per second, how many times faster than real time the audio comes, and how long
until the first audio chunk. Nothing here is asserted; it reports.
"""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass

import numpy as np

from engine.audio.clip import FRAME_RATE, SAMPLE_RATE
from engine.config import SamplingParams
from engine.speech.render import render
from engine.speech.synth import Synthesizer, Voice

SPEED_TEXT = (
    "The old lighthouse keeper climbed the spiral stairs every evening, counting each step as his father "
    "had taught him, and at the top he lit the lamp that guided the fishing boats safely home."
)


@dataclass(frozen=True)
class SpeedResult:
    """One speed test; times in seconds."""

    device: str  # e.g. "cpu" or "NVIDIA GeForce RTX 4090"
    precision: str  # LM weights: "4bit", "bf16", "fp32", ...
    fast_path: str  # "captured" (CUDA graph), "eager", or "off: <reason>"
    tokens: int  # speech tokens generated
    audio_s: float  # seconds of audio made
    wall_s: float  # seconds from start to the last sample (LM + codec + joins)
    first_audio_s: float | None  # seconds until the first live audio chunk
    tokens_per_s: float
    realtime_x: float  # audio seconds per wall second: > 1 is faster than real time

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        """A small text table for the CLI and the dialog."""
        first = "-" if self.first_audio_s is None else f"{self.first_audio_s * 1000:.0f} ms"
        rows = [("device", self.device), ("precision", self.precision), ("decode step", self.fast_path),
                ("speech tokens", str(self.tokens)), ("tokens per second", f"{self.tokens_per_s:.1f}"),
                ("x real time", f"{self.realtime_x:.2f}"), ("time to first audio", first),
                ("audio / wall", f"{self.audio_s:.1f} s / {self.wall_s:.1f} s")]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def measure_speed(synth: Synthesizer, voice: Voice | None = None, *, text: str = SPEED_TEXT,
                  cancel: threading.Event | None = None, seed: int = 0) -> SpeedResult:
    """Speak `text` once with live audio (discarded) and time it; a short warm-up runs first."""
    render(synth, "Hello.", voice, SamplingParams(seed=seed), cancel=cancel)  # warm-up: first-call costs
    first: list[float] = []
    start = time.perf_counter()

    def on_audio(chunk: np.ndarray) -> None:
        if not first and len(chunk):
            first.append(time.perf_counter() - start)

    result = render(synth, text, voice, SamplingParams(seed=seed), cancel=cancel, on_audio=on_audio)
    wall = time.perf_counter() - start
    tokens = len(result.codes)
    lm = synth.lm
    if lm.device.type == "cuda":
        import torch

        device = torch.cuda.get_device_name(lm.device)
        step = "captured" if lm.fast_path else "off (eager step)"
    else:
        device, step = lm.device.type, "llama.cpp" if lm.backend == "llamacpp" else "eager"
    return SpeedResult(device, lm.quantization, step, tokens, len(result.audio) / SAMPLE_RATE, wall,
                       first[0] if first else None, tokens / wall, (tokens / FRAME_RATE) / wall)
