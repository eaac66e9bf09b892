"""Many segments at once: `render_many` speaks segment jobs through continuous batching and yields finished takes.

Each job is one take of one segment (its text, voice, seed and token cap), prompted and budgeted
exactly as engine.speech.render.speak_segment does; the jobs share one sampling setting and run on
the rows of one decoder (engine.lm.batching.BatchScheduler), each take decoded in full by the codec
the moment its row ends. A take does not depend on its batch (same seed, same take).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from engine.config import SamplingParams
from engine.errors import EngineError, InputTextError
from engine.lm.batching import BatchScheduler, DecodeJob
from engine.lm.prompt import build_prompt
from engine.speech.render import Take, speech_budget
from engine.speech.synth import Synthesizer, Voice

MAX_BATCH = 8  # rows: beyond 8 a step's cost grows with the batch on the devices measured (bench/RESULTS.md)


@dataclass(frozen=True)
class SegmentJob:
    """One take of one segment."""

    key: Hashable  # the caller's name for it (a project's take key)
    text: str  # what to say (planned: fits the voice's budget)
    voice: Voice | None
    seed: int  # the take's seed (engine.book.project.take_seed)
    max_new_tokens: int  # runaway cap: at most this many speech tokens (the window may allow fewer)


def render_many(
    synth: Synthesizer,
    jobs: Iterable[SegmentJob],
    params: SamplingParams,
    *,
    batch: int = MAX_BATCH,
    cancel: threading.Event | None = None,
    on_tokens: Callable[[Hashable, int], None] | None = None,
) -> Iterator[tuple[Hashable, Take | EngineError]]:
    """Yield (key, take) for every job as it finishes, `batch` takes decoding at once (params.seed is
    ignored: each job has its own). A job that cannot be spoken (empty, or too long for the window)
    gives (key, the error) and the others go on. CancelledError when cancelled (no take follows it);
    on_tokens(key, codes so far) as rows advance.
    """
    voices: dict[Hashable, Voice | None] = {}
    refused: list[tuple[Hashable, EngineError]] = []
    lm = synth.lm

    def decode_jobs() -> Iterator[DecodeJob]:
        for job in jobs:
            try:
                text = job.text.strip()
                if not text:
                    raise InputTextError("There is no text to speak.")
                prompt = build_prompt(lm.tokenizer, lm.tokens, text, reference_codes=job.voice.codes if job.voice else None,
                                      reference_text=job.voice.transcript if job.voice else "")
                budget = max(min(job.max_new_tokens, speech_budget(len(prompt), text, job.voice)), 1)
            except EngineError as error:
                refused.append((job.key, error))
                continue
            voices[job.key] = job.voice
            yield DecodeJob(job.key, tuple(prompt), job.seed, budget)

    scheduler = BatchScheduler(synth.decoder(max(1, min(batch, MAX_BATCH))), params)
    for done in scheduler.run(decode_jobs(), cancel=cancel, on_tokens=on_tokens):
        while refused:
            yield refused.pop(0)
        codes = list(done.codes)
        audio = synth.decode(codes, voices.pop(done.key)) if codes else np.zeros(0, np.float32)
        yield done.key, Take(done.codes, audio, done.finish_reason)
    while refused:
        yield refused.pop(0)
