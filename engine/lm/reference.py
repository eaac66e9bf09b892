"""The plain transformers decode loop: the test reference for engine.lm.decoder.

Prefill, then one token at a time on the model's own KV cache, sampling with engine.lm.sampling.
Nothing calls it at run time: every take goes through engine.speech.render and the fast decoder,
which must give exactly these tokens under greedy decoding (tests/test_fast_lm.py).
"""
from __future__ import annotations

import inspect
import threading
from collections.abc import Generator

import torch

from engine.config import SamplingParams
from engine.lm.loading import LlasaLM, make_generator
from engine.lm.sampling import sample_next


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
    generator = make_generator(lm.device, params.seed)
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
