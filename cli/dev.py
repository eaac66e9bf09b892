"""`dev`: developer tools (tiny random models in the official layouts)."""
from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import status


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    dev = subparsers.add_parser("dev", help="developer tools")
    tools = dev.add_subparsers(dest="tool", required=True)
    tiny = tools.add_parser("tiny-models", help="write a tiny random Llasa LM (DIR/lm) and X-Codec2 (DIR/codec)")
    tiny.add_argument("dir", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(run=_run_tiny_models)



def _run_tiny_models(args: argparse.Namespace) -> None:
    from engine.models.tiny import write_tiny_models

    lm_dir, codec_dir = write_tiny_models(args.dir, seed=args.seed)
    status(f"Wrote a tiny random Llasa LM to {lm_dir} and a tiny random X-Codec2 to {codec_dir}.")
