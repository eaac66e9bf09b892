"""`synth` through the render path as a user runs it: texts of any length with flat memory, and live
playback through a real sound device (a PulseAudio null sink, recorded back from its monitor) that is
gapless across segments and does not change the saved bytes."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.audio.clip import SAMPLE_RATE
from engine.audio.devices import Recorder

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("the old lighthouse keeper climbed the spiral stairs every evening counting each step as his "
         "father had taught him and at the top he lit the lamp that guided the boats home").split()
# A long transcript for a 1 s clip: a low speaking rate keeps each segment's runaway cap small (random
# weights rarely say the end token) while the text is still planned into many window-sized segments.
REF_TEXT = " ".join(["Exactly what the reference clip says, more or less, word for word."] * 6)


def book_text(words: int) -> str:
    """`words` words in sentences of 12 and paragraphs of 5 sentences."""
    sentences = [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(12)).capitalize() + "." for i in range(0, words, 12)]
    return "\n\n".join(" ".join(sentences[i : i + 5]) for i in range(0, len(sentences), 5))


def synth(tiny_models, *extra: str, log: Path) -> tuple[str, int]:
    """Run `main.py synth`; (its stderr, its own peak RSS in KiB, from wait4 on that one child)."""
    command = [sys.executable, str(ROOT / "main.py"), "synth", "--lm", str(tiny_models["lm"]),
               "--codec", str(tiny_models["codec"]), "--device", "cpu", "--quant", "fp32", *extra]
    with open(log, "w", encoding="utf-8") as stderr:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(encoding="utf-8")
    log.unlink()
    assert process.returncode == 0, text
    assert "Traceback" not in text
    return text, usage.ru_maxrss


@pytest.mark.slow
def test_a_3000_word_text_is_one_file_with_flat_memory(tiny_models, speech_clip_16k, tmp_path):
    clip = tmp_path / "ref.wav"
    sf.write(clip, speech_clip_16k[0][:SAMPLE_RATE], SAMPLE_RATE)
    peaks = []
    for words in (100, 3000):
        text = tmp_path / f"{words}.txt"
        text.write_text(book_text(words), encoding="utf-8")
        out = tmp_path / f"{words}.flac"
        stderr, peak = synth(tiny_models, "--text-file", str(text), "--ref", str(clip), "--ref-text", REF_TEXT,
                             "--seed", "1", "--out", str(out), log=tmp_path / "log.txt")
        peaks.append(peak)
        info = sf.info(out)
        assert (info.samplerate, info.channels) == (SAMPLE_RATE, 1) and info.frames > 0
        print(f"{words} words: {stderr.strip().splitlines()[-1]}")
    assert "segments" in stderr  # the long text was split
    assert sorted(p.name for p in tmp_path.iterdir()) == ["100.flac", "100.txt", "3000.flac", "3000.txt", "ref.wav"]
    print(f"peak RSS: 100 words {peaks[0] / 1024:.0f} MiB, 3000 words {peaks[1] / 1024:.0f} MiB")
    assert peaks[1] <= 1.10 * peaks[0]


def silent_runs(wave: np.ndarray, frame: int, threshold: float) -> list[float]:
    """Lengths in seconds of the runs of silent frames between the first and the last loud frame."""
    frames = wave[: len(wave) // frame * frame].reshape(-1, frame)
    loud = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)) > threshold
    first, last = np.argmax(loud), len(loud) - np.argmax(loud[::-1])
    runs, count = [], 0
    for value in loud[first:last]:
        if value:
            if count:
                runs.append(count * frame / SAMPLE_RATE)
            count = 0
        else:
            count += 1
    return runs


@pytest.mark.slow
def test_live_playback_is_gapless_across_segments_and_saves_the_same_bytes(tiny_models, pulse_null_sink, tmp_path):
    text = "A first paragraph is spoken here.\n\nThe second one follows. [pause 0.3s] And a third part ends it."
    recorder = Recorder(max_seconds=120)
    recorder.start()
    deadline = time.monotonic() + 10
    while recorder.elapsed_s < 0.05 and time.monotonic() < deadline:
        time.sleep(0.01)
    played, _ = synth(tiny_models, "--text", text, "--seed", "4", "--play", "--out", str(tmp_path / "played.wav"),
                      log=tmp_path / "log.txt")
    time.sleep(0.5)  # the sink's pipeline delay
    recorded = recorder.stop()
    synth(tiny_models, "--text", text, "--seed", "4", "--out", str(tmp_path / "silent.wav"), log=tmp_path / "log.txt")
    assert (tmp_path / "played.wav").read_bytes() == (tmp_path / "silent.wav").read_bytes()
    assert "3 segments" in played
    # Everything between the first and the last sound: no silence longer than the longest configured
    # pause (0.6 s paragraph) + 50 ms. Frames of 10 ms; silent = 40 dB below the loudest frame.
    frame = SAMPLE_RATE // 100
    peak = np.sqrt(np.max(np.mean(recorded[: len(recorded) // frame * frame].reshape(-1, frame) ** 2, axis=1)))
    assert peak > 0.01, "nothing was recorded from the monitor"
    runs = silent_runs(recorded, frame, peak * 10 ** (-40 / 20))
    print(f"recorded {len(recorded) / SAMPLE_RATE:.2f} s; silent runs: {[round(r, 2) for r in runs]}")
    assert max(runs, default=0.0) <= 0.6 + 0.05
    assert sum(1 for r in runs if r >= 0.25) >= 2  # the two pauses were heard (0.6 s and 0.3 s)
