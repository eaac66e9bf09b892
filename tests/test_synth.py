"""One utterance in process on the tiny models: lengths, window budget, cancellation."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from engine.audio.clip import load_reference
from engine.config import CONTEXT_WINDOW, ModelChoice, SamplingParams
from engine.errors import CancelledError, InputTextError, TextTooLongError
from engine.speech.synth import Synthesizer, Voice, speech_budget

REF_TEXT = "The quick brown fox jumps over the lazy dog, near the quiet river bank."


@pytest.fixture(scope="module")
def synthesizer(tiny_models) -> Synthesizer:
    return Synthesizer.load(ModelChoice(lm=str(tiny_models["lm"]), codec=str(tiny_models["codec"]), device="cpu"))


@pytest.fixture(scope="module")
def voice(synthesizer, speech_clip_16k) -> Voice:
    _, path = speech_clip_16k
    return synthesizer.encode_reference(load_reference(path), REF_TEXT)


def test_reference_gives_50_codes_per_second_and_varied_codes(voice, speech_clip_16k):
    samples, _ = speech_clip_16k
    clip_len = len(load_reference(speech_clip_16k[1]).samples)
    assert len(voice.codes) == clip_len // 320 + 1
    assert len(set(voice.codes)) > 10
    assert clip_len <= len(samples)


def test_audio_is_320_samples_per_generated_code(synthesizer, voice):
    result = synthesizer.synthesize("Hello there.", voice, SamplingParams(seed=1))
    assert result.audio.dtype == np.float32
    assert len(result.audio) == len(result.codes) * 320
    assert all(0 <= c < 65536 for c in result.codes)
    assert np.isfinite(result.audio).all() and np.abs(result.audio).max() > 0
    if result.finish_reason == "length":  # random weights rarely say the end token
        assert "window was full" in result.warnings[0]


def test_cancel_stops_within_a_token(synthesizer, voice):
    cancel = threading.Event()
    seen = []

    def progress(done: int, budget: int) -> None:
        seen.append(done)
        if done == 10:
            cancel.set()

    with pytest.raises(CancelledError):
        synthesizer.synthesize("Hello there.", voice, SamplingParams(seed=1), cancel=cancel, on_progress=progress)
    assert seen[-1] == 10


def test_budget_uses_the_reference_speaking_rate():
    voice = Voice(codes=tuple(range(500)), transcript="x" * 100)  # 5 speech tokens per character
    assert speech_budget(100, "y" * 300, voice) == CONTEXT_WINDOW - 100
    with pytest.raises(TextTooLongError, match=r"needs about 2000 speech tokens, but only 1948 are left.*about 384 characters"):
        speech_budget(100, "y" * 400, voice)
    with pytest.raises(TextTooLongError, match="only 0 are left"):
        speech_budget(CONTEXT_WINDOW + 5, "y", None)


def test_empty_transcript_and_text_are_refused(synthesizer):
    with pytest.raises(InputTextError, match="transcript is empty"):
        Voice(codes=(1, 2), transcript="  ")
    with pytest.raises(InputTextError, match="no text"):
        synthesizer.synthesize("   ")
