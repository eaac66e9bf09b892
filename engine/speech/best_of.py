"""Verifier-picked takes: the Llasa paper's inference-time scaling, on one GPU (or the CPU).

ORM (``render_best_of``): N candidates (1..8) are one segment spoken by the render path as one batch
(engine.speech.render.speak_segment: the same prompt in N rows; with sampling each row draws its
own noise), each decoded and scored by the verifiers (engine.verify.scoring), and all takes come back
ranked best first (engine.verify.scoring.rank: lowest WER/CER, ties by speaker similarity).

PRM (``render_beam_search``): chunk-level beam search. The live beams (at most ``beams``) are
extended by ``chunk_tokens`` codes in one batch (each beam fills an equal share of the
``beams * expansions`` rows), each candidate's audio so far is decoded and scored by speaker
similarity only, and the most similar candidates survive. WER is not used on partial audio: the
audio stops mid-word at an unknown point of the text, so there is no reference prefix to compare
with, and Whisper tends to complete or drop cut-off words. Candidates that end (stop token or the
token budget) become finished takes and take up a beam slot; the search stops when ``beams`` takes
are finished, and these are ranked with every verifier (WER re-ranking, as in the paper).
Each round re-reads the beams' codes so far (the shared prompt's KV is kept): ``cost.prefill_tokens``.
"""
from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.audio.clip import FRAME_RATE
from engine.config import SamplingParams
from engine.errors import CancelledError, InputTextError, SettingsError
from engine.lm.prompt import build_prompt
from engine.speech.render import SEED_RANGE, decode_rows, speak_segment, speech_budget
from engine.speech.synth import Synthesizer, Voice
from engine.verify.scoring import Scores, Verifiers, rank

MAX_CANDIDATES = 8  # rows of one batch: N for best-of, beams * expansions for the beam search


@dataclass(frozen=True)
class SearchCost:
    """What a search spent."""

    tokens: int  # speech tokens drawn, all rows together
    prefill_tokens: int  # tokens read by prefills beyond the shared prompt, all rows together
    verifier_calls: int  # clips scored
    generate_s: float  # seconds in the LM
    decode_s: float  # seconds in the codec
    verify_s: float  # seconds in the verifiers
    total_s: float  # wall seconds of the whole call

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Take:
    """One candidate utterance with its verifier scores."""

    index: int  # generation order (the batch row for best-of)
    rank: int  # 0 = the take the ranking picked
    audio: np.ndarray  # float32 [len(codes) * 320] at 16 kHz
    codes: tuple[int, ...]  # generated speech codes
    finish_reason: str  # "end" or "length"
    seed: int  # seed of the batch: (seed, batch_rows, index) with the same params gives the same take
    # (the beam search's round r draws with seed + r)
    batch_rows: int  # rows of the decoder that drew it
    scores: Scores
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Everything but the audio, JSON-ready."""
        return {"index": self.index, "rank": self.rank, "seed": self.seed, "batch_rows": self.batch_rows,
                "finish_reason": self.finish_reason, "seconds": len(self.codes) / FRAME_RATE,
                "scores": self.scores.to_dict(), "warnings": list(self.warnings), "codes": list(self.codes)}


@dataclass(frozen=True)
class SearchResult:
    """All takes, best first, and what finding them cost."""

    takes: tuple[Take, ...]  # ranked: takes[0] is the pick
    cost: SearchCost
    method: str  # "best-of-n" or "beam"

    @property
    def best(self) -> Take:
        return self.takes[0]

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "best_index": self.best.index, "cost": self.cost.to_dict(),
                "takes": [t.to_dict() for t in self.takes]}


class _Clock:
    """Wall time per phase; verifier use is read from the Verifiers' counters at start and end."""

    def __init__(self, verifiers: Verifiers) -> None:
        self.start, self.spent = time.perf_counter(), {"generate": 0.0, "decode": 0.0}
        self.verifier_base = (verifiers.calls, verifiers.seconds)

    def run(self, what: str, function: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return function()
        finally:
            self.spent[what] += time.perf_counter() - start


def _prepare(synth: Synthesizer, text: str, voice: Voice | None, params: SamplingParams,
             max_new_tokens: int | None) -> tuple[str, list[int], int, SamplingParams]:
    text = text.strip()
    if not text:
        raise InputTextError("There is no text to speak.")
    prompt = build_prompt(synth.lm.tokenizer, synth.lm.tokens, text, reference_codes=voice.codes if voice else None,
                          reference_text=voice.transcript if voice else "")
    budget = speech_budget(len(prompt), text, voice)
    budget = min(budget, max_new_tokens) if max_new_tokens else budget
    if params.seed is None:  # a concrete seed, so every take can be reproduced
        params = dataclasses.replace(params, seed=random.SystemRandom().randrange(SEED_RANGE))
    return text, prompt, budget, params


def _reference(synth: Synthesizer, voice: Voice | None, reference_audio: np.ndarray | None) -> np.ndarray | None:
    """The clip to compare voices with: the given one, else the voice's codes decoded."""
    if reference_audio is not None or voice is None:
        return reference_audio
    return synth.decode(list(voice.codes))


def _warnings(reason: str, codes: list[int]) -> tuple[str, ...]:
    if not codes:
        return ("The model produced no speech in this take.",)
    if reason == "length":
        return ("This take had not finished when its token budget was used up: it may stop mid-sentence.",)
    return ()


def _finish(synth, voice, text, params, verifiers, reference, clock, candidates, rows, method, prefill, tokens,
            audio=None):
    """Fully score finished (codes, reason) candidates (decoded here unless `audio` is given); rank them."""
    if audio is None:
        audio = [clock.run("decode", lambda c=c: synth.decode(c, voice)) for c, _ in candidates]
    scores = verifiers.score(audio, text, reference)
    order = sorted(rank(scores), key=lambda i: not candidates[i][0])  # a take without speech never wins
    takes = tuple(Take(i, order.index(i), audio[i], tuple(candidates[i][0]), candidates[i][1], params.seed, rows,
                       scores[i], _warnings(candidates[i][1], candidates[i][0])) for i in order)
    calls, seconds = clock.verifier_base
    cost = SearchCost(tokens, prefill, verifiers.calls - calls, clock.spent["generate"], clock.spent["decode"],
                      verifiers.seconds - seconds, time.perf_counter() - clock.start)
    return SearchResult(takes, cost, method)


def render_best_of(
    synthesizer: Synthesizer,
    text: str,
    voice: Voice | None,
    params: SamplingParams,
    n: int,
    verifiers: Verifiers,
    *,
    reference_audio: np.ndarray | None = None,
    max_new_tokens: int | None = None,
    cancel: threading.Event | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> SearchResult:
    """ORM: N takes in one batch, each scored; returns all of them ranked best first.

    ``reference_audio`` (16 kHz) is what speaker similarity compares with; by default the voice's
    codes decoded (None without a voice: no similarity). ``max_new_tokens`` caps the token budget.
    on_progress(decode_steps, token cap) is called after every batched step. A seed is drawn when
    params.seed is None and recorded in every take. Raises CancelledError, TextTooLongError.
    """
    if not 1 <= n <= MAX_CANDIDATES:
        raise SettingsError(f"Candidates must be 1 to {MAX_CANDIDATES}, got {n}.")
    clock = _Clock(verifiers)
    text, _, budget, params = _prepare(synthesizer, text, voice, params, max_new_tokens)
    reference = _reference(synthesizer, voice, reference_audio)
    done = 0

    def step(_: list[int | None]) -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, budget)

    spoken = speak_segment(synthesizer, text, voice, params, rows=n, max_new_tokens=budget, cancel=cancel, on_step=step)
    clock.spent["generate"] += spoken.generate_s
    clock.spent["decode"] += spoken.decode_s
    candidates = [(list(t.codes), t.finish_reason) for t in spoken.takes]
    return _finish(synthesizer, voice, text, params, verifiers, reference, clock, candidates, n, "best-of-n", 0,
                   sum(len(t.codes) for t in spoken.takes), audio=[t.audio for t in spoken.takes])


def render_beam_search(
    synthesizer: Synthesizer,
    text: str,
    voice: Voice | None,
    params: SamplingParams,
    verifiers: Verifiers,
    *,
    beams: int = 2,
    expansions: int = 2,
    chunk_tokens: int = 50,
    reference_audio: np.ndarray | None = None,
    max_new_tokens: int | None = None,
    cancel: threading.Event | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> SearchResult:
    """PRM: chunk-level beam search guided by speaker similarity; finished takes ranked by every verifier.

    ``beams`` B live beams, each extended ``expansions`` ways (B * expansions <= 8 rows), by
    ``chunk_tokens`` codes (50 = 1 s) per round. Needs a voice (or ``reference_audio``) and a speaker
    scorer among the verifiers. on_progress(codes of the longest beam, token budget) after every step.
    """
    rows = beams * expansions
    if beams < 1 or expansions < 1 or rows > MAX_CANDIDATES or chunk_tokens < 1:
        raise SettingsError(f"Beam search needs beams, expansions, chunk >= 1 and beams x expansions <= {MAX_CANDIDATES}.")
    if not any(s.partial_ok for s in verifiers.scorers) or (voice is None and reference_audio is None):
        raise SettingsError("Beam search needs a reference voice and a speaker model to compare partial takes with.")
    clock = _Clock(verifiers)
    text, prompt, budget, params = _prepare(synthesizer, text, voice, params, max_new_tokens)
    reference = _reference(synthesizer, voice, reference_audio)
    decoder = synthesizer.decoder(rows)
    clock.run("generate", lambda: decoder.prefill_prefix(prompt))
    to_ids = synthesizer.lm.tokens.codes_to_ids
    active: list[list[int]] = [[]]
    finished: list[tuple[list[int], str]] = []
    tokens = prefill = round_ = 0
    while active and len(finished) < beams:
        copies = rows // len(active)
        prompts = [prompt + to_ids(beam) for beam in active for _ in range(copies)]
        length = len(active[0])
        count = min(chunk_tokens, budget - length)
        done = [0]

        def step(_: list[int | None]) -> None:
            done[0] += 1
            if on_progress is not None:
                on_progress(length + done[0], budget)

        seeded = dataclasses.replace(params, seed=params.seed + round_)
        new, reasons = clock.run("generate", lambda: decode_rows(decoder, prompts, seeded, count, cancel, step))
        tokens += sum(len(c) for c in new)
        prefill += len(prompts) * max(length, 1)
        round_ += 1
        alive: list[list[int]] = []
        for k, (codes, reason) in enumerate(zip(new, reasons)):
            full = active[k // copies] + codes
            if reason == "end" or len(full) >= budget:
                finished.append((full, reason))
            elif full not in alive:  # identical candidates (greedy decoding) take one slot
                alive.append(full)
        slots = beams - len(finished)
        if alive and slots > 0:
            audio = [clock.run("decode", lambda c=c: synthesizer.decode(c, voice)) for c in alive]
            scores = verifiers.score(audio, text, reference, partial=True)
            order = sorted(range(len(alive)), key=lambda i: -(scores[i].similarity or 0.0))
            alive = [alive[i] for i in order]
        active = alive[: max(slots, 0)]
    return _finish(synthesizer, voice, text, params, verifiers, reference, clock, finished, rows, "beam",
                   prefill, tokens)
