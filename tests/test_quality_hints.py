"""quality_hints: exact hints for real (espeak-ng) speech and controlled damage to it."""
from __future__ import annotations

import numpy as np
import pytest

from engine.audio.clip import SAMPLE_RATE, quality_hints


def _noise(n: int, level_db: float) -> np.ndarray:
    return (10 ** (level_db / 20) * np.random.default_rng(0).standard_normal(n)).astype(np.float32)


def test_clean_speech_has_no_hints(speech_clip_16k):
    speech, _ = speech_clip_16k  # ~5.4 s, peak -2 dBFS, digital silence between words
    assert quality_hints(speech) == ()
    assert quality_hints(np.concatenate([speech, speech])) == ()  # ~10.7 s
    assert quality_hints(speech + _noise(len(speech), -50)) == ()  # hiss 34 dB under the speech


def test_length_hints(speech_clip_16k):
    speech, _ = speech_clip_16k
    assert quality_hints(speech[: 2 * SAMPLE_RATE]) == ("Short clip (2.0 s): 8-15 s works best.",)
    assert quality_hints(np.concatenate([speech] * 3)) == (
        "Long clip (16.1 s): trim it to 15 s or less; 8-15 s works best.",
    )
    assert quality_hints(np.zeros(0, np.float32)) == ("Short clip (0.0 s): 8-15 s works best.",)


def test_clipping_quiet_and_noisy(speech_clip_16k):
    speech, _ = speech_clip_16k
    assert quality_hints(np.clip(4 * speech, -1, 1)) == (
        "Clipping: 3.4 % of samples hit full scale; lower the input gain and record again.",
    )
    assert quality_hints(0.02 * speech) == (
        "Too quiet (peak -36 dBFS): move closer to the microphone or raise the input gain.",
    )
    assert quality_hints(0.1 * speech) == ()  # -22 dBFS peak is quiet but usable
    assert quality_hints(speech + _noise(len(speech), -35)) == (
        "Noisy: the background is only 19 dB below the speech; record somewhere quieter.",
    )
    assert quality_hints(speech + _noise(len(speech), -40)) == (
        "Noisy: the background is only 24 dB below the speech; record somewhere quieter.",
    )
    assert quality_hints(np.zeros(5 * SAMPLE_RATE, np.float32)) == (
        "Too quiet (peak -240 dBFS): move closer to the microphone or raise the input gain.",
    )


def test_hints_combine_and_follow_the_sample_rate(speech_clip_16k):
    speech, _ = speech_clip_16k
    assert quality_hints(np.clip(4 * speech[:SAMPLE_RATE], -1, 1)) == (
        "Short clip (1.0 s): 8-15 s works best.",
        "Clipping: 4.6 % of samples hit full scale; lower the input gain and record again.",
    )
    # the same samples read as 8 kHz last twice as long
    assert quality_hints(speech[: 2 * SAMPLE_RATE], sample_rate=8000) == ()


@pytest.mark.parametrize("seconds", [3.0, 15.0])
def test_length_bounds_are_inclusive(seconds, speech_clip_16k):
    speech, _ = speech_clip_16k
    clip = np.resize(speech, int(seconds * SAMPLE_RATE))
    assert quality_hints(clip) == ()
