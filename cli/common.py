"""What the subcommands share: status lines on stderr (stdout stays for results, e.g. a transcript), LM backend options."""
from __future__ import annotations

import argparse
import sys

from engine.config import BACKENDS, GGUF_PRECISIONS


def status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """--backend and --gguf: what runs the LM (machine choices, shared by synth and narrate)."""
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="what runs the LM: torch, or llamacpp "
                        "(fast on CPUs and Macs; needs the llamacpp extra); default auto (today: torch)")
    parser.add_argument("--gguf", choices=GGUF_PRECISIONS, default="q8_0", help="llama.cpp weights, converted once "
                        "next to the model: q8_0 (default), q4_k_m (fastest), bf16 (exact)")
