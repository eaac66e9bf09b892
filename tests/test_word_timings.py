"""Word-level timings: Whisper's word timestamps on the tiny random Whisper (real loading, generation
and DTW; its words are gibberish by design, so what is checked is the plumbing: every written word is
there in order, with times that never go back and stay inside their clip or cue), the sidecars that
carry them (WebVTT timestamp tags, JSON words), and the CLI options. The alignment itself is tested
on constructed inputs in tests/test_word_alignment.py."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine.models.tiny_verifiers import write_tiny_whisper
from engine.verify.word_alignment import word_spans

RATE = 16000


@pytest.fixture(scope="module")
def whisper(tmp_path_factory) -> Path:
    return write_tiny_whisper(tmp_path_factory.mktemp("whisper") / "whisper")


@pytest.fixture(scope="module")
def asr(whisper):
    from engine.verify.scoring import WhisperASR

    return WhisperASR(whisper, device="cpu")


def noise(seconds: float, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)


def assert_in_order_inside(words, low, high) -> None:
    times = [t for w in words for t in (w.start, w.end)]
    assert times == sorted(times) and low <= times[0] and times[-1] <= high, times


def test_whisper_times_every_written_word_in_order_inside_its_clip(asr):
    from engine.verify.word_timestamps import word_timings

    texts = ["Hello there, world!", "這是一個測試。我們走吧", "“Quoted” words — and 3.5 more..."]
    waves = [noise(1.0, 0), noise(2.5, 1), noise(0.05, 2)]  # the last shorter than Whisper's 0.1 s minimum
    timed = word_timings(asr, waves, texts, language="en")
    for text, wave, words in zip(texts, waves, timed):
        assert [(w.text, w.offset) for w in words] == [(text[a:b], a) for a, b in word_spans(text)]
        assert_in_order_inside(words, 0.0, len(wave) / RATE)
    assert [w.text for w in timed[1]] == ["這", "是", "一", "個", "測", "試。", "我", "們", "走", "吧"]
    with pytest.raises(ValueError, match="one text per clip"):
        word_timings(asr, waves, texts[:2])


def test_a_clip_over_30_s_is_heard_in_pieces_and_their_times_shifted(asr):
    from engine.verify.scoring import split_for_whisper
    from engine.verify.word_timestamps import heard_words

    long = noise(34.0, 3)
    pieces = split_for_whisper(long)
    assert len(pieces) == 2
    batch, asr.batch_size = asr.batch_size, 1  # each piece alone, as below: the same rows, the same tokens
    try:
        (whole,) = heard_words(asr, [long], "en")
        first, second = heard_words(asr, pieces, "en")
    finally:
        asr.batch_size = batch
    shift = len(pieces[0]) / RATE
    assert second, "the tiny Whisper says something in every piece"
    assert [(w.text, w.start, w.end) for w in whole] == \
        [(w.text, w.start, w.end) for w in first] + [(w.text, w.start + shift, w.end + shift) for w in second]
    assert all(w.start >= shift for w in whole[len(first):]) and whole[-1].end <= 34.0


def test_a_whisper_without_alignment_heads_uses_the_openai_default(asr, whisper, tmp_path):
    from engine.verify.scoring import WhisperASR
    from engine.verify.word_timestamps import default_alignment_heads, heard_words

    assert default_alignment_heads(12, 12)[0] == [6, 0] and len(default_alignment_heads(12, 12)) == 72
    assert asr.model.generation_config.alignment_heads == default_alignment_heads(1, 2) == [[0, 0], [0, 1]]
    bare = shutil.copytree(whisper, tmp_path / "bare")
    config = json.loads((bare / "generation_config.json").read_text())
    del config["alignment_heads"]  # as in many fine-tuned copies
    (bare / "generation_config.json").write_text(json.dumps(config))
    other = WhisperASR(bare, device="cpu")
    assert getattr(other.model.generation_config, "alignment_heads", None) is None
    clip = noise(1.5, 4)
    heard = heard_words(other, [clip], "en")
    assert other.model.generation_config.alignment_heads == [[0, 0], [0, 1]]
    assert heard == heard_words(asr, [clip], "en")
