"""The one render path: text of any length -> segments -> speech codes (fast decoder) -> codec -> joins.

Every take is made here: the app's Generate, `synth` (with or without live playback, with
candidates), narration segments, quality mode, the beam search and the API server.

- ``speak_segment``: one segment, N takes as one batch of N rows of the decoder the loaded LM
  gives (engine.lm.decoder.FastDecoder, or another backend with the same protocol); each row is
  decoded in full by the codec.
- ``render``: plans any text with engine.text.plan (pause markup, pronunciations, normalization,
  split to the voice's budget), speaks each segment in turn and joins the takes
  (engine.speech.assemble). Live audio is a *preview*: each segment is streamed through a windowed
  decode (engine.speech.stream) and followed by its pause; the result (and a saved file) is the
  full decode of every take, joined, so the output bytes never depend on whether it was heard.
"""
from __future__ import annotations

import dataclasses
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from engine.audio.clip import FRAME_RATE, SAMPLE_RATE
from engine.config import CONTEXT_WINDOW, SEED_MAX, SamplingParams
from engine.errors import CancelledError, InputTextError, NoSpeechError, SettingsError, TextTooLongError
from engine.lm.prompt import build_prompt
from engine.speech.assemble import SegmentJoiner
from engine.speech.stream import StreamingDecoder
from engine.speech.synth import Synthesizer, Voice
from engine.text.pipeline import MIN_SPEECH_TOKENS, budget_for_voice, speaking_rate
from engine.text.plan import PlannedSegment, TextOptions, plan_text, segment_cap

MAX_ROWS = 8  # rows of one batch: candidates of one segment
SEED_RANGE = SEED_MAX + 1  # seeds are 0 .. SEED_MAX


@dataclass(frozen=True)
class Take:
    """One row of a segment's batch, decoded."""

    codes: tuple[int, ...]  # speech codes, 0..65535
    audio: np.ndarray  # float32 [len(codes) * 320] at 16 kHz: the full codec decode
    finish_reason: str  # "end" (the model finished) or "length" (cut at the token budget)


@dataclass(frozen=True)
class SpokenSegment:
    """What speaking one segment gave and cost."""

    takes: tuple[Take, ...]  # one per row, in row order
    budget: int  # speech tokens each row was allowed
    generate_s: float  # s in the LM
    decode_s: float  # s in the codec


@dataclass(frozen=True)
class RenderProgress:
    """Where a render stands; sent at each segment start, every `progress_every` steps, and at its end."""

    segment: int  # 0-based index of the segment being spoken
    segments: int  # segments in the text
    tokens: int  # speech tokens drawn so far for this segment (row 0)
    budget: int  # speech tokens this segment may use


@dataclass(frozen=True)
class SegmentResult:
    """One segment of a render (its audio is in the joined result, not kept here)."""

    text: str  # the normalized text spoken
    pause_after: float  # s of silence after it
    seed: int  # the segment's seed: same text, voice, settings and seed give the same take
    codes: tuple[int, ...]  # the chosen take's speech codes
    finish_reason: str  # "end" or "length"
    samples: int  # samples of the chosen take (before joining)
    chosen: int = 0  # row of the chosen take (candidates > 1)


@dataclass(frozen=True)
class Rendering:
    """A finished render."""

    audio: np.ndarray | None  # float32 [n] at 16 kHz, the joined takes; None when a sink received it
    segments: tuple[SegmentResult, ...]
    seed: int  # the seed the segments' seeds derive from
    spans: tuple[tuple[int, int], ...]  # [start, end) in samples where each segment's take landed in the audio
    samples: int  # length of the joined audio in samples
    warnings: tuple[str, ...] = field(default=())

    @property
    def codes(self) -> tuple[int, ...]:
        return tuple(c for s in self.segments for c in s.codes)


def segment_seed(seed: int, index: int) -> int:
    """The seed of segment `index` of a render with `seed` (segment 0 uses `seed` itself)."""
    return (seed + index) % SEED_RANGE


def voice_budget(synth: Synthesizer, voice: Voice | None) -> tuple[int, float]:
    """(max speech tokens per segment, speech tokens per character) for a voice on this model.

    The prompt overhead (chat template, instruction, transcript) is measured with build_prompt on
    the model's own tokenizer.
    """
    codes, transcript = (list(voice.codes), voice.transcript) if voice else ([], "")
    prompt = build_prompt(synth.lm.tokenizer, synth.lm.tokens, "x", reference_codes=codes or None,
                          reference_text=transcript)
    return budget_for_voice(len(codes), transcript, len(prompt) - len(codes) - 1)


def speech_budget(prompt_length: int, text: str, voice: Voice | None) -> int:
    """Speech tokens left in the window after the prompt; TextTooLongError when the text cannot fit.

    The need is estimated from the reference's own speaking rate (codes per transcript character).
    """
    rate = speaking_rate(len(voice.codes), voice.transcript) if voice else speaking_rate(0, "")
    needed = max(math.ceil(len(text.strip()) * rate), MIN_SPEECH_TOKENS)
    available = CONTEXT_WINDOW - prompt_length
    if needed > available:
        reference = f" (with a {len(voice.codes) / FRAME_RATE:.1f} s reference)" if voice else ""
        raise TextTooLongError(
            f"This passage does not fit in Llasa's {CONTEXT_WINDOW}-token window even on its own: the prompt"
            f"{reference} takes {prompt_length} tokens and the text needs about {needed} speech tokens, but only "
            f"{max(available, 0)} are left. Split it with punctuation" + (", or use a shorter reference clip." if voice else ".")
        )
    return available


def speak_segment(
    synth: Synthesizer,
    text: str,
    voice: Voice | None,
    params: SamplingParams,
    *,
    rows: int = 1,
    max_new_tokens: int | None = None,
    cancel: threading.Event | None = None,
    on_step: Callable[[list[int | None]], None] | None = None,
) -> SpokenSegment:
    """Speak one segment: `rows` takes of `text` as one batch, each decoded in full.

    on_step(codes) gets, per decode step, each row's new code (None once the row ended). A row
    ends at the stop token, at the window's end, or at `max_new_tokens` (a runaway guard).
    Raises TextTooLongError when the text cannot fit even alone, CancelledError when cancelled.
    A row that produced no speech is a take with no codes and no audio.
    """
    text = text.strip()
    if not text:
        raise InputTextError("There is no text to speak.")
    if not 1 <= rows <= MAX_ROWS:
        raise SettingsError(f"Takes per segment must be 1 to {MAX_ROWS}, got {rows}.")
    prompt = build_prompt(synth.lm.tokenizer, synth.lm.tokens, text,
                          reference_codes=voice.codes if voice else None, reference_text=voice.transcript if voice else "")
    window = speech_budget(len(prompt), text, voice)
    budget = window if max_new_tokens is None else max(min(max_new_tokens, window), 1)
    start = time.perf_counter()
    codes, reasons = decode_rows(synth.decoder(rows), [prompt] * rows, params, budget, cancel, on_step)
    generated = time.perf_counter()
    takes = tuple(Take(tuple(c), synth.decode(c, voice) if c else np.zeros(0, np.float32), r)
                  for c, r in zip(codes, reasons))
    return SpokenSegment(takes, budget, generated - start, time.perf_counter() - generated)


def decode_rows(decoder, prompts: list[list[int]], params: SamplingParams, max_new_tokens: int,
                cancel: threading.Event | None,
                on_step: Callable[[list[int | None]], None] | None = None) -> tuple[list[list[int]], list[str]]:
    """Codes and finish reasons per prompt from one batched decoder.generate; CancelledError on cancel."""
    steps, codes = decoder.generate(prompts, params, max_new_tokens=max_new_tokens, cancel=cancel), [[] for _ in prompts]
    while True:
        try:
            step = next(steps)
        except StopIteration as stop:
            reasons = stop.value
            break
        for row, code in zip(codes, step):
            if code is not None:
                row.append(code)
        if on_step is not None:
            on_step(step)
    if "cancelled" in reasons:
        raise CancelledError("Generation was cancelled.")
    return codes, reasons


def plan(synth: Synthesizer, text: str, voice: Voice | None, options: TextOptions = TextOptions()) -> tuple[PlannedSegment, ...]:
    """The segments `render` would speak for `text` (InputTextError when nothing is speakable)."""
    max_tokens, rate = voice_budget(synth, voice)
    segments = plan_text(text, options, max_tokens=max_tokens, tokens_per_char=rate)
    if not segments:
        raise InputTextError("There is no text to speak.")
    return segments


Picker = Callable[[str, SpokenSegment], int]  # (segment text, its takes) -> the row to keep


def render(
    synth: Synthesizer,
    text: str,
    voice: Voice | None = None,
    params: SamplingParams = SamplingParams(),
    *,
    options: TextOptions = TextOptions(),
    candidates: int = 1,
    pick: Picker | None = None,
    cancel: threading.Event | None = None,
    on_progress: Callable[[RenderProgress], None] | None = None,
    on_audio: Callable[[np.ndarray], None] | None = None,
    sink: Callable[[np.ndarray], None] | None = None,
    progress_every: int = 25,
) -> Rendering:
    """Speak `text` of any length in `voice` (a random voice when None).

    Each segment gets the seed segment_seed(params.seed, i) (a seed is drawn when params.seed is
    None, and reported). With candidates > 1 each segment is spoken as a batch of that many rows
    and `pick` chooses the row to keep (default row 0). on_audio(float32 [n]) receives the live
    preview: the streamed decode of each segment as it is generated, then its pause in silence.
    The result is the full decode of every chosen take, joined; with `sink` it is handed over piece
    by piece as it becomes final (memory stays flat for a book-length text) and Rendering.audio is None.
    Raises TextTooLongError for a passage that cannot fit even alone, CancelledError when cancelled
    (no chunk follows the cancel).
    """
    if on_audio is not None and candidates > 1:
        raise SettingsError("Live playback needs one take per segment: the best take is known only at the end.")
    segments = plan(synth, text, voice, options)
    seed = params.seed if params.seed is not None else random.SystemRandom().randrange(SEED_RANGE)
    _, rate = voice_budget(synth, voice)
    joiner, kept = SegmentJoiner(), []
    results, warnings = [], []
    for index, segment in enumerate(segments):
        if cancel is not None and cancel.is_set():
            raise CancelledError("Generation was cancelled.")
        seg_params = dataclasses.replace(params, seed=segment_seed(seed, index))
        cap = segment_cap(segment.text, rate)
        stream = StreamingDecoder(synth.codec, voice.codes if voice else ()) if on_audio else None
        drawn = [0]

        def on_step(step: list[int | None], index: int = index, cap: int = cap, stream=stream) -> None:
            if step[0] is not None:
                drawn[0] += 1
                if stream is not None:
                    for chunk in stream.push([step[0]]):
                        if not (cancel is not None and cancel.is_set()):
                            on_audio(chunk)
            if on_progress is not None and drawn[0] % progress_every == 0 and step[0] is not None:
                on_progress(RenderProgress(index, len(segments), drawn[0], cap))

        if on_progress is not None:
            on_progress(RenderProgress(index, len(segments), 0, cap))
        spoken = speak_segment(synth, segment.text, voice, seg_params, rows=candidates, max_new_tokens=cap,
                               cancel=cancel, on_step=on_step)
        chosen = pick(segment.text, spoken) if pick is not None else 0
        take = spoken.takes[chosen]
        if stream is not None:
            on_audio(stream.flush())
            if index + 1 < len(segments) and segment.pause_after > 0:
                on_audio(np.zeros(int(round(segment.pause_after * SAMPLE_RATE)), np.float32))
        if on_progress is not None:
            on_progress(RenderProgress(index, len(segments), len(take.codes), cap))
        warnings += _warnings(index, len(segments), take, spoken.budget)
        pause = segment.pause_after if index + 1 < len(segments) else 0.0
        piece = joiner.add(take.audio, pause)
        (sink or kept.append)(piece)
        results.append(SegmentResult(segment.text, pause, seg_params.seed, take.codes, take.finish_reason,
                                     len(take.audio), chosen))
    if not any(r.codes for r in results):
        raise NoSpeechError("The model produced no speech for this text; try again with another seed.")
    last = joiner.finish()
    (sink or kept.append)(last)
    audio = None if sink is not None else np.concatenate(kept)
    return Rendering(audio, tuple(results), seed, tuple(joiner.spans), joiner.samples, tuple(warnings))


def _warnings(index: int, count: int, take: Take, budget: int) -> list[str]:
    where = f"Segment {index + 1} of {count}" if count > 1 else "The take"
    if not take.codes:
        return [f"{where}: the model produced no speech; try another seed."]
    if take.finish_reason == "length" and len(take.codes) >= budget:
        return [f"{where} had not finished when its token budget was used up: it may stop mid-sentence."]
    return []
