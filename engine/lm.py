"""The Llasa language model: loading (fp32/bf16/NF4/int8, CPU/CUDA) and the speech-token decode loop.

``LlasaLM`` owns the Hugging Face ``LlamaForCausalLM``, its tokenizer and the validated speech-token
ids. ``generate_codes`` is the plain, correct loop (prefill, then one token at a time on the model's
KV cache); it can only ever emit speech tokens or stop. A faster loop (static cache, captured step)
must reproduce it.
"""
from __future__ import annotations

import importlib.util
import inspect
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generator

import torch

from engine.config import SamplingParams
from engine.errors import DeviceError, ModelFormatError
from engine.sampling import sample_next
from engine.tokens import SpeechTokens

CPU_NOTICE = "No CUDA GPU found: running on CPU in {precision} (slow)"


@dataclass(frozen=True)
class LlasaLM:
    """A loaded Llasa LM, ready to generate: model (eval mode), tokenizer and speech-token ids."""

    model: Any  # transformers LlamaForCausalLM
    tokenizer: Any  # transformers tokenizer with the Llasa tokens and the Llama-3 chat template
    tokens: SpeechTokens
    device: torch.device
    quantization: str  # "4bit" | "8bit" | "bf16" | "fp32"
    notice: str | None = None  # something the user should know (e.g. CPU fallback), or None


def resolve_device(device: str) -> tuple[torch.device, str | None]:
    """"auto" | "cuda" | "cpu" -> the torch device, plus whether "auto" fell back to the CPU."""
    has_cuda = torch.cuda.is_available()
    if device == "auto":
        return torch.device("cuda" if has_cuda else "cpu"), None if has_cuda else "fallback"
    if device == "cuda" and not has_cuda:
        raise DeviceError("No CUDA GPU is available here; use --device cpu (slow) or --device auto.")
    if device not in ("cuda", "cpu"):
        raise DeviceError(f"Unknown device {device!r}; choose auto, cuda or cpu.")
    return torch.device(device), None


def _weight_options(quantization: str, device: torch.device) -> dict[str, Any]:
    """from_pretrained keyword arguments for a precision; DeviceError where it cannot run."""
    if quantization == "fp32":
        return {"dtype": torch.float32}
    if quantization == "bf16":
        return {"dtype": torch.bfloat16}
    if quantization not in ("4bit", "8bit"):
        raise DeviceError(f"Unknown quantization {quantization!r}; choose 4bit, 8bit, bf16 or fp32.")
    if device.type != "cuda":
        raise DeviceError(f"{quantization} quantization needs a CUDA GPU; on the CPU use --quant fp32 (or bf16).")
    missing = [name for name in ("bitsandbytes", "accelerate") if importlib.util.find_spec(name) is None]
    if missing:
        raise DeviceError(
            f"{quantization} quantization needs the {' and '.join(missing)} package(s): "
            f"pip install {' '.join(missing)}, or use --quant bf16."
        )
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        # NF4 with bf16 compute. No double quantization: it saves only ~0.4 bit per weight
        # (~0.35 GB on the 8B model) and slows every decode step.
        config = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
    else:
        config = BitsAndBytesConfig(load_in_8bit=True)
    index = torch.cuda.current_device() if device.index is None else device.index
    return {"dtype": torch.bfloat16, "quantization_config": config, "device_map": {"": index}}


def load_lm(folder: Path, *, quantization: str | None = None, device: str = "auto") -> LlasaLM:
    """Load a Llasa LM from a local folder (config.json, *.safetensors, tokenizer files). Offline only.

    ``quantization`` None means 4bit on CUDA and fp32 on the CPU. safetensors only; never runs code
    from the folder. Raises DeviceError (device/precision unavailable) or ModelFormatError (folder
    is not a loadable Llasa LM).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    torch_device, fallback = resolve_device(device)
    quantization = quantization or ("4bit" if torch_device.type == "cuda" else "fp32")
    options = _weight_options(quantization, torch_device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        tokens = SpeechTokens.from_tokenizer(tokenizer)
        model = AutoModelForCausalLM.from_pretrained(
            folder, use_safetensors=True, local_files_only=True, trust_remote_code=False, **options
        )
    except (OSError, ValueError, KeyError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelFormatError(f"Cannot load the Llasa LM from {folder}: {reason}") from error
    if "device_map" not in options:
        model.to(torch_device)
    model.eval()
    vocab = model.config.vocab_size
    if vocab < tokens.vocab_end:
        raise ModelFormatError(
            f"The LM in {folder} has {vocab} token embeddings but its tokenizer needs {tokens.vocab_end}: "
            "the weights and tokenizer files do not belong together."
        )
    notice = CPU_NOTICE.format(precision=quantization) if fallback else None
    return LlasaLM(model, tokenizer, tokens, torch_device, quantization, notice)


def _make_generator(device: torch.device, seed: int | None) -> torch.Generator:
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


@torch.inference_mode()
def generate_codes(
    lm: LlasaLM,
    prompt_ids: list[int],
    params: SamplingParams,
    *,
    max_new_tokens: int,
    cancel: threading.Event | None = None,
) -> Generator[int, None, str]:
    """Generate speech after ``prompt_ids``, yielding each speech code (int 0..65535) as it is drawn.

    Every token that is neither a speech token nor a stop token (<|SPEECH_GENERATION_END|>,
    <|eot_id|>) is masked out before sampling. The generator's return value says why it stopped:
    "end" (stop token, not yielded), "length" (``max_new_tokens`` codes yielded) or "cancelled"
    (``cancel`` was set; checked before every token). The caller keeps prompt + max_new_tokens
    within the model's context window.
    """
    from transformers import DynamicCache

    model, tokens = lm.model, lm.tokens
    generator = _make_generator(lm.device, params.seed)
    stop_ids = set(tokens.stop_ids)
    use_context = params.repetition_penalty != 1.0
    context = torch.tensor([prompt_ids + [0] * max_new_tokens], dtype=torch.long, device=lm.device)
    length = len(prompt_ids)

    # The KV cache is updated in place; transformers >= 5.24 names the argument `cache`.
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    cache = DynamicCache(config=model.config)
    out = model(input_ids=context[:, :length], use_cache=True, logits_to_keep=1, **{cache_kw: cache})
    allowed = tokens.allowed_mask(out.logits.shape[-1], lm.device)
    for step in range(max_new_tokens):
        if cancel is not None and cancel.is_set():
            return "cancelled"
        if step:  # feed the previous token; the prefill already gave the first logits
            out = model(input_ids=next_id.view(1, 1), use_cache=True, **{cache_kw: cache})
        logits = out.logits[:, -1, :].float() + allowed
        seen = context[:, :length] if use_context else None
        next_id = sample_next(logits, params, generator, context_ids=seen)
        token = int(next_id)
        if token in stop_ids:
            return "end"
        yield token - tokens.first_speech_id
        context[0, length] = token
        length += 1
    return "length"
