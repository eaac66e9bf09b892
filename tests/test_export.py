"""Book export: chapters, tags, cover, loudness, atomicity, cancel and errors, on real files.

Read-back uses the ffmpeg binary of imageio-ffmpeg itself (the package ships no ffprobe):
`ffmpeg -i FILE` prints the container's tags, its chapters (start/end in seconds as stored: MP4
chapter track, ID3v2 CHAP frames) with titles and the streams, and `ffmpeg -i FILE -f f32le -`
decodes the audio for duration and loudness checks.
"""
import os
import re
import subprocess
import threading

import numpy as np
import pytest
import soundfile as sf

from engine.errors import CancelledError, ExportError, OutputFileError
from engine.book.export import BookMetadata, ChapterAudio, chapter_file_name, export_book, export_chapters
from engine.book.loudness import integrated_loudness

import imageio_ffmpeg  # a runtime dependency (pyproject.toml): never skipped
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
RATE = 16000
LENGTHS = [2 * RATE, 52_817, 27_203]  # samples: not multiples of any codec frame
LEVELS = [0.05, 0.1, 0.03]  # linear: the chapters differ in loudness by up to 10 dB
TITLES = ["Chapter One", "Two: the = sign; #hash", "Épilogue"]


def speechlike(n, amp, seed):
    """Noise low-passed to speech's band (most energy under ~2 kHz) with 3 Hz syllables."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    env = np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    noise = np.convolve(rng.standard_normal(n), np.hanning(9) / np.hanning(9).sum() * 3, "same")
    return (amp * env * noise).astype(np.float32)


class Book:
    """Three chapters whose load() is counted, as N1's joined takes would be."""

    def __init__(self):
        self.waves = [speechlike(n, a, i) for i, (n, a) in enumerate(zip(LENGTHS, LEVELS))]
        self.loads = 0

    def chapter(self, i):
        def load():
            self.loads += 1
            return self.waves[i]

        return ChapterAudio(TITLES[i], load)

    @property
    def chapters(self):
        return [self.chapter(i) for i in range(len(self.waves))]


@pytest.fixture(scope="module")
def cover(tmp_path_factory):
    path = tmp_path_factory.mktemp("cover") / "cover.png"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=96x96", "-frames:v", "1", str(path)], check=True)
    return path


def meta(cover=None):
    return BookMetadata("The Test Book", author="Ann Author", cover=cover, narrator="Ned Narrator", year="2024")


def probe(path):
    """(global tags, [(start s, end s, title)], stream lines) as ffmpeg prints them."""
    text = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    head = text.split("Chapters:")[0].split("Duration:")[0]
    tags = dict(re.findall(r"^    (\w+)\s*: (.*)$", head, re.M))
    chapters = [
        (float(s), float(e), t.strip())
        for s, e, t in re.findall(r"Chapter #\d+:\d+: start ([\d.]+), end ([\d.]+)\n\s+Metadata:\n\s+title\s+: (.*)", text)
    ]
    streams = re.findall(r"Stream #.*", text)
    return tags, chapters, streams


def decode(path):
    raw = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(path), "-map", "0:a", "-f", "f32le", "-ac", "1", "-ar", str(RATE), "-"],
        capture_output=True, check=True,
    ).stdout
    return np.frombuffer(raw, "<f4")


def expected_marks():
    ends = np.cumsum(LENGTHS)
    return [((e - n) / RATE, e / RATE, t) for e, n, t in zip(ends, LENGTHS, TITLES)]


@pytest.mark.parametrize("fmt, frame", [("m4b", 1024), ("mp3", 1152)])
def test_book_has_exact_chapters_tags_cover_duration_and_target_loudness(tmp_path, cover, fmt, frame):
    book = Book()
    steps = []
    dest = export_book(book.chapters, tmp_path / f"book.{fmt}", fmt=fmt, metadata=meta(cover),
                       target_lufs=-18.0, on_progress=lambda d, t: steps.append((d, t)))
    assert dest == tmp_path / f"book.{fmt}" and os.listdir(tmp_path) == [dest.name]
    assert book.loads == 6 and steps == [(i, 6) for i in range(1, 7)]  # measure pass + write pass
    tags, chapters, streams = probe(dest)
    assert [t for *_, t in chapters] == TITLES
    for (start, end, _), (s, e, _) in zip(chapters, expected_marks()):
        assert start == pytest.approx(s, abs=1e-3) and end == pytest.approx(e, abs=1e-3)  # ID3: ms
    assert tags["title"] == "The Test Book" and tags["artist"] == "Ann Author"
    assert tags["album"] == "The Test Book" and tags["composer"] == "Ned Narrator"
    assert tags["genre"] == "Audiobook" and tags["date"].startswith("2024")
    assert any("(attached pic)" in s for s in streams)
    audio = decode(dest)
    assert abs(len(audio) - sum(LENGTHS)) <= frame  # within one codec frame
    assert integrated_loudness(audio) == pytest.approx(-18.0, abs=0.5)


def test_flac_chapters_share_one_gain_and_keep_their_relative_loudness(tmp_path):
    book = Book()
    paths = export_chapters(book.chapters, tmp_path / "out", fmt="flac", metadata=meta(), target_lufs=-20.0)
    assert [p.name for p in paths] == ["01 - Chapter One.flac", "02 - Two the = sign; #hash.flac", "03 - Épilogue.flac"]
    waves = [sf.read(p, dtype="float32")[0] for p in paths]
    assert [len(w) for w in waves] == LENGTHS
    before = [integrated_loudness(w) for w in book.waves]
    after = [integrated_loudness(w) for w in waves]
    np.testing.assert_allclose(np.diff(after), np.diff(before), atol=0.05)
    assert integrated_loudness(np.concatenate(waves)) == pytest.approx(-20.0, abs=0.1)
    with sf.SoundFile(paths[1]) as f:
        assert (f.title, f.album, f.artist, f.tracknumber) == (TITLES[1], "The Test Book", "Ann Author", "2/3")


def test_wav_book_is_the_gained_concatenation(tmp_path):
    book = Book()
    dest = export_book(book.chapters, tmp_path / "book.wav", fmt="wav", metadata=meta(), target_lufs=-18.0)
    wave, rate = sf.read(dest, dtype="float32")
    joined = np.concatenate(book.waves)
    assert rate == RATE and len(wave) == len(joined)
    # Expectations from the spec, not from limit_peaks itself: one gain to -18 LUFS (the meter is checked
    # against EBU Tech 3341 in test_loudness), no sample above the -1 dBFS ceiling, and every sample
    # farther than the limiter's reach (2 x 10 ms ramps, 3x for margin) from an over-ceiling one untouched.
    gained = joined.astype(np.float64) * 10 ** ((-18.0 - integrated_loudness(joined)) / 20)
    ceiling = 10 ** (-1.0 / 20)
    assert np.abs(wave).max() <= ceiling + 1 / 32768
    reach = int(3 * 0.02 * RATE)
    near_peak = np.convolve(np.abs(gained) > ceiling, np.ones(2 * reach + 1), "same") > 0
    assert near_peak.any() and (~near_peak).mean() > 0.5  # the limiter works here, and most audio is untouched
    np.testing.assert_allclose(wave[~near_peak], gained[~near_peak], atol=1.5 / 32768)  # 16-bit
    with sf.SoundFile(dest) as f:
        assert f.title == "The Test Book" and f.artist == "Ann Author"


@pytest.mark.parametrize("fmt", ["m4b", "flac"])
def test_cancel_mid_export_leaves_no_file(tmp_path, cover, fmt):
    cancel = threading.Event()

    def progress(done, total):
        if done == 4:  # measured all 3, wrote chapter 1: the encoder is running
            cancel.set()

    book = Book()
    with pytest.raises(CancelledError):
        export_book(book.chapters, tmp_path / f"book.{fmt}", fmt=fmt, metadata=meta(cover),
                    on_progress=progress, cancel=cancel)
    assert os.listdir(tmp_path) == []
    cancel.clear()
    (tmp_path / "01 - Chapter One.flac").write_bytes(b"old")
    with pytest.raises(CancelledError):
        export_chapters(book.chapters, tmp_path, fmt="flac", metadata=meta(), on_progress=progress, cancel=cancel)
    assert os.listdir(tmp_path) == ["01 - Chapter One.flac"]  # untouched: renames happen at the end
    assert (tmp_path / "01 - Chapter One.flac").read_bytes() == b"old"


def test_unwritable_destination_fails_before_any_work(tmp_path):
    book = Book()
    with pytest.raises(OutputFileError, match="does not exist"):
        export_book(book.chapters, tmp_path / "missing" / "book.m4b", fmt="m4b", metadata=meta())
    (tmp_path / "dir.m4b").mkdir()
    with pytest.raises(OutputFileError, match="is a folder"):
        export_book(book.chapters, tmp_path / "dir.m4b", fmt="m4b", metadata=meta())
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputFileError, match="Cannot create folder"):
        export_chapters(book.chapters, tmp_path / "file" / "sub", fmt="flac", metadata=meta())
    assert book.loads == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to read-only folders")
def test_read_only_folder_fails_before_any_work(tmp_path):
    book = Book()
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(OutputFileError, match="not writable"):
            export_book(book.chapters, tmp_path / "book.mp3", fmt="mp3", metadata=meta())
    finally:
        tmp_path.chmod(0o755)
    assert book.loads == 0


def test_bad_requests_raise_clear_errors(tmp_path):
    book = Book()
    with pytest.raises(ExportError, match="use one of wav, flac, mp3, m4b"):
        export_book(book.chapters, tmp_path / "b.ogg", fmt="ogg", metadata=meta())
    with pytest.raises(ExportError, match="at least one"):
        export_book([], tmp_path / "b.m4b", fmt="m4b", metadata=meta())
    (tmp_path / "cover.png").write_text("not an image")
    with pytest.raises(ExportError, match="not a readable image"):
        export_book(book.chapters, tmp_path / "b.m4b", fmt="m4b", metadata=meta(tmp_path / "cover.png"))
    with pytest.raises(ExportError, match="not found"):
        export_book(book.chapters, tmp_path / "b.mp3", fmt="mp3", metadata=meta(tmp_path / "nope.jpg"))
    empty = ChapterAudio("Empty", lambda: np.zeros(0, np.float32))
    with pytest.raises(ExportError, match="has no audio"):
        export_book([empty], tmp_path / "b.wav", fmt="wav", metadata=meta())
    assert book.loads == 0 and sorted(os.listdir(tmp_path)) == ["cover.png"]


def test_encoder_failure_is_an_export_error_and_leaves_no_file(tmp_path, cover):
    book = Book()
    moved = tmp_path / "cover.png"
    moved.write_bytes(cover.read_bytes())
    first = book.chapter(0)

    def load_and_delete_cover():  # the cover disappears after the checks: ffmpeg itself fails
        moved.unlink(missing_ok=True)
        return first.load()

    chapters = [ChapterAudio(first.title, load_and_delete_cover)] + book.chapters[1:]
    with pytest.raises(ExportError, match=r"ffmpeg could not write the M4B file \(.*cover.png.* No such file.*\); check"):
        export_book(chapters, tmp_path / "b.m4b", fmt="m4b", metadata=meta(moved))
    assert os.listdir(tmp_path) == []


def test_cover_in_another_image_format_is_converted(tmp_path):
    gif = tmp_path / "cover.jpg"  # misnamed: a GIF, which MP4 cannot hold as a cover
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=32x32", "-frames:v", "1", "-f", "gif", str(gif)], check=True)
    dest = export_book(Book().chapters, tmp_path / "b.m4b", fmt="m4b", metadata=meta(gif))
    assert any("png" in s and "(attached pic)" in s for s in probe(dest)[2])


def test_chapter_file_names_are_safe_and_sorted():
    assert chapter_file_name(3, 12, 'A/B: "C"?  ', "mp3") == "03 - A B C.mp3"
    assert chapter_file_name(7, 150, "...", "wav") == "007 - Chapter.wav"
