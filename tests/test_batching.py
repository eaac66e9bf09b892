"""Continuous batching on the tiny models: ragged rows (prompts of different lengths, texts and voices)
equal the plain single-sequence loop under greedy decoding, rows are refilled as takes end, and a
sampled take is the same alone, in a batch of 3, or in a batch of 8."""
from __future__ import annotations

import threading

import pytest
import torch

from engine.audio.clip import load_reference
from engine.config import ModelChoice, SamplingParams
from engine.errors import CancelledError, SettingsError
from engine.lm.batching import BatchScheduler, DecodeJob
from engine.lm.prompt import build_prompt
from engine.lm.reference import generate_codes
from engine.speech.synth import Synthesizer, Voice

REF_TEXT = "The quick brown fox jumps over the lazy dog, near the quiet river bank."
GREEDY = SamplingParams(temperature=0)
SAMPLED = SamplingParams(temperature=0.9, top_p=0.95, top_k=50, repetition_penalty=1.1)
TEXTS = ["Hello there.", "A much longer sentence, with a comma, and more words in it than the first.", "Yes.",
         "Numbers: one, two, three.", "The end of the chapter is near.", "Why?"]


@pytest.fixture(scope="module")
def synthesizer(tiny_models) -> Synthesizer:
    return Synthesizer.load(ModelChoice(lm=str(tiny_models["lm"]), codec=str(tiny_models["codec"]), device="cpu",
                                        quantization="fp32"))


@pytest.fixture(scope="module")
def voices(synthesizer, speech_clip_16k) -> list[Voice | None]:
    full = synthesizer.encode_reference(load_reference(speech_clip_16k[1]), REF_TEXT)
    return [full, Voice(full.codes[:12], "The quick brown fox."), None]


def prompts(synthesizer, voices) -> list[tuple[int, ...]]:
    lm = synthesizer.lm
    return [tuple(build_prompt(lm.tokenizer, lm.tokens, text, reference_codes=v.codes if v else None,
                               reference_text=v.transcript if v else ""))
            for text, v in zip(TEXTS, voices * 2)]


def run(synthesizer, jobs, params, batch):
    decoder = synthesizer.lm.decoder(max_batch=batch, max_length=512)
    return {r.key: (list(r.codes), r.finish_reason) for r in BatchScheduler(decoder, params).run(jobs)}


def plain(synthesizer, prompt, budget):
    gen, codes = generate_codes(synthesizer.lm, list(prompt), GREEDY, max_new_tokens=budget), []
    while True:
        try:
            codes.append(next(gen))
        except StopIteration as stop:
            return codes, stop.value


def test_greedy_ragged_rows_equal_the_plain_loop_and_rows_are_refilled(synthesizer, voices):
    ps = prompts(synthesizer, voices)
    assert len({len(p) for p in ps}) == len(ps)  # all lengths differ: a ragged batch
    budgets = [30, 9, 21, 14, 40, 5]  # different budgets: rows end at different steps and are refilled
    jobs = [DecodeJob(i, p, None, b) for i, (p, b) in enumerate(zip(ps, budgets))]
    got = run(synthesizer, jobs, GREEDY, 3)  # 6 jobs on 3 rows: every row is refilled
    assert got == {i: plain(synthesizer, p, b) for i, (p, b) in enumerate(zip(ps, budgets))}


def test_a_sampled_take_does_not_depend_on_its_batch(synthesizer, voices):
    ps = prompts(synthesizer, voices)
    jobs = [DecodeJob(i, p, 1000 + i, 12 + 2 * i) for i, p in enumerate(ps)]
    alone = {}
    for job in jobs:
        alone |= run(synthesizer, [job], SAMPLED, 1)
    assert run(synthesizer, jobs, SAMPLED, 3) == alone
    assert run(synthesizer, list(reversed(jobs)), SAMPLED, 8) == alone  # other neighbours, idle rows
    assert len({tuple(c) for c, _ in alone.values()}) == len(jobs)  # seeds differ: takes differ
    other = run(synthesizer, [DecodeJob(0, ps[0], 999, 12)], SAMPLED, 1)
    assert other[0] != alone[0]


def test_jobs_are_pulled_lazily_and_a_cancel_stops_at_a_chunk_boundary(synthesizer, voices):
    ps = prompts(synthesizer, voices)
    pulled, cancel = [], threading.Event()

    def jobs():
        for i, p in enumerate(ps):
            pulled.append(i)
            yield DecodeJob(i, p, i, 40)

    decoder = synthesizer.lm.decoder(max_batch=2, max_length=512)
    results = BatchScheduler(decoder, SAMPLED).run(jobs(), cancel=cancel)
    next(results)
    assert len(pulled) <= 3  # two rows, one refill: the rest are still waiting
    cancel.set()
    with pytest.raises(CancelledError):
        next(results)
    too_long = DecodeJob(0, ps[0], 0, 512)
    with pytest.raises(SettingsError, match="must fit"):
        list(BatchScheduler(decoder, SAMPLED).run([too_long]))


def test_cpu_products_are_the_linear_product_for_any_row_count():
    """Every CPU product the decoder may use (oneDNN's linear, the batched product, whichever rows_weight
    picks) equals F.linear to float32 rounding, for 2-D and 3-D inputs; oneDNN passes its check here."""
    import torch.nn.functional as F

    from engine.lm import cpu_linear
    from engine.lm.cpu_linear import rows_linear, rows_weight

    assert cpu_linear.onednn_linear_works()  # torch's CPU wheels ship oneDNN: the fast product is in use
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(96, 64, generator=g)
    for rows in (1, 2, 5, 16, 17, 48):
        x = torch.randn(rows, 1, 64, generator=g)
        for product in (rows_weight, cpu_linear._onednn, cpu_linear._batched):
            torch.testing.assert_close(product(x, weight), F.linear(x, weight), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(product(x[:, 0], weight), F.linear(x[:, 0], weight), rtol=1e-5, atol=1e-5)
        assert cpu_linear._batched(x, weight).transpose(0, 1)[0].stride()[-1] == 1
    biased = torch.nn.Linear(64, 96)  # not a plain bias-free Linear: the module itself runs
    x = torch.randn(4, 64, generator=g)
    torch.testing.assert_close(rows_linear(x, biased), biased(x))
