"""Llasa Studio: `python main.py` opens the desktop app; `python main.py <subcommand>` runs the engine headless.

Builds the parser from the subcommand modules in cli/ and dispatches; the work is done by engine/
(and app/ for the window).
Expected failures (EngineError) print one line and exit with code 2.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys

from cli import bench, dev, narrate, serve, synth

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python main.py",
        description="Llasa Studio: clone a voice from a short clip and speak any text in it, locally.",
    )
    subparsers = parser.add_subparsers(dest="command")
    synth.add_synth_parser(subparsers)
    synth.add_transcribe_parser(subparsers)
    narrate.add_parser(subparsers)
    bench.add_parser(subparsers)
    serve.add_parser(subparsers)
    dev.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        from app.main import run_app

        return run_app(sys.argv[:1])
    from engine.errors import EngineError

    try:
        args.run(args)
    except EngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\n" + getattr(args, "interrupted", "interrupted: nothing was written."), file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    multiprocessing.freeze_support()  # a frozen build's child processes start here; it returns at once otherwise
    for _stream in ("stdout", "stderr"):  # None in a windowed build (Windows, macOS .app): make prints harmless
        if getattr(sys, _stream) is None:
            setattr(sys, _stream, open(os.devnull, "w", encoding="utf-8"))
    sys.exit(main())
