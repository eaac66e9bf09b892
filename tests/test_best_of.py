"""Verifier-picked takes (ORM best-of-N, PRM beam search) end to end on tiny random models, CLI included.

Tiny random verifiers (engine.models.tiny_verifiers) run the real scoring code; their scores mean nothing,
so these tests check the mechanics: batch == single runs, the pick is a ranked candidate, takes carry
their scores, the beam search runs and reports its cost. The ranking itself is proven in test_verify.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from engine.audio.clip import load_reference
from engine.speech.best_of import render_beam_search, render_best_of
from engine.config import ModelChoice, SamplingParams
from engine.errors import CancelledError, SettingsError
from engine.lm.reference import generate_codes
from engine.lm.prompt import build_prompt
from engine.speech.synth import Synthesizer, Voice
from engine.models.tiny_verifiers import write_tiny_wavlm_sv, write_tiny_whisper
from engine.verify.scoring import TIE_TOLERANCE, Verifiers

ROOT = Path(__file__).resolve().parents[1]
REF_TEXT = "The quick brown fox jumps over the lazy dog, near the quiet river bank."
TEXT = "Hello there, friend."
GREEDY = SamplingParams(temperature=0, repetition_penalty=1.1)


@pytest.fixture(scope="module")
def synth(tiny_models):
    return Synthesizer.load(ModelChoice(lm=str(tiny_models["lm"]), codec=str(tiny_models["codec"]), device="cpu"))


@pytest.fixture(scope="module")
def voice(synth, speech_clip_16k):
    codes = synth.codec.encode(torch.tensor(speech_clip_16k[0]))
    return Voice(codes=tuple(int(c) for c in codes.tolist()), transcript=REF_TEXT)


@pytest.fixture(scope="module")
def verifier_dirs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("verifiers")
    return write_tiny_whisper(folder / "whisper"), write_tiny_wavlm_sv(folder / "wavlm")


@pytest.fixture(scope="module")
def verifiers(verifier_dirs):
    return Verifiers.load(*verifier_dirs, device="cpu")


def single_run(synth, voice, params, n_tokens):
    prompt = build_prompt(synth.lm.tokenizer, synth.lm.tokens, TEXT, reference_codes=voice.codes,
                          reference_text=voice.transcript)
    gen, codes = generate_codes(synth.lm, prompt, params, max_new_tokens=n_tokens), []
    while True:
        try:
            codes.append(next(gen))
        except StopIteration as stop:
            return codes, stop.value


def test_greedy_batch_of_n_reproduces_single_runs(synth, voice, verifiers):
    expected = single_run(synth, voice, GREEDY, 24)
    result = render_best_of(synth, TEXT, voice, GREEDY, 3, verifiers, max_new_tokens=24)
    assert len(result.takes) == 3
    for take in result.takes:
        assert (list(take.codes), take.finish_reason) == expected
        assert np.array_equal(take.audio, synth.decode(list(take.codes), voice))
    decoders = []
    for _ in range(2):  # the Synthesizer keeps its decoder across calls (e.g. narration segments)
        again = render_best_of(synth, TEXT, voice, GREEDY, 2, verifiers, max_new_tokens=24)
        assert [(list(t.codes), t.finish_reason) for t in again.takes] == [expected] * 2
        decoders.append(synth.decoder(2))
    assert decoders[0] is decoders[1] and decoders[0].max_batch == 2
    with pytest.raises(SettingsError):
        render_best_of(synth, TEXT, voice, GREEDY, 9, verifiers, max_new_tokens=24)


def test_best_take_is_a_ranked_candidate_and_takes_carry_scores(synth, voice, verifiers, speech_clip_16k):
    params = SamplingParams(temperature=0.9, seed=11)
    steps = []
    result = render_best_of(synth, TEXT, voice, params, 4, verifiers, reference_audio=speech_clip_16k[0],
                            max_new_tokens=20, on_progress=lambda done, budget: steps.append((done, budget)))
    takes = result.takes
    assert sorted(t.index for t in takes) == [0, 1, 2, 3] and [t.rank for t in takes] == [0, 1, 2, 3]
    assert len({t.codes for t in takes}) > 1  # sampled rows differ
    # Listed in ranking order, checked against the rule itself (not with rank()): each take has the highest
    # similarity among the later ones whose error rate is within TIE_TOLERANCE of the lowest left.
    for k, take in enumerate(takes):
        later = takes[k:]
        lowest = min(t.scores.error_rate for t in later)
        assert take.scores.error_rate <= lowest + TIE_TOLERANCE
        assert all(t.scores.similarity <= take.scores.similarity for t in later
                   if t.scores.error_rate <= lowest + TIE_TOLERANCE)
    assert result.best is takes[0] and result.best.codes in {t.codes for t in takes}
    for t in takes:
        assert t.seed == 11 and t.batch_rows == 4 and len(t.audio) == 320 * len(t.codes)
        assert t.scores.transcript is not None and t.scores.wer is not None and t.scores.similarity is not None
    saved = json.loads(json.dumps(result.to_dict()))
    assert saved["best_index"] == takes[0].index
    assert [d["scores"]["wer"] for d in saved["takes"]] == [t.scores.wer for t in takes]
    assert [d["codes"] for d in saved["takes"]] == [list(t.codes) for t in takes]
    cost = result.cost
    assert cost.tokens == sum(len(t.codes) for t in takes) and cost.verifier_calls == 4 and cost.prefill_tokens == 0
    assert steps[-1] == (20, 20)
    again = render_best_of(synth, TEXT, voice, params, 4, verifiers, reference_audio=speech_clip_16k[0], max_new_tokens=20)
    assert {t.index: t.codes for t in again.takes} == {t.index: t.codes for t in takes}  # the seed reproduces


def test_best_of_bad_settings_and_cancel(synth, voice, verifiers):
    for n in (0, 9):
        with pytest.raises(SettingsError):
            render_best_of(synth, TEXT, voice, GREEDY, n, verifiers)
    import threading

    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CancelledError):
        render_best_of(synth, TEXT, voice, GREEDY, 2, verifiers, cancel=cancel, max_new_tokens=10)


def test_beam_search_runs_end_to_end_and_reports_cost(synth, voice, verifiers):
    params = SamplingParams(temperature=0.9, seed=5)
    result = render_beam_search(synth, TEXT, voice, params, verifiers, beams=2, expansions=2, chunk_tokens=8,
                                max_new_tokens=20)
    assert result.method == "beam" and len(result.takes) >= 2
    for t in result.takes:
        assert 1 <= len(t.codes) <= 20 and t.scores.wer is not None and t.scores.similarity is not None
        assert (t.finish_reason == "end") or len(t.codes) == 20
    cost = result.cost
    # rounds of 8, 8 and 4 tokens on 4 rows (no take ends early with this seed) -> 80 tokens
    assert cost.tokens == 4 * (8 + 8 + 4)
    assert cost.prefill_tokens == 4 * (1 + 8 + 16)  # each round re-reads the beams' codes (at least 1 token)
    assert cost.verifier_calls == 4 + 4 + len(result.takes)  # 4 partial candidates in rounds 1-2, then the finals
    assert cost.total_s >= cost.generate_s > 0 and cost.verify_s > 0
    with pytest.raises(SettingsError):
        render_beam_search(synth, TEXT, voice, params, Verifiers(verifiers.scorers[:1]))  # ASR only
    with pytest.raises(SettingsError):
        render_beam_search(synth, TEXT, voice, params, verifiers, beams=3, expansions=3)


@pytest.fixture(scope="module")
def short_lm(tiny_models, speech_clip_16k, tmp_path_factory):
    """A copy of the tiny LM whose takes end after about 10-20 codes, so that the CLI test is quick.

    Along a sampled take the final hidden states of this random model point roughly one way (their
    mean direction d); an untied end-token row alpha * d gives the end token a logit of about 6 there.
    """
    folder = tmp_path_factory.mktemp("short_lm")
    for f in tiny_models["lm"].iterdir():
        shutil.copy(f, folder / f.name)
    synth = Synthesizer.load(ModelChoice(lm=str(folder), codec=str(tiny_models["codec"]), device="cpu"))
    voice = synth.encode_reference(load_reference(speech_clip_16k[1]), REF_TEXT)  # as the CLI does
    lm, tokens = synth.lm, synth.lm.tokens
    prompt = build_prompt(lm.tokenizer, tokens, TEXT, reference_codes=voice.codes, reference_text=REF_TEXT)
    codes = list(generate_codes(lm, prompt, SamplingParams(seed=1), max_new_tokens=100))
    with torch.no_grad():
        ids = torch.tensor([prompt + tokens.codes_to_ids(codes)])
        hidden = lm.model(ids, output_hidden_states=True).hidden_states[-1][0, len(prompt):]
        direction = hidden.mean(0) / hidden.mean(0).norm()
        head = lm.model.model.embed_tokens.weight.detach().clone()
        head[tokens.end_id] = direction * (6.0 / float((hidden @ direction).mean()))
    lm.model.config.tie_word_embeddings = False
    lm.model.lm_head.weight = torch.nn.Parameter(head)
    lm.model.save_pretrained(folder)
    return folder


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_cli_candidates_writes_best_take_and_scored_takes(short_lm, tiny_models, verifier_dirs, speech_clip_16k, tmp_path):
    out = tmp_path / "best.wav"
    # No reference: with the real-layout tiny tokenizer this short LM ends every take at once after a voice
    # prompt (0 codes: a failed take), while after the random-voice prompt its takes have 2-15 codes.
    result = run_cli("synth", "--lm", short_lm, "--codec", tiny_models["codec"], "--out", out, "--text", TEXT,
                     "--seed", 3, "--candidates", 3, "--asr", verifier_dirs[0], "--speaker-model", verifier_dirs[1])
    assert result.returncode == 0, result.stderr
    saved = json.loads((tmp_path / "best.takes.json").read_text(encoding="utf-8"))
    assert saved["text"] == TEXT and saved["seed"] == 3 and len(saved["segments"]) == 1  # one sentence: one segment
    segment = saved["segments"][0]
    assert len(segment["takes"]) == 3 and [t["index"] for t in segment["takes"]] == [0, 1, 2]
    best = segment["takes"][segment["best_index"]]
    assert best["rank"] == 0 and sorted(t["rank"] for t in segment["takes"]) == [0, 1, 2]
    assert sf.info(out).frames == 320 * len(best["codes"])  # the tiny codec's noise has no silent edge to trim
    for take in segment["takes"]:
        assert set(take["scores"]) >= {"transcript", "wer", "cer", "similarity", "error_rate"}
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines[0].split()[:4] == ["seg", "rank", "take", "seconds"] and len(lines) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.takes.json", "best.wav"]  # no temp file left


@pytest.mark.slow
def test_cli_refuses_bad_candidates_and_transcribes(tiny_models, verifier_dirs, speech_clip_16k, tmp_path):
    common = ["synth", "--lm", tiny_models["lm"], "--codec", tiny_models["codec"], "--out", tmp_path / "o.wav",
              "--text", TEXT]
    for extra in (["--candidates", "9"], ["--candidates", "2", "--play"]):
        result = run_cli(*common, *extra)
        assert result.returncode == 2 and "--candidates" in result.stderr and not (tmp_path / "o.wav").exists()
    result = run_cli("transcribe", speech_clip_16k[1], "--asr", verifier_dirs[0], "--language", "en", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()  # random weights: some text, meaningless
    missing = run_cli("transcribe", speech_clip_16k[1], "--asr", "someone/not-downloaded-whisper")
    assert missing.returncode == 2 and "not downloaded" in missing.stderr


@pytest.mark.slow
def test_bench_best_of_smoke_run_writes_json(tmp_path):
    out = tmp_path / "best_of.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_best_of.py"), "--size", "tiny", "--quant", "fp32",
                             "--new-tokens", "8", "--candidates", "1", "2", "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [r["candidates"] for r in report["rows"]] == [1, 2] and report["rows"][0]["gen_x_n1"] == 1.0
    assert set(report["verifier_speed"]) == {"asr_s_per_audio_s", "speaker_s_per_audio_s"}
