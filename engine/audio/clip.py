"""Audio constants and plain functions on waveforms (whisper-style).

Waveforms are 1-D float32 numpy arrays at SAMPLE_RATE unless a function says otherwise.
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from engine.audio.atomic import atomic_path
from engine.errors import OutputFileError, ReferenceAudioError, UnsupportedAudioError

SAMPLE_RATE = 16_000  # Hz: X-Codec2 and Llasa work at 16 kHz mono only
HOP_LENGTH = 320  # samples per speech code
FRAME_RATE = SAMPLE_RATE // HOP_LENGTH  # speech codes per second (50)

SILENCE_DB = -60.0  # dBFS: a clip whose loudest 20 ms frame is below this is silent
_FRAME_S = 0.020  # s: analysis frame for silence detection and cut search
_CUT_SEARCH_S = 5.0  # s: a long reference is cut at the quietest pause this long before the limit
_MAX_READ_S = 120.0  # s: load_reference reads at most this much of a file

# Resampler: Kaiser-windowed sinc. 32 zero crossings each side at the lower rate and beta 8.6 give
# ~86 dB stopband; the cutoff is 94.5 % of the lower Nyquist (transition 6.9-8.2 kHz at 16 kHz).
_ZERO_CROSSINGS = 32
_ROLLOFF = 0.945
_KAISER_BETA = 8.6

# Output formats by extension: (soundfile format, subtype). WAV/FLAC are 16-bit PCM.
_WRITE_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
if sf.check_format("MP3", "MPEG_LAYER_III"):
    _WRITE_FORMATS[".mp3"] = ("MP3", "MPEG_LAYER_III")


def _readable_formats() -> str:
    return ", ".join(sorted(sf.available_formats()))


def read_audio(path: str | os.PathLike, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Read any soundfile-readable file as mono: (float32 [n] in [-1, 1], sample rate in Hz).

    Channels are averaged; only the first max_seconds are read when given. Raises
    UnsupportedAudioError naming the file and the problem when it is missing, a folder, empty,
    unreadable, not audio, has no samples or holds NaN/inf.
    """
    p = Path(path)
    if not p.exists():
        raise UnsupportedAudioError(f"Audio file not found: {p}")
    if p.is_dir():
        raise UnsupportedAudioError(f"{p} is a folder, not an audio file; choose a file inside it.")
    if p.stat().st_size == 0:
        raise UnsupportedAudioError(f"Audio file {p} is empty (0 bytes); choose another recording.")
    if not os.access(p, os.R_OK):
        raise UnsupportedAudioError(f"Cannot open audio file {p}: permission denied.")
    try:
        with sf.SoundFile(p) as f:
            rate = f.samplerate
            frames = -1 if max_seconds is None else int(math.ceil(max_seconds * rate))
            data = f.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:  # LibsndfileError is a RuntimeError
        raise UnsupportedAudioError(
            f"Cannot read {p}: not a supported or intact audio file ({e}). "
            f"Supported formats: {_readable_formats()}."
        ) from e
    if data.shape[0] == 0:
        raise UnsupportedAudioError(f"Audio file {p} contains no audio samples.")
    wave = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wave).all():
        raise UnsupportedAudioError(f"Audio file {p} contains invalid samples (NaN or infinity).")
    return np.ascontiguousarray(wave, dtype=np.float32), int(rate)


@lru_cache(maxsize=16)
def _sinc_filter_bank(up: int, down: int) -> tuple[np.ndarray, int]:
    """Polyphase taps [up, 2K] (float32, read-only) and K for resampling by up/down (coprime)."""
    scale = min(1.0, up / down)  # cutoff relative to the input Nyquist
    cutoff = _ROLLOFF * scale
    half_width = _ZERO_CROSSINGS / scale  # in input samples
    k = math.ceil(half_width)
    # Output in phase p sits p/up input samples after input i0; tap j reads input i0 + j - k + 1.
    offsets = np.arange(up)[:, None] / up - (np.arange(2 * k)[None, :] - k + 1)
    x = np.clip(offsets / half_width, -1.0, 1.0)
    w = np.i0(_KAISER_BETA * np.sqrt(1.0 - x**2)) / np.i0(_KAISER_BETA)  # Kaiser window
    w[np.abs(offsets) > half_width] = 0.0
    taps = (cutoff * np.sinc(cutoff * offsets) * w).astype(np.float32)
    taps.setflags(write=False)
    return taps, k


def resample(wave: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling of float32 [n] from from_rate to to_rate (Hz) → float32 [m].

    m = round(n * to_rate / from_rate). Kaiser-windowed sinc, polyphase over the gcd-reduced ratio.
    Measured at 48 kHz -> 16 kHz: flat to 7 kHz (sine error < 1e-4), -6 dB at 7.56 kHz, tones from
    8.2 kHz down >= 65 dB and from 8.25 kHz >= 80 dB. The signal is taken as zero outside [0, n).
    Equal rates return the input as float32.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"resample expects a 1-D waveform, got shape {wave.shape}")
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    if from_rate == to_rate:
        return wave
    g = math.gcd(int(from_rate), int(to_rate))
    up, down = int(to_rate) // g, int(from_rate) // g
    n_out = int(round(len(wave) * up / down))
    taps, k = _sinc_filter_bank(up, down)
    padded = np.concatenate([np.zeros(k, np.float32), wave, np.zeros(k + down + 1, np.float32)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * k)  # [len, 2K] view, no copy
    out = np.empty(n_out, dtype=np.float32)
    # Outputs r, r+up, r+2up, ... share one phase and step `down` inputs apart: one matmul each.
    for r in range(min(up, n_out)):
        phase, base = (r * down) % up, (r * down) // up
        count = len(range(r, n_out, up))
        # window start in `padded` for input index base - k + 1 is base + 1 (k zeros prepended)
        out[r::up] = windows[base + 1 :: down][:count] @ taps[phase]
    return out


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read any supported file as mono float32 [n] at sample_rate (Hz)."""
    wave, rate = read_audio(path)
    return resample(wave, rate, sample_rate)


def frame_levels_db(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """RMS level in dBFS of consecutive 20 ms frames of float32 [n] → float64 [n // frame]."""
    frame = max(1, int(round(_FRAME_S * sample_rate)))
    n = len(wave) // frame
    frames = np.asarray(wave[: n * frame], dtype=np.float64).reshape(n, frame)
    return 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


def trim_silence(
    wave: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    *,
    threshold_db: float = -40.0,
    margin_s: float = 0.05,
) -> np.ndarray:
    """Cut leading and trailing silence from float32 [n]; returns a view, empty if all silent.

    A 20 ms frame is sound when its RMS is above loudest frame + threshold_db, above SILENCE_DB,
    and 10 dB above the background noise (the 10th-percentile frame; this one never rises past
    loudest - 20 dB). margin_s of audio is kept on each side of the first and last sound frame.
    """
    levels = frame_levels_db(wave, sample_rate)
    if len(levels) == 0:
        return wave[:0]
    peak, noise = levels.max(), np.percentile(levels, 10)
    loud = np.flatnonzero(levels > max(peak + threshold_db, SILENCE_DB, min(noise + 10, peak - 20)))
    if len(loud) == 0:
        return wave[:0]
    frame = max(1, int(round(_FRAME_S * sample_rate)))
    margin = int(round(margin_s * sample_rate))
    start = max(0, loud[0] * frame - margin)
    end = min(len(wave), (loud[-1] + 1) * frame + margin)
    return wave[start:end]


@dataclass(frozen=True)
class ReferenceClip:
    """A voice reference ready for the codec: mono float32 [n] at SAMPLE_RATE, silence trimmed."""

    samples: np.ndarray  # float32 [n] at SAMPLE_RATE (16 kHz), values in [-1, 1]
    source: Path  # the file it was read from
    original_duration_s: float  # s: length of the file as read, before trimming and cutting
    warnings: tuple[str, ...] = ()  # user-facing notes (cut, clipping, very quiet)

    @property
    def duration_s(self) -> float:
        """Length of `samples` in seconds."""
        return len(self.samples) / SAMPLE_RATE


def _cut_at_pause(wave: np.ndarray, max_seconds: float) -> np.ndarray:
    """Cut float32 [n] (16 kHz) in the last, quietest pause of the few seconds before max_seconds.

    Levels are averaged over 140 ms so that a pause between phrases beats a stop consonant; the cut
    goes through the latest frame within 3 dB of the quietest, keeping the most sound.
    """
    frame = int(round(_FRAME_S * SAMPLE_RATE))
    limit = int(max_seconds * SAMPLE_RATE) // frame  # frames that fit
    first = max(1, limit - int(_CUT_SEARCH_S / _FRAME_S))
    power = 10.0 ** (frame_levels_db(wave[: limit * frame]) / 10.0)
    smooth = np.convolve(np.pad(power, 3, mode="edge"), np.ones(7) / 7, "valid")  # 7 frames
    span = 10.0 * np.log10(smooth[first:limit] + 1e-12)
    quietest = first + int(np.flatnonzero(span <= span.min() + 3.0)[-1])
    cut = wave[: quietest * frame + frame // 2]  # through the middle of the pause
    return trim_silence(cut)


def load_reference(
    path: str | os.PathLike, *, max_seconds: float = 15.0, min_seconds: float = 1.0
) -> ReferenceClip:
    """Load a voice reference clip: any supported file → ReferenceClip at 16 kHz mono.

    Leading/trailing silence is trimmed; sound longer than max_seconds is cut at a pause with a
    warning. Raises UnsupportedAudioError (cannot read) or ReferenceAudioError (silent, or under
    min_seconds of sound after trimming).
    """
    if not 0 < min_seconds < max_seconds:
        raise ValueError(f"need 0 < min_seconds < max_seconds, got {min_seconds}, {max_seconds}")
    source = Path(path)
    # a long file (a podcast picked by mistake) costs no more memory than _MAX_READ_S of it
    wave, rate = read_audio(source, max_seconds=max(_MAX_READ_S, 2 * max_seconds))
    original_s = sf.info(source).duration
    wave = resample(wave, rate, SAMPLE_RATE)
    silent = f"Reference {source} is silent; record or choose a clip with speech."
    peak = float(np.abs(wave).max())
    if peak < 10 ** (SILENCE_DB / 20):
        raise ReferenceAudioError(silent)
    wave = trim_silence(wave)
    if len(wave) == 0:
        raise ReferenceAudioError(silent)
    notes: list[str] = []
    sound_s = len(wave) / SAMPLE_RATE
    if sound_s > max_seconds:
        wave = _cut_at_pause(wave, max_seconds)
        cut_s = len(wave) / SAMPLE_RATE
        notes.append(
            f"Reference is {sound_s:.1f} s long; cut to {cut_s:.1f} s at a pause. "
            "8-15 s works best."
        )
    sound_s = len(wave) / SAMPLE_RATE
    if sound_s < min_seconds:
        raise ReferenceAudioError(
            f"Reference {source} is only {sound_s:.1f} s of sound; record at least "
            f"{min_seconds:g} s, ideally 8-15 s."
        )
    if np.mean(np.abs(wave) >= 0.999) > 1e-3:
        notes.append("Reference seems clipped (distorted); a cleaner recording clones better.")
    if peak < 10 ** (-30 / 20):
        notes.append("Reference is very quiet (peak below -30 dBFS); a louder one clones better.")
    samples = np.array(wave, dtype=np.float32)  # a copy, so the full file can be freed
    samples.setflags(write=False)
    return ReferenceClip(samples, source, original_s, tuple(notes))


def _output_format(dest: Path) -> tuple[str, str]:
    fmt = _WRITE_FORMATS.get(dest.suffix.lower())
    if fmt is None:
        raise UnsupportedAudioError(
            f"Cannot write {dest}: unsupported extension {dest.suffix or '(none)'!r}; "
            f"use one of {', '.join(_WRITE_FORMATS)}."
        )
    return fmt


def check_output_path(path: str | os.PathLike) -> Path:
    """Fail fast, before long work, when write_audio could not create `path`; returns it as a Path.

    Raises UnsupportedAudioError for an unknown extension and OutputFileError when the folder is
    missing or read-only, or `path` is a folder.
    """
    dest = Path(path)
    _output_format(dest)
    folder = dest.parent
    if dest.is_dir():
        raise OutputFileError(f"Cannot write {dest}: it is a folder; give a file name such as out.wav.")
    if not folder.is_dir():
        raise OutputFileError(f"Cannot write {dest}: folder {folder} does not exist; create it first.")
    if not os.access(folder, os.W_OK):
        raise OutputFileError(f"Cannot write {dest}: folder {folder} is not writable; choose another.")
    return dest


class AudioWriter:
    """Writes float32 audio to `path` piece by piece; the file appears complete on close() or not at all.

    The format follows the extension (.wav and .flac: 16-bit PCM; .ogg: Vorbis; .mp3 when this
    libsndfile can encode it); samples are clipped to [-1, 1]. Pieces go to a temporary file next to
    `path` (engine.audio.atomic.atomic_path) through _QuietFile, which keeps the OSError of a failed
    write (full disk, file too large) to report it instead of libsndfile's "System error." and never
    raises inside soundfile's cffi callbacks (that prints "Exception ignored" tracebacks); close()
    syncs and renames the file over `path`; abort() — or leaving a `with` block by an exception —
    removes it. Raises UnsupportedAudioError for an unknown extension and OutputFileError when the file
    cannot be written.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, channels: int = 1) -> None:
        self.path = Path(path)
        fmt = _output_format(self.path)
        self.frames = 0  # samples per channel written so far
        self._target = atomic_path(self.path)
        self._file = self._raw = None
        try:
            tmp = self._target.__enter__()
        except OSError as e:
            self._target = None
            raise self._error(e) from e
        try:
            self._raw = _QuietFile(tmp)
            self._file = sf.SoundFile(self._raw, "w", int(sample_rate), channels, fmt[1], format=fmt[0])
        except BaseException as e:
            self.abort()
            raise self._error(e) from e

    def _error(self, e: BaseException) -> BaseException:
        if self._raw is not None and self._raw.error is not None:
            e = self._raw.error  # what the disk said, not libsndfile's "System error."
        if isinstance(e, OSError):
            return OutputFileError(f"Cannot write {self.path}: {e.strerror or e}; choose another folder or name.")
        if isinstance(e, (sf.LibsndfileError, RuntimeError)):
            return OutputFileError(f"Cannot write {self.path}: encoder failed ({e}).")
        return e

    def write(self, wave: np.ndarray) -> None:
        """Append float32 [n] (or [n, channels]) samples."""
        data = np.asarray(wave, dtype=np.float32)
        if data.ndim not in (1, 2) or not np.isfinite(data).all():
            raise ValueError(f"AudioWriter expects finite samples [n] or [n, ch], got {data.shape}")
        try:
            self._file.write(np.clip(data, -1.0, 1.0))
        except BaseException as e:
            self.abort()
            raise self._error(e) from e
        self.frames += len(data)

    def close(self) -> Path:
        """Finish the file and put it in place; returns its path."""
        try:
            self._file.close()
            if self._raw.error is not None:
                raise self._raw.error
            self._raw.close()
            target, self._target = self._target, None
            target.__exit__(None, None, None)  # sync, keep the mode, rename (the temp file is gone on failure)
        except BaseException as e:
            self.abort()
            raise self._error(e) from e
        return self.path

    def abort(self) -> None:
        """Drop what was written; `path` stays as it was."""
        if self._file is not None and not self._file.closed:
            with contextlib.suppress(sf.LibsndfileError, RuntimeError, OSError):
                self._file.close()
        if self._raw is not None:
            self._raw.close()
        target, self._target = self._target, None
        if target is not None:
            reason = OutputFileError("write aborted")
            target.__exit__(type(reason), reason, None)  # removes the temporary file

    def __enter__(self) -> "AudioWriter":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


class _QuietFile:
    """A binary file for soundfile's virtual I/O that never raises inside its cffi callbacks: a failed
    write is kept in `error` and reported as a short write, so libsndfile stops and AudioWriter raises it."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "r+b")
        self.error: OSError | None = None

    def write(self, data) -> int:
        if self.error is not None:
            return 0
        try:
            return self._file.write(data)
        except OSError as e:
            self.error = e
            return 0

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()


def write_audio(path: str | os.PathLike, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write float32 [n] (or [n, channels]) at sample_rate (Hz) to path, atomically (see AudioWriter)."""
    data = np.asarray(wave, dtype=np.float32)
    if data.ndim not in (1, 2) or not np.isfinite(data).all():
        raise ValueError(f"write_audio expects finite samples [n] or [n, ch], got {data.shape}")
    with AudioWriter(path, sample_rate, 1 if data.ndim == 1 else data.shape[1]) as writer:
        writer.write(data)


def quality_hints(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[str, ...]:
    """User-facing hints on a voice reference, float32 [n] at sample_rate (Hz); () when it looks fine.

    Checks length (3-15 s, 8-15 s best), clipping (over 0.1 % of samples at |x| >= 0.99), level
    (peak under -30 dBFS or the speech level, the 90th-percentile 20 ms frame, under -40 dBFS) and
    noise (the 5th-percentile frame, the floor heard in pauses, within 25 dB of the speech level).
    """
    wave = np.asarray(samples, dtype=np.float32).reshape(-1)
    duration = len(wave) / sample_rate
    hints: list[str] = []
    if duration < 3.0:
        hints.append(f"Short clip ({duration:.1f} s): 8-15 s works best.")
    elif duration > 15.0:
        hints.append(f"Long clip ({duration:.1f} s): trim it to 15 s or less; 8-15 s works best.")
    levels = frame_levels_db(wave, sample_rate)
    if len(levels) == 0:
        return tuple(hints)
    clipped = float(np.mean(np.abs(wave) >= 0.99))
    if clipped > 1e-3:
        hints.append(
            f"Clipping: {100 * clipped:.1f} % of samples hit full scale; lower the input gain and record again."
        )
    peak_db = 20.0 * math.log10(float(np.abs(wave).max()) + 1e-12)
    speech_db, noise_db = np.percentile(levels, 90), np.percentile(levels, 5)
    if peak_db < -30.0 or speech_db < -40.0:
        hints.append(
            f"Too quiet (peak {peak_db:.0f} dBFS): move closer to the microphone or raise the input gain."
        )
    elif speech_db - noise_db < 25.0:
        hints.append(
            f"Noisy: the background is only {speech_db - noise_db:.0f} dB below the speech; "
            "record somewhere quieter."
        )
    return tuple(hints)
