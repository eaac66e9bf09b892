"""`python main.py narrate` end to end on the tiny models: create, resume after SIGKILL, bad input, a 10,000-word book.

The test voice is a .llasavoice made from a 1 s clip with a long transcript (50 codes for ~1,240
characters): its speaking rate is low (0.04 speech tokens per character instead of ~3), so each segment
holds ~1,400 characters and needs few speech tokens. That is what lets a 10,000-word book (~50
segments, ~7,000 speech tokens) run on the tiny random LM (which never says the end token, so every take
runs to its runaway cap) within a few minutes on a busy CPU. A real voice cuts the same book into
~200 segments; the code path per segment is the same.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.book.project import NarrationProject, PENDING
from engine.voices import VoiceLibrary

ROOT = Path(__file__).resolve().parents[1]
TRANSCRIPT = " ".join(["The quick brown fox jumps over the lazy dog, near the quiet river bank."] * 17)
WORDS = ("the river ran past old stone walls while quiet birds sang above green fields and a small "
         "boat drifted toward the distant town where people waited for news").split()


def cli(*args) -> list[str]:
    return [sys.executable, str(ROOT / "main.py"), *map(str, args)]


def run(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def voice_file(tmp_path_factory) -> Path:
    """A .llasavoice whose 1 s clip is synthesized here (no espeak-ng): a 120 Hz voiced buzz, harmonics
    falling at 6 dB per octave, in four syllable-like bursts. The codes are random: the tiny LM only
    needs their count."""
    folder = tmp_path_factory.mktemp("voice")
    rng = np.random.default_rng(1)
    codes = [int(c) for c in rng.integers(0, 65536, 50)]
    t = np.arange(50 * 320) / 16000
    buzz = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 30))
    clip = (0.2 * buzz / np.abs(buzz).max() * np.sin(np.pi * 4 * t) ** 2).astype(np.float32)
    saved = VoiceLibrary(folder / "lib").add("Narrator", clip, TRANSCRIPT, codes, "tiny")
    return VoiceLibrary(folder / "lib").export(saved.id, folder / "narrator.llasavoice")


def write_book(path: Path, words: int, chapters: int) -> Path:
    """A plain-text book of exactly `words` words: chapter headings, paragraphs of sentences."""
    rng = random.Random(words)
    per_chapter = words // chapters
    parts = []
    for c in range(chapters):
        count = per_chapter if c < chapters - 1 else words - per_chapter * (chapters - 1)
        body, sentence, paragraph = [], [], []
        for i in range(count - 2):  # "Chapter N" is two words
            sentence.append(rng.choice(WORDS))
            if len(sentence) >= rng.randint(8, 20) or i == count - 3:
                paragraph.append(" ".join(sentence).capitalize() + ".")
                sentence = []
                if len(paragraph) >= 8:  # ~110-word paragraphs, as in novels
                    body.append(" ".join(paragraph))
                    paragraph = []
        if paragraph:
            body.append(" ".join(paragraph))
        parts.append(f"Chapter {c + 1}\n\n" + "\n\n".join(body))
    path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    assert len(path.read_text().split()) == words
    return path


def narrate_args(tiny, project: Path, book: Path, voice: Path, *extra) -> list:
    return ["narrate", project, "--text-file", book, "--voice", voice, "--lm", tiny["lm"], "--codec", tiny["codec"],
            "--seed", "5", *extra]


def check_takes(project: Path) -> NarrationProject:
    """Every take is readable audio of its recorded length; no temporary file is left."""
    opened = NarrationProject.open(project)
    assert not [p for p in project.rglob("*") if p.name.startswith(".")]
    for _, segment in opened.segments():
        record = opened.record(segment)
        assert record is not None, segment.id
        assert len(opened.load_take(segment)) == record.codes * 320
    return opened


def test_bad_input_fails_in_one_line_and_writes_nothing(tiny_models, tmp_path, voice_file):
    book = write_book(tmp_path / "book.txt", 200, 2)
    project = tmp_path / "project"
    cases = [
        (["narrate", project], "not a narration project"),
        (["narrate", project, "--text-file", book], "needs a narrator"),
        (["narrate", project, "--text-file", tmp_path / "missing.epub", "--voice", voice_file], "does not exist"),
        (["narrate", project, "--text-file", book, "--voice", tmp_path / "nope.llasavoice"], "does not exist"),
        (["narrate", project, "--text-file", book, "--ref", voice_file], "--ref and --ref-text go together"),
        (["narrate", project, "--text-file", book, "--voice", voice_file, "--chapters", "3"], "chapter numbers 1 to 2"),
        (["narrate", project, "--text-file", book, "--voice", voice_file, "--export", "mp3"], "--export FORMAT and --out"),
        (["narrate", project, "--text-file", book, "--voice", book, "--lm", tiny_models["lm"],
          "--codec", tiny_models["codec"]], "not a Llasa voice file"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("error: ") and message in lines[-1], (args, result.stderr)
        assert not project.exists(), args


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_same_takes(tiny_models, tmp_path, voice_file):
    """Kill -9 a narrate run (batch 3) once some takes exist: at most the batch in flight is lost, and
    re-running finishes with exactly the takes (keys and bytes) of an uninterrupted run with another
    batch size, all readable, no temporary file left."""
    book = write_book(tmp_path / "book.txt", 1500, 3)
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    fp32 = ("--quant", "fp32")  # not the CPU's timed bf16/fp32 choice: both runs must use one precision
    result = run(*narrate_args(tiny_models, reference, book, voice_file, *fp32))
    assert result.returncode == 0, result.stderr
    expected = {p.name: p.read_bytes() for p in (reference / "takes").iterdir()}
    total = sum(1 for _ in NarrationProject.open(reference).segments())
    assert total >= 6 and len(expected) == 2 * total

    # The killed run renders 3 segments at once, the reference as many as memory allows (8 here).
    process = subprocess.Popen(cli(*narrate_args(tiny_models, killed, book, voice_file, *fp32, "--batch", "3")), cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    takes = killed / "takes"
    deadline = time.monotonic() + 300
    while not (takes.is_dir() and len(list(takes.glob("*.json"))) >= 3) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = len(list(takes.glob("*.json")))
    assert 3 <= before < total

    opened = NarrationProject.open(killed)  # what the GUI would show after the crash
    statuses = [opened.status(s) for _, s in opened.segments()]
    assert statuses.count(PENDING) == total - before

    # Ctrl+C on the resumed run (batch 1) once it added a take: exit 130, told how to go on, takes kept.
    process = subprocess.Popen(cli(*narrate_args(tiny_models, killed, book, voice_file, *fp32, "--batch", "1")),
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while len(list(takes.glob("*.json"))) == before and time.monotonic() < deadline + 300 and process.poll() is None:
        time.sleep(0.02)
    assert process.poll() is None, "the resumed run ended before Ctrl+C"
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 130, stderr
    assert "Stopped: the finished segments are kept" in stderr and "Traceback" not in stderr, stderr
    before = len(list(takes.glob("*.json")))
    assert before < total, "Ctrl+C came after the last segment"
    result = run(*narrate_args(tiny_models, killed, book, voice_file, *fp32))
    assert result.returncode == 0, result.stderr
    assert f"({total - before} this run)" in result.stderr
    check_takes(killed)
    assert {p.name: p.read_bytes() for p in takes.iterdir()} == expected


@pytest.mark.slow
def test_ten_thousand_words_narrate_and_export_with_flat_memory(tiny_models, tmp_path, voice_file):
    """1,000 and 10,000 words end to end (then exported as M4B); the child's peak RSS must not grow
    with the book (one segment's audio in memory at a time)."""
    peaks, counts = {}, {}
    for words in (1000, 10000):
        book = write_book(tmp_path / f"book{words}.txt", words, words // 1000)  # chapters of 1,000 words
        project, out = tmp_path / f"p{words}", tmp_path / f"book{words}.m4b"
        args = narrate_args(tiny_models, project, book, voice_file, "--export", "m4b", "--out", out)
        process = subprocess.Popen(cli(*args), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        start = time.monotonic()
        stderr = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, stderr
        opened = check_takes(project)
        counts[words] = sum(1 for _ in opened.segments())
        peaks[words] = usage.ru_maxrss  # KiB on Linux
        assert out.stat().st_size > 0
        print(f"{words} words: {counts[words]} segments, {time.monotonic() - start:.0f} s, "
              f"peak RSS {usage.ru_maxrss / 1024:.0f} MiB")
    assert counts[10000] >= 8 * counts[1000]
    assert peaks[10000] < peaks[1000] * 1.15, peaks


@pytest.mark.slow
def test_quality_mode_from_the_cli_scores_every_take(tiny_models, tmp_path, voice_file):
    """--candidates 2 with a (tiny, random) Whisper: every segment's take is the verifiers' pick of 2, its
    .json carries the scores, and a resumed run keeps the project's quality settings."""
    from engine.models.tiny_verifiers import write_tiny_whisper

    whisper = write_tiny_whisper(tmp_path / "whisper")
    book = write_book(tmp_path / "book.txt", 60, 1)
    project = tmp_path / "project"
    result = run(*narrate_args(tiny_models, project, book, voice_file, "--candidates", "2", "--asr", whisper,
                               "--speaker-model", "none"))
    assert result.returncode == 0, result.stderr
    assert "Quality mode: 2 takes per segment" in result.stderr
    opened = check_takes(project)
    assert opened.settings.candidates == 2 and opened.settings.asr == str(whisper) and opened.settings.speaker is None
    for _, segment in opened.segments():
        scores = opened.record(segment).scores
        assert scores["n"] == 2 and 0 <= scores["wer"] == scores["error_rate"]
    again = run("narrate", project, "--candidates", "3")
    assert again.returncode == 2 and "--candidates" in again.stderr.strip().splitlines()[-1]
