"""Join a chapter's segment takes into one waveform: trimmed edges, configured pauses, no clicks.

numpy only. Takes are mono float32 [n] at 16 kHz. Each take keeps up to `margin_s` of its own room
tone around its sound; a configured pause is the gap between the end of one take's sound and the
start of the next (digital silence fills what the kept room tone does not), so `[pause 1.5s]`
sounds like 1.5 s. Take edges next to silence get a short raised-cosine fade; a pause of 0 joins
the two takes with a short equal-power crossfade instead.
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
    if any(p < 0 for p in pauses_after_s) or lead_s < 0:
        raise ValueError(f"pauses must be >= 0 s, got {list(pauses_after_s)} and lead {lead_s}")
    margin = int(round(margin_s * sample_rate)) if trim_silence else 0
    cross = int(round(crossfade_ms / 1000 * sample_rate))
    fade = max(1, int(round(FADE_S * sample_rate)))

    # trimmed takes with their room tone and the gap after them (an empty take's pause adds to it)
    lead = int(round(lead_s * sample_rate))  # samples of silence before the first take with sound
    kept: list[list] = []  # [take, room tone before, after, gap after, indices of the takes it stands for]
    owners: list[int] = []  # for each take: the kept entry it is, or the one it follows (-1: before all)
    empty_before: list[int] = []  # empty takes before the first take with sound
    for i, take in enumerate(takes):
        wave = np.ascontiguousarray(take, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"takes must be mono float32 [n], got shape {wave.shape}")
        head = tail = 0
        if trim_silence:
            wave, head, tail = _trim(wave, sample_rate, margin)
        gap = int(round(pauses_after_s[i] * sample_rate)) if i < len(pauses_after_s) else 0
        if len(wave):
            kept.append([wave.copy(), head, tail, gap])
            owners.append(len(kept) - 1)
        elif kept:
            owners.append(-2 - (len(kept) - 1))  # empty: sits at the end of kept[-1]'s gap
            kept[-1][3] += gap
        else:
            owners.append(-1)
            lead += gap
    if not kept:
        return np.zeros(lead, np.float32), [(0, 0)] * len(takes)

    ramp = _fade(fade)
    pieces = [np.zeros(max(0, lead - kept[0][1]), np.float32)]
    position = len(pieces[0])
    starts, ends = [], []  # of each kept take in the output
    for i, (wave, head, tail, gap) in enumerate(kept):
        after = kept[i + 1] if i + 1 < len(kept) else None
        starts.append(position)
        ends.append(position + len(wave))
        if i == 0 or kept[i - 1][3] > 0:  # silence before this take
            f = min(fade, len(wave))
            wave[:f] *= ramp[:f]
        if after is not None and gap == 0:  # equal-power crossfade into the next take
            nxt = after[0]
            c = min(cross, len(wave), len(nxt))
            theta = (np.arange(c) + 0.5) / c * (np.pi / 2)
            nxt[:c] = wave[len(wave) - c :] * np.cos(theta) + nxt[:c] * np.sin(theta)
            pieces.append(wave[: len(wave) - c])
            position += len(wave) - c
            continue
        f = min(fade, len(wave))
        wave[len(wave) - f :] *= ramp[:f][::-1]
        pieces.append(wave)
        room = tail + (after[1] if after is not None else 0)
        pieces.append(np.zeros(max(0, gap - room), np.float32))
        position += len(wave) + len(pieces[-1])
    spans = []
    for owner in owners:
        if owner >= 0:
            spans.append((starts[owner], ends[owner]))
        elif owner == -1:
            spans.append((starts[0], starts[0]))
        else:
            spans.append((ends[-2 - owner], ends[-2 - owner]))
    return np.concatenate(pieces), spans
