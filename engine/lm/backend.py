"""Which engine runs the Llasa LM: PyTorch (CUDA, or the CPU) or llama.cpp (CPUs and Apple Silicon).

"auto" picks llama.cpp on a machine without CUDA when the optional ``llamacpp`` extra is
installed, because it decodes several times faster than PyTorch on a CPU; otherwise PyTorch.
The environment variable LLASA_BACKEND (torch | llamacpp) pins what "auto" means on a machine,
e.g. a test run that compares takes with the PyTorch reference.
"""
from __future__ import annotations

import importlib.util
import os

from engine.config import BACKENDS
from engine.errors import DeviceError, SettingsError

PIN_VARIABLE = "LLASA_BACKEND"
MISSING_EXTRA = (
    "The llama.cpp backend needs llama-cpp-python: pip install \"llasa-studio[llamacpp]\" "
    "(it compiles llama.cpp; see the README), or use --backend torch."
)


def llamacpp_installed() -> bool:
    """True if llama-cpp-python can be imported (without importing it: that loads its library)."""
    return importlib.util.find_spec("llama_cpp") is not None


def resolve_backend(backend: str, device: str = "auto") -> str:
    """"auto" | "torch" | "llamacpp" (+ the torch device choice) -> "torch" or "llamacpp".

    DeviceError when llama.cpp is asked for but not installed, or together with --device cuda.
    """
    if backend not in BACKENDS:
        raise SettingsError(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    if backend == "torch":
        return "torch"
    if backend == "llamacpp":
        if device == "cuda":
            raise DeviceError("--backend llamacpp runs on the CPU (or Metal); use --backend torch with --device cuda.")
        if not llamacpp_installed():
            raise DeviceError(MISSING_EXTRA)
        return "llamacpp"
    pinned = os.environ.get(PIN_VARIABLE, "").strip()
    if pinned:
        if pinned not in ("torch", "llamacpp"):
            raise SettingsError(f"{PIN_VARIABLE}={pinned!r} is not a backend; set it to torch or llamacpp, or unset it.")
        return resolve_backend(pinned, device)
    if device == "cuda" or not llamacpp_installed():
        return "torch"
    import torch

    return "torch" if torch.cuda.is_available() else "llamacpp"
