"""The one render path on the tiny models: any length, the fast decoder equal to the plain loop under
greedy decoding, joins, seeds, cancel, budgets, and which entry points go through it."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from engine.audio.clip import HOP_LENGTH, SAMPLE_RATE, load_reference
from engine.config import CONTEXT_WINDOW, ModelChoice, SamplingParams
from engine.errors import CancelledError, InputTextError, TextTooLongError
from engine.lm.prompt import build_prompt
from engine.lm.reference import generate_codes
from engine.speech.render import (
    RenderProgress, plan, render, segment_seed, speak_segment, speech_budget, voice_budget,
)
from engine.speech.synth import Synthesizer, Voice
from engine.text.plan import TextOptions

REF_TEXT = "The quick brown fox jumps over the lazy dog, near the quiet river bank."
GREEDY = SamplingParams(temperature=0)


@pytest.fixture(scope="module")
def synthesizer(tiny_models) -> Synthesizer:
    return Synthesizer.load(ModelChoice(lm=str(tiny_models["lm"]), codec=str(tiny_models["codec"]), device="cpu",
                                        quantization="fp32"))


@pytest.fixture(scope="module")
def voice(synthesizer, speech_clip_16k) -> Voice:
    _, path = speech_clip_16k
    return synthesizer.encode_reference(load_reference(path), REF_TEXT)


@pytest.fixture(scope="module")
def quick_voice(voice) -> Voice:
    """The same voice with a long transcript for few codes: a low speaking rate (0.05 tokens per
    character) keeps the runaway cap of each segment small, since random weights rarely say the end
    token; segments are still planned to the window like any other voice's."""
    return Voice(codes=voice.codes[:20], transcript=" ".join([REF_TEXT] * 6)[:400])


def plain_codes(synthesizer, text, voice, budget) -> tuple[list[int], str]:
    prompt = build_prompt(synthesizer.lm.tokenizer, synthesizer.lm.tokens, text, reference_codes=voice.codes,
                          reference_text=voice.transcript)
    gen, codes = generate_codes(synthesizer.lm, prompt, GREEDY, max_new_tokens=budget), []
    while True:
        try:
            codes.append(next(gen))
        except StopIteration as stop:
            return codes, stop.value


def test_reference_gives_50_codes_per_second_and_varied_codes(voice, speech_clip_16k):
    samples, _ = speech_clip_16k
    clip_len = len(load_reference(speech_clip_16k[1]).samples)
    assert len(voice.codes) == clip_len // 320 + 1
    assert len(set(voice.codes)) > 10
    assert clip_len <= len(samples)


def test_greedy_takes_equal_the_plain_loop_alone_and_in_every_row_of_a_batch(synthesizer, voice):
    expected = plain_codes(synthesizer, "Hello there.", voice, 40)
    one = speak_segment(synthesizer, "Hello there.", voice, GREEDY, max_new_tokens=40)
    three = speak_segment(synthesizer, "Hello there.", voice, GREEDY, rows=3, max_new_tokens=40)
    for take in one.takes + three.takes:
        assert (list(take.codes), take.finish_reason) == expected
        assert take.audio.dtype == np.float32 and len(take.audio) == len(take.codes) * HOP_LENGTH
        assert np.array_equal(take.audio, synthesizer.decode(list(take.codes), voice))  # the full decode


def test_a_long_text_is_spoken_in_segments_joined_with_its_pauses(synthesizer, quick_voice):
    voice = quick_voice
    """Three paragraphs (0.6 s paragraph pauses) and an explicit pause; the tiny model's takes are
    noise without silent edges, so the joiner trims nothing and the length is exactly known."""
    long = " ".join(f"This is sentence number {n}, and it is a rather long one." for n in range(1, 50))
    text = f"A first short paragraph.\n\nA second one. [pause 1.5s] A third one.\n\n{long}"
    segments = plan(synthesizer, text, voice)
    assert len(segments) > 4
    seen: list[RenderProgress] = []
    result = render(synthesizer, text, voice, SamplingParams(seed=5), on_progress=seen.append)
    assert [s.text for s in result.segments] == [s.text for s in segments]
    assert [s.seed for s in result.segments] == [segment_seed(5, i) for i in range(len(segments))]
    assert {p.segments for p in seen} == {len(segments)} and {p.segment for p in seen} == set(range(len(segments)))
    pauses = [s.pause_after for s in result.segments]
    assert pauses.count(0.6) == 2 and pauses.count(1.5) == 1 and pauses[-1] == 0.0
    for s in result.segments:  # precondition of the exact length: no silent edge in any take (20 ms frames)
        take = synthesizer.decode(list(s.codes), voice)
        edge = int(0.02 * SAMPLE_RATE)
        peak = np.abs(take).max()
        assert min(np.abs(take[:edge]).max(), np.abs(take[-edge:]).max()) > peak * 10 ** (-45 / 20)
    crossfade = int(0.010 * SAMPLE_RATE)  # 10 ms between segments without a pause
    expected = (sum(s.samples for s in result.segments) + sum(round(p * SAMPLE_RATE) for p in pauses)
                - crossfade * sum(1 for p in pauses[:-1] if p == 0))
    assert len(result.audio) == expected
    again = render(synthesizer, text, voice, SamplingParams(seed=5), sink=(pieces := []).append)
    assert again.audio is None and np.array_equal(np.concatenate(pieces), result.audio)  # same bytes, streamed


def test_live_preview_does_not_change_the_result(synthesizer, quick_voice):
    voice = quick_voice
    chunks: list[np.ndarray] = []
    text = "Hello there, this is the first paragraph.\n\nAnd this is the second one."
    heard = render(synthesizer, text, voice, SamplingParams(seed=3), on_audio=chunks.append)
    silent = render(synthesizer, text, voice, SamplingParams(seed=3))
    assert np.array_equal(heard.audio, silent.audio) and heard.codes == silent.codes
    assert len(chunks) >= 3
    total = sum(len(s.codes) for s in heard.segments) * HOP_LENGTH + round(0.6 * SAMPLE_RATE)
    assert sum(len(c) for c in chunks) == total  # every code streamed once, plus the paragraph pause


def test_seeds_reproduce_and_a_drawn_seed_is_reported(synthesizer, quick_voice):
    voice = quick_voice
    first = render(synthesizer, "Hello there.", voice, SamplingParams())
    again = render(synthesizer, "Hello there.", voice, SamplingParams(seed=first.seed))
    assert 0 <= first.seed < 2**63 and again.codes == first.codes


def test_cancel_stops_within_a_token(synthesizer, quick_voice):
    voice = quick_voice
    cancel = threading.Event()
    seen = []

    def progress(p: RenderProgress) -> None:
        seen.append(p.tokens)
        if p.tokens == 10:
            cancel.set()

    with pytest.raises(CancelledError):
        render(synthesizer, "Hello there.", voice, SamplingParams(seed=1), cancel=cancel, on_progress=progress,
               progress_every=1)
    assert seen[-1] == 10


def test_budget_uses_the_reference_speaking_rate_and_its_figures_are_true():
    voice = Voice(codes=tuple(range(500)), transcript="x" * 100)  # 5 speech tokens per character
    assert speech_budget(100, "y" * 300, voice) == CONTEXT_WINDOW - 100
    with pytest.raises(TextTooLongError, match=r"needs about 2000 speech tokens, but only 1948 are left"):
        speech_budget(100, "y" * 400, voice)
    with pytest.raises(TextTooLongError, match="only 0 are left"):
        speech_budget(CONTEXT_WINDOW + 5, "y", None)


def test_every_planned_segment_fits_the_window(synthesizer, quick_voice):
    voice = quick_voice
    max_tokens, rate = voice_budget(synthesizer, voice)
    word = "supercalifragilistic"  # no punctuation at all: split between words
    text = " ".join([word] * 600)
    for segment in plan(synthesizer, text, voice):
        prompt = build_prompt(synthesizer.lm.tokenizer, synthesizer.lm.tokens, segment.text,
                              reference_codes=voice.codes, reference_text=voice.transcript)
        speech_budget(len(prompt), segment.text, voice)  # does not raise


def test_pronunciations_and_markup_apply_as_in_narration(synthesizer, voice):
    from engine.text.pronunciation import PronunciationRule

    options = TextOptions(pronunciations=(PronunciationRule("Llasa", "Lah-sah"),))
    segments = plan(synthesizer, "Llasa costs $5. [pause 2s] Bye.", voice, options)
    assert segments[0].text.startswith("Lah-sah costs five dollars") and segments[0].pause_after == 2.0


def test_empty_transcript_and_text_are_refused(synthesizer):
    with pytest.raises(InputTextError, match="transcript is empty"):
        Voice(codes=(1, 2), transcript="  ")
    with pytest.raises(InputTextError, match="no text"):
        render(synthesizer, "   ")
    with pytest.raises(InputTextError, match="no text"):
        render(synthesizer, "[pause 1s]")
