"""Decode speed: the model-card recipe (`model.generate`) vs engine.lm.decoder.FastDecoder, same process.

Full-size random Llasa-shaped weights are built in memory (random weights cost what real ones
cost), with a tokenizer-free 400-token prompt whose speech part is the voice reference. Both paths
generate N tokens after the same prompt; a random-weight decode-only X-Codec2 turns the codes into
audio (the recipe: one decode after generation; the fast loop: engine.speech.stream.StreamingDecoder while
generating). Prints a table and writes JSON. See bench/README.md.

    python bench/bench_decode.py --size 1b --quant nf4 bf16 --new-tokens 500 --out bench/1b.json
    python bench/bench_decode.py --size tiny --quant fp32 --new-tokens 64      # CPU smoke run
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: engine, bench

from engine.audio.clip import FRAME_RATE  # noqa: E402
from engine.config import SamplingParams  # noqa: E402
from engine.lm.decoder import FastDecoder  # noqa: E402
from engine.lm.loading import LlasaLM  # noqa: E402
from engine.lm.tokens import SpeechTokens  # noqa: E402

VOCAB = 193_800  # Llama-3's 128,256 + 8 Llasa tags + 65,536 speech tokens
SHAPES = {  # the team's shared reference/baselines.md; "tiny" is for CPU smoke runs
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128),
    "1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, intermediate_size=8192),
    "3b": dict(hidden_size=3072, num_hidden_layers=28, num_attention_heads=24, num_key_value_heads=8, intermediate_size=8192),
    "8b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, intermediate_size=14336),
}
TOKENS = SpeechTokens(  # the real Llasa ids: tags follow Llama-3's 128,256 tokens, then <|s_0|>..
    text_understanding_start_id=128258, text_understanding_end_id=128259, speech_start_id=128260,
    end_id=128261, first_speech_id=128264, eot_id=128009,
)
RECIPE = SamplingParams(temperature=0.8, top_p=1.0)  # the model card's sampling


def build_lm(size: str, quant: str, device: torch.device) -> LlasaLM:
    """Random Llasa-shaped LlamaForCausalLM (tied embeddings), on ``device``; NF4 layers via bitsandbytes."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    config = LlamaConfig(
        vocab_size=VOCAB, tie_word_embeddings=True, rms_norm_eps=1e-5, max_position_embeddings=2048,
        rope_parameters=dict(rope_type="default", rope_theta=500000.0), bos_token_id=128000,
        eos_token_id=TOKENS.end_id, pad_token_id=TOKENS.end_id, **SHAPES[size],
    )
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model.to_empty(device=device).to(torch.float32 if quant == "fp32" else torch.bfloat16)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.fill_(1.0) if "norm" in name else p.normal_(0.0, 0.02)
    model.model.rotary_emb = LlamaRotaryEmbedding(config).to(device)  # its buffers were left empty
    model.lm_head.weight = model.model.embed_tokens.weight
    if quant == "nf4":
        import bitsandbytes as bnb

        for layer in model.model.layers:
            for parent in (layer.self_attn, layer.mlp):
                for name, lin in list(parent.named_children()):
                    if isinstance(lin, torch.nn.Linear):
                        q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=False,
                                              compute_dtype=torch.bfloat16, quant_type="nf4")
                        q.weight = bnb.nn.Params4bit(lin.weight.data.cpu(), requires_grad=False, quant_type="nf4")
                        setattr(parent, name, q.to(device))  # quantized on the move to CUDA
        torch.cuda.empty_cache()
    model.eval()
    return LlasaLM(model, None, TOKENS, device, quant)


def build_codec(enabled: bool, size: str, device: torch.device):
    if not enabled:
        return None
    from engine.codec.model import CodecConfig, XCodec2

    config = CodecConfig.tiny() if size == "tiny" else CodecConfig()
    dtype = torch.float32  # as the app runs it (engine.speech.synth: the codec is fp32 on every device)
    return XCodec2.from_config(config, decode_only=True).to(device, dtype).eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_prompt(length: int) -> tuple[list[int], list[int]]:
    """A 400-token-style prompt: a few tag ids, then reference speech codes; returns (ids, codes)."""
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, TOKENS.num_codes, (length - 4,), generator=g).tolist()
    head = [128000, TOKENS.text_understanding_start_id, TOKENS.text_understanding_end_id, TOKENS.speech_start_id]
    return head + TOKENS.codes_to_ids(codes), codes


def run_recipe(lm: LlasaLM, codec, prompt: list[int], prefix: list[int], n: int) -> dict:
    ids = torch.tensor([prompt], device=lm.device)
    kw = dict(do_sample=True, temperature=0.8, top_p=1.0, min_new_tokens=n, max_new_tokens=n,
              pad_token_id=TOKENS.end_id, eos_token_id=TOKENS.end_id)
    lm.model.generate(ids, **{**kw, "min_new_tokens": 4, "max_new_tokens": 4})  # warm-up
    sync(lm.device)
    t0 = time.perf_counter()
    out = lm.model.generate(ids, **kw)
    sync(lm.device)
    t_gen = time.perf_counter() - t0
    new = [max(0, min(t - TOKENS.first_speech_id, TOKENS.num_codes - 1)) for t in out[0, len(prompt):].tolist()]
    first_audio = t_total = t_gen
    if codec is not None:  # the recipe decodes the whole take (with the reference in front) at the end
        codec.decode(torch.tensor(prefix + new))
        sync(lm.device)
        first_audio = t_total = time.perf_counter() - t0
    return dict(tokens=len(new), gen_s=t_gen, first_audio_s=first_audio, total_s=t_total)


def run_fast(decoder: FastDecoder, codec, prompt: list[int], prefix: list[int], n: int) -> dict:
    from engine.speech.stream import StreamingDecoder

    lm = decoder.lm
    t0 = time.perf_counter()
    for _ in decoder.generate([prompt], RECIPE, max_new_tokens=16):  # warm-up: capture (and compile)
        pass
    sync(lm.device)
    setup = time.perf_counter() - t0
    sync(lm.device)
    t0 = time.perf_counter()  # pass 1: the LM alone (tokens/s, time to first code)
    first_code, count = None, 0
    for _ in decoder.generate([prompt], RECIPE, max_new_tokens=n):
        first_code = first_code or time.perf_counter() - t0
        count += 1
    sync(lm.device)
    t_gen = time.perf_counter() - t0
    if codec is None:
        return dict(tokens=count, gen_s=t_gen, first_audio_s=first_code, total_s=t_gen, setup_s=setup)
    stream, first_audio = StreamingDecoder(codec, prefix), None
    t0 = time.perf_counter()  # pass 2: LM + streaming codec decode (time to first audio, RTF)
    for step in decoder.generate([prompt], RECIPE, max_new_tokens=n):
        if stream.push([step[0]]) and first_audio is None:
            sync(lm.device)
            first_audio = time.perf_counter() - t0
    stream.flush()
    sync(lm.device)
    return dict(tokens=count, gen_s=t_gen, first_audio_s=first_audio, total_s=time.perf_counter() - t0,
                setup_s=setup, first_code_s=first_code)


RENDER_TEXT = "The old lighthouse keeper climbed the spiral stairs every evening at dusk."


def run_render(size: str, device: torch.device, codec, prefix: list[int], prompt_tokens: int, n: int,
               gguf_folder) -> tuple[str, dict]:
    """The render path as users get it: engine.speech.render.speak_segment on a Synthesizer whose LM runs
    on the automatic backend (engine.lm.backend: llama.cpp at its default precision on a machine without
    CUDA where the extra is installed, from ``gguf_folder()``'s model) or else PyTorch at the device's
    automatic precision (engine.lm.device.default_precision), a real prompt built by the tokenizer's
    chat template (the tiny tokenizer: prompt ids differ from Llama-3's, costs do not), the decoder the
    Synthesizer keeps (full 2,048-token window), and a full codec decode of the take."""
    import dataclasses
    import tempfile

    from transformers import AutoTokenizer

    from engine.lm.device import default_precision
    from engine.lm.prompt import build_prompt
    from engine.lm.tiny import write_tiny_lm
    from engine.speech.render import speak_segment
    from engine.speech.synth import Synthesizer, Voice

    from engine.lm.backend import resolve_backend

    if resolve_backend("auto", device.type) == "llamacpp":
        from engine.lm.gguf import DEFAULT_PRECISION
        from engine.lm.llamacpp import load_llamacpp_lm

        lm = load_llamacpp_lm(gguf_folder(), DEFAULT_PRECISION)
        precision, tokenizer = f"llama.cpp {DEFAULT_PRECISION}", lm.tokenizer
    else:
        precision = default_precision(device)
        quant = {"4bit": "nf4"}.get(precision, precision)
        with tempfile.TemporaryDirectory() as folder:
            write_tiny_lm(Path(folder))
            tokenizer = AutoTokenizer.from_pretrained(folder)
        lm = build_lm(size, quant, device)
        lm = dataclasses.replace(lm, tokenizer=tokenizer, tokens=SpeechTokens.from_tokenizer(tokenizer), quantization=precision)
    synth = Synthesizer(lm, codec)
    transcript = "Exactly what the reference clip says."
    overhead = len(build_prompt(tokenizer, lm.tokens, RENDER_TEXT, reference_codes=[0], reference_text=transcript)) - 1
    voice = Voice(tuple(prefix[: max(1, prompt_tokens - overhead)]), transcript)
    speak_segment(synth, "Hello.", voice, RECIPE, max_new_tokens=16)  # warm-up (and the decoder is kept)
    sync(device)
    t0 = time.perf_counter()
    spoken = speak_segment(synth, RENDER_TEXT, voice, RECIPE, max_new_tokens=n)
    sync(device)
    total = time.perf_counter() - t0
    tokens = len(spoken.takes[0].codes)
    prompt = len(build_prompt(tokenizer, lm.tokens, RENDER_TEXT, reference_codes=voice.codes, reference_text=transcript))
    return precision, dict(tokens=tokens, gen_s=spoken.generate_s, first_audio_s=None, total_s=total, prompt=prompt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=list(SHAPES), default="1b")
    ap.add_argument("--quant", nargs="+", choices=["nf4", "bf16", "fp32"], default=["nf4", "bf16"])
    ap.add_argument("--new-tokens", type=int, default=500)
    ap.add_argument("--prompt-tokens", type=int, default=400)
    ap.add_argument("--no-codec", action="store_true", help="time to first code instead of first audio")
    ap.add_argument("--no-recipe", action="store_true", help="skip model.generate (e.g. 8B bf16)")
    ap.add_argument("--compile", action="store_true", help="also run FastDecoder with torch.compile")
    ap.add_argument("--check-every", type=int, default=8)
    ap.add_argument("--no-render", action="store_true", help="skip the render-path row (automatic precision)")
    ap.add_argument("--llamacpp", nargs="*", choices=["bf16", "q8_0", "q4_k_m"], default=[],
                    help="also llama.cpp rows (needs the llamacpp extra; see bench/bench_llamacpp.py)")
    ap.add_argument("--gguf-dir", type=Path, help="folder for the random model + its GGUF files, reused across runs "
                    "(default /tmp/llasa-bench-SIZE)")
    ap.add_argument("--threads", type=int, help="llama.cpp threads (default physical cores - 1)")
    ap.add_argument("--quality-tokens", type=int, default=100, help="greedy fp32 steps the llama.cpp quality is measured on")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    prompt, prefix = make_prompt(args.prompt_tokens)
    n, rows = args.new_tokens, []
    codec = build_codec(not args.no_codec, args.size, device)
    for quant in args.quant:
        if quant == "nf4" and (device.type != "cuda" or not _has("bitsandbytes")):
            print(f"skip nf4: needs CUDA and bitsandbytes (cuda={device.type == 'cuda'})")
            continue
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        lm = build_lm(args.size, quant, device)
        runs = [] if args.no_recipe else [("recipe model.generate", lambda: run_recipe(lm, codec, prompt, prefix, n))]
        variants = [("fast graph", False)] + ([("fast graph+compile", True)] if args.compile else [])
        for name, comp in variants:
            def fast(comp=comp):
                dec = FastDecoder(lm, max_length=len(prompt) + n, compile=comp, check_every=args.check_every)
                return run_fast(dec, codec, prompt, prefix, n)
            runs.append((name if device.type == "cuda" else name.replace("graph", "eager"), fast))
        for name, fn in runs:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            r = fn()
            audio_s = r["tokens"] / FRAME_RATE
            rows.append(dict(
                size=args.size, quant=quant, path=name, device=_device_name(device), **r,
                tokens_per_s=r["tokens"] / r["gen_s"],
                rtf=r["total_s"] / audio_s if audio_s else None,
                peak_gpu_gib=torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
            ))
        base = next((x["tokens_per_s"] for x in rows if x["quant"] == quant and x["path"].startswith("recipe")), None)
        for x in rows:
            if x["quant"] == quant:
                x["speedup"] = x["tokens_per_s"] / base if base else None
        del lm
    if not args.no_render and codec is not None:
        precision, r = run_render(args.size, device, codec, prefix, args.prompt_tokens, n,
                                  lambda: _gguf_folder(args, ["q8_0"]))
        base = next((x["tokens_per_s"] for x in rows if x["path"].startswith("recipe") and x["quant"] == "fp32"), None)
        base = base or next((x["tokens_per_s"] for x in rows if x["path"].startswith("recipe")), None)
        tps = r["tokens"] / r["gen_s"]
        rows.append(dict(size=args.size, quant=f"auto={precision}", path=f"render path ({r.pop('prompt')}-token prompt)",
                         device=_device_name(device), **r, tokens_per_s=tps, rtf=r["total_s"] / (r["tokens"] / FRAME_RATE),
                         peak_gpu_gib=None, speedup=tps / base if base else None))
    if args.llamacpp:
        rows += llamacpp_rows(args, prompt, n, rows)
    _print_table(rows, "first audio" if codec is not None else "first code")
    if args.out:
        meta = dict(date=time.strftime("%Y-%m-%d"), torch=torch.__version__, python=platform.python_version(),
                    new_tokens=n, prompt_tokens=len(prompt), codec=codec is not None)
        args.out.write_text(json.dumps(dict(meta=meta, rows=rows), indent=2) + "\n")


def llamacpp_rows(args, prompt: list[int], n: int, torch_rows: list[dict]) -> list[dict]:
    """llama.cpp rows (LM only, no codec) with greedy agreement and KL vs the fp32 torch model."""
    from bench_llamacpp import reference, run_llamacpp  # bench/ is on sys.path when run as a script
    from engine.lm.loading import load_lm

    folder = _gguf_folder(args, args.llamacpp)
    lm = load_lm(folder, quantization="fp32", device="cpu")
    ref_ids, ref_logits = reference(lm, prompt, args.quality_tokens)
    del lm
    base = next((x["tokens_per_s"] for x in torch_rows if x["quant"] == "fp32" and x["path"].startswith("recipe")), None)
    rows = []
    for precision in args.llamacpp:
        r = run_llamacpp(folder, precision, prompt, n, args.threads, ref_ids, ref_logits, RECIPE)
        tps = r["tokens"] / r["gen_s"]
        rows.append(dict(size=args.size, device=_device_name(torch.device("cpu")), **r, tokens_per_s=tps, rtf=None,
                         peak_gpu_gib=None, speedup=tps / base if base else None))
        print(f"{r['path']}: prefill {r['prefill_s']:.2f} s, decode {r['decode_tokens_per_s'] or 0:.1f} tok/s, "
              f"greedy agreement {r['greedy_agreement']:.3f}, mean KL {r['mean_kl']:.5f}, {r['gguf_gib']:.2f} GiB")
    return rows


def _gguf_folder(args, precisions: list[str]) -> Path:
    """The random model of this size in the official layout, with GGUF files of ``precisions`` (made once)."""
    from bench_llamacpp import prepare

    folder = args.gguf_dir or Path(f"/tmp/llasa-bench-{args.size}")
    if not (folder / "config.json").is_file():
        prepare(build_lm(args.size, "fp32", torch.device("cpu")), folder, precisions)
    prepare(None, folder, precisions)
    return folder


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"


def _print_table(rows: list[dict], first: str) -> None:
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    print(f"| size | quant | path | tokens | tok/s | x recipe | {first} ms | RTF | peak GPU GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['quant']} | {r['path']} | {r['tokens']} | {r['tokens_per_s']:.1f} | "
              f"{fmt(r.get('speedup'), '.2f')} | {fmt(r['first_audio_s'] and r['first_audio_s'] * 1000, '.1f')} | "
              f"{fmt(r['rtf'], '.3f')} | {fmt(r['peak_gpu_gib'], '.2f')} |")


if __name__ == "__main__":
    main()
