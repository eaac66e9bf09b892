"""Configuration dataclasses shared by the engine, the CLI and the GUI.

Frozen and validated once at construction; change them with ``dataclasses.replace``.
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.errors import SettingsError

QUANTIZATIONS = ("4bit", "8bit", "bf16", "fp32")
DEVICES = ("auto", "cuda", "cpu")
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
    quantization: str | None = None  # one of QUANTIZATIONS; None = 4bit on CUDA, fp32 on CPU
    device: str = "auto"  # one of DEVICES; auto = CUDA when present, else CPU
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


@dataclass(frozen=True)
class SamplingParams:
    """How the next speech token is drawn. Defaults are the Llasa model card's."""

    temperature: float = 0.8  # softmax temperature; 0 = greedy (argmax)
    top_p: float = 1.0  # nucleus sampling mass in (0, 1]; 1 = off
    top_k: int = 0  # keep the k most likely tokens; 0 = off
    repetition_penalty: float = 1.0  # >1 discourages tokens already in the context (HF semantics); 1 = off
    seed: int | None = None  # random seed for reproducible takes; None = fresh randomness

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise SettingsError(f"temperature must be >= 0, got {self.temperature}.")
        if not 0 < self.top_p <= 1:
            raise SettingsError(f"top_p must be in (0, 1], got {self.top_p}.")
        if self.top_k < 0:
            raise SettingsError(f"top_k must be >= 0, got {self.top_k}.")
        if self.repetition_penalty <= 0:
            raise SettingsError(f"repetition_penalty must be > 0, got {self.repetition_penalty}.")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0
