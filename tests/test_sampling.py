"""Sampling helpers: exact values on hand-made logits, and equality with transformers' own processors."""
from __future__ import annotations

import math

import pytest
import torch
from transformers import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from engine.config import SamplingParams
from engine.lm.sampling import apply_repetition_penalty, apply_top_k, apply_top_p, sample_next

INF = float("inf")


def test_repetition_penalty_divides_positive_and_multiplies_negative_seen_logits():
    logits = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    out = apply_repetition_penalty(logits, torch.tensor([[0, 1, 1]]), 2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0, 0.5]]
    assert logits.tolist() == [[2.0, -2.0, 1.0, 0.5]]  # input untouched
    assert apply_repetition_penalty(logits, torch.tensor([[0]]), 1.0) is logits


def test_top_k_keeps_k_largest_and_ties():
    assert apply_top_k(torch.tensor([[1.0, 3.0, 2.0, 0.0]]), 2).tolist() == [[-INF, 3.0, 2.0, -INF]]
    assert apply_top_k(torch.tensor([[1.0, 2.0, 2.0, 0.0]]), 1).tolist() == [[-INF, 2.0, 2.0, -INF]]
    logits = torch.tensor([[1.0, 2.0]])
    assert apply_top_k(logits, 0) is logits and apply_top_k(logits, 5) is logits


def test_top_p_keeps_smallest_set_reaching_mass():
    probs = [0.5, 0.3, 0.15, 0.05]
    logits = torch.tensor([[math.log(p) for p in probs]])
    kept = lambda p: torch.isfinite(apply_top_p(logits, p))[0].tolist()  # noqa: E731
    assert kept(0.75) == [True, True, False, False]  # 0.05 + 0.15 <= 0.25 removed
    assert kept(0.4) == [True, False, False, False]
    assert kept(0.01) == [True, False, False, False]  # at least one token stays
    assert apply_top_p(logits, 1.0) is logits


def test_greedy_is_argmax_after_penalty():
    logits = torch.tensor([[2.0, 1.5, -1.0]])
    assert sample_next(logits, SamplingParams(temperature=0)).tolist() == [0]
    penalized = SamplingParams(temperature=0, repetition_penalty=2.0)
    assert sample_next(logits, penalized, context_ids=torch.tensor([[0]])).tolist() == [1]


def test_sampling_respects_masks_and_is_reproducible():
    logits = torch.full((3, 50), -INF)
    logits[:, 7] = 0.0
    assert sample_next(logits, SamplingParams()).tolist() == [7, 7, 7]

    logits = torch.randn(2, 1000, generator=torch.Generator().manual_seed(0))
    params = SamplingParams(temperature=1.0, top_p=0.9, top_k=100)
    draw = lambda seed: [sample_next(logits, params, torch.Generator().manual_seed(seed)) for _ in range(5)]  # noqa: E731
    assert all(torch.equal(a, b) for a, b in zip(draw(3), draw(3)))
    assert sample_next(logits, params).shape == (2,)


def test_sampling_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).expand(20000, 3)
    draws = sample_next(logits, SamplingParams(temperature=1.0), torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=3).float() / draws.numel()
    assert torch.allclose(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.02)


@pytest.mark.parametrize("penalty,temperature,top_k,top_p", [(1.3, 0.8, 50, 0.9), (0.9, 1.2, 0, 0.5), (1.1, 0.7, 5, 1.0)])
def test_matches_transformers_processors(penalty, temperature, top_k, top_p):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 2000, generator=gen) * 3
    context = torch.randint(0, 2000, (4, 300), generator=gen)

    ours = apply_repetition_penalty(logits, context, penalty)
    theirs = RepetitionPenaltyLogitsProcessor(penalty)(context, logits.clone())
    assert torch.equal(ours, theirs)
    ours, theirs = ours / temperature, TemperatureLogitsWarper(temperature)(context, theirs)
    assert torch.equal(ours, theirs)
    if top_k:
        ours, theirs = apply_top_k(ours, top_k), TopKLogitsWarper(top_k)(context, theirs)
        assert torch.equal(ours, theirs)
    if top_p < 1:
        ours, theirs = apply_top_p(ours, top_p), TopPLogitsWarper(top_p)(context, theirs)
        assert torch.equal(ours, theirs)

    # The whole chain, then the same draw transformers' sampling makes (softmax + multinomial).
    hf = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(penalty), TemperatureLogitsWarper(temperature)])
    if top_k:
        hf.append(TopKLogitsWarper(top_k))
    if top_p < 1:
        hf.append(TopPLogitsWarper(top_p))
    probs = hf(context, logits.clone()).softmax(dim=-1)
    expected = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(5)).squeeze(1)
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=penalty)
    drawn = sample_next(logits, params, torch.Generator().manual_seed(5), context_ids=context)
    assert torch.equal(drawn, expected)
