"""Join segment takes into one waveform: trimmed edges, configured pauses, no clicks — and where each landed.

numpy only. Takes are mono float32 [n] at 16 kHz. Each take keeps up to `margin_s` of its own room
tone around its sound; a configured pause is the gap between the end of one take's sound and the
start of the next (digital silence fills what the kept room tone does not), so `[pause 1.5s]`
sounds like 1.5 s. Take edges next to silence get a short raised-cosine fade; a pause of 0 joins
the two takes with a short equal-power crossfade instead. `SegmentJoiner` does it incrementally (the
render path streams a book-length text to its file with it); join_segments / join_segments_timed
are the whole-chapter forms, with the span of every take in the output (subtitles come from these).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.audio import clip as audio
from engine.audio.clip import SAMPLE_RATE

FADE_S = 0.005  # s: raised-cosine fade at take edges that meet silence
TRIM_THRESHOLD_DB = -45.0  # dB below a take's loudest 20 ms frame that still counts as sound
MARGIN_S = 0.05  # s: room tone kept before and after a take's sound


def _sound_bounds(wave: np.ndarray, sample_rate: int) -> tuple[int, int]:
    """[start, end) of the sound in float32 [n] (20 ms frame resolution); (0, 0) if all silent."""
    sound = audio.trim_silence(wave, sample_rate, threshold_db=TRIM_THRESHOLD_DB, margin_s=0.0)
    if len(sound) == 0:
        return 0, 0
    start = (sound.ctypes.data - wave.ctypes.data) // wave.itemsize  # trim_silence returns a view
    return start, start + len(sound)


def _trim(wave: np.ndarray, sample_rate: int, margin: int) -> tuple[np.ndarray, int, int]:
    """(trimmed take, room-tone samples kept before the sound, kept after it)."""
    start, end = _sound_bounds(wave, sample_rate)
    if start == end:
        return wave[:0], 0, 0
    head, tail = min(margin, start), min(margin, len(wave) - end)
    return wave[start - head : end + tail], head, tail


def _fade(n: int) -> np.ndarray:
    """Raised-cosine ramp from near 0 up to near 1 over n samples (float32 [n], half-sample offsets)."""
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)


class SegmentJoiner:
    """Joins takes as they come, returning the audio that is final so far (bounded memory).

    add(take, pause_after_s) returns the samples that can no longer change; finish() returns the
    rest. All returned pieces together equal join_segments of the same takes and pauses: one take is
    held back, because its end depends on the next take (crossfade, shared room tone). `spans[i]` is
    where take i landed ([start, end) in samples of its kept audio: sound plus room tone); it is
    known once the next take with sound has arrived (all of them after finish()).
    """

    def __init__(self, *, crossfade_ms: float = 10, trim_silence: bool = True, sample_rate: int = SAMPLE_RATE,
                 margin_s: float = MARGIN_S, lead_s: float = 0.0) -> None:
        if not lead_s >= 0:
            raise ValueError(f"pauses must be >= 0 s, got lead {lead_s}")
        self._rate, self._trim = sample_rate, trim_silence
        self._margin = int(round(margin_s * sample_rate)) if trim_silence else 0
        self._cross = int(round(crossfade_ms / 1000 * sample_rate))
        self._fade = max(1, int(round(FADE_S * sample_rate)))
        self._ramp = _fade(self._fade)
        self._lead = int(round(lead_s * sample_rate))  # samples of silence before the first take with sound
        self._held: list | None = None  # [take, room tone before, after, gap after] of the last take with sound
        self._held_end = 0  # output position where the held take's kept audio ends
        self._waiting: list[int] = []  # silent takes before the first take with sound: span = its start
        self.spans: list[tuple[int, int] | None] = []
        self.samples = 0  # samples returned so far

    def add(self, take: np.ndarray, pause_after_s: float) -> np.ndarray:
        """Queue one take (mono float32 [n]) and the gap after it (s, >= 0); returns final samples."""
        if not pause_after_s >= 0:
            raise ValueError(f"pauses must be >= 0 s, got {pause_after_s}")
        wave = np.ascontiguousarray(take, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"takes must be mono float32 [n], got shape {wave.shape}")
        head = tail = 0
        if self._trim:
            wave, head, tail = _trim(wave, self._rate, self._margin)
        gap = int(round(pause_after_s * self._rate))
        index = len(self.spans)
        self.spans.append(None)
        if not len(wave):  # a silent take adds only its pause; its span is empty, where it would have been
            if self._held is not None:
                self._held[3] += gap
                self.spans[index] = (self._held_end, self._held_end)
            else:
                self._lead += gap
                self._waiting.append(index)
            return np.zeros(0, np.float32)
        following = [wave.copy(), head, tail, gap]
        if self._held is None:
            out = np.zeros(max(0, self._lead - head), np.float32)
            self._fade_in(following[0])
        else:
            out = self._release(following)
        start = self.samples + len(out)
        for waiting in self._waiting:
            self.spans[waiting] = (start, start)
        self._waiting = []
        self.spans[index] = (start, start + len(wave))
        self._held, self._held_end = following, start + len(wave)
        self.samples += len(out)
        return out

    def finish(self) -> np.ndarray:
        """The held take and the silence after it."""
        if self._held is None:
            out = np.zeros(self._lead, np.float32)
            for waiting in self._waiting:
                self.spans[waiting] = (0, 0)
            self._waiting = []
        else:
            out = self._release(None)
        self._held = None
        self.samples += len(out)
        return out

    def _fade_in(self, wave: np.ndarray) -> None:
        f = min(self._fade, len(wave))
        wave[:f] *= self._ramp[:f]

    def _release(self, after: list | None) -> np.ndarray:
        """The held take's final samples, given the take after it (None at the end)."""
        wave, _, tail, gap = self._held
        if after is not None and gap == 0:  # equal-power crossfade into the next take
            nxt = after[0]
            c = min(self._cross, len(wave), len(nxt))
            theta = (np.arange(c) + 0.5) / c * (np.pi / 2)
            nxt[:c] = wave[len(wave) - c :] * np.cos(theta) + nxt[:c] * np.sin(theta)
            return wave[: len(wave) - c]
        f = min(self._fade, len(wave))
        wave[len(wave) - f :] *= self._ramp[:f][::-1]
        if after is not None:
            self._fade_in(after[0])
        room = tail + (after[1] if after is not None else 0)
        return np.concatenate([wave, np.zeros(max(0, gap - room), np.float32)])


def join_segments(
    takes: Sequence[np.ndarray],
    pauses_after_s: Sequence[float],
    *,
    crossfade_ms: float = 10,
    trim_silence: bool = True,
    sample_rate: int = SAMPLE_RATE,
    margin_s: float = MARGIN_S,
    lead_s: float = 0.0,
) -> np.ndarray:
    """One chapter's audio (float32 [n] at sample_rate) from its takes, in order (join_segments_timed without
    the timings)."""
    return join_segments_timed(takes, pauses_after_s, crossfade_ms=crossfade_ms, trim_silence=trim_silence,
                               sample_rate=sample_rate, margin_s=margin_s, lead_s=lead_s)[0]


def join_segments_timed(
    takes: Sequence[np.ndarray],
    pauses_after_s: Sequence[float],
    *,
    crossfade_ms: float = 10,
    trim_silence: bool = True,
    sample_rate: int = SAMPLE_RATE,
    margin_s: float = MARGIN_S,
    lead_s: float = 0.0,
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """One chapter's audio (float32 [n] at sample_rate) from its takes, in order, and where each take
    landed in it: spans[i] = [start, end) in samples of take i's kept audio (its sound plus room tone).

    pauses_after_s[i] (s, >= 0) is the gap after take i: len(pauses_after_s) is len(takes) (the last
    one is silence appended at the end, e.g. a chapter gap) or len(takes) - 1. lead_s: silence before
    the first take. A gap of 0 overlaps the takes by crossfade_ms (equal-power, sin/cos; the two spans
    overlap by that much); a longer gap inserts silence with fades. With trim_silence, each take's
    leading/trailing silence is cut to margin_s of room tone and the gap counts from sound to sound
    (it is at least the room tone kept); without it, the gap is exactly the inserted silence. A take
    that is all silence contributes nothing but its pause (its span is empty, where it would have been).
    """
    if len(pauses_after_s) not in (len(takes), max(0, len(takes) - 1)):
        raise ValueError(f"need one pause per take (or one fewer), got {len(pauses_after_s)} for {len(takes)}")
    joiner = SegmentJoiner(crossfade_ms=crossfade_ms, trim_silence=trim_silence, sample_rate=sample_rate,
                           margin_s=margin_s, lead_s=lead_s)
    pieces = [joiner.add(take, pauses_after_s[i] if i < len(pauses_after_s) else 0.0) for i, take in enumerate(takes)]
    pieces.append(joiner.finish())
    return np.concatenate(pieces), list(joiner.spans)
