"""Next-token sampling as small pure functions with Hugging Face `generate` semantics.

Order (as in transformers): repetition penalty -> temperature -> top-k -> top-p -> softmax ->
multinomial; greedy = argmax after the repetition penalty. All functions take logits [B, V] (any
float dtype, any device) and return new tensors; -inf marks a removed token.
"""
from __future__ import annotations

import torch

from engine.config import SamplingParams


def apply_repetition_penalty(logits: torch.Tensor, context_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Penalize tokens present in ``context_ids`` [B, L] (int64): positive logits / penalty, negative * penalty.

    Same as transformers' RepetitionPenaltyLogitsProcessor; penalty 1 (or an empty context) changes nothing.
    """
    if penalty == 1.0 or context_ids.shape[-1] == 0:
        return logits
    seen = torch.gather(logits, 1, context_ids)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return logits.scatter(1, context_ids, seen)


def apply_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits per row (ties with the k-th kept too); k = 0 keeps all."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def apply_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the most likely tokens whose probability mass reaches ``p`` (at least one).

    Same as transformers' TopPLogitsWarper(min_tokens_to_keep=1): a token is removed when the mass
    of the tokens less likely than or as likely as it (itself included) is <= 1 - p. p = 1 keeps all.
    """
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1)  # ascending
    mass_below = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = mass_below <= 1 - p
    remove_sorted[..., -1:] = False
    remove = remove_sorted.scatter(1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def sample_next(
    logits: torch.Tensor,
    params: SamplingParams,
    generator: torch.Generator | None = None,
    *,
    context_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw the next token per row: logits [B, V] -> token ids [B] (int64, same device).

    ``context_ids`` [B, L] are the tokens seen so far (prompt + generated) for the repetition
    penalty. ``generator`` (on the logits' device) makes draws reproducible.
    """
    if context_ids is not None:
        logits = apply_repetition_penalty(logits, context_ids, params.repetition_penalty)
    if params.greedy:
        return logits.argmax(dim=-1)
    logits = logits / params.temperature
    logits = apply_top_k(logits, params.top_k)
    logits = apply_top_p(logits, params.top_p)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
