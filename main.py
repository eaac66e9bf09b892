"""Llasa Studio: `python main.py` opens the desktop app; `python main.py <subcommand>` runs the engine headless.

Parses arguments and dispatches; the work is done by engine/ (and app/ for the window).
Expected failures (EngineError) print one line and exit with code 2.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import threading
from pathlib import Path

from engine.config import DEFAULT_CODEC, DEFAULT_LM, DEVICES, QUANTIZATIONS
from engine.verify import DEFAULT_ASR, DEFAULT_SPEAKER

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
    synth.add_argument("--candidates", type=int, default=1, help="generate N takes (1-8) in one batch and keep the one the verifiers pick (default 1)")
    synth.add_argument("--asr", default=DEFAULT_ASR, help=f"Whisper model that checks the words of each take, or 'none' (default {DEFAULT_ASR})")
    synth.add_argument("--speaker-model", default=DEFAULT_SPEAKER, help=f"speaker model that compares each take's voice with --ref, or 'none' (default {DEFAULT_SPEAKER})")
    synth.set_defaults(run=_run_synth)


def _add_transcribe(subparsers: argparse._SubParsersAction) -> None:
    transcribe = subparsers.add_parser("transcribe", help="print what an audio clip says (Whisper), e.g. for --ref-text")
    transcribe.add_argument("clip", type=Path, help="audio file (wav/flac/ogg/mp3)")
    transcribe.add_argument("--asr", default=DEFAULT_ASR, help=f"Whisper model: Hugging Face id or local folder (default {DEFAULT_ASR})")
    transcribe.add_argument("--language", help="language code (en, zh, ...); default: detected")
    transcribe.add_argument("--device", choices=DEVICES, default="auto", help="where to run (default auto: CUDA when present)")
    transcribe.set_defaults(run=_run_transcribe)


def _add_narrate(subparsers: argparse._SubParsersAction) -> None:
    narrate = subparsers.add_parser("narrate", help="narrate a book into a project folder (resumable), then export it")
    narrate.add_argument("project", type=Path, help="project folder: created with --text-file, resumed without it")
    narrate.add_argument("--text-file", type=Path, help="book to narrate (.txt, .md, .epub): creates the project")
    voice = narrate.add_mutually_exclusive_group()
    voice.add_argument("--voice", type=Path, help="the narrator: a .llasavoice file (with --text-file)")
    voice.add_argument("--ref", type=Path, help="the narrator: a reference clip (with --text-file and --ref-text)")
    narrate.add_argument("--ref-text", help="exactly what the reference clip says")
    narrate.add_argument("--chapters", help="chapters to narrate and export, e.g. 1,3-5 (default all; remembered)")
    narrate.add_argument("--lm", help=f"Llasa LM: Hugging Face id or local folder (default {DEFAULT_LM})")
    narrate.add_argument("--codec", help=f"X-Codec2: Hugging Face id or local folder (default {DEFAULT_CODEC})")
    narrate.add_argument("--quant", choices=QUANTIZATIONS, help="LM weights (default 4bit on CUDA, fp32 on CPU)")
    narrate.add_argument("--device", choices=DEVICES, default="auto", help="where to run (default auto)")
    narrate.add_argument("--seed", type=int, help="base seed of every take (default random, stored in the project)")
    narrate.add_argument("--temperature", type=float, help="sampling temperature (default 0.8)")
    narrate.add_argument("--top-p", type=float, help="nucleus sampling mass (default 1.0 = off)")
    narrate.add_argument("--top-k", type=int, help="keep only the k most likely tokens (default 0 = off)")
    narrate.add_argument("--repetition-penalty", type=float, help="> 1 discourages repeats (default 1.0 = off)")
    narrate.add_argument("--export", choices=("wav", "flac", "mp3", "m4b"), help="export the book when all is rendered")
    narrate.add_argument("--per-chapter", action="store_true", help="export one file per chapter into the folder --out")
    narrate.add_argument("--out", type=Path, help="export destination: a file, or a folder with --per-chapter")
    narrate.set_defaults(run=_run_narrate)


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
    from engine.errors import InputTextError, SettingsError
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
    if not 1 <= args.candidates <= 8:
        raise SettingsError(f"--candidates must be 1 to 8, got {args.candidates}.")
    if args.candidates > 1 and args.play:
        raise SettingsError("--play cannot be combined with --candidates: the best take is known only at the end.")
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

    if args.candidates > 1:
        return _synth_best_of(args, synthesizer, text, voice, params, clip, progress)
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


def _synth_best_of(args, synthesizer, text, voice, params, clip, progress) -> None:
    """--candidates N: N takes in one batch, scored; the best to --out, all scores to OUT.takes.json."""
    import json
    import os
    import tempfile

    from engine.audio import write_audio
    from engine.best_of import render_best_of
    from engine.verify import Verifiers

    asr = None if args.asr.lower() == "none" else args.asr
    speaker = None if args.speaker_model.lower() == "none" or clip is None else args.speaker_model
    _status("Loading verifiers…")
    verifiers = Verifiers.load(asr, speaker, device=synthesizer.lm.device.type)
    result = render_best_of(synthesizer, text, voice, params, args.candidates, verifiers,
                            reference_audio=clip.samples if clip else None, cancel=threading.Event(), on_progress=progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"{'rank':>4} {'take':>4} {'seconds':>7} {'WER':>6} {'CER':>6} {'similarity':>10}  transcript")
    cell = lambda value, fmt: "-" if value is None else format(value, fmt)  # noqa: E731
    for take in result.takes:
        s = take.scores
        print(f"{take.rank + 1:>4} {take.index + 1:>4} {len(take.codes) / 50:>7.2f} {cell(s.wer, '6.3f')} "
              f"{cell(s.cer, '6.3f')} {cell(s.similarity, '10.3f')}  {s.transcript or ''}")
    best = result.best
    for warning in best.warnings:
        _status(f"warning: {warning}")
    write_audio(args.out, best.audio)
    takes_path = args.out.with_name(args.out.stem + ".takes.json")
    fd, tmp = tempfile.mkstemp(dir=takes_path.parent, prefix=".takes-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"text": text, **result.to_dict()}, handle, ensure_ascii=False, indent=1)
    os.replace(tmp, takes_path)
    c = result.cost
    _status(f"Wrote {args.out} (take {best.index + 1} of {args.candidates}, {len(best.audio) / 16000:.2f} s, "
            f"{len(best.codes)} speech tokens) and {takes_path}. Cost: {c.tokens} tokens, {c.verifier_calls} verifier "
            f"calls, {c.generate_s:.1f} s generating, {c.verify_s:.1f} s verifying.")


def _run_transcribe(args: argparse.Namespace) -> None:
    from engine.audio import load_audio
    from engine.verify import WhisperASR

    wave = load_audio(args.clip)
    _status("Loading Whisper…")
    print(WhisperASR(args.asr, device=args.device).transcribe(wave, language=args.language))


_NARRATE_SETTINGS = ("lm", "codec", "quant", "seed", "temperature", "top_p", "top_k", "repetition_penalty")


def _run_narrate(args: argparse.Namespace) -> None:
    import hashlib
    import secrets
    import tempfile

    from engine.book_import import import_book
    from engine.errors import InputTextError, ProjectError, SettingsError
    from engine.narration import narrate, parse_chapter_spec
    from engine.project import PROJECT_FILE, NarrationProject, NarrationSettings
    from engine.voices import VoiceLibrary

    # Everything that can be checked without models is checked first; nothing is written before.
    creating = args.text_file is not None and not (args.project / PROJECT_FILE).exists()
    if args.text_file is None and (args.voice or args.ref):
        raise InputTextError("--voice/--ref only apply when creating a project: add --text-file BOOK.")
    if args.text_file is not None and not (args.voice or args.ref):
        raise InputTextError("--text-file needs a narrator: --voice FILE.llasavoice or --ref CLIP --ref-text TEXT.")
    if bool(args.ref) != bool((args.ref_text or "").strip()):
        raise InputTextError("--ref and --ref-text go together: type exactly what the reference clip says.")
    if (args.export is None) != (args.out is None) or (args.per_chapter and args.export is None):
        raise SettingsError("--export FORMAT and --out PATH go together (--per-chapter needs both).")
    if args.out is not None and not (args.out if args.per_chapter else args.out.parent).is_dir():
        raise SettingsError(f"--out {args.out}: folder does not exist; create it first.")
    if args.text_file is not None:
        book = import_book(args.text_file)
        narrator = args.voice or args.ref
        if not narrator.is_file():
            raise InputTextError(f"{narrator} does not exist or is not a file.")
        sources = [args.text_file.read_bytes(), narrator.read_bytes(), (args.ref_text or "").encode()]
        fingerprint = hashlib.sha256(b"\0".join(sources)).hexdigest()
    given = {name: getattr(args, name) for name in _NARRATE_SETTINGS if getattr(args, name) is not None}
    fields = {"quant": "quantization", "seed": "base_seed"}
    if creating:
        chapters = parse_chapter_spec(args.chapters, len(book.chapters)) if args.chapters else None
        settings = NarrationSettings(**{fields.get(k, k): v for k, v in given.items()} | (
            {} if args.seed is not None else {"base_seed": secrets.randbelow(2**31)}))
    else:
        project = NarrationProject.open(args.project)
        if args.text_file is not None and project.fingerprint != fingerprint:
            raise ProjectError(f"{args.project} holds another project ({project.title!r}); choose a new folder, "
                               f"or continue that one with: python main.py narrate {args.project}")
        for name, value in given.items():
            if getattr(project.settings, fields.get(name, name)) != value:
                option = "--" + name.replace("_", "-")
                raise SettingsError(f"This project was created with different settings ({option}); drop {option} "
                                    "to continue it, or narrate into a new folder.")
        settings = project.settings
        chapters = parse_chapter_spec(args.chapters, len(project.chapters)) if args.chapters else None
    with tempfile.TemporaryDirectory(prefix="llasa-voice-") as scratch:
        clip, library = None, VoiceLibrary(Path(scratch))  # the narrator, checked before the models load
        saved = library.import_file(args.voice) if creating and args.voice else None
        if creating and args.ref:
            from engine.audio import load_reference

            clip = load_reference(args.ref)
            for warning in clip.warnings:
                _status(f"warning: {warning}")

        from engine.synth import Synthesizer

        _status("Loading models…")
        synthesizer = Synthesizer.load(settings.model_choice(args.device), with_encoder=clip is not None)
        for notice in synthesizer.notices:
            _status(notice)
        if creating:
            if clip is not None:
                voice = synthesizer.encode_reference(clip, args.ref_text)
                saved = library.add("Narrator", clip.samples, voice.transcript, voice.codes, settings.codec)
            project = _create_narration(args, synthesizer, book, saved, settings, chapters, fingerprint)
        elif chapters is not None:
            project.select_chapters(chapters)
    progress = _NarrationProgressLine()
    try:
        result = narrate(project, synthesizer, on_progress=progress)
    except KeyboardInterrupt:
        progress.end()
        _status(f"Stopped: the finished segments are kept in {args.project}; run the same command to resume.")
        raise SystemExit(130) from None
    progress.end()
    _status(f"{result.done + result.needs_check} of {result.total} segments rendered ({result.rendered} this run), "
            f"{result.audio_s / 60:.1f} min of audio.")
    for status, count in (("needs-check (hit the length cap, listen to them)", result.needs_check),
                          ("failed (regenerate or edit them)", result.failed)):
        if count:
            ids = [s.id for _, s in project.segments() if project.status(s) == status.split()[0]]
            _status(f"warning: {count} segment(s) {status}: {', '.join(ids[:10])}{' …' if count > 10 else ''}")
    if args.export:
        from engine.narration import export_project

        _status(f"Exporting {args.export}…")
        paths = export_project(project, args.out, args.export, per_chapter=args.per_chapter)
        _status(f"Wrote {len(paths)} file(s): {paths[0]}{' …' if len(paths) > 1 else ''}")


def _create_narration(args, synthesizer, book, saved, settings, chapters, fingerprint):
    """Measure the narrator's segment budget on the model, plan the book, write the project."""
    from engine.narration import create_project, segment_budget

    max_tokens, rate = segment_budget(synthesizer, saved.codes, saved.transcript)
    project = create_project(args.project, book, saved, settings, max_tokens=max_tokens, tokens_per_char=rate,
                             chapters=chapters, fingerprint=fingerprint)
    segments = sum(len(c.segments) for c in project.chapters)
    _status(f"Created project {args.project}: {project.title!r}, {len(project.chapters)} chapter(s), {segments} segments.")
    return project


class _NarrationProgressLine:
    """Segments done/total, audio seconds and ETA on stderr: one updating line on a tty, else a line every 15 s."""

    def __init__(self) -> None:
        import time

        self.tty, self.clock, self.last = sys.stderr.isatty(), time.monotonic, -1e9

    def __call__(self, p) -> None:
        now = self.clock()
        if self.tty and p.tokens and now - self.last < 0.2:
            return
        if not self.tty and (p.tokens or (now - self.last < 15 and p.done < p.total)):
            return
        self.last = now
        eta = "" if p.eta_s is None else f", ETA {int(p.eta_s) // 60}:{int(p.eta_s) % 60:02d}"
        line = f"Narrating: {p.done}/{p.total} segments, {p.audio_s:.0f} s of audio{eta}"
        print(f"\r{line}\033[K" if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.tty and self.last > -1e9:
            print(file=sys.stderr)


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
    _add_transcribe(subparsers)
    _add_narrate(subparsers)
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
    multiprocessing.freeze_support()  # a frozen build's child processes start here; it returns at once otherwise
    for _stream in ("stdout", "stderr"):  # None in a windowed build (Windows, macOS .app): make prints harmless
        if getattr(sys, _stream) is None:
            setattr(sys, _stream, open(os.devnull, "w", encoding="utf-8"))
    sys.exit(main())
