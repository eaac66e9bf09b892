"""BS.1770-4 loudness: filter coefficients, known sine levels, gating, streaming, normalization."""
import numpy as np
import pytest

from engine.book.loudness import (
    Biquad,
    LoudnessMeter,
    gain_to,
    integrated_loudness,
    k_weighting_coefficients,
    limit_peaks,
    normalize_loudness,
)


def sine(freq, seconds, rate, dbfs=0.0):
    t = np.arange(int(seconds * rate)) / rate
    return (10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def speechlike(seconds, rate=16000, seed=0):
    """Noise shaped by a 3 Hz syllable envelope with pauses: real dynamics for the gates."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    env = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) * (np.sin(2 * np.pi * 0.3 * t) > -0.5)
    return (0.2 * env * rng.standard_normal(len(t))).astype(np.float32)


def test_k_weighting_matches_the_48k_coefficients_printed_in_the_standard():
    (b1, a1), (b2, a2) = k_weighting_coefficients(48000)
    np.testing.assert_allclose(b1, [1.53512485958697, -2.69169618940638, 1.19839281085285], atol=1e-10)
    np.testing.assert_allclose(a1, [1.0, -1.69065929318241, 0.73248077421585], atol=1e-10)
    np.testing.assert_allclose(b2, [1.0, -2.0, 1.0])
    np.testing.assert_allclose(a2, [1.0, -1.99004745483398, 0.99007225036621], atol=1e-10)


def test_block_biquad_equals_the_direct_form_recursion_across_calls():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(3000)
    for b, a in k_weighting_coefficients(16000):
        expected = np.zeros(len(x))
        for n in range(len(x)):  # the textbook difference equation, one sample at a time
            acc = sum(b[k] * x[n - k] for k in range(3) if n >= k)
            expected[n] = acc - sum(a[k] * expected[n - k] for k in (1, 2) if n >= k)
        f = Biquad(b, a)
        got = np.concatenate([f.process(x[:1]), f.process(x[1:2]), f.process(x[2:777]), f.process(x[777:])])
        np.testing.assert_allclose(got, expected, atol=1e-9 * np.abs(expected).max())


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
def test_full_scale_997hz_sine_is_minus_3_01_lufs(rate):
    assert integrated_loudness(sine(997, 10, rate), rate) == pytest.approx(-3.01, abs=0.1)


@pytest.mark.parametrize("rate", [16000, 48000])
def test_minus_23_dbfs_1khz_sine_is_minus_26_lufs(rate):
    # EBU Tech 3341 case 1 in mono: -23 dBFS peak per channel of a stereo pair reads -23 LUFS, so one
    # channel alone reads 3.01 dB lower.
    assert integrated_loudness(sine(1000, 20, rate, -23), rate) == pytest.approx(-26.01, abs=0.1)


def test_gates_ignore_long_near_silence_and_quiet_passages():
    rate = 16000
    loud = sine(1000, 10, rate, -20)  # -23.0 LUFS
    hiss = sine(1000, 60, rate, -80)  # below the absolute gate
    quiet = sine(1000, 10, rate, -45)  # more than 10 LU under the loud part: relative gate
    measured = integrated_loudness(np.concatenate([hiss[:30 * rate], loud, quiet, hiss]), rate)
    # the 3 blocks that straddle each loud/quiet edge pass the gates and pull it down a little
    assert measured == pytest.approx(integrated_loudness(loud, rate), abs=0.2)
    assert integrated_loudness(loud, rate) == pytest.approx(-23.0, abs=0.1)


def test_silence_and_too_short_audio_measure_minus_infinity():
    assert integrated_loudness(np.zeros(16000 * 5, np.float32)) == float("-inf")
    assert integrated_loudness(sine(1000, 0.39, 16000)) == float("-inf")  # under one 400 ms block
    assert gain_to(-18.0, float("-inf")) == 1.0


def test_streaming_meter_equals_one_shot_for_any_chunking():
    wave = speechlike(37.3)
    one_shot = integrated_loudness(wave)
    meter = LoudnessMeter()
    rng = np.random.default_rng(2)
    start = 0
    while start < len(wave):
        size = int(rng.choice([1, 7, 1599, 1600, 1601, 12345, 80000]))
        meter.add(wave[start : start + size])
        start += size
    assert meter.loudness() == pytest.approx(one_shot, abs=1e-9)
    assert np.isfinite(one_shot)


def test_normalize_hits_target_and_never_clips():
    quiet = speechlike(30) * np.float32(0.1)
    out = normalize_loudness(quiet, -18.0)
    assert integrated_loudness(out) == pytest.approx(-18.0, abs=0.1)
    clicky = speechlike(30, seed=3) * np.float32(0.3)  # -28 LUFS: needs +10 dB
    clicky[16000 * 10] = 0.99  # one click that the gain would push to +9 dBFS
    out = normalize_loudness(clicky, -18.0)
    assert np.abs(out).max() <= 10 ** (-1 / 20) + 1e-6
    assert integrated_loudness(out) == pytest.approx(-18.0, abs=0.1)


def test_limiter_changes_only_the_neighbourhood_of_peaks_and_ramps_smoothly():
    rate = 16000
    wave = sine(200, 2, rate, -6)
    wave[rate : rate + 40] *= 3  # a burst over full scale
    out = limit_peaks(wave, rate)
    ceiling = 10 ** (-1 / 20)
    assert np.abs(out).max() <= ceiling + 1e-6
    np.testing.assert_array_equal(out[: rate - 320], wave[: rate - 320])  # 20 ms ramps
    np.testing.assert_array_equal(out[rate + 360 :], wave[rate + 360 :])
    gain = out[rate - 320 : rate + 360] / np.where(wave[rate - 320 : rate + 360] == 0, 1, wave[rate - 320 : rate + 360])
    assert np.abs(np.diff(gain[np.abs(wave[rate - 320 : rate + 360]) > 0.05])).max() < 0.05  # no gain step
    quiet = sine(200, 1, rate, -3)
    np.testing.assert_array_equal(limit_peaks(quiet, rate), quiet)
