"""Export a narrated book: one file (chapter markers, tags, cover) or one file per chapter.

WAV/FLAC go through soundfile; MP3 (libmp3lame, ID3v2.3 with CHAP frames) and M4B (AAC in MP4 with
a chapter track, iTunes tags, cover as attached picture) through the ffmpeg binary that the
imageio-ffmpeg package ships, fed raw samples on a pipe. Memory holds one chapter at a time: a first
pass measures the book's loudness (EBU R128 gating), the second loads each chapter again and writes
it with one book-wide gain and a peak limiter. Outputs are written to a temporary file in the
destination folder and renamed at the end; an error or cancel leaves no partial file.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from engine.audio.atomic import atomic_path, remove_temp_files
from engine.audio.clip import SAMPLE_RATE
from engine.errors import CancelledError, ExportError, OutputFileError
from engine.book.loudness import LoudnessMeter, gain_to, limit_peaks

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("wav", "flac", "mp3", "m4b")
_SOUNDFILE = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16")}
_ENCODER = {  # 16 kHz mono speech: 64 kb/s MP3 (MPEG-2 layer III), 48 kb/s AAC-LC
    "mp3": ["-c:a", "libmp3lame", "-b:a", "64k", "-id3v2_version", "3", "-f", "mp3"],
    "m4b": ["-c:a", "aac", "-b:a", "48k", "-movflags", "+faststart", "-f", "ipod"],
}
# LAME's CBR mode scales its input by 0.95 (measured: -0.45 dB on tones and speech at any bit rate;
# VBR keeps the level but seeks coarsely in long files), so MP3 input is scaled up to compensate.
_INPUT_SCALE = {"mp3": 1 / 0.95}
_BLOCK = 10 * SAMPLE_RATE  # samples per write (cancel is checked between blocks)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BookMetadata:
    """Tags written into exported files (empty strings are left out)."""

    title: str  # book title: the title and album tags
    author: str = ""  # artist and album-artist tags
    cover: Path | None = None  # image (JPEG/PNG best) embedded in MP3/M4B as the cover
    narrator: str = ""  # composer tag, where audiobook players look for the narrator
    year: str = ""  # date tag, e.g. "2024"


@dataclass(frozen=True)
class ChapterAudio:
    """One chapter: its title and a function that returns its audio, float32 [n] mono at 16 kHz.

    load() is called twice per export (loudness pass, write pass) and must return the same audio.
    """

    title: str
    load: Callable[[], np.ndarray]


def chapter_file_name(index: int, total: int, title: str, fmt: str) -> str:
    """'01 - Title.flac': 1-based index padded to the width of total, title made filename-safe."""
    safe = re.sub(r'[\x00-\x1f<>:"/\\|?*]+', " ", title)
    safe = re.sub(r"\s+", " ", safe).strip(" .")[:80].rstrip(" .") or "Chapter"
    return f"{index:0{max(2, len(str(total)))}d} - {safe}.{fmt}"


def export_book(
    chapters: Sequence[ChapterAudio],
    dest: Path,
    *,
    fmt: str,
    metadata: BookMetadata,
    target_lufs: float = -18.0,
    on_progress: Progress | None = None,
    cancel: threading.Event | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> Path:
    """Write the whole book to dest (one file) and return dest.

    MP3/M4B carry one chapter marker per chapter, starting at the exact sum of the previous
    chapters' sample counts. on_progress(done, total) counts chapter passes (total = 2 x chapters).
    Raises ExportError (format, cover, empty chapter, encoder failure), OutputFileError (folder not
    writable, checked before any work) or CancelledError; no file is left at dest on failure.
    """
    dest = Path(dest)
    cover = _check_request(chapters, fmt, metadata)
    _check_folder(dest.parent, dest)
    step = _counter(on_progress, 2 * len(chapters))
    lengths, gain = _measure(chapters, target_lufs, sample_rate, step, cancel)
    marks, start = [], 0
    for chapter, n in zip(chapters, lengths):
        marks.append((chapter.title, start, start + n))
        start += n
    blocks = _render(chapters, lengths, gain, _INPUT_SCALE.get(fmt, 1.0), sample_rate, step, cancel)
    with _atomic(dest) as tmp:
        _write(tmp, fmt, blocks, sample_rate, _book_tags(metadata, metadata.title), marks, metadata.cover, cover)
    return dest


def export_chapters(
    chapters: Sequence[ChapterAudio],
    folder: Path,
    *,
    fmt: str,
    metadata: BookMetadata,
    target_lufs: float = -18.0,
    on_progress: Progress | None = None,
    cancel: threading.Event | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> list[Path]:
    """Write one file per chapter ("01 - Title.flac") into folder (created if missing).

    All chapters share one book-wide gain, so their relative loudness is kept. The files replace
    existing ones only once every chapter has been written; on error or cancel none is touched.
    """
    folder = Path(folder)
    cover = _check_request(chapters, fmt, metadata)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputFileError(f"Cannot create folder {folder}: {e.strerror or e}; choose another.") from e
    paths = [folder / chapter_file_name(i + 1, len(chapters), c.title, fmt) for i, c in enumerate(chapters)]
    _check_folder(folder, paths[0])
    step = _counter(on_progress, 2 * len(chapters))
    lengths, gain = _measure(chapters, target_lufs, sample_rate, step, cancel)
    with contextlib.ExitStack() as stack:  # every rename happens after the last chapter is written
        for i, (chapter, path) in enumerate(zip(chapters, paths)):
            tmp = stack.enter_context(_atomic(path))
            tags = _book_tags(metadata, chapter.title) | {"track": f"{i + 1}/{len(chapters)}"}
            blocks = _render([chapter], [lengths[i]], gain, _INPUT_SCALE.get(fmt, 1.0), sample_rate, step, cancel)
            _write(tmp, fmt, blocks, sample_rate, tags, [], metadata.cover, cover)
    return paths


def _check_request(chapters: Sequence[ChapterAudio], fmt: str, metadata: BookMetadata) -> str | None:
    """Validate before any work; returns the ffmpeg codec for the cover ("copy", "png") or None."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"Unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}.")
    if not chapters:
        raise ExportError("Nothing to export: choose at least one narrated chapter.")
    if fmt not in _ENCODER or metadata.cover is None:
        return None
    cover = Path(metadata.cover)
    if not cover.is_file() or not os.access(cover, os.R_OK):
        raise ExportError(f"Cover image {cover} not found or not readable; choose a JPEG or PNG file.")
    result = subprocess.run(
        [_ffmpeg(), "-hide_banner", "-i", str(cover), "-frames:v", "1", "-f", "null", "-"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )
    codec = re.search(r"Stream #\S+: Video: (\w+)", result.stderr)
    if result.returncode != 0 or codec is None:
        raise ExportError(f"Cover {cover} is not a readable image ({_last_line(result.stderr)}); use a JPEG or PNG.")
    return "copy" if codec.group(1) in ("mjpeg", "png") else "png"  # MP4 covers must be JPEG or PNG


def _check_folder(folder: Path, dest: Path) -> None:
    """OutputFileError before the long work when dest cannot be created in folder."""
    if dest.is_dir():
        raise OutputFileError(f"Cannot write {dest}: it is a folder; give a file name such as book.m4b.")
    if not folder.is_dir():
        raise OutputFileError(f"Cannot write {dest}: folder {folder} does not exist; create it first.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputFileError(f"Cannot write {dest}: folder {folder} is not writable; choose another.")


def _counter(on_progress: Progress | None, total: int) -> Callable[[], None]:
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, total)

    return step


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise CancelledError("Export cancelled; no file was written.")


def _load(chapter: ChapterAudio) -> np.ndarray:
    wave = np.asarray(chapter.load(), dtype=np.float32)
    if wave.ndim != 1 or not np.isfinite(wave).all():
        raise ValueError(f"chapter {chapter.title!r}: load() must return finite mono float32 [n]")
    if len(wave) == 0:
        raise ExportError(f"Chapter {chapter.title!r} has no audio; narrate it first or leave it out.")
    return wave


def _measure(
    chapters: Sequence[ChapterAudio], target_lufs: float, sample_rate: int,
    step: Callable[[], None], cancel: threading.Event | None,
) -> tuple[list[int], float]:
    """First pass: sample count of each chapter and the book-wide linear gain to target_lufs."""
    meter, lengths = LoudnessMeter(sample_rate), []
    for chapter in chapters:
        _check_cancel(cancel)
        wave = _load(chapter)
        meter.add(wave)
        lengths.append(len(wave))
        step()
    return lengths, gain_to(target_lufs, meter.loudness())


def _render(
    chapters: Sequence[ChapterAudio], lengths: Sequence[int], gain: float, encoder_scale: float,
    sample_rate: int, step: Callable[[], None], cancel: threading.Event | None,
) -> Iterator[np.ndarray]:
    """Second pass: each chapter with the gain, peak-limited, times encoder_scale, in float32 blocks."""
    for chapter, n in zip(chapters, lengths):
        _check_cancel(cancel)
        wave = _load(chapter)
        if len(wave) != n:
            raise ExportError(f"Chapter {chapter.title!r} changed while exporting; export again.")
        wave = limit_peaks(wave * np.float32(gain), sample_rate) * np.float32(encoder_scale)
        for start in range(0, n, _BLOCK):
            _check_cancel(cancel)
            yield wave[start : start + _BLOCK]
        step()


def _book_tags(metadata: BookMetadata, title: str) -> dict[str, str]:
    tags = {
        "title": title, "album": metadata.title, "artist": metadata.author,
        "album_artist": metadata.author, "composer": metadata.narrator, "date": metadata.year,
        "genre": "Audiobook",
    }
    return {k: v for k, v in tags.items() if v}


@contextlib.contextmanager
def _atomic(dest: Path) -> Iterator[Path]:
    """A temp path in dest's folder, renamed over dest on success, else deleted (engine.audio.atomic).

    Partial files that an export killed with -9 left for this destination are removed first.
    """
    for stale in remove_temp_files(dest.parent, dest.name):
        log.info("Removed a partial file an interrupted export left: %s", stale)
    try:
        with atomic_path(dest) as tmp:
            yield tmp
    except OSError as e:
        raise OutputFileError(f"Cannot write {dest}: {e.strerror or e}; choose another folder.") from e


def _write(
    tmp: Path, fmt: str, blocks: Iterator[np.ndarray], sample_rate: int, tags: dict[str, str],
    marks: Sequence[tuple[str, int, int]], cover: Path | None, cover_codec: str | None,
) -> None:
    if fmt in _SOUNDFILE:
        _write_soundfile(tmp, fmt, blocks, sample_rate, tags)
    else:
        _write_ffmpeg(tmp, fmt, blocks, sample_rate, _ffmetadata(tags, marks, sample_rate), cover, cover_codec)


def _write_soundfile(
    tmp: Path, fmt: str, blocks: Iterator[np.ndarray], sample_rate: int, tags: dict[str, str]
) -> None:
    """16-bit WAV/FLAC with title/artist/album/date/genre tags (RIFF INFO, Vorbis comments)."""
    container, subtype = _SOUNDFILE[fmt]
    names = {"title": "title", "artist": "artist", "album": "album", "date": "date", "genre": "genre", "track": "tracknumber"}
    try:
        with sf.SoundFile(tmp, "w", samplerate=sample_rate, channels=1, format=container, subtype=subtype) as f:
            for key, value in tags.items():
                if key in names:
                    with contextlib.suppress(RuntimeError):  # a tag this container cannot hold
                        setattr(f, names[key], value)
            for block in blocks:
                f.write(np.clip(block, -1.0, 1.0))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise OutputFileError(f"Cannot write {fmt.upper()} audio ({e}); check free disk space.") from e


def _ffmpeg() -> str:
    try:
        import imageio_ffmpeg
    except ImportError as e:
        raise ExportError("MP3/M4B export needs the imageio-ffmpeg package: pip install imageio-ffmpeg") from e
    return imageio_ffmpeg.get_ffmpeg_exe()


def _escape(text: str) -> str:
    """A value for ffmpeg's ffmetadata format (newlines become spaces)."""
    return re.sub(r"([=;#\\])", r"\\\1", " ".join(text.splitlines()))


def _ffmetadata(tags: dict[str, str], marks: Sequence[tuple[str, int, int]], sample_rate: int) -> str:
    lines = [";FFMETADATA1"] + [f"{k}={_escape(v)}" for k, v in tags.items()]
    for title, start, end in marks:
        lines += ["", "[CHAPTER]", f"TIMEBASE=1/{sample_rate}", f"START={start}", f"END={end}", f"title={_escape(title)}"]
    return "\n".join(lines) + "\n"


def _last_line(text: str, count: int = 1) -> str:
    """The last `count` non-empty lines of ffmpeg's stderr, joined with ' / '."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " / ".join(lines[-count:]) if lines else "no message"


def _write_ffmpeg(
    tmp: Path, fmt: str, blocks: Iterator[np.ndarray], sample_rate: int, metadata: str,
    cover: Path | None, cover_codec: str | None,
) -> None:
    """Pipe float32 samples into ffmpeg, which encodes them with the tags, chapters and cover."""
    with tempfile.TemporaryDirectory(prefix="llasa-export-") as work:
        meta = Path(work) / "metadata.txt"
        meta.write_text(metadata, encoding="utf-8")
        cmd = [_ffmpeg(), "-hide_banner", "-nostats", "-loglevel", "error", "-y",
               "-f", "f32le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0",
               "-f", "ffmetadata", "-i", str(meta)]
        maps = ["-map", "0:a", "-map_metadata", "1", "-map_chapters", "1"]
        if cover is not None and cover_codec is not None:
            cmd += ["-i", str(cover)]
            maps += ["-map", "2:v", "-c:v", cover_codec, "-disposition:v:0", "attached_pic"]
        cmd += maps + _ENCODER[fmt] + [str(tmp)]
        with open(Path(work) / "stderr.txt", "w+b") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
            try:
                for block in blocks:
                    proc.stdin.write(np.asarray(block, "<f4").tobytes())
                proc.stdin.close()
                code = proc.wait()
            except BrokenPipeError:  # ffmpeg stopped early; its stderr says why
                code = proc.wait()
            finally:
                if proc.poll() is None:  # cancelled or failed while feeding: stop ffmpeg
                    proc.kill()
                    proc.wait()
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            err.seek(0)
            stderr = err.read().decode("utf-8", "replace")
    if code != 0:
        log.error("ffmpeg failed (exit %s): %s\n%s", code, " ".join(cmd), stderr[-4000:])
        raise ExportError(
            f"ffmpeg could not write the {fmt.upper()} file ({_last_line(stderr, 2)}); "
            "check free disk space and the cover image, then export again."
        )
