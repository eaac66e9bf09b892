"""`python main.py synth` end to end on the tiny models, and every bad input it must refuse cleanly."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
REF_TEXT = "The quick brown fox jumps over the lazy dog, near the quiet river bank."  # what conftest.speech_clip_16k says


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def tiny(tiny_models) -> dict[str, Path]:
    return tiny_models


@pytest.fixture(scope="session")
def reference_wav(speech_clip_16k, tmp_path_factory) -> Path:
    samples, _ = speech_clip_16k
    path = tmp_path_factory.mktemp("ref") / "reference.wav"
    sf.write(path, samples, 16000)
    return path


def synth_args(tiny, out: Path, *extra: str) -> list[str]:
    return ["synth", "--lm", tiny["lm"], "--codec", tiny["codec"], "--out", out, *extra]


def generated_tokens(stderr: str) -> int:
    match = re.search(r"(\d+) speech tokens", stderr)
    assert match, stderr
    return int(match.group(1))


def test_tiny_models_are_in_the_official_layouts(tiny):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (tiny["lm"] / name).is_file(), name
    for name in ("config.json", "model.safetensors"):
        assert (tiny["codec"] / name).is_file(), name


def test_synth_clones_a_voice_into_a_16k_mono_wav(tiny, reference_wav, tmp_path):
    out = tmp_path / "out.wav"
    result = run_cli(*synth_args(tiny, out, "--text", "Hello from Llasa Studio.", "--ref", reference_wav,
                                 "--ref-text", REF_TEXT, "--seed", "7"))
    assert result.returncode == 0, result.stderr
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    tokens = generated_tokens(result.stderr)
    assert tokens > 0
    assert info.frames == tokens * 320
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]  # no temp files left behind


def test_same_seed_gives_the_same_take(tiny, reference_wav, tmp_path):
    outs = []
    for name in ("a.wav", "b.wav"):
        out = tmp_path / name
        result = run_cli(*synth_args(tiny, out, "--text", "Same seed.", "--ref", reference_wav,
                                     "--ref-text", REF_TEXT, "--seed", "3", "--temperature", "0.9", "--top-p", "0.95"))
        assert result.returncode == 0, result.stderr
        outs.append(sf.read(out)[0])
    np.testing.assert_array_equal(outs[0], outs[1])


def test_random_voice_without_reference_and_text_file(tiny, tmp_path):
    text_file = tmp_path / "text.txt"
    text_file.write_text("Ünïcode text, read from a file.\n", encoding="utf-8")
    out = tmp_path / "random.flac"
    result = run_cli(*synth_args(tiny, out, "--text-file", text_file, "--seed", "1"))
    assert result.returncode == 0, result.stderr
    assert "random voice" in result.stderr
    assert sf.info(out).frames == generated_tokens(result.stderr) * 320


def _bad_reference_files(folder: Path) -> dict[str, tuple[Path, str]]:
    empty = folder / "empty.wav"
    empty.write_bytes(b"")
    corrupt = folder / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00junk that is not audio" * 10)
    silent = folder / "silent.wav"
    sf.write(silent, np.zeros(16000 * 3, dtype=np.float32), 16000)
    short = folder / "short.wav"
    t = np.arange(int(16000 * 0.5)) / 16000
    sf.write(short, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    return {
        "missing": (folder / "missing.wav", "missing.wav"),
        "empty": (empty, "empty"),
        "corrupt": (corrupt, "corrupt.wav"),
        "silent": (silent, "silent"),
        "too short": (short, "1 s"),
    }


def assert_refused(result: subprocess.CompletedProcess, out: Path, pattern: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert re.search(pattern, errors[0], re.IGNORECASE), errors[0]
    assert list(out.parent.iterdir()) == []  # no output, no temp file


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt", "silent", "too short"])
def test_bad_reference_is_refused(tiny, tmp_path, case):
    ref, pattern = _bad_reference_files(tmp_path)[case]
    out = tmp_path / "out" / "out.wav"
    out.parent.mkdir()
    result = run_cli(*synth_args(tiny, out, "--text", "Hi.", "--ref", ref, "--ref-text", REF_TEXT))
    assert_refused(result, out, re.escape(pattern))


def test_bad_text_input_is_refused(tiny, tmp_path):
    out = tmp_path / "out" / "out.wav"
    out.parent.mkdir()
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9".encode("latin-1"))
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    cases = [
        (("--text-file", tmp_path / "nope.txt"), "nope.txt does not exist"),
        (("--text-file", latin1), "not UTF-8"),
        (("--text-file", empty), "is empty"),
        (("--text", "   "), "no text to speak"),
    ]
    for args, pattern in cases:
        assert_refused(run_cli(*synth_args(tiny, out, *args)), out, re.escape(pattern))


def test_an_unknown_library_voice_is_refused_with_the_names(tiny, reference_wav, tmp_path):
    from engine.voices import VoiceLibrary

    out = tmp_path / "out" / "out.wav"
    out.parent.mkdir()
    library = VoiceLibrary(tmp_path / "voices")
    library.add("Ann", np.zeros(16000, np.float32) + 0.1, "Hello.", [1, 2, 3], str(tiny["codec"]))
    result = run_cli(*synth_args(tiny, out, "--text", "Hi.", "--voices", library.root, "--voice", "Bob"))
    assert_refused(result, out, re.escape("Unknown voice 'Bob'; the voices are: 'Ann'."))
    both = run_cli(*synth_args(tiny, out, "--text", "Hi.", "--voices", library.root, "--voice", "Ann",
                               "--ref", reference_wav, "--ref-text", REF_TEXT))
    assert_refused(both, out, "--ref or --voice, not both")


def test_only_a_passage_that_cannot_fit_alone_is_refused_with_true_figures(tiny, reference_wav, tmp_path):
    """Long text is split (tests/test_render.py); a 'word' of 3,000 letters cannot be, so it is refused
    with the real need: 3,000 characters at the reference's own speaking rate."""
    import math

    from engine.audio.clip import load_reference

    out = tmp_path / "out" / "out.wav"
    out.parent.mkdir()
    word = "a" * 3000
    result = run_cli(*synth_args(tiny, out, "--text", word, "--ref", reference_wav, "--ref-text", REF_TEXT))
    codes = len(load_reference(reference_wav).samples) // 320 + 1  # what the encoder gives (50 per second)
    needed = math.ceil(3000 * codes / len(REF_TEXT))
    assert_refused(result, out, rf"does not fit in Llasa's 2048-token window even on its own.*needs about {needed} "
                                r"speech tokens, but only \d+ are left")


def test_broken_model_folders_are_refused(tiny, tmp_path):
    import shutil

    out = tmp_path / "out" / "out.wav"
    out.parent.mkdir()
    no_tokenizer = tmp_path / "no_tokenizer"
    shutil.copytree(tiny["lm"], no_tokenizer)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (no_tokenizer / name).unlink()
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny["lm"], pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    cases = [
        (["--lm", no_tokenizer], "no tokenizer files"),
        (["--lm", pickled], "pickle weights"),
        (["--lm", tmp_path / "absent"], "does not exist"),
        (["--codec", tiny["lm"]], "is a Llasa LM folder, not X-Codec2"),
    ]
    for override, pattern in cases:
        args = synth_args(tiny, out, "--text", "Hi.")
        flag = args.index(override[0])
        args[flag + 1] = override[1]
        assert_refused(run_cli(*args), out, pattern)


def test_unusable_settings_are_refused(tiny, reference_wav, tmp_path):
    out = tmp_path / "out" / "out.wav"
    out.parent.mkdir()
    cases = [
        (["--ref", reference_wav], "--ref needs --ref-text"),
        (["--top-p", "0"], "top_p must be in"),
        (["--out", tmp_path / "out" / "x.xyz"], "xyz"),
    ]
    if not _cuda_available():
        cases += [(["--device", "cuda"], "CUDA"), (["--device", "cpu", "--quant", "4bit"], "4bit")]
    for extra, pattern in cases:
        args = synth_args(tiny, out, "--text", "Hi.")
        if extra[0] == "--out":
            args[args.index("--out") + 1] = extra[1]
            extra = []
        result = run_cli(*args, *extra)
        assert_refused(result, out, re.escape(pattern))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
