"""Cost of verifier-picked takes: N = 1, 2, 4, 8 candidates in one batch vs N = 1, and verifier speed.

For each N, engine.lm.decoder.FastDecoder draws N takes of --new-tokens codes after the same prompt as
one batch; each take is decoded by the codec (reference codes in front, as Synthesizer.decode does)
and scored by the verifiers (engine.verify.scoring: Whisper ASR + WavLM x-vector similarity). Weights are
random (bench_decode.py's Llasa-shaped LM and X-Codec2; Whisper-small- and WavLM-base-plus-sv-shaped
verifiers from engine.models.tiny_verifiers): random weights cost what real ones cost, except that the ASR
on random weights always runs to its token cap (a real one stops at the end of the sentence), so its
time is an upper bound. Prints a table and writes JSON. See bench/README.md.

    python bench/bench_best_of.py --size 1b --quant nf4 --new-tokens 500 --out bench/best_of_1b.json
    python bench/bench_best_of.py --size tiny --quant fp32 --new-tokens 32   # CPU smoke run
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_decode import RECIPE, SHAPES, build_codec, build_lm, make_prompt, sync  # noqa: E402
from engine.audio.clip import FRAME_RATE, HOP_LENGTH, SAMPLE_RATE  # noqa: E402
from engine.lm.decoder import FastDecoder  # noqa: E402
from engine.models.tiny_verifiers import (WAVLM_BASE_SHAPES, WHISPER_SMALL_SHAPES, write_tiny_wavlm_sv,  # noqa: E402
                                   write_tiny_whisper)
from engine.verify.scoring import Verifiers  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog, near the quiet river bank."


def decode(codec, prefix: list[int], codes: list[int], device: torch.device) -> np.ndarray:
    wave = codec.decode(torch.tensor(prefix + codes, device=device))[0].float().cpu().numpy()
    return wave[len(prefix) * HOP_LENGTH :]


def run(decoder: FastDecoder, codec, verifiers: Verifiers, prompt, prefix, reference, n: int, new_tokens: int) -> dict:
    device = decoder.lm.device
    for _ in decoder.generate([prompt] * n, RECIPE, max_new_tokens=min(16, new_tokens)):  # warm-up: capture
        pass
    sync(device)
    t0 = time.perf_counter()
    takes = [[] for _ in range(n)]
    for step in decoder.generate([prompt] * n, RECIPE, max_new_tokens=new_tokens):
        for take, code in zip(takes, step):
            if code is not None:
                take.append(code)
    sync(device)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    audio = [decode(codec, prefix, take, device) for take in takes]
    sync(device)
    decode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    verifiers.score(audio, TEXT, reference)
    verify_s = time.perf_counter() - t0
    return dict(candidates=n, tokens=sum(map(len, takes)), gen_s=gen_s, decode_s=decode_s, verify_s=verify_s,
                total_s=gen_s + decode_s + verify_s, audio_s=sum(map(len, audio)) / SAMPLE_RATE)


def verifier_speed(verifiers: Verifiers, reference: np.ndarray, seconds: float) -> dict:
    """Seconds each scorer spends per second of audio, on 4 clips of ``seconds`` (batched where it batches)."""
    clips = [np.random.default_rng(k).normal(0, 0.1, int(seconds * SAMPLE_RATE)).astype(np.float32) for k in range(4)]
    result = {}
    for scorer in verifiers.scorers:
        scorer.score(clips[:1], text=TEXT, reference=reference)  # warm-up
        t0 = time.perf_counter()
        scorer.score(clips, text=TEXT, reference=reference)
        result[f"{scorer.name}_s_per_audio_s"] = (time.perf_counter() - t0) / (4 * seconds)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=list(SHAPES), default="1b")
    ap.add_argument("--quant", choices=["nf4", "bf16", "fp32"], default="nf4")
    ap.add_argument("--new-tokens", type=int, default=500)
    ap.add_argument("--prompt-tokens", type=int, default=400)
    ap.add_argument("--candidates", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--verifiers", choices=["tiny", "full"], help="verifier shapes (default: tiny for --size tiny)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    verifier_size = args.verifiers or ("tiny" if args.size == "tiny" else "full")
    lm = build_lm(args.size, args.quant, device)
    codec = build_codec(True, args.size, device)
    prompt, prefix = make_prompt(args.prompt_tokens)
    with tempfile.TemporaryDirectory() as folder:
        full = verifier_size == "full"
        whisper = write_tiny_whisper(Path(folder) / "whisper", **(WHISPER_SMALL_SHAPES if full else {}))
        wavlm = write_tiny_wavlm_sv(Path(folder) / "wavlm", **(WAVLM_BASE_SHAPES if full else {}))
        verifiers = Verifiers.load(whisper, wavlm, device=device.type)
    reference = decode(codec, [], prefix, device)
    rows = []
    for n in args.candidates:
        decoder = FastDecoder(lm, max_batch=n, max_length=len(prompt) + args.new_tokens)
        rows.append(run(decoder, codec, verifiers, prompt, prefix, reference, n, args.new_tokens))
        del decoder
        if device.type == "cuda":
            torch.cuda.empty_cache()
    base = rows[0]
    for row in rows:
        row["gen_x_n1"] = row["gen_s"] / base["gen_s"]
        row["total_x_n1"] = row["total_s"] / base["total_s"]
        row["verify_s_per_audio_s"] = row["verify_s"] / max(row["audio_s"], 1e-9)
    speed = verifier_speed(verifiers, reference, seconds=min(args.new_tokens / FRAME_RATE, 10.0))
    print(f"{args.size} LM ({args.quant}), {verifier_size} verifiers, {args.new_tokens} tokens per take, "
          f"{_device_name(device)}")
    print(f"{'N':>2} {'tokens':>6} {'gen s':>7} {'gen xN1':>7} {'decode s':>8} {'verify s':>8} {'total s':>7} "
          f"{'total xN1':>9} {'verify s/audio s':>16}")
    for r in rows:
        print(f"{r['candidates']:>2} {r['tokens']:>6} {r['gen_s']:>7.2f} {r['gen_x_n1']:>7.2f} {r['decode_s']:>8.2f} "
              f"{r['verify_s']:>8.2f} {r['total_s']:>7.2f} {r['total_x_n1']:>9.2f} {r['verify_s_per_audio_s']:>16.3f}")
    print("per scorer, seconds per second of audio:", ", ".join(f"{k} {v:.3f}" for k, v in speed.items()))
    if args.out:
        report = dict(date=time.strftime("%Y-%m-%d"), device=_device_name(device), torch=torch.__version__,
                      python=platform.python_version(), settings=vars(args) | {"out": str(args.out)},
                      verifiers=verifier_size, rows=rows, verifier_speed=speed)
        args.out.write_text(json.dumps(report, indent=1))


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or 'unknown'})"


if __name__ == "__main__":
    main()
