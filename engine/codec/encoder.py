"""X-Codec2's convolutional encoders: the acoustic encoder (waveform -> 50 Hz features) and the
semantic encoder (w2v-bert layer-16 features -> codec features).

Module and parameter names mirror the official checkpoint (``CodecEnc.*`` and
``SemanticEncoder_module.*``) so that a state dict loads with strict key checking.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrizations


def weight_norm_conv1d(*args, **kwargs) -> nn.Conv1d:
    """A Conv1d with weight normalisation over dim 0 (keys ``parametrizations.weight.original0/1``)."""
    return parametrizations.weight_norm(nn.Conv1d(*args, **kwargs), name="weight", dim=0)


def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """Windowed-sinc low-pass filter (Kaiser window), normalised to unit DC gain.

    cutoff and half_width are in cycles per sample. Returns float32 [1, 1, kernel_size].
    """
    half_size = kernel_size // 2
    attenuation = 2.285 * (half_size - 1) * math.pi * (4 * half_width) + 7.95  # Kaiser's formula, dB
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, beta=beta, periodic=False)
    if kernel_size % 2 == 0:
        time = torch.arange(-half_size, half_size) + 0.5
    else:
        time = torch.arange(kernel_size) - half_size
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return (taps / taps.sum()).view(1, 1, kernel_size)


class SnakeBeta(nn.Module):
    """Periodic activation x + sin^2(a x) / b with per-channel log-scale a (``alpha``), b (``bias``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = torch.exp(self.alpha)[None, :, None]
        beta = torch.exp(self.bias)[None, :, None]
        return x + (1.0 / (beta + 1e-9)) * torch.sin(x * alpha) ** 2


class _Upsample2x(nn.Module):
    """Zero-stuffing 2x upsampler followed by the low-pass filter (replicate-padded edges)."""

    def __init__(self, kernel_size: int = 12):
        super().__init__()
        self.register_buffer("filter", kaiser_sinc_filter(0.25, 0.3, kernel_size))
        self.pad = kernel_size // 2 - 1
        self.crop_left = self.pad * 2 + (kernel_size - 2) // 2
        self.crop_right = self.pad * 2 + (kernel_size - 1) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        x = 2 * F.conv_transpose1d(x, self.filter.expand(channels, -1, -1), stride=2, groups=channels)
        return x[..., self.crop_left : x.shape[-1] - self.crop_right]


class _LowPass2x(nn.Module):
    """Low-pass filter then keep every second sample (replicate-padded edges)."""

    def __init__(self, kernel_size: int = 12):
        super().__init__()
        self.register_buffer("filter", kaiser_sinc_filter(0.25, 0.3, kernel_size))
        self.pad_left = kernel_size // 2 - int(kernel_size % 2 == 0)
        self.pad_right = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        x = F.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        return F.conv1d(x, self.filter.expand(channels, -1, -1), stride=2, groups=channels)


class _Downsample2x(nn.Module):
    """Holds the low-pass filter under the checkpoint's name ``downsample.lowpass``."""

    def __init__(self, kernel_size: int = 12):
        super().__init__()
        self.lowpass = _LowPass2x(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lowpass(x)


class AntiAliasedSnakeBeta(nn.Module):
    """SnakeBeta applied at twice the sample rate, so its harmonics do not alias: [B, C, T] -> [B, C, T]."""

    def __init__(self, channels: int):
        super().__init__()
        self.act = SnakeBeta(channels)
        self.upsample = _Upsample2x()
        self.downsample = _Downsample2x()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.act(self.upsample(x)))


class ResidualUnit(nn.Module):
    """x + (act, dilated conv k7, act, conv k1)(x); channels and length unchanged."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.block = nn.Sequential(
            AntiAliasedSnakeBeta(channels),
            weight_norm_conv1d(channels, channels, kernel_size=7, dilation=dilation, padding=3 * dilation),
            AntiAliasedSnakeBeta(channels),
            weight_norm_conv1d(channels, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class EncoderBlock(nn.Module):
    """Residual units on channels // 2, then a strided conv doubling channels: [B, C/2, T] -> [B, C, T/stride]."""

    def __init__(self, channels: int, stride: int, dilations: Sequence[int]):
        super().__init__()
        half = channels // 2
        self.block = nn.Sequential(
            *(ResidualUnit(half, d) for d in dilations),
            AntiAliasedSnakeBeta(half),
            weight_norm_conv1d(half, channels, kernel_size=2 * stride, stride=stride, padding=(stride + 1) // 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class AcousticEncoder(nn.Module):
    """Waveform -> acoustic features at one frame per hop (prod(strides) = 320 samples).

    Checkpoint prefix ``CodecEnc.`` (the reference calls it ``CodecEncoder_Transformer``; it has no
    transformer).
    """

    def __init__(
        self,
        ngf: int = 48,
        strides: Sequence[int] = (2, 2, 4, 4, 5),
        dilations: Sequence[int] = (1, 3, 9),
        out_channels: int = 1024,
    ):
        super().__init__()
        blocks: list[nn.Module] = [weight_norm_conv1d(1, ngf, kernel_size=7, padding=3)]
        channels = ngf
        for stride in strides:
            channels *= 2
            blocks.append(EncoderBlock(channels, stride, dilations))
        self.conv_blocks = nn.Sequential(*blocks)
        self.conv_final_block = nn.Sequential(
            AntiAliasedSnakeBeta(channels),
            weight_norm_conv1d(channels, out_channels, kernel_size=3, padding=1),
        )
        self.hop_length = math.prod(strides)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """wave: float [B, 1, T] with T a multiple of hop_length -> float [B, T / hop_length, out_channels]."""
        return self.conv_final_block(self.conv_blocks(wave)).transpose(1, 2)


class SemanticEncoder(nn.Module):
    """Conv stack over w2v-bert features: [B, C, T] -> [B, C, T] (checkpoint prefix ``SemanticEncoder_module.``).

    The reference's residual branch starts with an in-place ReLU that also rectifies the tensor it
    adds back, so the skip connection carries relu(initial_conv(x)); we compute that explicitly.
    """

    def __init__(self, channels: int = 1024, kernel_size: int = 3):
        super().__init__()
        pad = (kernel_size - 1) // 2
        self.initial_conv = nn.Conv1d(channels, channels, kernel_size, padding=pad, bias=False)
        self.residual_blocks = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size, padding=pad),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size, padding=pad),
        )
        self.final_conv = nn.Conv1d(channels, channels, kernel_size, padding=pad, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: float [B, channels, T] -> float [B, channels, T]."""
        h = F.relu(self.initial_conv(x))
        return self.final_conv(self.residual_blocks(h) + h)
