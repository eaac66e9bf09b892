"""Loading the Llasa LM and the plain decode loop, on the tiny random Llasa LM written to disk.

Parity: our loop must pick exactly the tokens ``model.generate`` picks. Our loop can only emit speech
tokens or stop (a random model would otherwise pick text tokens), so ``generate`` gets the same
restriction through ``suppress_tokens`` = every id that is neither a speech token nor a stop token.
"""
from __future__ import annotations

import copy
import dataclasses
import random
import shutil
import threading

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from engine.config import SamplingParams
from engine.errors import DeviceError, ModelFormatError
from engine.lm.loading import CPU_NOTICE, load_lm
from engine.lm.reference import generate_codes
from engine.lm.prompt import build_prompt


@pytest.fixture(scope="module")
def lm_folder(tiny_models):
    return tiny_models["lm"]  # the session's tiny LM (seed 0); tests that edit weights work on copies


@pytest.fixture(scope="module")
def lm(lm_folder):
    return load_lm(lm_folder, device="cpu")


@pytest.fixture(scope="module")
def prompt(lm):
    codes = [random.Random(1).randrange(65536) for _ in range(200)]
    return build_prompt(lm.tokenizer, lm.tokens, "Hello there.", reference_codes=codes, reference_text="Ref words.")


def run(generator) -> tuple[list[int], str]:
    """All codes a generate_codes generator yields, and its return value."""
    codes = []
    while True:
        try:
            codes.append(next(generator))
        except StopIteration as stop:
            return codes, stop.value


def hf_generate(lm, prompt, max_new_tokens, **kwargs) -> list[int]:
    tokens = lm.tokens
    suppress = [i for i in range(lm.model.config.vocab_size) if not tokens.is_speech(i) and i not in tokens.stop_ids]
    out = lm.model.generate(
        torch.tensor([prompt]),
        max_new_tokens=max_new_tokens,
        eos_token_id=list(tokens.stop_ids),
        pad_token_id=tokens.end_id,
        suppress_tokens=suppress,
        **kwargs,
    )
    new = out[0, len(prompt) :].tolist()
    if new and new[-1] in tokens.stop_ids:  # generate keeps the stop token; the recipe drops it
        new = new[:-1]
    return tokens.ids_to_codes(new)


def test_load_lm(lm, lm_folder):
    assert lm.device == torch.device("cpu") and lm.quantization == "fp32" and lm.notice is None
    assert next(lm.model.parameters()).dtype == torch.float32 and not lm.model.training
    assert lm.tokens.vocab_end <= lm.model.config.vocab_size
    if not torch.cuda.is_available():
        auto = load_lm(lm_folder, device="auto")
        assert auto.notice == CPU_NOTICE.format(precision="fp32") == "No CUDA GPU found: running on CPU in fp32 (slow)"
        assert auto.device == torch.device("cpu") and auto.quantization == "fp32"
    bf16 = load_lm(lm_folder, quantization="bf16", device="cpu")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors of a machine without CUDA")
def test_device_errors_without_cuda(lm_folder):
    with pytest.raises(DeviceError, match="No CUDA GPU"):
        load_lm(lm_folder, device="cuda")
    for quant in ("4bit", "8bit"):
        with pytest.raises(DeviceError, match="needs a CUDA GPU"):
            load_lm(lm_folder, quantization=quant, device="auto")


def test_bad_model_folders(lm_folder, tmp_path):
    pickled = tmp_path / "pickled"
    shutil.copytree(lm_folder, pickled)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    with pytest.raises(ModelFormatError, match="Cannot load the Llasa LM"):
        load_lm(pickled, device="cpu")

    small = tmp_path / "small_vocab"
    shutil.copytree(lm_folder, small)
    config = LlamaConfig.from_pretrained(small)
    config.vocab_size = 1000
    LlamaForCausalLM(config).save_pretrained(small)
    with pytest.raises(ModelFormatError, match="token embeddings"):
        load_lm(small, device="cpu")

    with pytest.raises(ModelFormatError):
        load_lm(tmp_path / "missing", device="cpu")


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_greedy_matches_transformers_generate(lm, prompt, penalty):
    params = SamplingParams(temperature=0, repetition_penalty=penalty)
    codes, reason = run(generate_codes(lm, prompt, params, max_new_tokens=32))
    assert (len(codes), reason) == (32, "length")
    assert codes == hf_generate(lm, prompt, 32, do_sample=False, repetition_penalty=penalty)
    assert all(0 <= c < 65536 for c in codes)


def test_sampling_matches_transformers_generate(lm, prompt):
    # transformers samples with torch.multinomial on the global generator: same seed, same draws.
    params = SamplingParams(temperature=0.8, top_p=0.9, top_k=200, repetition_penalty=1.2, seed=7)
    codes, _ = run(generate_codes(lm, prompt, params, max_new_tokens=24))
    torch.manual_seed(7)
    expected = hf_generate(lm, prompt, 24, do_sample=True, temperature=0.8, top_p=0.9, top_k=200, repetition_penalty=1.2)
    assert codes == expected


def test_seed_reproducible(lm, prompt):
    take = lambda seed: run(generate_codes(lm, prompt, SamplingParams(seed=seed), max_new_tokens=20))  # noqa: E731
    assert take(3) == take(3)
    assert take(3)[0] != take(4)[0]


def test_cancel_stops_between_tokens(lm, prompt):
    cancel = threading.Event()
    gen = generate_codes(lm, prompt, SamplingParams(seed=0), max_new_tokens=100, cancel=cancel)
    first = [next(gen) for _ in range(5)]
    cancel.set()
    rest, reason = run(gen)
    assert (len(first), rest, reason) == (5, [], "cancelled")
    assert run(generate_codes(lm, prompt, SamplingParams(), max_new_tokens=100, cancel=cancel)) == ([], "cancelled")


def test_stop_token_ends_generation(lm, prompt):
    """A real model edited so <|SPEECH_GENERATION_END|> always wins: generation ends at once."""
    edited = dataclasses.replace(lm, model=copy.deepcopy(lm.model))
    model, end_id = edited.model, edited.tokens.end_id
    with torch.no_grad():
        for layer in model.model.layers:  # the residual stream becomes the input embedding ...
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight[:, 0] = 1.0  # ... whose dimension 0 is always positive,
        head = torch.zeros_like(model.model.embed_tokens.weight)
        head[end_id, 0] = 10.0  # and only <|SPEECH_GENERATION_END|> reads it.
        model.lm_head.weight = torch.nn.Parameter(head)
    for params in (SamplingParams(temperature=0), SamplingParams(seed=1), SamplingParams(seed=2, top_p=0.5)):
        assert run(generate_codes(edited, prompt, params, max_new_tokens=20)) == ([], "end")
    assert hf_generate(edited, prompt, 20, do_sample=False) == []
