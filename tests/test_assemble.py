"""Joining takes: exact length arithmetic, no clicks at joins, pauses where configured, trimming."""
import numpy as np
import pytest

from engine.speech.assemble import join_segments

RATE = 16000


def tone(seconds, freq=220.0, amp=0.5, phase=np.pi / 2):
    """A sine that starts and ends far from zero (phase pi/2): a hard cut here would click."""
    t = np.arange(int(round(seconds * RATE))) / RATE
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def padded(sound, before_s, after_s, noise_db=-70.0, seed=0):
    """sound with low room noise around it (frame-aligned so trim bounds are exact)."""
    rng = np.random.default_rng(seed)
    pre = rng.standard_normal(int(before_s * RATE)) * 10 ** (noise_db / 20)
    post = rng.standard_normal(int(after_s * RATE)) * 10 ** (noise_db / 20)
    return np.concatenate([pre, sound, post]).astype(np.float32)


def quiet_runs(wave, threshold=1e-2, min_s=0.01):
    """(start, length) in samples of each run of |x| < threshold lasting over min_s (not zero crossings)."""
    quiet = np.abs(wave) < threshold
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    return [(int(s), int(e - s)) for s, e in zip(edges[::2], edges[1::2]) if e - s > min_s * RATE]


def test_length_arithmetic_is_exact_without_trimming():
    takes = [tone(1.0), tone(0.37), tone(2.003), tone(0.5)]
    pauses = [0.25, 0.0, 1.5, 0.4]
    out = join_segments(takes, pauses, crossfade_ms=10, trim_silence=False)
    expected = sum(map(len, takes)) + sum(round(p * RATE) for p in pauses) - round(0.010 * RATE)
    assert len(out) == expected and out.dtype == np.float32
    out = join_segments(takes, pauses[:-1], crossfade_ms=25, trim_silence=False)  # no trailing pause
    assert len(out) == sum(map(len, takes)) + round(1.75 * RATE) - round(0.025 * RATE)


def test_no_clicks_at_joins_pauses_or_crossfades():
    takes = [tone(0.5, 220), tone(0.5, 330, phase=-np.pi / 2), tone(0.5, 440), tone(0.5, 550)]
    out = join_segments(takes, [0.3, 0.0, 0.0, 0.2], trim_silence=False)
    naive = np.concatenate(takes)
    smooth_step = 2 * np.pi * 550 / RATE * 0.5  # largest sample step inside the loudest tone
    assert np.abs(np.diff(naive)).max() > 0.9  # the hard cut really would click
    assert np.abs(np.diff(out)).max() < 1.3 * smooth_step
    assert abs(out[0]) < 0.01 and abs(out[-1]) < 0.01  # chapter edges fade in and out


def test_crossfade_keeps_level_for_uncorrelated_takes():
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(RATE).astype(np.float32) * 0.1 for _ in range(2))
    out = join_segments([a, b], [0.0], crossfade_ms=50, trim_silence=False)
    mid = out[RATE - 800 : RATE]  # the 50 ms overlap
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(0.1, rel=0.15)  # equal power, no dip


def test_pauses_land_where_configured_from_sound_to_sound():
    sounds = [tone(0.6), tone(0.4, 330), tone(0.8, 440)]
    takes = [padded(s, 0.3, 0.5, seed=i) for i, s in enumerate(sounds)]  # 0.3/0.5 s of room tone
    pauses = [0.5, 1.2, 0.7]
    out = join_segments(takes, pauses)
    runs = quiet_runs(out)
    gaps = [length for start, length in runs if 0 < start and start + length < len(out)]
    expected = [round(p * RATE) for p in pauses[:2]]
    # the 5 ms fades at each side count as quiet only where the tone is under 1e-2
    assert gaps == pytest.approx(expected, abs=0.005 * RATE)
    assert runs[0][0] == 0 and runs[0][1] == pytest.approx(0.05 * RATE, abs=0.005 * RATE)  # room tone kept
    assert runs[-1][1] == pytest.approx(0.7 * RATE, abs=0.005 * RATE)  # the trailing pause
    assert len(out) == pytest.approx(0.05 * RATE + sum(map(len, sounds)) + sum(expected) + 0.7 * RATE, abs=2)


def test_short_pause_never_cuts_into_room_tone_and_zero_pause_crossfades():
    takes = [padded(tone(0.5), 0.2, 0.2, seed=1), padded(tone(0.5, 330), 0.2, 0.2, seed=2)]
    out = join_segments(takes, [0.02, 0.0])  # shorter than the 2 x 50 ms of kept room tone
    gaps = [length for start, length in quiet_runs(out) if 0 < start < len(out) - RATE // 10]
    assert gaps == pytest.approx([0.1 * RATE], abs=0.005 * RATE)
    joined = join_segments(takes, [0.0, 0.0], crossfade_ms=10)
    assert len(joined) == 2 * (RATE // 2 + 2 * 800) - 160  # 50 ms room tone each side, 10 ms overlap


def test_silent_take_adds_only_its_pause_and_all_silent_gives_silence():
    sound = padded(tone(0.5), 0.1, 0.1)
    out = join_segments([sound, np.zeros(RATE, np.float32), sound], [0.3, 0.4, 0.0])
    gaps = [length for start, length in quiet_runs(out) if 0 < start and start + length < len(out)]
    assert gaps == pytest.approx([0.7 * RATE], abs=0.005 * RATE)
    assert np.array_equal(join_segments([np.zeros(RATE, np.float32)], [0.5]), np.zeros(RATE // 2, np.float32))
    assert len(join_segments([], [])) == 0


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="pause per take"):
        join_segments([tone(0.1)], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=">= 0"):
        join_segments([tone(0.1), tone(0.1)], [-0.1])
