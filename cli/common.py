"""What the subcommands share: status lines on stderr (stdout stays for results, e.g. a transcript), LM
backend options, and where the app keeps its voice library."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
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
                        "(fast on CPUs and Macs; needs the llamacpp extra); default auto: llama.cpp when it is "
                        "installed and there is no CUDA GPU, else torch")
    parser.add_argument("--gguf", choices=GGUF_PRECISIONS, default="q8_0", help="llama.cpp weights, converted once "
                        "next to the model: q8_0 (default), q4_k_m (fastest), bf16 (exact)")


@contextmanager
def ctrl_c_cancels() -> Iterator[threading.Event]:
    """Ctrl+C sets the yielded event (which the render path polls) instead of raising wherever the main thread is.

    Python drops a KeyboardInterrupt raised inside a finalizer or an import-lock callback, and the take
    would go on to be written; a polled event cannot be lost. A block that ends in CancelledError after
    Ctrl+C leaves as KeyboardInterrupt (exit 130); a second Ctrl+C interrupts at once. Off the main thread
    (where signals cannot be handled) the event is only set by whoever holds it.
    """
    from engine.errors import CancelledError

    cancel = threading.Event()

    def on_ctrl_c(signum, frame) -> None:
        cancel.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    if threading.current_thread() is not threading.main_thread():
        yield cancel
        return
    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield cancel
    except CancelledError:
        if not cancel.is_set():
            raise
        raise KeyboardInterrupt from None
    finally:
        signal.signal(signal.SIGINT, previous)
