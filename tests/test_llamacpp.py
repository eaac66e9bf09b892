"""The llama.cpp backend on the tiny random Llasa LM: GGUF conversion, ids, greedy parity with torch, errors.

The tiny LM is converted with engine.lm.gguf (F32, then Q8_0 by llama.cpp's quantizer) and decoded by
engine.lm.llamacpp; greedy codes must equal engine.lm.decoder.FastDecoder's (fp32) token for token.
Needs the optional ``llamacpp`` extra (llama-cpp-python): skipped without it, except in CI where it fails.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

try:
    import llama_cpp  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("needs the llamacpp extra: pip install '.[llamacpp]'", allow_module_level=True)

from engine.config import SamplingParams
from engine.errors import CancelledError, DeviceError, ModelFormatError, SettingsError
from engine.lm.backend import resolve_backend
from engine.lm.batching import BatchScheduler, DecodeJob
from engine.lm.decoder import FastDecoder
from engine.lm.gguf import convert_to_gguf, gguf_path, quantize_gguf
from engine.lm.llamacpp import load_llamacpp_lm
from engine.lm.loading import load_lm
from engine.lm.prompt import build_prompt
from engine.lm.tokens import LLASA_TAGS

ROOT = Path(__file__).resolve().parents[1]
GREEDY = SamplingParams(temperature=0)
PENALIZED = SamplingParams(temperature=0, repetition_penalty=1.3)


@pytest.fixture(scope="module")
def lm_folder(tiny_models, tmp_path_factory) -> Path:
    """A private copy of the session's tiny LM (the GGUF files are written inside the model folder)."""
    folder = tmp_path_factory.mktemp("llamacpp") / "lm"
    shutil.copytree(tiny_models["lm"], folder)
    return folder


@pytest.fixture(scope="module")
def torch_lm(lm_folder):
    return load_lm(lm_folder, device="cpu")


@pytest.fixture(scope="module")
def cpp_lm(lm_folder):
    fractions = []
    lm = load_llamacpp_lm(lm_folder, "f32", on_progress=lambda stage, f: fractions.append(f), threads=1)
    assert fractions and fractions[-1] == 1.0 and fractions == sorted(fractions)
    return lm


def make_prompts(lm) -> list[list[int]]:
    """Three prompts of one length: same text, different reference codes."""
    prompts = []
    for seed in (1, 2, 3):
        codes = [random.Random(seed).randrange(65536) for _ in range(120)]
        prompts.append(build_prompt(lm.tokenizer, lm.tokens, "Hello there.", reference_codes=codes, reference_text="Ref words."))
    return prompts


def run(decoder, prompts, params, max_new_tokens, cancel=None) -> tuple[list[list[int]], list[str]]:
    """Per row, its codes (the steps' non-None entries), and the finish reasons."""
    gen, steps = decoder.generate(prompts, params, max_new_tokens=max_new_tokens, cancel=cancel), []
    while True:
        try:
            steps.append(next(gen))
        except StopIteration as stop:
            return [[s[i] for s in steps if s[i] is not None] for i in range(len(prompts))], stop.value


def test_conversion_keeps_every_token_id_and_the_stop(cpp_lm, lm_folder):
    import gguf

    reader = gguf.GGUFReader(cpp_lm.path)
    field = reader.fields["tokenizer.ggml.tokens"]
    names = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
    tokenizer, t = cpp_lm.tokenizer, cpp_lm.tokens
    assert names == tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))  # every id, tags and speech included
    eos = reader.fields["tokenizer.ggml.eos_token_id"]
    assert int(eos.parts[eos.data[0]][0]) == t.end_id == tokenizer.convert_tokens_to_ids("<|SPEECH_GENERATION_END|>")
    assert t.first_speech_id == tokenizer.convert_tokens_to_ids("<|s_0|>") and cpp_lm.model.n_vocab == len(tokenizer)
    assert cpp_lm.path == gguf_path(lm_folder, "f32") and not list(cpp_lm.path.parent.glob("*.part"))


def test_greedy_codes_equal_the_torch_decoder(cpp_lm, torch_lm, lm_folder):
    prompts = make_prompts(cpp_lm)
    torch_decoder = FastDecoder(torch_lm, max_batch=3, max_length=512)
    cpp_decoder = cpp_lm.decoder(max_batch=3, max_length=512)
    for params in (GREEDY, PENALIZED):
        expected = run(torch_decoder, prompts, params, 40)
        assert run(cpp_decoder, prompts, params, 40) == expected  # batched
        assert [run(cpp_decoder, [p], params, 40)[0][0] for p in prompts] == expected[0]  # one at a time
    mixed = [prompts[0], prompts[1][:-5], prompts[0]]  # rows of different lengths and a repeated prompt
    assert run(cpp_decoder, mixed, GREEDY, 20)[0] == [run(torch_decoder, [p], GREEDY, 20)[0][0] for p in mixed]
    f16 = load_llamacpp_lm(lm_folder, "f16", threads=1).decoder(max_batch=3, max_length=512)  # the F16 file
    assert run(f16, prompts, GREEDY, 40) == run(torch_decoder, prompts, GREEDY, 40)


def test_sampling_is_reproducible_and_cancel_stops_within_one_token(cpp_lm):
    prompts = make_prompts(cpp_lm)[:2]
    decoder = cpp_lm.decoder(max_batch=2, max_length=512)
    params = SamplingParams(temperature=0.8, top_k=50, top_p=0.9, repetition_penalty=1.1, seed=7)
    first = run(decoder, prompts, params, 30)
    assert first == run(decoder, prompts, params, 30) and first[1] == ["length", "length"]
    assert all(0 <= c < 65536 for row in first[0] for c in row) and first[0][0] != first[0][1]
    cancel = threading.Event()
    gen, seen = decoder.generate(prompts, params, max_new_tokens=30, cancel=cancel), []
    for step in gen:
        seen.append(step)
        if len(seen) == 3:
            cancel.set()
    assert len(seen) == 3  # nothing after the cancel
    assert run(decoder, prompts, GREEDY, 0)[1] == ["length", "length"]


def test_continuous_batching_rows_equal_single_takes(cpp_lm, torch_lm):
    """BatchScheduler on llama.cpp: ragged rows refilled as takes end. Greedy takes equal torch's
    single-row codes; a sampled take is the same alone, in a batch of 3, and from generate() with its seed."""
    import dataclasses

    prompts = make_prompts(cpp_lm)
    specs = [(prompts[0], 12), (prompts[1][:-5], 20), (prompts[2], 8), (prompts[0][:-3], 16), (prompts[1], 10)]
    jobs = [DecodeJob(k, tuple(p), seed=100 + k, max_new_tokens=n) for k, (p, n) in enumerate(specs)]

    def results(decoder, params):
        return {done.key: (done.codes, done.finish_reason) for done in BatchScheduler(decoder, params).run(jobs)}

    expected = results(FastDecoder(torch_lm, max_batch=1, max_length=512), GREEDY)
    assert results(cpp_lm.decoder(max_batch=3, max_length=512), GREEDY) == expected
    sampled = SamplingParams(temperature=0.8, top_k=50, repetition_penalty=1.1)
    alone = results(cpp_lm.decoder(max_batch=1, max_length=512), sampled)
    assert results(cpp_lm.decoder(max_batch=3, max_length=512), sampled) == alone
    assert len({codes for codes, _ in alone.values()}) == len(jobs)  # different seeds, different takes
    single = cpp_lm.decoder(max_batch=1, max_length=512)
    for job in jobs:
        codes, reasons = run(single, [list(job.prompt)], dataclasses.replace(sampled, seed=job.seed), job.max_new_tokens)
        assert (tuple(codes[0]), reasons[0]) == alone[job.key]


def test_end_token_stops_a_row_like_torch(lm_folder, tmp_path):
    """A copy whose end-token embedding row (tied head) is scaled up: both backends stop at the same step."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "lm"
    shutil.copytree(lm_folder, folder, ignore=shutil.ignore_patterns("gguf"))
    weights = load_file(folder / "model.safetensors")
    end_id = json.loads((folder / "tokenizer.json").read_text())["added_tokens"]
    end_id = next(a["id"] for a in end_id if a["content"] == "<|SPEECH_GENERATION_END|>")
    key = "model.embed_tokens.weight"
    torch_lm = load_lm(folder, device="cpu")
    prompts = make_prompts(torch_lm)
    for alpha in (3.0, 4.0, 6.0, 10.0, 20.0):
        scaled = dict(weights)
        scaled[key] = weights[key].clone()
        scaled[key][end_id] *= alpha
        save_file(scaled, folder / "model.safetensors", metadata={"format": "pt"})
        expected = run(FastDecoder(load_lm(folder, device="cpu"), max_batch=3, max_length=512), prompts, GREEDY, 40)
        if "end" in expected[1] and any(len(c) > 0 for c in expected[0]):
            break
    else:
        pytest.skip("no scale of the end row ends this random model's greedy path after a few steps")
    for stale in (folder / "gguf").glob("*"):
        stale.unlink()
    cpp = load_llamacpp_lm(folder, "f32", threads=1)
    assert run(cpp.decoder(max_batch=3, max_length=512), prompts, GREEDY, 40) == expected


def test_quantize_with_progress_and_cancel(cpp_lm, lm_folder):
    out = gguf_path(lm_folder, "q8_0")
    cancel = threading.Event()
    with pytest.raises(CancelledError):
        quantize_gguf(cpp_lm.path, out, "q8_0", on_progress=lambda stage, f: cancel.set(), cancel=cancel)
    assert not out.exists() and not list(out.parent.glob("*.part"))
    fractions = []
    quantize_gguf(cpp_lm.path, out, "q8_0", on_progress=lambda stage, f: fractions.append(f))
    assert fractions[-1] == 1.0 and out.stat().st_size < cpp_lm.path.stat().st_size / 2
    q8 = load_llamacpp_lm(lm_folder, "q8_0", threads=1)  # ids checked on load
    codes, reasons = run(q8.decoder(max_batch=1, max_length=512), make_prompts(q8)[:1], GREEDY, 20)
    assert reasons == ["length"] and all(0 <= c < 65536 for c in codes[0])


def test_bad_gguf_and_changed_tokenizer_are_refused(cpp_lm, lm_folder, tmp_path):
    folder = tmp_path / "lm"
    shutil.copytree(lm_folder, folder)
    bad = gguf_path(folder, "bf16")
    bad.write_bytes(b"GGUF" + os.urandom(64))
    with pytest.raises(ModelFormatError, match="cannot load .*llasa-bf16.gguf: (?!unknown reason)"):
        load_llamacpp_lm(folder, "bf16", threads=1)
    # Swap two Llasa tags in the tokenizer files: the GGUF made before no longer matches them.
    for name, key in (("tokenizer.json", "added_tokens"), ("tokenizer_config.json", "added_tokens_decoder")):
        spec = json.loads((folder / name).read_text())
        if key not in spec:
            continue
        entries = spec[key] if isinstance(spec[key], list) else list(spec[key].values())
        a, b = (next(t for t in entries if t["content"] == tag) for tag in LLASA_TAGS[:2])
        a["content"], b["content"] = b["content"], a["content"]
        (folder / name).write_text(json.dumps(spec))
    with pytest.raises(ModelFormatError, match="token .* in the GGUF but"):
        load_llamacpp_lm(folder, "f32", threads=1)
    with pytest.raises(ModelFormatError, match="only Llama-based"):
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config | {"model_type": "mistral"}))
        convert_to_gguf(folder, tmp_path / "x.gguf")


def test_backend_choice(monkeypatch):
    monkeypatch.delenv("LLASA_BACKEND", raising=False)
    assert resolve_backend("torch", "cpu") == "torch"
    assert resolve_backend("auto", "cuda") == "torch"
    assert resolve_backend("auto", "cpu") == ("torch" if torch.cuda.is_available() else "llamacpp")
    assert resolve_backend("llamacpp", "cpu") == "llamacpp"
    with pytest.raises(DeviceError, match="--backend torch with --device cuda"):
        resolve_backend("llamacpp", "cuda")
    monkeypatch.setenv("LLASA_BACKEND", "torch")  # pins what "auto" means; an explicit choice still wins
    assert resolve_backend("auto", "cpu") == "torch" and resolve_backend("llamacpp", "cpu") == "llamacpp"
    monkeypatch.setenv("LLASA_BACKEND", "llamacpp")
    assert resolve_backend("auto", "cpu") == "llamacpp"
    monkeypatch.setenv("LLASA_BACKEND", "onnx")
    with pytest.raises(SettingsError, match="LLASA_BACKEND='onnx' is not a backend; set it to torch or llamacpp"):
        resolve_backend("auto", "cpu")


def test_a_book_narrated_on_llamacpp_is_the_same_in_batches(lm_folder, cpp_lm, tiny_models, tmp_path, speech_clip_16k):
    """narrate() on the llama.cpp Synthesizer: one segment at a time and 3 at once give the same take files,
    and the runtime recorded for the take keys is llama.cpp's precision."""
    from engine.book.importer import Book, Chapter
    from engine.book.narration import create_project, narrate, segment_budget
    from engine.book.project import NarrationSettings
    from engine.config import ModelChoice
    from engine.speech.synth import Synthesizer
    from engine.voices import VoiceLibrary

    choice = ModelChoice(str(lm_folder), str(tiny_models["codec"]), device="cpu", backend="llamacpp", gguf_precision="f32")
    synth = Synthesizer.load(choice)
    assert synth.lm.backend == "llamacpp" and any("llama.cpp (F32" in n for n in synth.notices)
    codes = tuple(random.Random(5).randrange(65536) for _ in range(40))
    voice = VoiceLibrary(tmp_path / "voices").add("Narrator", speech_clip_16k[0][:16000], "Short words. " * 20, codes, "tiny")
    book = Book("B", "A", (Chapter("One", "It was late.\n\nBirds sang.\n\nThe bells rang twice."),
                           Chapter("Two", "Night fell.\n\nThe end came quietly.")))
    takes = []
    for batch in (1, 3):
        settings = NarrationSettings(lm=choice.lm, codec=choice.codec, base_seed=7, temperature=0.9, top_p=0.95)
        max_tokens, rate = segment_budget(synth, voice.codes, voice.transcript)
        project = create_project(tmp_path / f"p{batch}", book, voice, settings, max_tokens=max_tokens, tokens_per_char=rate)
        result = narrate(project, synth, batch=batch)
        assert (result.rendered, result.failed) == (5, 0)
        assert json.loads((project.folder / "runtime.json").read_text()) == {"device": "cpu", "precision": "f32"}
        takes.append({p.name: p.read_bytes() for p in sorted((project.folder / "takes").iterdir())})
    assert takes[0] == takes[1] and len(takes[0]) == 10


@pytest.mark.parametrize("command", ["synth", "narrate"])
def test_missing_extra_is_a_clear_cli_error(command, tmp_path):
    """llama-cpp-python is installed here; the child blocks its import to stand in for a machine without it."""
    argv = {
        "synth": ["synth", "--text", "Hi.", "--out", str(tmp_path / "o.wav"), "--backend", "llamacpp"],
        "narrate": ["narrate", str(tmp_path / "book"), "--backend", "llamacpp"],
    }[command]
    code = (f"import sys, runpy; sys.modules['llama_cpp'] = None; sys.argv = ['main.py', *{argv!r}]; "
            f"runpy.run_path({str(ROOT / 'main.py')!r}, run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        'error: The llama.cpp backend needs llama-cpp-python: pip install "llasa-studio[llamacpp]" '
        "(it compiles llama.cpp; see the README), or use --backend torch."
    ]
    assert not (tmp_path / "o.wav").exists() and not (tmp_path / "book").exists()


def test_synth_cli_auto_speaks_with_llamacpp_same_bytes_with_play(tiny_models, tmp_path, pulse_null_sink):
    """synth with no --backend on this CUDA-less machine: "auto" converts the tiny LM once (Q8_0) and
    speaks with llama.cpp; with --play (through the PulseAudio null sink) the file is byte for byte the same."""
    folder = tmp_path / "lm"
    shutil.copytree(tiny_models["lm"], folder)
    env = {k: v for k, v in os.environ.items() if k != "LLASA_BACKEND"}
    outputs = []
    for extra in ([], ["--play"]):
        out = tmp_path / f"out{len(outputs)}.wav"
        result = subprocess.run(
            [sys.executable, str(ROOT / "main.py"), "synth", "--lm", str(folder), "--codec", str(tiny_models["codec"]),
             "--text", "Hello there. How are you today?", "--out", str(out), "--seed", "3", *extra],
            cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert "llama.cpp (Q8_0" in result.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] and len(outputs[0]) > 44
    assert sorted(p.name for p in (folder / "gguf").iterdir()) == ["llasa-q8_0.gguf"]  # the BF16 step is removed


def test_app_session_loads_on_llamacpp_with_conversion_progress_and_auto_falls_back(tiny_models, tmp_path, monkeypatch):
    """The engine thread's model load: llama.cpp reports its one-time GGUF conversion as "convert" progress
    and the loaded event says llama.cpp; an "auto" llama.cpp that cannot load the model (a damaged
    GGUF) runs the LM on PyTorch with a notice instead of failing."""
    from engine.config import ModelChoice
    from engine.session import EngineSession, Failed, LoadModels, ModelsLoaded, Progress
    from engine_events import EventRecorder

    folder = tmp_path / "lm"
    shutil.copytree(tiny_models["lm"], folder)
    recorder = EventRecorder((ModelsLoaded, Failed))
    session = EngineSession(emit=recorder)
    session.start()
    try:
        session.submit(LoadModels(ModelChoice(str(folder), str(tiny_models["codec"]), device="cpu", backend="llamacpp",
                                              gguf_precision="q8_0"), "a"))
        loaded = recorder.final()
        assert isinstance(loaded, ModelsLoaded), loaded
        assert (loaded.fast_path, loaded.quantization) == ("llama.cpp", "q8_0")
        converting = [e.done for e in recorder.of("a", Progress) if e.stage == "convert"]
        restarts = sum(later < earlier for earlier, later in zip(converting, converting[1:]))
        assert converting[-1] == 1000 and restarts == 1  # the BF16 conversion, then the Q8_0 quantization

        gguf_path(folder, "q4_k_m").write_bytes(b"GGUF" + os.urandom(64))  # damaged: llama.cpp cannot load it
        monkeypatch.setenv("LLASA_BACKEND", "llamacpp")  # what "auto" means on a machine without CUDA
        session.submit(LoadModels(ModelChoice(str(folder), str(tiny_models["codec"]), device="cpu",
                                              gguf_precision="q4_k_m"), "b"))
        fallback = recorder.final()
        assert isinstance(fallback, ModelsLoaded), fallback
        assert fallback.fast_path == "eager" and fallback.quantization == "fp32"
        assert any(n.startswith("llama.cpp could not load the model (llama.cpp cannot load") and
                   n.endswith("running it on PyTorch") for n in fallback.notices)
    finally:
        assert session.shutdown(timeout=60)
