"""`narrate`: create or resume a narration project, render it with progress and ETA, export it."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.common import add_backend_arguments, ctrl_c_cancels, status
from cli.subtitles import WORD_TIMINGS_HELP, check_word_formats, subtitle_formats, word_timer, word_timings_model
from engine.config import DEFAULT_CODEC, DEFAULT_LM, DEVICES, QUANTIZATIONS
from engine.verify.scoring import DEFAULT_ASR, DEFAULT_SPEAKER


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    narrate = subparsers.add_parser("narrate", help="narrate a book into a project folder (resumable), then export it")
    narrate.add_argument("project", type=Path, help="project folder: created with --text-file, resumed without it")
    narrate.add_argument("--text-file", type=Path, help="book to narrate (.txt, .md, .epub): creates the project")
    voice = narrate.add_mutually_exclusive_group()
    voice.add_argument("--voice", type=Path, help="the narrator: a .llasavoice file (with --text-file)")
    voice.add_argument("--ref", type=Path, help="the narrator: a reference clip (with --text-file and --ref-text)")
    narrate.add_argument("--ref-text", help="exactly what the reference clip says")
    narrate.add_argument("--cast", action="append", default=[], metavar="NAME=FILE.llasavoice",
                         help="another voice of the cast (with --text-file; repeatable): the book's [voice: NAME] … "
                         "[/voice] passages are read by it")
    narrate.add_argument("--dialogue-voice", metavar="NAME", help="the cast voice that reads quoted speech "
                         "(with --text-file; default: the narrator)")
    narrate.add_argument("--chapters", help="chapters to narrate and export, e.g. 1,3-5 (default all; remembered)")
    narrate.add_argument("--lm", help=f"Llasa LM: Hugging Face id or local folder (default {DEFAULT_LM})")
    narrate.add_argument("--codec", help=f"X-Codec2: Hugging Face id or local folder (default {DEFAULT_CODEC})")
    narrate.add_argument("--quant", choices=QUANTIZATIONS, help="LM weights (default: automatic for the device)")
    narrate.add_argument("--device", choices=DEVICES, default="auto", help="where to run (default auto)")
    add_backend_arguments(narrate)
    narrate.add_argument("--seed", type=int, help="base seed of every take (default random, stored in the project)")
    narrate.add_argument("--temperature", type=float, help="sampling temperature (default 0.8)")
    narrate.add_argument("--top-p", type=float, help="nucleus sampling mass (default 1.0 = off)")
    narrate.add_argument("--top-k", type=int, help="keep only the k most likely tokens (default 0 = off)")
    narrate.add_argument("--repetition-penalty", type=float, help="> 1 discourages repeats (default 1.0 = off)")
    narrate.add_argument("--candidates", type=int, help="quality mode: render N takes (2-8) per segment and keep the one the "
                         "verifiers pick; segments still above --max-error-rate are flagged (default 1 = off)")
    narrate.add_argument("--asr", help=f"quality mode: Whisper model that checks the words (default {DEFAULT_ASR}; 'none' = off)")
    narrate.add_argument("--speaker-model", help=f"quality mode: speaker model that compares the voice (default {DEFAULT_SPEAKER} "
                         "when downloaded; 'none' = off)")
    narrate.add_argument("--max-error-rate", type=float, help="quality mode: flag segments whose best take's word (or "
                         "character) error rate is above this (default 0.15)")
    narrate.add_argument("--batch", type=int, help="segments rendered at once, 1-8 (default: as many full-window KV caches "
                         "as fit in half the free device memory, at most 8); takes are the same whatever the batch")
    narrate.add_argument("--workers", type=int, help="render in N worker processes (one per GPU, or CPU processes), each "
                         "loading the models once; this process alone writes the project")
    narrate.add_argument("--ray", metavar="ADDRESS", help="render on the Ray cluster at ADDRESS (HOST:PORT of `ray start "
                         "--head`, or auto): one actor per GPU or machine; needs pip install \".[cluster]\"")
    narrate.add_argument("--export", choices=("wav", "flac", "mp3", "m4b"), help="export the book when all is rendered")
    narrate.add_argument("--per-chapter", action="store_true", help="export one file per chapter into the folder --out")
    narrate.add_argument("--out", type=Path, help="export destination: a file, or a folder with --per-chapter")
    narrate.add_argument("--subtitles", help="with --export: also write timing sidecars beside each file, one cue per "
                         "segment: any of srt,vtt,json (comma-separated)")
    narrate.add_argument("--word-timings", nargs="?", const="", metavar="WHISPER", help=WORD_TIMINGS_HELP.format(
                         default=f"the project's quality-mode Whisper, else {DEFAULT_ASR}"))
    narrate.set_defaults(run=_run_narrate, interrupted="interrupted: the finished segments are kept; run the same "
                         "command to resume.")


_NARRATE_SETTINGS = ("lm", "codec", "quant", "seed", "temperature", "top_p", "top_k", "repetition_penalty", "candidates",
                     "asr", "speaker_model", "max_error_rate")

def _quality_defaults(given: dict) -> dict:
    """--candidates N without verifier options: Whisper by default, the speaker model when downloaded; 'none' = off."""
    from engine.book.quality import verifier_problem

    if given.get("candidates", 1) > 1:
        given.setdefault("asr", DEFAULT_ASR)
        if "speaker_model" not in given and verifier_problem(DEFAULT_SPEAKER, "speaker") is None:
            given["speaker_model"] = DEFAULT_SPEAKER
    return given



def _check_verifiers(settings) -> None:
    """SettingsError when quality mode is on and one of its verifier models cannot be used offline."""
    from engine.book.quality import verifier_problem
    from engine.errors import SettingsError

    if settings.candidates <= 1:
        return
    for model, kind in ((settings.asr, "asr"), (settings.speaker, "speaker")):
        problem = verifier_problem(model, kind) if model else None
        if problem:
            raise SettingsError(f"{problem} (quality mode, --candidates {settings.candidates}; "
                                f"--{'asr' if kind == 'asr' else 'speaker-model'} none turns that check off)")


def _run_narrate(args: argparse.Namespace) -> None:
    """Narrate, holding the project's writer lock from before the first write to the end."""
    import contextlib

    with contextlib.ExitStack() as held:
        _narrate(args, held)


def _hold_lock(held, folder: Path) -> None:
    """Take the project's writer lock for the rest of the command; refused (exit 2) when another process has it."""
    from engine.book.lock import acquire_lock

    lock = held.enter_context(acquire_lock(folder))
    if lock.notice:
        status(f"notice: {lock.notice}")


def _narrate(args: argparse.Namespace, held) -> None:
    import dataclasses
    import hashlib
    import secrets
    import tempfile

    from engine.book.importer import import_book
    from engine.config import SamplingParams
    from engine.errors import EngineError, InputTextError, ProjectError, SettingsError, out_of_memory_as_error
    from engine.book.narration import narrate, parse_chapter_spec
    from engine.book.project import PROJECT_FILE, NarrationProject, NarrationSettings
    from engine.voices import VoiceLibrary

    from engine.lm.backend import resolve_backend

    # Everything that can be checked without models is checked first; nothing is written before.
    resolve_backend(args.backend, args.device)
    creating = args.text_file is not None and not (args.project / PROJECT_FILE).exists()
    if args.text_file is None and (args.voice or args.ref):
        raise InputTextError("--voice/--ref only apply when creating a project: add --text-file BOOK.")
    if args.text_file is not None and not (args.voice or args.ref):
        raise InputTextError("--text-file needs a narrator: --voice FILE.llasavoice or --ref CLIP --ref-text TEXT.")
    if args.text_file is None and (args.cast or args.dialogue_voice):
        raise InputTextError("--cast/--dialogue-voice only apply when creating a project: add --text-file BOOK.")
    cast_files = _parse_cast(args.cast)
    if bool(args.ref) != bool((args.ref_text or "").strip()):
        raise InputTextError("--ref and --ref-text go together: type exactly what the reference clip says.")
    if args.batch is not None and not 1 <= args.batch <= 8:
        raise SettingsError(f"--batch {args.batch}: use 1 to 8 segments at once.")
    if args.workers is not None and args.workers < 1:
        raise SettingsError(f"--workers {args.workers}: use 1 or more worker processes.")
    if args.workers and args.ray:
        raise SettingsError("--workers and --ray exclude each other: Ray starts its own workers.")
    if (args.export is None) != (args.out is None) or (args.per_chapter and args.export is None):
        raise SettingsError("--export FORMAT and --out PATH go together (--per-chapter needs both).")
    if args.subtitles is not None and args.export is None:
        raise SettingsError("--subtitles goes with --export FORMAT --out PATH.")
    subtitles = subtitle_formats(args.subtitles)
    check_word_formats(args.word_timings, subtitles)  # the model is checked once the project's settings are known
    if args.out is not None and not (args.out if args.per_chapter else args.out.parent).is_dir():
        raise SettingsError(f"--out {args.out}: folder does not exist; create it first.")
    if args.text_file is not None:
        book = import_book(args.text_file)
        narrator = args.voice or args.ref
        if not narrator.is_file():
            raise InputTextError(f"{narrator} does not exist or is not a file.")
        sources = [args.text_file.read_bytes(), narrator.read_bytes(), (args.ref_text or "").encode(),
                   *(name.encode() + b"=" + path.read_bytes() for name, path in cast_files),
                   (args.dialogue_voice or "").encode()]
        fingerprint = hashlib.sha256(b"\0".join(sources)).hexdigest()
    given = {name: getattr(args, name) for name in _NARRATE_SETTINGS if getattr(args, name) is not None}
    given = {k: None if isinstance(v, str) and v.lower() == "none" else v for k, v in given.items()}
    fields = {"quant": "quantization", "seed": "base_seed", "speaker_model": "speaker"}
    # Sampling numbers are validated (finite, in range) before anything is opened or created.
    SamplingParams(**{k: given[k] for k in ("temperature", "top_p", "top_k", "repetition_penalty", "seed") if k in given})
    if creating:
        given = _quality_defaults(given)
        chapters = parse_chapter_spec(args.chapters, len(book.chapters)) if args.chapters else None
        settings = NarrationSettings(**{fields.get(k, k): v for k, v in given.items()} | (
            {} if args.seed is not None else {"base_seed": secrets.randbelow(2**31)}),
            dialogue_voice=args.dialogue_voice)
    else:
        project = NarrationProject.open(args.project)
        _hold_lock(held, args.project)  # before anything is written (select_chapters, takes)
        for notice in project.notices:
            status(f"warning: {notice}")
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
    _check_verifiers(settings)  # quality mode's models are on disk: checked before anything is created
    words_model = word_timings_model(args.word_timings, subtitles, settings.asr or DEFAULT_ASR)
    with tempfile.TemporaryDirectory(prefix="llasa-voice-") as scratch:
        clip, library = None, VoiceLibrary(Path(scratch))  # the narrator, checked before the models load
        saved = library.import_file(args.voice) if creating and args.voice else None
        cast_library = VoiceLibrary(Path(scratch) / "cast")
        cast = [cast_library.rename(cast_library.import_file(path).id, name) for name, path in cast_files] if creating else []
        if creating:
            _check_cast_markup(book, cast, settings)
        if creating and args.ref:
            from engine.audio.clip import load_reference

            clip = load_reference(args.ref)
            for warning in clip.warnings:
                status(f"warning: {warning}")

        from engine.speech.synth import Synthesizer

        pooled = bool(args.workers or args.ray)
        synthesizer = None
        choice = dataclasses.replace(settings.model_choice(args.device), backend=args.backend, gguf_precision=args.gguf)
        if creating or not pooled:  # workers load their own; the driver needs models only to plan a new book
            status("Loading models…")
            with out_of_memory_as_error("loading the models"):
                synthesizer = Synthesizer.load(choice, with_encoder=clip is not None)
            for notice in synthesizer.notices:
                status(notice)
        if creating:
            if clip is not None:
                with out_of_memory_as_error("encoding the reference clip"):
                    voice = synthesizer.encode_reference(clip, args.ref_text)
                saved = library.add("Narrator", clip.samples, voice.transcript, voice.codes, settings.codec)
            project = _create_narration(args, synthesizer, book, saved, settings, chapters, fingerprint, cast)
            _hold_lock(held, args.project)
        elif chapters is not None:
            project.select_chapters(chapters)
    render, source = None, None
    if pooled and project.settings.candidates > 1:
        raise SettingsError("Quality mode (--candidates) renders in this process: drop --workers/--ray for this project.")
    if pooled:
        synthesizer = None  # the driver only writes; free its models for the workers
        source = _pool(args, dataclasses.replace(project.settings.model_choice(args.device), backend=args.backend,
                                                   gguf_precision=args.gguf))
    if project.settings.candidates > 1:
        from engine.book.quality import VerifierModels

        status(f"Quality mode: {project.settings.candidates} takes per segment, loading verifiers…")
        render = VerifierModels().renderer(project, args.device)
    progress = _NarrationProgressLine()
    try:
        with ctrl_c_cancels() as cancel, out_of_memory_as_error("narrating"):
            result = narrate(project, synthesizer, on_progress=progress, cancel=cancel, batch=args.batch,
                             source=source, **({"render": render} if render else {}))
        if result.cancelled:
            raise KeyboardInterrupt
    except EngineError as error:  # out of memory, a full disk: what is finished stays, the same command resumes
        progress.end()
        raise type(error)(f"{error} The finished segments are kept in {args.project}; run the same command to "
                          "resume.") from error
    except KeyboardInterrupt:
        progress.end()
        status(f"Stopped: the finished segments are kept in {args.project}; run the same command to resume.")
        raise SystemExit(130) from None
    finally:
        if source is not None:
            source.close()
    progress.end()
    status(f"{result.done + result.needs_check} of {result.total} segments rendered ({result.rendered} this run), "
           f"{result.audio_s / 60:.1f} min of audio.")
    for what, count in (("needs-check (hit the length cap or flagged by the verifiers: listen to them)", result.needs_check),
                        ("failed (regenerate or edit them)", result.failed)):
        if count:
            ids = [s.id for _, s in project.segments() if project.status(s) == what.split()[0]]
            status(f"warning: {count} segment(s) {what}: {', '.join(ids[:10])}{' …' if count > 10 else ''}")
    if args.export:
        from engine.book.project_export import export_project

        status(f"Exporting {args.export}…")
        from engine.book.quality import whisper_language

        timer = word_timer(words_model, args.device, whisper_language(project.settings.language)) if words_model else None
        paths = export_project(project, args.out, args.export, per_chapter=args.per_chapter, subtitles=subtitles,
                               word_timer=timer)
        status(f"Wrote {len(paths)} file(s): {paths[0]}{' …' if len(paths) > 1 else ''}")


def _pool(args, choice):
    """The worker processes (--workers) or Ray actors (--ray) that render; the driver writes."""
    if args.ray:
        from engine.book.cluster import RayPool

        status(f"Joining the Ray cluster at {args.ray}…")
        return RayPool(args.ray, choice, batch=args.batch or 1)
    from engine.book.workers import WorkerPool

    status(f"Starting {args.workers} worker process(es)…")
    return WorkerPool(choice, args.workers, batch=args.batch or 1)


def _parse_cast(specs: list[str]) -> list[tuple[str, Path]]:
    """--cast NAME=FILE values as (name, path); InputTextError for a malformed one or a missing file."""
    from engine.errors import InputTextError

    cast = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise InputTextError(f"--cast {spec!r}: write NAME=FILE.llasavoice, e.g. --cast Alice=alice.llasavoice.")
        if not Path(path).is_file():
            raise InputTextError(f"--cast {spec!r}: {path} does not exist or is not a file.")
        if name.strip().casefold() in {n.casefold() for n, _ in cast} | {"narrator"}:
            raise InputTextError(f"--cast {spec!r}: the name {name.strip()!r} is taken; give each voice its own name.")
        cast.append((name.strip(), Path(path)))
    return cast


def _check_cast_markup(book, cast, settings) -> None:
    """Bad voice markup or cast names fail before the models load (planned with a dummy budget)."""
    from engine.book.cast import check_name
    from engine.book.plan import NARRATOR_NAME, plan_chapter
    from engine.errors import SettingsError

    names = {NARRATOR_NAME: NARRATOR_NAME}
    for voice in cast:
        names[check_name(voice.name, list(names))] = voice.name
    if settings.dialogue_voice is not None and settings.dialogue_voice.casefold() not in {n.casefold() for n in names}:
        raise SettingsError(f"--dialogue-voice {settings.dialogue_voice}: not in the cast (valid: {', '.join(names)}).")
    for index, chapter in enumerate(book.chapters):
        plan_chapter(chapter.title, index, chapter.text, settings, 10**6, 1.0, names=names)


def _create_narration(args, synthesizer, book, saved, settings, chapters, fingerprint, cast=()):
    """Measure each voice's segment budget on the model, plan the book, write the project."""
    from engine.book.narration import create_project, segment_budget

    max_tokens, rate = segment_budget(synthesizer, saved.codes, saved.transcript)
    members = [(voice, *segment_budget(synthesizer, voice.codes, voice.transcript)) for voice in cast]
    project = create_project(args.project, book, saved, settings, max_tokens=max_tokens, tokens_per_char=rate,
                             chapters=chapters, fingerprint=fingerprint, cast=members)
    segments = sum(len(c.segments) for c in project.chapters)
    voices = f", voices: {', '.join(project.cast.names())}" if cast else ""
    status(f"Created project {args.project}: {project.title!r}, {len(project.chapters)} chapter(s), "
           f"{segments} segments{voices}.")
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
