"""Configuration dataclasses shared by the engine, the CLI and the GUI.

Frozen and validated once at construction; change them with ``dataclasses.replace``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from engine.errors import SettingsError

QUANTIZATIONS = ("4bit", "8bit", "bf16", "fp16", "fp32")  # fp16: for Apple GPUs without bf16
DEVICES = ("auto", "cuda", "mps", "cpu")
BACKENDS = ("auto", "torch", "llamacpp")  # what runs the LM; auto = llama.cpp without CUDA when installed
GGUF_PRECISIONS = ("q8_0", "q4_k_m", "bf16", "f16", "f32")  # llama.cpp weights, made from the safetensors

DEFAULT_LM = "HKUSTAudio/Llasa-1B"
DEFAULT_CODEC = "HKUSTAudio/xcodec2"

# Llasa was trained on sequences of at most this many tokens (prompt + generated speech).
CONTEXT_WINDOW = 2048


@dataclass(frozen=True)
class ModelChoice:
    """Which models to load and where to run them."""

    lm: str = DEFAULT_LM  # Hugging Face repo id or local folder of the Llasa LM
    codec: str = DEFAULT_CODEC  # Hugging Face repo id or local folder of X-Codec2
    quantization: str | None = None  # one of QUANTIZATIONS; None = automatic per device (engine.lm.device)
    device: str = "auto"  # one of DEVICES; auto = CUDA, else Apple's MPS, else CPU
    backend: str = "auto"  # one of BACKENDS; engine.lm.backend.resolve_backend decides what "auto" means here
    gguf_precision: str = "q8_0"  # one of GGUF_PRECISIONS: the llama.cpp weights (q4_k_m fastest, bf16 exact)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise SettingsError(f"Unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}.")
        if self.gguf_precision not in GGUF_PRECISIONS:
            raise SettingsError(
                f"Unknown llama.cpp precision {self.gguf_precision!r}; choose one of {', '.join(GGUF_PRECISIONS)}."
            )
        if self.quantization is not None and self.quantization not in QUANTIZATIONS:
            raise SettingsError(
                f"Unknown quantization {self.quantization!r}; choose one of {', '.join(QUANTIZATIONS)}."
            )
        if self.device not in DEVICES:
            raise SettingsError(f"Unknown device {self.device!r}; choose one of {', '.join(DEVICES)}.")


# Accepted ranges of the sampling numbers (SamplingParams validates against them; the CLI and the GUI
# show them in messages). Seeds are what torch.Generator.manual_seed takes without overflow.
TEMPERATURE_RANGE = (0.0, 5.0)  # softmax temperature; 0 = greedy
GREEDY_BELOW = 1e-4  # temperatures below this decode greedily: dividing logits by them overflows float32 to inf
TOP_K_MAX = 65536  # top-k above the 65,536 speech codes keeps every code anyway
REPETITION_PENALTY_MAX = 10.0  # > 0; 1 = off
SEED_MAX = 2**63 - 1  # seeds are 0 .. 2**63 - 1


def check_number(name: str, value: object, low: float, high: float, *, low_open: bool = False, whole: bool = False) -> None:
    """SettingsError unless value is a finite number (a whole one if `whole`) in [low, high] ((low, high] if low_open)."""
    kinds = (int,) if whole else (int, float)
    span = f"{low} to {high}" if whole else f"{'(' if low_open else '['}{low:g}, {high:g}]"
    if isinstance(value, bool) or not isinstance(value, kinds) or (isinstance(value, float) and not math.isfinite(value)) or not (
            (low < value if low_open else low <= value) and value <= high):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise SettingsError(f"{name} must be in {span}{' (a whole number)' if whole else ''}, got {shown}.")


@dataclass(frozen=True)
class SamplingParams:
    """How the next speech token is drawn. Defaults are the Llasa model card's.

    Validated once here (finite, in the ranges above), so every caller (CLI, GUI, projects) gets the
    same one-line SettingsError instead of a sampler that divides by zero or a seed that overflows.
    """

    temperature: float = 0.8  # softmax temperature in [0, 5]; 0 (or below GREEDY_BELOW) = greedy (argmax)
    top_p: float = 1.0  # nucleus sampling mass in (0, 1]; 1 = off
    top_k: int = 0  # keep the k most likely tokens, 0..65536; 0 = off
    repetition_penalty: float = 1.0  # in (0, 10]; >1 discourages tokens already in the context (HF semantics); 1 = off
    seed: int | None = None  # random seed 0..2**63-1 for reproducible takes; None = fresh randomness

    def __post_init__(self) -> None:
        check_number("temperature", self.temperature, *TEMPERATURE_RANGE)
        check_number("top_p", self.top_p, 0.0, 1.0, low_open=True)
        check_number("top_k", self.top_k, 0, TOP_K_MAX, whole=True)
        check_number("repetition_penalty", self.repetition_penalty, 0.0, REPETITION_PENALTY_MAX, low_open=True)
        if self.seed is not None:
            check_number("seed", self.seed, 0, SEED_MAX, whole=True)

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW
