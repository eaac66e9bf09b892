"""The Llasa LM on llama.cpp (through llama-cpp-python): fast on CPUs, Metal on Apple Silicon.

``LlamaCppLM`` is the loaded GGUF (made from the official safetensors by engine.lm.gguf) plus the
Hugging Face tokenizer for prompt building; ``lm.decoder(max_batch, max_length)`` gives a
``LlamaCppDecoder`` (engine.lm.llamacpp_decoder) with engine.lm.decoder.FastDecoder's protocols. llama.cpp only
computes logits; sampling (restricted to the speech tokens and the stop tokens) is ours, with the
same settings and order as the torch decoder, so greedy decoding gives the torch decoder's codes
up to floating-point differences. The optional ``llamacpp`` extra provides llama-cpp-python.
"""
from __future__ import annotations

import collections
import ctypes
import os
import platform
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.errors import DeviceError, ModelFormatError
from engine.lm.backend import MISSING_EXTRA
from engine.lm.gguf import DEFAULT_PRECISION, Progress, ensure_gguf
from engine.lm.tokens import LLASA_TAGS, SpeechTokens

EXACT_PRECISIONS = ("f32", "f16", "bf16")  # GGUF precisions without quantization: their KV cache is kept in F32
_LOG: collections.deque[str] = collections.deque(maxlen=8)  # llama.cpp's last warnings/errors, for messages
_LOG_CALLBACK: Any = None  # kept alive: llama.cpp holds a pointer to it


def _llama() -> Any:
    """The llama_cpp module, initialised once with a quiet logger; DeviceError if the extra is missing."""
    global _LOG_CALLBACK
    try:
        import llama_cpp
    except ImportError as error:  # the extra is not installed, or its shared library does not load
        raise DeviceError(f"{MISSING_EXTRA} ({error})") from error
    if _LOG_CALLBACK is None:

        @llama_cpp.llama_log_callback
        def log(level: int, text: bytes, user_data: Any) -> None:
            if level in (3, 4) and text:  # ggml's WARN and ERROR: kept for error messages, never printed
                _LOG.append(text.decode("utf-8", "replace").strip())

        _LOG_CALLBACK = log
        llama_cpp.llama_log_set(log, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
    return llama_cpp


def physical_cores() -> int:
    """Physical CPU cores this process may use (hyper-threads not counted)."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cores = None
    try:
        if platform.system() == "Linux":
            pairs, phys = set(), "0"
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("physical id"):
                    phys = line.split(":")[1].strip()
                elif line.startswith("core id"):
                    pairs.add((phys, line.split(":")[1].strip()))
            cores = len(pairs) or None
        elif platform.system() == "Darwin":
            out = subprocess.run(["sysctl", "-n", "hw.physicalcpu"], capture_output=True, text=True, timeout=5)
            cores = int(out.stdout.strip())
    except (OSError, ValueError, subprocess.SubprocessError):
        cores = None
    return max(1, min(cores or logical, logical))


def llama_threads() -> int:
    """Threads for llama.cpp: physical cores - 1 (at least 1), so the streaming codec keeps a core."""
    return max(1, physical_cores() - 1)


def check_vocabulary(vocab: Any, tokenizer: Any, tokens: SpeechTokens, path: Path) -> None:
    """ModelFormatError unless the GGUF's vocabulary has the tokenizer's Llasa tags and speech tokens at the same ids."""
    llama_cpp = _llama()
    n = llama_cpp.llama_vocab_n_tokens(vocab)
    if n < tokens.vocab_end:
        raise ModelFormatError(f"{path} has {n} tokens, fewer than the {tokens.vocab_end} Llasa needs: convert it again.")
    ids = tokenizer.convert_tokens_to_ids(list(LLASA_TAGS)) + list(range(tokens.first_speech_id, tokens.vocab_end))
    expected = tokenizer.convert_ids_to_tokens(ids)
    for tid, want in zip(ids, expected):
        got = (llama_cpp.llama_vocab_get_text(vocab, tid) or b"").decode("utf-8", "replace")
        if got != want:
            raise ModelFormatError(
                f"{path}: token {tid} is {got!r} in the GGUF but {want!r} in the tokenizer; "
                "delete the file so it is converted again."
            )


class _Model:
    """Owns a llama_model pointer; freed when garbage-collected."""

    def __init__(self, path: Path) -> None:
        llama_cpp = _llama()
        self._free = llama_cpp.llama_model_free
        _LOG.clear()
        params = llama_cpp.llama_model_default_params()
        self.ptr = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not self.ptr:
            reason = _LOG[-1] if _LOG else "unknown reason"
            raise ModelFormatError(f"llama.cpp cannot load {path}: {reason}. Delete it so it is converted again.")
        self.vocab = llama_cpp.llama_model_get_vocab(self.ptr)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)

    def __del__(self) -> None:
        if getattr(self, "ptr", None):
            self._free(self.ptr)
            self.ptr = None


@dataclass(frozen=True)
class LlamaCppLM:
    """A Llasa LM loaded in llama.cpp: GGUF weights, the HF tokenizer (prompts) and the speech-token ids."""

    model: _Model = field(repr=False)  # the loaded llama_model
    path: Path  # the GGUF file
    tokenizer: Any  # transformers tokenizer of the model folder, for engine.lm.prompt
    tokens: SpeechTokens
    quantization: str  # one of engine.lm.gguf.PRECISIONS: "q8_0", "q4_k_m", "bf16", "f16", "f32"
    threads: int  # llama.cpp threads (physical cores - 1)
    device: torch.device = torch.device("cpu")  # where the codec and sampling run
    notice: str | None = None  # something the user should know, or None
    backend = "llamacpp"  # what runs it (engine.lm.loading.LlasaLM says "torch")
    fast_path = False  # no CUDA graph: the decode step is llama.cpp's

    def decoder(self, max_batch: int = 1, max_length: int = 2048):
        """A decoder for up to ``max_batch`` rows of up to ``max_length`` tokens each."""
        from engine.lm.llamacpp_decoder import LlamaCppDecoder

        return LlamaCppDecoder(self, max_batch=max_batch, max_length=max_length)

    def kv_row_bytes(self, context: int) -> int:
        """Bytes of one decoder row's KV cache of `context` tokens (engine.lm.batching.default_batch)."""
        llama_cpp, ptr = _llama(), self.model.ptr
        head_dim = llama_cpp.llama_model_n_embd(ptr) // llama_cpp.llama_model_n_head(ptr)
        size = 4 if self.quantization in EXACT_PRECISIONS else 2
        return llama_cpp.llama_model_n_layer(ptr) * 2 * llama_cpp.llama_model_n_head_kv(ptr) * context * head_dim * size


def load_llamacpp_lm(
    folder: Path,
    precision: str = DEFAULT_PRECISION,
    on_progress: Progress | None = None,
    *,
    cancel: threading.Event | None = None,
    threads: int | None = None,
) -> LlamaCppLM:
    """Load the Llasa LM in ``folder`` with llama.cpp, converting it to GGUF ``precision`` first if needed.

    DeviceError without the llamacpp extra; ModelFormatError for an unusable folder or GGUF file
    (including one whose token ids differ from the tokenizer's).
    """
    from transformers import AutoTokenizer

    _llama()
    folder = Path(folder)
    threads = threads or llama_threads()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as error:
        raise ModelFormatError(f"Cannot read the tokenizer in {folder}: {error}") from error
    tokens = SpeechTokens.from_tokenizer(tokenizer)
    path = ensure_gguf(folder, precision, threads=threads, on_progress=on_progress, cancel=cancel)
    model = _Model(path)
    check_vocabulary(model.vocab, tokenizer, tokens, path)
    notice = f"No CUDA GPU: running the LM with llama.cpp ({precision.upper()}, {threads} threads)"
    return LlamaCppLM(model, path, tokenizer, tokens, precision, threads, notice=notice)
