"""X-Codec2's waveform decoder: a Vocos backbone (convs + transformer) and an inverse-STFT head.

Module names reproduce the official ``generator.backbone.*`` / ``generator.head.*`` state-dict keys.
The official transformer applies a rotary embedding along the *head* axis to q and k alike, which
cancels in q·k; the attention therefore has no positional information and none is implemented here
(tests/test_codec_decode.py proves the equivalence against the reference code).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.codec.fsq import FiniteScalarQuantizer


class ResnetBlock(nn.Module):
    """Two (GroupNorm, SiLU, conv k3) stages with a residual connection, on [B, C, T]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(32, channels, eps=1e-6)
        self.conv1 = nn.Conv1d(channels, channels, kernel_size=3, padding=1)
        self.norm2 = nn.GroupNorm(32, channels, eps=1e-6)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain (eps 1e-6); statistics in float32 (fp16 x² overflows)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.float()
        return (y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class Attention(nn.Module):
    """Bidirectional multi-head self-attention with a fused qkv projection, no biases."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(dim, 3 * dim, bias=False)
        self.c_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames, dim = x.shape
        qkv = self.c_attn(x).view(batch, frames, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, heads, T, head_dim]
        y = F.scaled_dot_product_attention(q, k, v)
        return self.c_proj(y.transpose(1, 2).reshape(batch, frames, dim))


class MLP(nn.Module):
    """Feed-forward block: 4x expansion, SiLU, no biases."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim, bias=False)
        self.fc2 = nn.Linear(4 * dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(x)))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block (RMSNorm, attention, RMSNorm, MLP) on [B, T, C]."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.att_norm = RMSNorm(dim)
        self.ffn_norm = RMSNorm(dim)
        self.att = Attention(dim, heads)
        self.mlp = MLP(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.att(self.att_norm(x))
        return x + self.mlp(self.ffn_norm(x))


class VocosBackbone(nn.Module):
    """Frame features [B, T, C] -> frame features [B, T, C] at the same 50 Hz rate."""

    def __init__(self, dim: int, depth: int, heads: int) -> None:
        super().__init__()
        self.embed = nn.Conv1d(dim, dim, kernel_size=7, padding=3)
        self.prior_net = nn.Sequential(ResnetBlock(dim), ResnetBlock(dim))
        self.transformers = nn.Sequential(*(TransformerBlock(dim, heads) for _ in range(depth)))
        self.post_net = nn.Sequential(ResnetBlock(dim), ResnetBlock(dim))
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prior_net(self.embed(x.transpose(1, 2))).transpose(1, 2)
        x = self.transformers(x)
        x = self.post_net(x.transpose(1, 2)).transpose(1, 2)
        return self.final_layer_norm(x)


class InverseSTFT(nn.Module):
    """Inverse STFT with "same" padding: [B, n_fft//2+1, T] complex -> [B, T*hop] float32."""

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        # Periodic Hann window; persistent because the official checkpoint stores it.
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        frames = spec.shape[-1]
        window = self.window.float()
        pieces = torch.fft.irfft(spec, self.n_fft, dim=1) * window[None, :, None]
        length = (frames - 1) * self.hop_length + self.n_fft
        fold = dict(output_size=(1, length), kernel_size=(1, self.n_fft), stride=(1, self.hop_length))
        audio = F.fold(pieces, **fold)[:, 0, 0]
        envelope = F.fold(window.square()[None, :, None].expand(1, -1, frames), **fold)[0, 0, 0]
        trim = (self.n_fft - self.hop_length) // 2
        return audio[:, trim:-trim] / envelope[trim:-trim]


class ISTFTHead(nn.Module):
    """Frame features [B, T, C] -> waveform [B, T*hop] float32 via log-magnitude and phase."""

    def __init__(self, dim: int, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = InverseSTFT(n_fft, hop_length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Spectral synthesis in float32: fp16 exp/irfft/overlap-add loses too much precision.
        log_mag, phase = self.out(x).float().transpose(1, 2).chunk(2, dim=1)
        magnitude = log_mag.exp().clamp(max=1e2)
        return self.istft(torch.polar(magnitude, phase))


class CodecDecoder(nn.Module):
    """The official ``generator``: quantizer, backbone and head under their official names."""

    def __init__(self, vq_dim: int, dim: int, depth: int, heads: int, n_fft: int, hop: int) -> None:
        super().__init__()
        self.quantizer = FiniteScalarQuantizer(vq_dim)
        self.backbone = VocosBackbone(dim, depth, heads)
        self.head = ISTFTHead(dim, n_fft, hop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder features [B, T, dim] -> waveform [B, T*hop] float32."""
        return self.head(self.backbone(x))
