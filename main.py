"""Llasa Studio: `python main.py` opens the desktop app; `python main.py <subcommand>` runs the engine headless.

Parses arguments and dispatches; the work is done by engine/ (and app/ for the window).
Expected failures (EngineError) print one line and exit with code 2.
"""
from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from engine.config import DEFAULT_CODEC, DEFAULT_LM, DEVICES, QUANTIZATIONS

EXIT_USAGE = 2


def _add_synth(subparsers: argparse._SubParsersAction) -> None:
    synth = subparsers.add_parser("synth", help="speak a text in a cloned voice and write a WAV")
    text = synth.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", help="the text to speak")
    text.add_argument("--text-file", type=Path, help="a UTF-8 text file to speak")
    synth.add_argument("--ref", type=Path, help="reference clip of the voice to clone (wav/flac/ogg/mp3); omit for a random voice")
    synth.add_argument("--ref-text", help="exactly what the reference clip says (required with --ref)")
    synth.add_argument("--out", type=Path, required=True, help="output audio file (.wav, .flac or .ogg)")
    synth.add_argument("--lm", default=DEFAULT_LM, help=f"Llasa LM: Hugging Face id or local folder (default {DEFAULT_LM})")
    synth.add_argument("--codec", default=DEFAULT_CODEC, help=f"X-Codec2: Hugging Face id or local folder (default {DEFAULT_CODEC})")
    synth.add_argument("--quant", choices=QUANTIZATIONS, help="LM weights: 4bit (default on CUDA), 8bit, bf16, fp32 (default on CPU)")
    synth.add_argument("--device", choices=DEVICES, default="auto", help="where to run (default auto: CUDA when present)")
    synth.add_argument("--seed", type=int, help="random seed, for a reproducible take")
    synth.add_argument("--temperature", type=float, default=0.8, help="sampling temperature; 0 = greedy (default 0.8)")
    synth.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1.0 = off)")
    synth.add_argument("--top-k", type=int, default=0, help="keep only the k most likely tokens (default 0 = off)")
    synth.add_argument("--repetition-penalty", type=float, default=1.0, help="> 1 discourages repeats (default 1.0 = off)")
    synth.add_argument("--play", action="store_true", help="play the speech while it is generated (default output device)")
    synth.set_defaults(run=_run_synth)


def _add_dev(subparsers: argparse._SubParsersAction) -> None:
    dev = subparsers.add_parser("dev", help="developer tools")
    tools = dev.add_subparsers(dest="tool", required=True)
    tiny = tools.add_parser("tiny-models", help="write a tiny random Llasa LM (DIR/lm) and X-Codec2 (DIR/codec)")
    tiny.add_argument("dir", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(run=_run_tiny_models)


def _status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run_synth(args: argparse.Namespace) -> None:
    from engine.audio import check_output_path, load_reference, write_audio
    from engine.config import ModelChoice, SamplingParams
    from engine.errors import InputTextError
    from engine.devices import StreamPlayer
    from engine.synth import Synthesizer, read_text_file

    # Everything that can be checked without models is checked first: bad input fails in milliseconds.
    text = args.text if args.text is not None else read_text_file(args.text_file)
    if not text.strip():
        raise InputTextError("There is no text to speak (--text is empty).")
    if args.ref is not None and not (args.ref_text or "").strip():
        raise InputTextError("--ref needs --ref-text: type exactly what the reference clip says.")
    if args.ref is None and args.ref_text:
        raise InputTextError("--ref-text was given without --ref.")
    check_output_path(args.out)
    # Fails fast, before loading models, when there is no PortAudio or no output device.
    player = StreamPlayer() if args.play else None
    params = SamplingParams(
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
    )
    clip = load_reference(args.ref) if args.ref is not None else None
    for warning in clip.warnings if clip else ():
        _status(f"warning: {warning}")

    choice = ModelChoice(lm=args.lm, codec=args.codec, quantization=args.quant, device=args.device)
    _status("Loading models…")
    synthesizer = Synthesizer.load(choice, with_encoder=clip is not None)
    for notice in synthesizer.notices:
        _status(notice)
    voice = synthesizer.encode_reference(clip, args.ref_text) if clip else None
    if voice is None:
        _status("No reference clip: the model picks a random voice.")

    def progress(done: int, budget: int) -> None:
        if sys.stderr.isatty() and done % 25 == 0:
            print(f"\rGenerating… {done} tokens ({done / 50:.1f} s of audio)", end="", file=sys.stderr, flush=True)

    try:
        if player:
            player.start()
            _status("Generating and playing…")
        on_audio = player.feed if player else None
        result = synthesizer.synthesize(text, voice, params, cancel=threading.Event(), on_progress=progress, on_audio=on_audio)
        if player:
            player.finish()
        if sys.stderr.isatty():
            print(file=sys.stderr)
        for warning in result.warnings:
            _status(f"warning: {warning}")
        write_audio(args.out, result.audio)
        _status(f"Wrote {args.out} ({len(result.audio) / 16000:.2f} s, {len(result.codes)} speech tokens).")
        if player:
            player.wait()
    finally:
        if player:
            player.stop()


def _run_tiny_models(args: argparse.Namespace) -> None:
    from engine.tiny_models import write_tiny_models

    lm_dir, codec_dir = write_tiny_models(args.dir, seed=args.seed)
    _status(f"Wrote a tiny random Llasa LM to {lm_dir} and a tiny random X-Codec2 to {codec_dir}.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python main.py",
        description="Llasa Studio: clone a voice from a short clip and speak any text in it, locally.",
    )
    subparsers = parser.add_subparsers(dest="command")
    _add_synth(subparsers)
    _add_dev(subparsers)
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
        print("\ninterrupted: nothing was written.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
