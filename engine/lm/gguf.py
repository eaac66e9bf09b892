"""Convert a downloaded Llasa LM (safetensors + tokenizer) to GGUF for llama.cpp, on the user's machine.

Why: llama.cpp decodes a Llama network several times faster than PyTorch on a CPU, but it reads
GGUF files. We never fetch third-party GGUF uploads: the official weights are converted here once,
tensor by tensor with the ``gguf`` package's writer (F32/F16/BF16), and then quantized (Q8_0,
Q4_K_M) by llama.cpp's own quantizer in a child process (so it can report progress and be
cancelled). Every file is written to a temporary name and renamed when complete.

The token list is the tokenizer's, id for id (added tokens as control tokens), so the 8 Llasa tags
and the 65,536 speech tokens keep their ids; the end token is ``<|SPEECH_GENERATION_END|>``.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import CancelledError, DeviceError, ModelFormatError
from engine.lm.tokens import SpeechTokens

# precision -> (file name, llama.cpp file type). F32/F16/BF16 are written here, the rest quantized from BF16.
PRECISIONS = {
    "f32": ("llasa-f32.gguf", 0),
    "f16": ("llasa-f16.gguf", 1),
    "bf16": ("llasa-bf16.gguf", 32),
    "q8_0": ("llasa-q8_0.gguf", 7),
    "q4_k_m": ("llasa-q4_k_m.gguf", 15),
}
DEFAULT_PRECISION = "q8_0"
# Bits per weight of the large matrices, for the sizes shown before converting (Q4_K_M mixes Q4_K and Q6_K).
BITS_PER_WEIGHT = {"f32": 32.0, "f16": 16.0, "bf16": 16.0, "q8_0": 8.5, "q4_k_m": 4.9}
GGUF_FOLDER = "gguf"  # sub-folder of the model folder that holds the converted files

Progress = Callable[[str, float], None]  # (stage text, fraction 0..1)


def gguf_path(folder: Path, precision: str) -> Path:
    """Where the GGUF of ``precision`` for the Llasa LM in ``folder`` lives (it may not exist yet)."""
    if precision not in PRECISIONS:
        raise DeviceError(f"Unknown llama.cpp precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    return Path(folder) / GGUF_FOLDER / PRECISIONS[precision][0]


def estimated_size(parameters: int, precision: str) -> int:
    """Approximate GGUF file size in bytes of a model with ``parameters`` weights at ``precision``."""
    return int(parameters * BITS_PER_WEIGHT[precision] / 8)


def _safetensors_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        return [folder / n for n in names]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelFormatError(f"{folder} has no *.safetensors weights to convert to GGUF.")
    return files


def _permute_rope(weight: "Any", n_head: int) -> "Any":
    """Reorder q/k projection rows from Hugging Face's rotate-half layout to GGML's interleaved pairs.

    weight [n_head * head_dim, hidden]: row ``half * head_dim/2 + i`` of each head becomes row ``2i + half``.
    """
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _rope_factors(folder: Path) -> "np.ndarray | None":
    """Per-frequency divisors llama.cpp needs for Llama-3's rope scaling (None for plain rope).

    Taken from transformers' own rotary embedding for this config, so both backends rotate alike:
    factor = default inverse frequency / the config's inverse frequency.
    """
    import torch
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    config = LlamaConfig.from_pretrained(folder, local_files_only=True)
    rotary = LlamaRotaryEmbedding(config)
    if float(rotary.attention_scaling) != 1.0:
        raise ModelFormatError(f"The LM in {folder} uses a rope scaling llama.cpp conversion does not support.")
    dim = rotary.inv_freq.shape[0] * 2
    theta = float(getattr(config, "rope_theta", None) or config.rope_parameters["rope_theta"])
    base = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).double() / dim))
    factors = (base / rotary.inv_freq.double()).float().numpy()
    return None if np.allclose(factors, 1.0, rtol=1e-6) else factors


def _vocabulary(folder: Path, tokenizer: Any, n_vocab: int) -> tuple[list[str], list[int], list[str]]:
    """(token strings by id, GGUF token types, BPE merges) of the tokenizer, padded to ``n_vocab``."""
    from gguf import TokenType

    by_id: dict[int, str] = {i: t for t, i in tokenizer.get_vocab().items()}
    if max(by_id) >= n_vocab:
        raise ModelFormatError(f"The tokenizer in {folder} has ids beyond the model's {n_vocab} embeddings.")
    added = tokenizer.added_tokens_decoder
    names, types = [], []
    for i in range(n_vocab):
        if i not in by_id:
            names.append(f"[PAD{i}]"), types.append(int(TokenType.UNUSED))
        elif i in added:
            names.append(added[i].content)
            types.append(int(TokenType.CONTROL if added[i].special else TokenType.USER_DEFINED))
        else:
            names.append(by_id[i]), types.append(int(TokenType.NORMAL))
    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    if spec.get("model", {}).get("type") != "BPE":
        raise ModelFormatError(f"The tokenizer in {folder} is not a byte-level BPE (Llama-3) tokenizer.")
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    if not merges:  # llama.cpp refuses a BPE vocabulary without merges
        raise ModelFormatError(f"The tokenizer in {folder} has no BPE merges: it is not a Llama-3 tokenizer.")
    return names, types, merges


def convert_to_gguf(
    folder: Path,
    out: Path,
    *,
    precision: str = "f16",
    on_progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Write the Llasa LM in ``folder`` as one GGUF file ``out`` (precision f32, f16 or bf16).

    Matrices take ``precision``, norms stay F32 (as llama.cpp's converter does). Streams one
    tensor at a time (memory ~ the largest tensor). Raises ModelFormatError for a folder that is
    not a Llama-architecture Llasa LM, CancelledError when ``cancel`` is set (nothing is left behind).
    """
    import gguf
    import torch
    from safetensors import safe_open
    from transformers import AutoTokenizer

    if precision not in ("f32", "f16", "bf16"):
        raise DeviceError(f"convert_to_gguf writes f32, f16 or bf16, not {precision!r}; quantize after.")
    folder, out = Path(folder), Path(out)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "llama":
        raise ModelFormatError(f"{folder} holds a {config.get('model_type')!r} model; only Llama-based Llasa LMs convert to GGUF.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as error:
        raise ModelFormatError(f"Cannot read the tokenizer in {folder}: {error}") from error
    tokens = SpeechTokens.from_tokenizer(tokenizer)
    n_vocab, n_head, n_kv = config["vocab_size"], config["num_attention_heads"], config["num_key_value_heads"]
    hidden, n_layer = config["hidden_size"], config["num_hidden_layers"]
    head_dim = config.get("head_dim") or hidden // n_head
    names, types, merges = _vocabulary(folder, tokenizer, n_vocab)
    factors = _rope_factors(folder)

    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    writer = gguf.GGUFWriter(tmp, arch)
    writer.add_name(f"Llasa ({folder.name})")
    writer.add_file_type(PRECISIONS[precision][1])
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(hidden)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-5))
    rope = config.get("rope_parameters") or {}
    writer.add_rope_freq_base(float(config.get("rope_theta") or rope.get("rope_theta", 10000.0)))
    writer.add_vocab_size(n_vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("llama-bpe")
    writer.add_token_list(names)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    if isinstance(config.get("bos_token_id"), int):
        writer.add_bos_token_id(config["bos_token_id"])
    writer.add_eos_token_id(tokens.end_id)  # Llasa's stop, not Llama's default end token
    writer.add_add_bos_token(False)  # prompts come as ids, built by engine.lm.prompt

    # The plan: (gguf name, safetensors file, key, transform, ggml type), in writing order.
    names_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layer)
    plan, total = [], 0
    wide = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
            "bf16": gguf.GGMLQuantizationType.BF16}[precision]
    for path in _safetensors_files(folder):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                if key.endswith("rotary_emb.inv_freq"):
                    continue
                name = names_map.get_name(key, try_suffixes=(".weight", ".bias"))
                if name is None:
                    raise ModelFormatError(f"{path.name} has a tensor {key!r} that is not part of a Llama model.")
                shape = tuple(f.get_slice(key).get_shape())
                heads = n_head if key.endswith("q_proj.weight") else n_kv if key.endswith("k_proj.weight") else None
                kind = wide if len(shape) >= 2 else gguf.GGMLQuantizationType.F32
                plan.append((name, path, key, heads, shape, kind))
                total += int(np.prod(shape))
    if factors is not None:
        plan.append((gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", None, None, None, factors.shape,
                     gguf.GGMLQuantizationType.F32))
    for name, _path, _key, _heads, shape, kind in plan:
        size = 4 if kind == gguf.GGMLQuantizationType.F32 else 2
        writer.add_tensor_info(name, shape, np.dtype(np.float32 if size == 4 else np.int16), int(np.prod(shape)) * size,
                               raw_dtype=kind)
    done = 0
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for name, path, key, heads, shape, kind in plan:
            if cancel is not None and cancel.is_set():
                raise CancelledError("GGUF conversion cancelled.")
            if path is None:
                data = factors
            else:
                with safe_open(str(path), framework="pt") as f:
                    weight = f.get_tensor(key)
                if heads is not None:
                    weight = _permute_rope(weight, heads)
                if kind == gguf.GGMLQuantizationType.F32:
                    data = weight.float().numpy()
                elif kind == gguf.GGMLQuantizationType.F16:
                    data = weight.to(torch.float16).view(torch.int16).numpy()
                else:
                    data = weight.to(torch.bfloat16).view(torch.int16).numpy()
            writer.write_tensor_data(np.ascontiguousarray(data))
            done += int(np.prod(shape))
            if on_progress is not None:
                on_progress(f"Converting to GGUF ({precision.upper()})", done / max(total, 1))
        writer.close()
        os.replace(tmp, out)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return out


# ---- quantization by llama.cpp, in a child process --------------------------------------------
_TENSOR_LINE = re.compile(rb"\[\s*(\d+)/\s*(\d+)\]")


def _quantize_child(src: str, dst: str, ftype: int, threads: int, conn: Any) -> None:
    """Child process: run llama_model_quantize, sending (i, n) per tensor and ("rc", code, errors) at the end."""
    import ctypes

    import llama_cpp

    errors: list[str] = []

    @llama_cpp.llama_log_callback
    def log(level: int, text: bytes, user_data: Any) -> None:
        match = _TENSOR_LINE.search(text or b"")
        if match:
            conn.send((int(match.group(1)), int(match.group(2))))
        elif level in (3, 4) and text:  # ggml's WARN and ERROR
            errors.append(text.decode("utf-8", "replace").strip())

    llama_cpp.llama_log_set(log, ctypes.c_void_p(0))
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.nthread = ftype, threads
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    conn.send(("rc", int(rc), errors[-3:]))


def quantize_gguf(
    src: Path,
    out: Path,
    precision: str,
    *,
    threads: int = 1,
    on_progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Quantize the GGUF ``src`` (F16/BF16/F32) to ``precision`` (q8_0 or q4_k_m) with llama.cpp's quantizer.

    Runs in a child process so that progress (tensor i of n) is reported and ``cancel`` stops it
    within a fraction of a second; the output appears only when complete.
    """
    if precision not in ("q8_0", "q4_k_m"):
        raise DeviceError(f"llama.cpp quantization makes q8_0 or q4_k_m, not {precision!r}.")
    out = Path(out)
    tmp = out.with_name(out.name + ".part")
    receive, send = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("spawn").Process(
        target=_quantize_child, args=(str(src), str(tmp), PRECISIONS[precision][1], threads, send), daemon=True
    )
    child.start()
    send.close()
    result = None
    try:
        while result is None:
            if cancel is not None and cancel.is_set():
                raise CancelledError("GGUF quantization cancelled.")
            if receive.poll(0.1):
                try:
                    message = receive.recv()
                except EOFError:
                    break
                if message[0] == "rc":
                    result = message
                elif on_progress is not None:
                    on_progress(f"Quantizing to {precision.upper()}", message[0] / max(message[1], 1))
            elif not child.is_alive() and not receive.poll():
                break
        child.join(timeout=30)
        if result is None or result[1] != 0:
            detail = "; ".join(result[2]) if result and result[2] else f"exit code {child.exitcode}"
            raise ModelFormatError(f"llama.cpp could not quantize {src.name} to {precision}: {detail}")
        os.replace(tmp, out)
    finally:
        if child.is_alive():
            child.terminate()
            child.join(timeout=10)
        receive.close()
        tmp.unlink(missing_ok=True)
    return out


def ensure_gguf(
    folder: Path,
    precision: str = DEFAULT_PRECISION,
    *,
    threads: int = 1,
    on_progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """The GGUF of ``precision`` for the Llasa LM in ``folder``, converting (and quantizing) it once if missing.

    Quantized files are made from a BF16 conversion, which is deleted afterwards unless BF16 is
    what was asked for or it already existed.
    """
    target = gguf_path(folder, precision)
    if target.is_file():
        return target
    if precision in ("f32", "f16", "bf16"):
        return convert_to_gguf(folder, target, precision=precision, on_progress=on_progress, cancel=cancel)
    wide = gguf_path(folder, "bf16")
    existed = wide.is_file()
    if not existed:
        convert_to_gguf(folder, wide, precision="bf16", on_progress=on_progress, cancel=cancel)
    try:
        return quantize_gguf(wide, target, precision, threads=threads, on_progress=on_progress, cancel=cancel)
    finally:
        if not existed:
            wide.unlink(missing_ok=True)
