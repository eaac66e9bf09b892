"""Shared pytest fixtures."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deps import missing

# Qt widgets run offscreen in tests (a real window is only needed for screenshots, under Xvfb).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# "auto" means PyTorch in tests (takes are compared with the PyTorch reference); the tests of the
# llama.cpp backend choose it explicitly, or unset this to test what "auto" picks (engine.lm.backend).
os.environ.setdefault("LLASA_BACKEND", "torch")

pytest_plugins = ["conftest_audio"]  # pulse_null_sink: a private PulseAudio server with a null sink

SPEECH_TEXT = "The quick brown fox jumps over the lazy dog, near the quiet river bank."


@pytest.fixture(scope="session")
def speech_clip_16k(tmp_path_factory) -> tuple[np.ndarray, Path]:
    """About 4.5 s of real (synthetic) English speech: (float32 mono samples at 16 kHz, wav path).

    espeak-ng writes 22.05 kHz; sox resamples to 16 kHz as float32 without dither, so the clip is
    the same on every run.
    """
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        missing("needs espeak-ng and sox (apt-get install espeak-ng sox)")
    folder = tmp_path_factory.mktemp("speech")
    raw, path = folder / "speech_22k.wav", folder / "speech_16k.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), SPEECH_TEXT], check=True)
    subprocess.run(
        ["sox", "-D", str(raw), "-e", "floating-point", "-b", "32", "-r", "16000", str(path)], check=True
    )
    samples, rate = sf.read(path, dtype="float32")
    assert rate == 16000 and samples.ndim == 1
    return samples, path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny random Llasa LM and X-Codec2, written by `python main.py dev tiny-models` itself."""
    import sys

    folder = tmp_path_factory.mktemp("tiny")
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, str(root / "main.py"), "dev", "tiny-models", str(folder)],
        cwd=root, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return {"lm": folder / "lm", "codec": folder / "codec"}
