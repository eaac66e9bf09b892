"""`bench`: a speed test of the loaded models on this machine (tokens/s, x real time, time to first audio)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.common import status
from engine.config import DEFAULT_CODEC, DEFAULT_LM, DEVICES, QUANTIZATIONS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser("bench", help="measure how fast the models speak on this machine")
    bench.add_argument("--lm", default=DEFAULT_LM, help=f"Llasa LM: Hugging Face id or local folder (default {DEFAULT_LM})")
    bench.add_argument("--codec", default=DEFAULT_CODEC, help=f"X-Codec2: Hugging Face id or local folder (default {DEFAULT_CODEC})")
    bench.add_argument("--quant", choices=QUANTIZATIONS, help="LM weights (default: automatic for the device)")
    bench.add_argument("--device", choices=DEVICES, default="auto", help="where to run (default auto)")
    bench.add_argument("--json", type=Path, help="also write the result as JSON to this file")
    bench.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> None:
    from engine.config import ModelChoice
    from engine.speech.speed import measure_speed
    from engine.speech.synth import Synthesizer

    status("Loading models…")
    synthesizer = Synthesizer.load(ModelChoice(args.lm, args.codec, args.quant, args.device), with_encoder=False)
    for notice in synthesizer.notices:
        status(notice)
    status("Measuring (a warm-up, then one paragraph with live audio)…")
    result = measure_speed(synthesizer)
    print(result.table())
    if args.json:
        from engine.audio.atomic import write_atomic
        from engine.errors import OutputFileError

        try:
            write_atomic(args.json, (json.dumps(result.to_dict(), indent=1) + "\n").encode("utf-8"))
        except OSError as error:
            raise OutputFileError(f"Cannot write {args.json}: {error.strerror or error}.") from None
