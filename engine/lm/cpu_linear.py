"""The fastest float32 product of a few rows with a Linear weight on the CPU, checked once against F.linear.

Measured on a 2-core AMD EPYC VM (torch 2.13 CPU, MKL), 8192x2048 weight: F.linear costs 6.5 ms for
one row (GEMV) but 30 ms for 8 rows (MKL's GEMM for a few rows is 3-5x its GEMV); a batched product
reads the weight once (11.6 ms for 8 rows); oneDNN's linear on the plain weight 4.3 ms for one row,
8.7 ms for 8, and 18.6 ms instead of 47 ms for a 48-token prefill. oneDNN is reached through a
private torch op (one torch.compile's CPU backend emits), so it is compared with F.linear once per
process; if it is missing or differs, the batched product (2-16 rows) and F.linear are used and a
warning is logged.
"""
from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F

log = logging.getLogger("llasa.engine")


def rows_linear(x: torch.Tensor, layer: torch.nn.Module) -> torch.Tensor:
    """``layer(x)``; a plain bias-free Linear goes through rows_weight."""
    if type(layer) is torch.nn.Linear and layer.bias is None:
        return rows_weight(x, layer.weight)
    return layer(x)


def rows_weight(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [..., in] @ weight.T: oneDNN for float32 on the CPU, else a batched product for 2-16 rows, else F.linear."""
    cpu_fp32 = x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32 and weight.dim() == 2
    if not cpu_fp32:
        return F.linear(x, weight)
    if weight.is_contiguous() and onednn_linear_works():
        return _onednn(x, weight)
    if 2 <= x.numel() // x.shape[-1] <= 16:
        return _batched(x, weight)
    return F.linear(x, weight)


def _batched(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The weight times the rows as columns: reads the weight once at about matrix-vector speed.

    The result is made contiguous: CPU flash attention takes only a unit last stride, and a transposed
    view sent a batch-8 step to the slow "math" attention (76 of 847 ms at 1B)."""
    rows = x.reshape(-1, x.shape[-1])
    out = torch.bmm(weight.unsqueeze(0), rows.t().unsqueeze(0))[0].t().contiguous()
    return out.reshape(*x.shape[:-1], weight.shape[0])


def _onednn(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")


@functools.cache
def onednn_linear_works() -> bool:
    """Does oneDNN's linear exist here and equal F.linear (to float32 rounding) for 1, 3 and 48 rows?"""
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(96, 64, generator=g)
    try:
        with torch.inference_mode():
            for shape in ((1, 64), (3, 1, 64), (48, 64)):
                x = torch.randn(*shape, generator=g)
                torch.testing.assert_close(_onednn(x, weight), F.linear(x, weight), rtol=1e-4, atol=1e-5)
    except Exception as error:  # noqa: BLE001 - a missing op or a wrong answer: use torch's own products
        log.warning("oneDNN linear unusable here (%s: %s); the CPU decoder uses torch's matrix products",
                    type(error).__name__, str(error)[:200])
        return False
    return True
