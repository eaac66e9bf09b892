"""Verifiers: error rates and ranking with exact expected values; the real scoring pipeline on real speech.

No real Whisper or WavLM weights can exist here, so the real loading and scoring code runs on tiny
random models of the same classes (engine.models.tiny_verifiers) for the plumbing, and that the ranking
picks the intended sentence is proven on the transcripts a working ASR returns for each clip.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from deps import missing

from engine.errors import ModelFormatError, ModelNotFoundError
from engine.models.tiny_verifiers import write_tiny_wavlm_sv, write_tiny_whisper
from engine.verify.scoring import (ErrorCounts, Scores, SpeakerVerifier, Verifiers, WhisperASR, char_errors, edit_counts,
                           is_cjk, normalize_for_scoring, rank, split_for_whisper, word_errors)

INTENDED = "The quick brown fox jumps over the lazy dog, near the quiet river bank."
OTHER = "Please call Stella and ask her to bring these things with her from the store."


@pytest.mark.parametrize("ref, hyp, expected", [
    ("kitten", "sitting", (2, 0, 1, 6)),
    ("abc", "abc", (0, 0, 0, 3)),
    ("abc", "", (0, 3, 0, 3)),
    ("", "ab", (0, 0, 2, 0)),
    ("abcd", "abd", (0, 1, 0, 4)),
    ("abd", "abcd", (0, 0, 1, 3)),
    ("abc", "xbz", (2, 0, 0, 3)),
])
def test_edit_counts_exact(ref, hyp, expected):
    assert edit_counts(ref, hyp) == ErrorCounts(*expected)


def test_word_error_rate_exact_values():
    assert word_errors("the cat sat on the mat", "the cat sat on mat") == ErrorCounts(0, 1, 0, 6)
    assert word_errors("the cat sat", "the big cat sat down") == ErrorCounts(0, 0, 2, 3)
    assert word_errors("the cat sat", "a cat sat") == ErrorCounts(1, 0, 0, 3)
    both = word_errors("one two three four", "one too three four five")  # 1 substitution + 1 insertion
    assert both == ErrorCounts(1, 0, 1, 4) and both.rate == 0.5
    assert word_errors("hello world", "").rate == 1.0
    assert word_errors("", "").rate == 0.0


def test_normalization_makes_equivalent_texts_equal():
    assert normalize_for_scoring("It\u2019s 10:30 \u2014 OK?") == "its ten thirty ok"
    for ref, hyp in [("He paid $42.", "he paid forty two dollars"), ("Don't STOP!", "dont stop"),
                     ("Dr. Smith, in 1999.", "doctor smith in nineteen ninety-nine"),
                     ("well-known   \u201cfacts\u201d", "well known facts")]:
        assert word_errors(ref, hyp).rate == 0.0, (ref, hyp)


def test_chinese_and_japanese_use_character_error_rate():
    assert is_cjk("你好，世界！") and is_cjk("こんにちは") and is_cjk("カタカナ") and not is_cjk("Hello, world")
    assert normalize_for_scoring("你好，世界！") == "你好 世界"
    assert char_errors("你好，世界！", "你好世纪") == ErrorCounts(1, 0, 0, 4)
    assert char_errors("你好，世界！", "你好 世界。").rate == 0.0  # spaces and punctuation do not count
    assert char_errors("今天天气很好", "今天天气好").rate == pytest.approx(1 / 6)


def test_ranking_exact_picks():
    def s(error, similarity, metric="wer"):
        return Scores(wer=error, metric=metric if error is not None else None, similarity=similarity)

    # 0.0 and 0.005 tie (tolerance 0.01): the more similar wins; then 0.1, then 0.3
    assert rank([s(0.1, 0.9), s(0.0, 0.5), s(0.005, 0.7), s(0.3, 0.99)]) == [2, 1, 0, 3]
    assert rank([s(0.0, 0.2), s(0.02, 0.9)]) == [0, 1]  # 0.02 apart: no tie, the error rate decides
    assert rank([s(0.0, 0.2), s(0.02, 0.9)], tolerance=0.05) == [1, 0]
    assert rank([s(None, 0.1), s(None, 0.8), s(None, 0.5)]) == [1, 2, 0]  # no ASR: similarity only
    assert rank([s(0.2, None), s(0.1, None), s(0.1, None)]) == [1, 2, 0]  # no speaker model: stable
    cer = Scores(wer=1.0, cer=0.0, metric="cer", similarity=0.1)
    assert rank([Scores(wer=0.5, cer=0.5, metric="cer", similarity=0.9), cer]) == [1, 0]


@pytest.fixture(scope="module")
def tiny_verifiers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("verifiers")
    return write_tiny_whisper(folder / "whisper"), write_tiny_wavlm_sv(folder / "wavlm")


def espeak(text: str, folder) -> np.ndarray:
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        missing("needs espeak-ng and sox (apt-get install espeak-ng sox)")
    raw, path = folder / "raw.wav", folder / "16k.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(["sox", "-D", str(raw), "-e", "floating-point", "-b", "32", "-r", "16000", str(path)], check=True)
    return sf.read(path, dtype="float32")[0]


def test_real_scoring_pipeline_on_real_speech_picks_the_intended_sentence(tiny_verifiers, speech_clip_16k, tmp_path):
    intended, _ = speech_clip_16k  # espeak-ng saying INTENDED
    other = espeak(OTHER, tmp_path)
    noise = np.random.default_rng(0).normal(0, 0.1, 3 * 16000).astype(np.float32)
    clips = [other, noise, intended]
    verifiers = Verifiers.load(*tiny_verifiers, device="cpu")
    scores = verifiers.score(clips, INTENDED, reference=intended)  # the real pipeline, tiny random weights
    assert verifiers.calls == 3 and verifiers.audio_seconds == pytest.approx(sum(map(len, clips)) / 16000)
    for s in scores:
        assert isinstance(s.transcript, str) and s.metric == "wer"
        assert s.wer == word_errors(INTENDED, s.transcript).rate and -1.0 <= s.similarity <= 1.0
    assert scores[2].similarity == pytest.approx(1.0, abs=1e-5)  # the reference clip itself
    assert sorted(rank(scores)) == [0, 1, 2]  # random weights: which clip wins here means nothing
    # What a working ASR hears in each clip; the ranking then picks the intended sentence on WER alone,
    # even when the speaker model prefers another clip.
    heard = [OTHER.lower(), "", INTENDED.replace(",", "")]
    exact = [Scores(transcript=t, wer=word_errors(INTENDED, t).rate, metric="wer", similarity=sim)
             for t, sim in zip(heard, [0.9, 0.95, 0.4])]
    assert [s.wer for s in exact] == [15 / 14, 1.0, 0.0]  # 14 substitutions + 1 insertion; all deleted; none
    assert rank(exact) == [2, 1, 0]


def test_batched_transcription_equals_single_and_long_audio_is_split(tiny_verifiers, speech_clip_16k):
    asr = WhisperASR(tiny_verifiers[0], device="cpu", batch_size=2)
    speech, _ = speech_clip_16k
    clips = [speech, speech[: 16000], np.zeros(0, np.float32)]
    assert asr.transcribe_batch(clips) == [asr.transcribe(c) for c in clips]
    long = np.tile(speech, 15)[: 70 * 16000]  # 70 s
    pieces = split_for_whisper(long)
    assert len(pieces) == 3 and all(len(p) <= 30 * 16000 for p in pieces)
    assert np.array_equal(np.concatenate(pieces), long)
    assert isinstance(asr.transcribe(long, language="en"), str)


def test_speaker_similarity_is_cosine_of_xvectors(tiny_verifiers, speech_clip_16k):
    speaker = SpeakerVerifier(tiny_verifiers[1], device="cpu")
    speech, _ = speech_clip_16k
    vectors = speaker.embed([speech, speech[:20000]])
    assert vectors.shape == (2, 16) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = speaker.similarity([speech, speech[:20000]], speech)
    assert sims[0] == pytest.approx(1.0, abs=1e-5) and sims[1] == pytest.approx(float(vectors[1] @ vectors[0]), abs=1e-5)


def test_verifier_folders_are_checked(tiny_verifiers, tmp_path):
    with pytest.raises(ModelFormatError, match="expected 'whisper'"):
        WhisperASR(tiny_verifiers[1], device="cpu")
    whisper_pickle = tmp_path / "whisper-pickle"
    whisper_pickle.mkdir()
    (whisper_pickle / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    (whisper_pickle / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ModelFormatError, match="pickle"):  # only the speaker model may come as a pickle
        WhisperASR(whisper_pickle, device="cpu")
    with pytest.raises(ModelNotFoundError, match="not downloaded"):
        Verifiers.load("someone/not-a-cached-whisper", None, device="cpu")


class _RunsCode:
    """A pickle payload that would create a file when unpickled by a full unpickler."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_speaker_model_published_as_pickle_loads_weights_only(tiny_verifiers, speech_clip_16k, tmp_path):
    """microsoft/wavlm-base-plus-sv ships pytorch_model.bin only: the same weights as a pickle give the
    same x-vectors, and a pickle that would run code is refused (torch.load weights_only) without running it."""
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "wavlm-bin"
    shutil.copytree(tiny_verifiers[1], folder)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    speech, _ = speech_clip_16k
    expected = SpeakerVerifier(tiny_verifiers[1], device="cpu").embed([speech])
    assert np.allclose(SpeakerVerifier(folder, device="cpu").embed([speech]), expected, atol=1e-6)

    marker = tmp_path / "code-ran"
    torch.save({"weights": _RunsCode(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(ModelFormatError, match="Cannot load the speaker model"):
        SpeakerVerifier(folder, device="cpu")
    assert not marker.exists()


def test_unknown_language_is_refused(tiny_verifiers):
    from engine.errors import SettingsError

    with pytest.raises(SettingsError, match="language 'klingon'"):
        WhisperASR(tiny_verifiers[0], device="cpu").transcribe(np.zeros(16000, np.float32), language="klingon")
