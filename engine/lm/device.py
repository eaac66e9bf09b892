"""Where the LM runs and in which precision, chosen per machine.

CUDA: 4-bit NF4 (bf16 when bitsandbytes is missing). Apple Silicon (MPS): bf16, fp16 where MPS has
no bf16. CPU: bf16 when this CPU computes it natively (AVX-512 BF16 / AMX on x86, BF16 on Arm:
about 2.3x the fp32 speed of a decode step), fp32 where bf16 would be emulated (slower than fp32).
The CPU answer is read from the CPU's feature flags where the OS tells them (Linux, macOS): it must
not change from one run to the next, since the precision shapes every take. Elsewhere a short timed
probe decides, once per process.
"""
from __future__ import annotations

import functools
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import torch

from engine.errors import DeviceError

CPU_BF16_MIN_SPEEDUP = 1.25  # bf16 must beat fp32 by this factor in the probe to be chosen on a CPU


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: str) -> tuple[torch.device, str | None]:
    """"auto" | "cuda" | "mps" | "cpu" -> the torch device, and "fallback" when "auto" found no GPU."""
    has_cuda = torch.cuda.is_available()
    if device == "auto":
        if has_cuda:
            return torch.device("cuda"), None
        if mps_available():
            return torch.device("mps"), None
        return torch.device("cpu"), "fallback"
    if device == "cuda" and not has_cuda:
        raise DeviceError("No CUDA GPU is available here; use --device cpu (slow) or --device auto.")
    if device == "mps" and not mps_available():
        raise DeviceError("Apple's MPS GPU is not available here (it needs a Mac with Apple Silicon); use --device auto or cpu.")
    if device not in ("cuda", "mps", "cpu"):
        raise DeviceError(f"Unknown device {device!r}; choose auto, cuda, mps or cpu.")
    return torch.device(device), None


def choose_cpu_precision(fp32_seconds: float, bf16_seconds: float) -> str:
    """"bf16" when the probe's bf16 step was at least CPU_BF16_MIN_SPEEDUP times faster, else "fp32"."""
    return "bf16" if bf16_seconds * CPU_BF16_MIN_SPEEDUP <= fp32_seconds else "fp32"


@functools.lru_cache(maxsize=1)
def probe_cpu_bf16() -> tuple[float, float]:
    """(fp32 s, bf16 s): best of 5 of a decode-shaped matrix-vector product (1 x 2048 @ 2048 x 4096).

    About 0.1 s once per process. Decode is bound by reading weights, which is what this times.
    """
    times = []
    for dtype in (torch.float32, torch.bfloat16):
        generator = torch.Generator().manual_seed(0)
        weight = torch.randn(4096, 2048, generator=generator).to(dtype)
        x = torch.randn(1, 2048, generator=generator).to(dtype)
        torch.nn.functional.linear(x, weight)  # warm-up: first-call dispatch costs
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            torch.nn.functional.linear(x, weight)
            best = min(best, time.perf_counter() - start)
        times.append(best)
    return times[0], times[1]


def cpu_native_bf16() -> bool | None:
    """True/False from the CPU's feature flags (Linux: /proc/cpuinfo; macOS: sysctl); None when unknown."""
    if sys.platform.startswith("linux"):
        try:
            flags = set(Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").split())
        except OSError:
            return None
        return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})  # x86 AVX-512 BF16 / AMX; Arm's "bf16"
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True,
                                 timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() == "1" if out.returncode == 0 else None
    return None


def mps_precision() -> str:
    """bf16 where MPS supports it (macOS 14+), else fp16."""
    try:
        torch.ones(1, dtype=torch.bfloat16, device="mps") + 1
        return "bf16"
    except (RuntimeError, TypeError):
        return "fp16"


def default_precision(device: torch.device) -> str:
    """The precision "automatic" means on `device` (see the module docstring)."""
    if device.type == "cuda":
        ready = all(importlib.util.find_spec(name) is not None for name in ("bitsandbytes", "accelerate"))
        return "4bit" if ready else "bf16"
    if device.type == "mps":
        return mps_precision()
    native = cpu_native_bf16()
    if native is not None:
        return "bf16" if native else "fp32"
    return choose_cpu_precision(*probe_cpu_bf16())
