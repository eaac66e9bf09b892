"""X-Codec2's quantizer: finite scalar quantization (FSQ) with 8 digits of 4 levels = 65,536 codes.

A code is an integer whose base-4 digits (least significant first) pick one of four values per
dimension of an 8-d vector; ``project_in``/``project_out`` map between that vector and the codec's
2048-d embedding. Numerically this equals the official one-quantizer ``ResidualFSQ``
(vector-quantize-pytorch 1.17.8), whose residual scale is 1 and which bounds its input twice.
"""
from __future__ import annotations

import torch
from torch import nn

LEVELS = 4  # values per digit
DIGITS = 8  # digits per code
CODEBOOK_SIZE = LEVELS**DIGITS  # 65,536
_BOUND_EPS = 1e-3  # FSQ keeps the tanh bound slightly wider than the outermost levels


def _bound(z: torch.Tensor) -> torch.Tensor:
    """FSQ's tanh squashing for an even number of levels: output range about [-2.0015, 1.0015]."""
    half_l = torch.tensor((LEVELS - 1) * (1 + _BOUND_EPS) / 2, dtype=torch.float32)
    offset = torch.tensor(0.5, dtype=torch.float32)  # even levels: shift so rounding gives 4 values
    shift = (offset / half_l).atanh()
    return (z + shift.to(z.device)).tanh() * half_l.to(z.device) - offset.to(z.device)


class FiniteScalarQuantizer(nn.Module):
    """Maps codec embeddings to codes (encode path) and codes to embeddings (decode path)."""

    def __init__(self, dim: int = 2048) -> None:
        super().__init__()
        self.project_in = nn.Linear(dim, DIGITS)
        self.project_out = nn.Linear(DIGITS, dim)

    def codes_to_vectors(self, codes: torch.Tensor) -> torch.Tensor:
        """Integer codes [...] in [0, 65536) -> embeddings [..., dim] in the module's dtype."""
        powers = LEVELS ** torch.arange(DIGITS, device=codes.device)
        digits = (codes.long().unsqueeze(-1) // powers) % LEVELS
        values = (digits.to(self.project_out.weight.dtype) - LEVELS // 2) / (LEVELS // 2)
        return self.project_out(values)

    def vectors_to_codes(self, vectors: torch.Tensor) -> torch.Tensor:
        """Embeddings [..., dim] -> int64 codes [...]; quantization itself runs in float32."""
        z = self.project_in(vectors).float()
        # The official ResidualFSQ bounds once before its layer loop and again inside FSQ.quantize.
        levels = _bound(_bound(z)).round()  # integers in {-2, -1, 0, 1}
        digits = (levels + LEVELS // 2).long()
        powers = LEVELS ** torch.arange(DIGITS, device=digits.device)
        return (digits * powers).sum(dim=-1)
