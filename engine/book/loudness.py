"""Integrated loudness (ITU-R BS.1770-4, EBU R128 gating), gain to a target, and a peak limiter.

numpy only. Waveforms are mono float [n]; loudness is in LUFS (LKFS), -inf for silence or audio
shorter than one 400 ms gating block. The K-weighting filters are designed for any sample rate
from the standard's prototype (shelf 1681.97 Hz / +4.0 dB / Q 0.7072, high-pass 38.14 Hz / Q 0.5003,
as in libebur128); at 48 kHz this gives the coefficients printed in BS.1770-4 (see the tests).
"""
from __future__ import annotations

import math

import numpy as np

from engine.audio.clip import SAMPLE_RATE

ABSOLUTE_GATE_LUFS = -70.0  # LUFS: blocks quieter than this never count
RELATIVE_GATE_LU = -10.0  # LU: blocks this far below the absolute-gated loudness are dropped
PEAK_CEILING_DB = -1.0  # dBFS: limit_peaks keeps every sample at or below this level
_BLOCK_S = 0.4  # s: gating block
_STEP_S = 0.1  # s: block hop (75 % overlap)
_LIMIT_WINDOW_S = 0.01  # s: limiter hold/smoothing radius (ramps take twice this)
_FILTER_BLOCK = 64  # samples per matmul block in the biquad
_CHUNK = 1 << 20  # samples the meter filters at once (bounds its memory)


def k_weighting_coefficients(sample_rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two K-weighting biquads [(b, a), (b, a)] (float64 [3] each) at sample_rate (Hz)."""
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / sample_rate)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf = (
        np.array([vh + vb * k / q + k * k, 2.0 * (k * k - vh), vh - vb * k / q + k * k]) / a0,
        np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]),
    )
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / sample_rate)
    a0 = 1.0 + k / q + k * k
    highpass = (
        np.array([1.0, -2.0, 1.0]),
        np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]),
    )
    return [shelf, highpass]


class Biquad:
    """A stateful second-order IIR filter; process() continues exactly where the last call ended.

    Loop-free over samples: the all-pole part runs in blocks of L samples, zero-state responses of
    all blocks in one matmul with the L x L impulse-response matrix, and the 2-value state at each
    block start from a log-depth prefix scan of the block-to-block state map (exact up to rounding).
    """

    def __init__(self, b: np.ndarray, a: np.ndarray, block: int = _FILTER_BLOCK) -> None:
        self.b = np.asarray(b, np.float64) / a[0]
        a1, a2 = float(a[1]) / a[0], float(a[2]) / a[0]
        # responses over one block: h to an impulse, g1/g2 to y[-1] = 1 / y[-2] = 1 with no input
        h, g1, g2 = (np.zeros(block + 2) for _ in range(3))
        h[2], g1[1], g2[0] = 1.0, 1.0, 1.0
        for r in (h, g1, g2):
            for i in range(2, block + 2):
                r[i] -= a1 * r[i - 1] + a2 * r[i - 2]
        h, self.g1, self.g2 = h[2:], g1[2:], g2[2:]
        idx = np.arange(block)
        lag = idx[:, None] - idx[None, :]
        self.t = np.where(lag >= 0, h[np.clip(lag, 0, None)], 0.0).T  # [k, i] = h[i - k]
        self.m = np.array([[self.g1[-1], self.g2[-1]], [self.g1[-2], self.g2[-2]]])  # state map
        self.block = block
        self.x_hist = np.zeros(2)  # x[-2], x[-1]
        self.state = np.zeros(2)  # y[-1], y[-2]

    def process(self, x: np.ndarray) -> np.ndarray:
        """Filter float [n] → float64 [n], continuing from the previous call's state."""
        n = len(x)
        if n == 0:
            return np.zeros(0)
        xs = np.concatenate([self.x_hist, np.asarray(x, np.float64)])
        v = self.b[0] * xs[2:] + self.b[1] * xs[1:-1] + self.b[2] * xs[:-2]
        self.x_hist = xs[-2:].copy()
        nb = -(-n // self.block)
        z = np.pad(v, (0, nb * self.block - n)).reshape(nb, self.block) @ self.t
        # state at the start of block j: s_j = M s_{j-1} + e_{j-1}, s_0 = carried state
        s = np.empty((nb, 2))
        s[0] = self.state
        s[1:, 0], s[1:, 1] = z[:-1, -1], z[:-1, -2]
        power, shift = self.m.copy(), 1
        while shift < nb and np.abs(power).max() > 1e-200:  # past that the terms are below rounding
            s[shift:] = s[shift:] + s[:-shift] @ power.T
            power, shift = power @ power, shift * 2
        y = (z + s[:, :1] * self.g1 + s[:, 1:] * self.g2).reshape(-1)[:n]
        self.state = np.array([y[-1], y[-2] if n > 1 else self.state[0]])
        return y


class LoudnessMeter:
    """Integrated loudness of a long mono signal fed in chunks of any size, with O(blocks) memory.

    The K-filter state and the partial 100 ms sub-block carry across add() calls, so the result
    equals integrated_loudness() of the concatenated chunks.
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE) -> None:
        self.sample_rate = int(sample_rate)
        self.filters = [Biquad(b, a) for b, a in k_weighting_coefficients(self.sample_rate)]
        self.step = int(round(_STEP_S * self.sample_rate))  # samples per 100 ms sub-block
        self.energies: list[float] = []  # sum of squares of each finished sub-block
        self.partial = 0.0  # sum of squares in the unfinished sub-block
        self.partial_n = 0  # samples in the unfinished sub-block
        self.samples = 0  # samples added so far

    def add(self, wave: np.ndarray) -> None:
        """Feed the next float32 [n] mono samples."""
        wave = np.asarray(wave)
        if wave.ndim != 1:
            raise ValueError(f"LoudnessMeter expects mono samples [n], got shape {wave.shape}")
        for start in range(0, len(wave), _CHUNK):
            y = wave[start : start + _CHUNK]
            for f in self.filters:
                y = f.process(y)
            self._accumulate(y * y)
        self.samples += len(wave)

    def _accumulate(self, sq: np.ndarray) -> None:
        head = min(len(sq), self.step - self.partial_n)
        self.partial += float(sq[:head].sum())
        self.partial_n += head
        if self.partial_n < self.step:
            return
        self.energies.append(self.partial)
        rest = sq[head:]
        full = len(rest) // self.step
        self.energies.extend(rest[: full * self.step].reshape(full, self.step).sum(axis=1).tolist())
        tail = rest[full * self.step :]
        self.partial, self.partial_n = float(tail.sum()), len(tail)

    def block_loudness(self) -> np.ndarray:
        """Loudness (LUFS, float64 [blocks]) of every complete 400 ms block, 100 ms apart."""
        e = np.asarray(self.energies, np.float64)
        per_block = int(round(_BLOCK_S / _STEP_S))
        if len(e) < per_block:
            return np.zeros(0)
        power = np.convolve(e, np.ones(per_block), "valid") / (per_block * self.step)
        return -0.691 + 10.0 * np.log10(np.maximum(power, 1e-30))

    def loudness(self) -> float:
        """Gated integrated loudness (LUFS) of everything added; -inf if nothing passes the gates."""
        blocks = self.block_loudness()
        gated = blocks[blocks > ABSOLUTE_GATE_LUFS]
        if len(gated) == 0:
            return float("-inf")
        power = 10.0 ** ((gated + 0.691) / 10.0)
        relative = -0.691 + 10.0 * math.log10(power.mean()) + RELATIVE_GATE_LU
        kept = power[gated > relative]
        return -0.691 + 10.0 * math.log10(kept.mean())


def integrated_loudness(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """BS.1770-4 gated loudness (LUFS) of mono float [n] at sample_rate (Hz); -inf when silent."""
    meter = LoudnessMeter(sample_rate)
    meter.add(wave)
    return meter.loudness()


def gain_to(target_lufs: float, measured_lufs: float) -> float:
    """Linear gain that moves measured_lufs to target_lufs; 1.0 when nothing was measured (-inf)."""
    if not math.isfinite(measured_lufs):
        return 1.0
    return 10.0 ** ((target_lufs - measured_lufs) / 20.0)


def _running_min(g: np.ndarray, radius: int) -> np.ndarray:
    """Minimum of g over [i - radius, i + radius] for each i (values outside g count as 1)."""
    w = 2 * radius + 1
    n = len(g)
    pad = np.pad(g, (radius, radius + (-(n + 2 * radius)) % w), constant_values=1.0).reshape(-1, w)
    prefix = np.minimum.accumulate(pad, axis=1).reshape(-1)
    suffix = np.minimum.accumulate(pad[:, ::-1], axis=1)[:, ::-1].reshape(-1)
    return np.minimum(suffix[:n], prefix[w - 1 : w - 1 + n])  # van Herk / Gil-Werman, O(n)


def limit_peaks(
    wave: np.ndarray, sample_rate: int = SAMPLE_RATE, *, ceiling_db: float = PEAK_CEILING_DB
) -> np.ndarray:
    """Look-ahead peak limiter: float32 [n] → float32 [n] with every |sample| <= ceiling_db (dBFS).

    The gain each sample needs (ceiling / |x|, at most 1) goes through a running minimum over
    +-10 ms, then a moving average over +-10 ms: the gain ramps down linearly over the 20 ms before
    a peak and back up over the 20 ms after it, and is never above what any sample needs. Sample peaks only (not
    oversampled true peak): the default -1 dBFS leaves room for inter-sample and codec overshoot.
    Audio already under the ceiling is returned unchanged.
    """
    x = np.asarray(wave, np.float32)
    ceiling = 10.0 ** (ceiling_db / 20.0)
    mag = np.abs(x)
    if len(x) == 0 or mag.max() <= ceiling:
        return x
    r = max(1, int(round(_LIMIT_WINDOW_S * sample_rate)))
    need = np.minimum(1.0, ceiling / np.maximum(mag.astype(np.float64), 1e-12))
    held = _running_min(np.pad(need, r, constant_values=1.0), r)  # covers [-r, n + r)
    sums = np.concatenate([[0.0], np.cumsum(held)])
    gain = (sums[2 * r + 1 :] - sums[: -2 * r - 1]) / (2 * r + 1)
    out = x * gain.astype(np.float32)
    return np.clip(out, -ceiling, ceiling)  # only float32 rounding can reach past the ceiling


def normalize_loudness(
    wave: np.ndarray, target_lufs: float, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """float32 [n] scaled to target_lufs (LUFS), then peak-limited to PEAK_CEILING_DB."""
    gain = gain_to(target_lufs, integrated_loudness(wave, sample_rate))
    return limit_peaks(np.asarray(wave, np.float32) * np.float32(gain), sample_rate)
