"""llama.cpp rows for bench_decode.py: speed and quality of engine.lm.llamacpp beside the torch rows.

The random Llasa-shaped torch model of bench_decode.py is written once to a folder in the official
layout (config + fp32 safetensors + a tokenizer with the real id layout: 128,256 Llama-3 ids, the 8
tags, 65,536 speech tokens) and converted with engine.lm.gguf (BF16, then Q8_0/Q4_K_M by llama.cpp);
pass the same --gguf-dir again to reuse it. Quality is measured against the torch fp32 model on
its own greedy continuation of the prompt (teacher-forced): the share of steps where the
llama.cpp argmax equals fp32's, and the mean KL(fp32 || llama.cpp) of the next-token distribution
over the speech tokens + stop tokens (the sampling domain). Random weights: real-weight quality
needs a listening / WER check.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from engine.config import SamplingParams
from engine.lm.decoder import FastDecoder
from engine.lm.loading import LlasaLM
from engine.lm.tiny import LLAMA3_CHAT_TEMPLATE
from engine.lm.tokens import LLASA_TAGS, NUM_SPEECH_CODES, SpeechTokens, speech_token

LLAMA3_IDS = 128_000  # regular Llama-3 BPE ids; 256 special ids follow (<|begin_of_text|> = 128000)


def write_tokenizer(folder: Path, tokens: SpeechTokens) -> None:
    """A byte-level BPE tokenizer with Llasa's real id layout (filler entries stand in for Llama-3's merges)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab["to"] = len(vocab)
    vocab.update({f"tok{i}": i for i in range(len(vocab), LLAMA3_IDS)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("t", "o")]))  # llama.cpp needs at least one merge
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [f"<|reserved_special_token_{k}|>" for k in range(256)]
    specials[0], specials[1], specials[6], specials[7], specials[9] = (
        "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
    tok.add_special_tokens(specials)
    tok.add_special_tokens(list(LLASA_TAGS))
    tok.add_special_tokens([speech_token(c) for c in range(NUM_SPEECH_CODES)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   chat_template=LLAMA3_CHAT_TEMPLATE)
    fast.save_pretrained(folder)
    found = SpeechTokens.from_tokenizer(fast)
    assert (found.end_id, found.first_speech_id, found.eot_id) == (tokens.end_id, tokens.first_speech_id, tokens.eot_id)


def prepare(lm: LlasaLM | None, folder: Path, precisions: list[str]) -> None:
    """With ``lm``: write it (fp32) + a tokenizer to ``folder``. Without: make each GGUF once (BF16 kept)."""
    from engine.lm.gguf import ensure_gguf

    if lm is not None and not (folder / "config.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        write_tokenizer(folder, lm.tokens)
        lm.model.float().save_pretrained(folder)
        return
    for precision in ["bf16"] + [p for p in precisions if p != "bf16"]:  # quantized files come from the BF16 one
        t0 = time.perf_counter()
        stages = set()
        ensure_gguf(folder, precision, threads=2, on_progress=lambda stage, f: stages.add(stage))
        if stages:
            print(f"converted {precision}: {time.perf_counter() - t0:.0f} s ({', '.join(sorted(stages))})")


def reference(lm: LlasaLM, prompt: list[int], n: int) -> tuple[list[int], torch.Tensor]:
    """fp32 greedy continuation (n tokens, as ids) and the reduced logits [n, V'] that chose each of them."""
    decoder = FastDecoder(lm, max_length=len(prompt) + n)
    codes = [c for step in decoder.generate([prompt], SamplingParams(temperature=0), max_new_tokens=n) for c in step]
    ids = prompt + lm.tokens.codes_to_ids([c for c in codes if c is not None])
    with torch.inference_mode():
        full = lm.model(torch.tensor([ids])).logits[0, len(prompt) - 1 : len(ids) - 1].float()
    t = lm.tokens
    return ids, torch.cat([full[:, t.first_speech_id : t.vocab_end], full[:, list(t.stop_ids)]], 1)


def run_llamacpp(folder: Path, precision: str, prompt: list[int], n: int, threads: int | None,
                 ref_ids: list[int], ref_logits: torch.Tensor, recipe: SamplingParams) -> dict:
    """Speed (prefill, decode, with the recipe's sampling) and quality vs fp32 of one GGUF precision."""
    from engine.lm.llamacpp import load_llamacpp_lm

    lm = load_llamacpp_lm(folder, precision, threads=threads)
    decoder = lm.decoder(max_batch=1, max_length=max(len(prompt) + n, len(ref_ids)))
    for _ in decoder.generate([prompt], recipe, max_new_tokens=4):  # warm-up
        pass
    decoder.prefill_prefix([])  # no cached prompt: time the whole prefill
    t0 = time.perf_counter()
    first, count = None, 0
    for _ in decoder.generate([prompt], recipe, max_new_tokens=n):
        first = first or time.perf_counter() - t0
        count += 1
    gen_s = time.perf_counter() - t0
    logits = decoder.logits(ref_ids)[len(prompt) - 1 : len(ref_ids) - 1]
    log_ref, log_q = ref_logits.log_softmax(-1), logits.log_softmax(-1)
    kl = (log_ref.exp() * (log_ref - log_q)).sum(-1).mean().item()
    agree = (logits.argmax(-1) == ref_logits.argmax(-1)).float().mean().item()
    size = lm.path.stat().st_size
    return dict(quant=precision, path=f"llama.cpp {precision} ({lm.threads} threads)", tokens=count, gen_s=gen_s,
                first_audio_s=first, total_s=gen_s, prefill_s=first,
                decode_tokens_per_s=(count - 1) / (gen_s - first) if count > 1 else None,
                greedy_agreement=agree, mean_kl=kl, gguf_gib=size / 2**30)
