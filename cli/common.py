"""What the subcommands share: status lines on stderr (stdout stays for results, e.g. a transcript), LM
backend options, and where the app keeps its voice library."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.config import BACKENDS, GGUF_PRECISIONS


def status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_voices_folder() -> Path:
    """The app's voice library (Qt's per-user AppDataLocation for Llasa Studio, as app.settings uses)."""
    from PySide6.QtCore import QCoreApplication, QStandardPaths

    from app.main import APP_NAME, ORGANIZATION

    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APP_NAME)
    return Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)) / "voices"


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """--backend and --gguf: what runs the LM (machine choices, shared by synth and narrate)."""
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="what runs the LM: torch, or llamacpp "
                        "(fast on CPUs and Macs; needs the llamacpp extra); default auto (today: torch)")
    parser.add_argument("--gguf", choices=GGUF_PRECISIONS, default="q8_0", help="llama.cpp weights, converted once "
                        "next to the model: q8_0 (default), q4_k_m (fastest), bf16 (exact)")
