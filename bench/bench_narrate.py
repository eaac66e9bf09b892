"""Narration throughput: audio minutes per wall minute and segments per hour, by batch size and worker count.

Batch rows: the continuous-batching scheduler (engine.lm.batching.BatchScheduler) on one FastDecoder
with full-window KV caches, `--jobs` takes of `--new-tokens` speech tokens each (random weights never
say the end token, so every take runs to its cap, like a short segment), after a tokenizer-free
`--prompt` token prompt; random full-size weights (bench/bench_decode.py build_lm) cost what real
ones cost. The LM only: the codec's decode is the same per take whatever the batch. Each batch size
also reports how many takes differ from batch 1's (same seeds): floating-point sums of other batch
shapes can flip a sampled token.

`--llamacpp q8_0` runs the batch rows on llama.cpp instead (engine.lm.llamacpp's row protocol), with
the random model of bench/bench_decode.py's `--gguf-dir` (made and converted once).

Worker rows (`--workers`): engine.book.workers.WorkerPool on the tiny models written to disk (the
pool loads models from a folder), batch 1 per worker, codec included.

    python bench/bench_narrate.py --size tiny --out bench/narrate_tiny.json          # seconds
    python bench/bench_narrate.py --size 1b --batches 1 4 8 --jobs 8 --new-tokens 64 --out bench/narrate_1b.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_decode import TOKENS, build_lm  # noqa: E402
from engine.audio.clip import FRAME_RATE  # noqa: E402
from engine.config import CONTEXT_WINDOW, SamplingParams  # noqa: E402
from engine.lm.batching import BatchScheduler, DecodeJob  # noqa: E402

PARAMS = SamplingParams(temperature=0.8, top_p=1.0)  # the model card's sampling


def prompts(count: int, length: int) -> list[tuple[int, ...]]:
    """Different prompts of different lengths (length .. length + count - 1): a ragged batch."""
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(count):
        codes = torch.randint(0, 65536, (length + i - 3,), generator=g).tolist()
        out.append((TOKENS.speech_start_id, *(TOKENS.first_speech_id + c for c in codes), 128000, 128001))
    return out


def run_batch(lm, batch: int, jobs: list[DecodeJob], device: torch.device) -> tuple[dict, dict]:
    decoder = lm.decoder(max_batch=batch, max_length=CONTEXT_WINDOW)  # FastDecoder, or llama.cpp's
    list(BatchScheduler(decoder, PARAMS).run(jobs[:1]))  # warm-up (and the CUDA graph capture)
    _sync(device)
    start = time.perf_counter()
    takes = {r.key: r.codes for r in BatchScheduler(decoder, PARAMS).run(jobs)}
    _sync(device)
    wall = time.perf_counter() - start
    codes = sum(len(c) for c in takes.values())
    del decoder
    return {"what": f"batch {batch}", "takes": len(takes), "codes": codes, "wall_s": round(wall, 2),
            **_rates(codes, len(takes), wall)}, takes


def run_workers(workers: int, jobs: int, new_tokens: int) -> dict:
    """WorkerPool on the tiny models: `jobs` segments, capped at `new_tokens` codes each."""
    from engine.book.workers import WorkerPool
    from engine.config import ModelChoice
    from engine.models.tiny import write_tiny_models
    from engine.speech.batch import SegmentJob
    from engine.speech.synth import Voice

    with tempfile.TemporaryDirectory() as folder:
        lm_dir, codec_dir = write_tiny_models(Path(folder))
        choice = ModelChoice(str(lm_dir), str(codec_dir), device="cpu", quantization="fp32")
        voice = Voice(tuple(range(40)), "A reference transcript of a few words.")
        segments = [SegmentJob(i, f"Segment number {i} of the benchmark book.", voice, i, new_tokens) for i in range(jobs)]
        with WorkerPool(choice, workers, batch=1) as pool:
            list(pool(segments[:workers], PARAMS, None, None))  # every worker loaded and warm
            start = time.perf_counter()
            takes = dict(pool(segments, PARAMS, None, None))
            wall = time.perf_counter() - start
    codes = sum(len(t.codes) for t in takes.values())
    return {"what": f"workers {workers} (tiny, codec incl.)", "takes": len(takes), "codes": codes,
            "wall_s": round(wall, 2), **_rates(codes, len(takes), wall)}


def _rates(codes: int, takes: int, wall: float) -> dict:
    return {"audio_min_per_wall_min": round(codes / FRAME_RATE / wall, 3), "segments_per_hour": round(takes * 3600 / wall)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny", choices=("tiny", "1b", "3b", "8b"))
    parser.add_argument("--quant", default=None, help="fp32 (CPU default) | bf16 (CUDA default) | nf4")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="worker counts (tiny models); none: skip")
    parser.add_argument("--jobs", type=int, default=8, help="takes per row of the table")
    parser.add_argument("--new-tokens", type=int, default=64, help="speech tokens per take")
    parser.add_argument("--prompt", type=int, default=48, help="prompt tokens (the first take's; each next one +1)")
    parser.add_argument("--llamacpp", choices=("bf16", "q8_0", "q4_k_m"), help="batch rows on llama.cpp at this precision")
    parser.add_argument("--gguf-dir", type=Path, help="the random model + GGUFs (default /tmp/llasa-bench-SIZE)")
    parser.add_argument("--threads", type=int, help="llama.cpp threads (default physical cores - 1)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    quant = args.quant or ("bf16" if device.type == "cuda" else "fp32")
    if args.llamacpp:
        from bench.bench_decode import _gguf_folder
        from engine.lm.llamacpp import load_llamacpp_lm

        device, quant = torch.device("cpu"), f"llama.cpp {args.llamacpp}"
        lm = load_llamacpp_lm(_gguf_folder(args, [args.llamacpp]), args.llamacpp, threads=args.threads)
    else:
        lm = build_lm(args.size, quant, device)
    jobs = [DecodeJob(i, p, 1000 + i, args.new_tokens) for i, p in enumerate(prompts(args.jobs, args.prompt))]
    rows, first = [], None
    for batch in args.batches:
        row, takes = run_batch(lm, batch, jobs, device)
        first = first or takes
        row["takes_differing_from_first_batch"] = sum(takes[k] != first[k] for k in takes)
        rows.append(row)
        print(row, flush=True)
    del lm
    for workers in args.workers:
        rows.append(run_workers(workers, args.jobs, args.new_tokens))
        print(rows[-1], flush=True)
    base = rows[0]["audio_min_per_wall_min"]
    print(f"\n{args.size} {quant} on {device.type}: {args.jobs} takes of {args.new_tokens} tokens")
    print(f"{'':34} {'audio min/wall min':>18} {'segments/h':>11} {'x batch 1':>9} {'differ':>6}")
    for row in rows:
        print(f"{row['what']:34} {row['audio_min_per_wall_min']:>18} {row['segments_per_hour']:>11} "
              f"{row['audio_min_per_wall_min'] / base:>9.2f} {row.get('takes_differing_from_first_batch', ''):>6}")
    if args.out:
        load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip() if os.name == "posix" else ""
        meta = {"size": args.size, "quant": quant, "device": torch.cuda.get_device_name() if device.type == "cuda" else
                platform.processor() or platform.machine(), "cpus": os.cpu_count(), "uptime": load,
                "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "jobs": args.jobs, "new_tokens": args.new_tokens, "prompt": args.prompt}
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
