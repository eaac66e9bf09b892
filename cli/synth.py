"""`synth` (one utterance, optionally best-of-N verifier-picked, optionally played live) and `transcribe`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.common import add_backend_arguments, ctrl_c_cancels, status
from cli.subtitles import WORD_TIMINGS_HELP, subtitle_formats, word_timer, word_timings_model, write_subtitles
from engine.config import DEFAULT_CODEC, DEFAULT_LM, DEVICES, QUANTIZATIONS
from engine.verify.scoring import DEFAULT_ASR, DEFAULT_SPEAKER


def add_synth_parser(subparsers: argparse._SubParsersAction) -> None:
    synth = subparsers.add_parser("synth", help="speak a text of any length in a cloned voice and write an audio file")
    text = synth.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", help="the text to speak")
    text.add_argument("--text-file", type=Path, help="a UTF-8 text file to speak")
    synth.add_argument("--ref", type=Path, help="reference clip of the voice to clone (wav/flac/ogg/mp3); omit for a random voice")
    synth.add_argument("--ref-text", help="exactly what the reference clip says (required with --ref)")
    synth.add_argument("--voice", help="a saved voice from the voice library, by name (instead of --ref)")
    synth.add_argument("--voices", type=Path, help="voice library folder for --voice (default: the app's)")
    synth.add_argument("--out", type=Path, required=True, help="output audio file (.wav, .flac or .ogg)")
    synth.add_argument("--lm", default=DEFAULT_LM, help=f"Llasa LM: Hugging Face id or local folder (default {DEFAULT_LM})")
    synth.add_argument("--codec", default=DEFAULT_CODEC, help=f"X-Codec2: Hugging Face id or local folder (default {DEFAULT_CODEC})")
    synth.add_argument("--quant", choices=QUANTIZATIONS, help="LM weights (default: automatic for the device: 4bit on CUDA, bf16 or fp32 on a CPU)")
    synth.add_argument("--device", choices=DEVICES, default="auto", help="where to run (default auto: CUDA, else MPS, else CPU)")
    add_backend_arguments(synth)
    synth.add_argument("--seed", type=int, help="random seed, for a reproducible take")
    synth.add_argument("--temperature", type=float, default=0.8, help="sampling temperature; 0 = greedy (default 0.8)")
    synth.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1.0 = off)")
    synth.add_argument("--top-k", type=int, default=0, help="keep only the k most likely tokens (default 0 = off)")
    synth.add_argument("--repetition-penalty", type=float, default=1.0, help="> 1 discourages repeats (default 1.0 = off)")
    synth.add_argument("--subtitles", help="also write timing sidecars beside --out: any of srt,vtt,json (comma-separated)")
    synth.add_argument("--word-timings", nargs="?", const="", metavar="WHISPER",
                       help=WORD_TIMINGS_HELP.format(default="--asr"))
    synth.add_argument("--play", action="store_true", help="play the speech while it is generated (default output device)")
    synth.add_argument("--candidates", type=int, default=1, help="generate N takes (1-8) in one batch and keep the one the verifiers pick (default 1)")
    synth.add_argument("--asr", default=DEFAULT_ASR, help=f"Whisper model that checks the words of each take, or 'none' (default {DEFAULT_ASR})")
    synth.add_argument("--speaker-model", default=DEFAULT_SPEAKER, help=f"speaker model that compares each take's voice with --ref, or 'none' (default {DEFAULT_SPEAKER})")
    synth.set_defaults(run=_run_synth)



def add_transcribe_parser(subparsers: argparse._SubParsersAction) -> None:
    transcribe = subparsers.add_parser("transcribe", help="print what an audio clip says (Whisper), e.g. for --ref-text")
    transcribe.add_argument("clip", type=Path, help="audio file (wav/flac/ogg/mp3)")
    transcribe.add_argument("--asr", default=DEFAULT_ASR, help=f"Whisper model: Hugging Face id or local folder (default {DEFAULT_ASR})")
    transcribe.add_argument("--language", help="language code (en, zh, ...); default: detected")
    transcribe.add_argument("--device", choices=DEVICES, default="auto", help="where to run (default auto: CUDA when present)")
    transcribe.set_defaults(run=_run_transcribe)



def _run_synth(args: argparse.Namespace) -> None:
    from engine.audio.clip import check_output_path, load_reference
    from engine.audio.devices import StreamPlayer
    from engine.config import ModelChoice, SamplingParams
    from engine.errors import InputTextError, SettingsError, out_of_memory_as_error
    from engine.speech.synth import Synthesizer, read_text_file

    # Everything that can be checked without models is checked first: bad input fails in milliseconds.
    text = args.text if args.text is not None else read_text_file(args.text_file)
    if not text.strip():
        raise InputTextError("There is no text to speak (--text is empty).")
    if args.ref is not None and not (args.ref_text or "").strip():
        raise InputTextError("--ref needs --ref-text: type exactly what the reference clip says.")
    if args.ref is None and args.ref_text:
        raise InputTextError("--ref-text was given without --ref.")
    if args.voice is not None and args.ref is not None:
        raise InputTextError("Give --ref or --voice, not both.")
    saved = _library_voice(args) if args.voice is not None else None
    check_output_path(args.out)
    subtitles = subtitle_formats(args.subtitles)
    words_model = word_timings_model(args.word_timings, subtitles, DEFAULT_ASR if args.asr.lower() == "none" else args.asr)
    if not 1 <= args.candidates <= 8:
        raise SettingsError(f"--candidates must be 1 to 8, got {args.candidates}.")
    if args.candidates > 1 and args.play:
        raise SettingsError("--play cannot be combined with --candidates: the best take is known only at the end.")
    from engine.lm.backend import resolve_backend

    resolve_backend(args.backend, args.device)  # fails fast when llama.cpp is asked for but not installed
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
        status(f"warning: {warning}")

    choice = ModelChoice(lm=args.lm, codec=args.codec, quantization=args.quant, device=args.device,
                         backend=args.backend, gguf_precision=args.gguf)
    status("Loading models…")
    with out_of_memory_as_error("loading the models"):
        synthesizer = Synthesizer.load(choice, with_encoder=clip is not None)
    for notice in synthesizer.notices:
        status(notice)
    with out_of_memory_as_error("encoding the reference clip"):
        voice = synthesizer.encode_reference(clip, args.ref_text) if clip else saved.to_voice() if saved else None
    if voice is None:
        status("No reference clip: the model picks a random voice.")
    picker = _best_of_picker(args, synthesizer, voice, clip) if args.candidates > 1 else None
    with ctrl_c_cancels() as cancel:
        try:
            if player:
                player.start()
                status("Generating and playing…")
            with out_of_memory_as_error("generating speech"):
                result = _render_to_file(args, synthesizer, text, voice, params, player, picker, cancel)
        finally:
            if player:
                player.stop()
    write_subtitles(args.out, subtitles, result, word_timer(words_model, args.device) if words_model else None)
    if picker is not None:
        picker.write_scores(args.out, text, result)


def _library_voice(args: argparse.Namespace):
    """The --voice of the library in --voices (the app's by default); InputTextError listing the names."""
    from cli.common import default_voices_folder
    from engine.voices import VoiceLibrary

    return VoiceLibrary(args.voices or default_voices_folder()).find(args.voice)


def _render_to_file(args, synthesizer, text, voice, params, player, picker, cancel):
    """Speak `text` through the render path, writing the joined takes to --out as they become final.

    With --play the file is kept only once playback has ended: Ctrl+C while it plays out writes nothing.
    """
    from engine.audio.clip import AudioWriter
    from engine.errors import CancelledError
    from engine.speech.render import RenderProgress, render

    def progress(p: RenderProgress) -> None:
        if sys.stderr.isatty():
            part = f"segment {p.segment + 1}/{p.segments}, " if p.segments > 1 else ""
            print(f"\rGenerating… {part}{p.tokens} tokens ({p.tokens / 50:.1f} s)   ", end="", file=sys.stderr, flush=True)

    with AudioWriter(args.out) as writer:
        result = render(synthesizer, text, voice, params, candidates=args.candidates, pick=picker,
                        cancel=cancel, on_progress=progress, on_audio=player.feed if player else None,
                        sink=writer.write)
        if sys.stderr.isatty():
            print(file=sys.stderr)
        for warning in result.warnings:
            status(f"warning: {warning}")
        if player:
            player.finish()
            while not player.wait(0.1):
                if cancel.is_set():
                    raise CancelledError("Playback was stopped.")
    segments = f", {len(result.segments)} segments" if len(result.segments) > 1 else ""
    status(f"Wrote {args.out} ({writer.frames / 16000:.2f} s, {len(result.codes)} speech tokens{segments}, seed {result.seed}).")
    return result


class _BestOfPicker:
    """--candidates N: each segment's N takes (one batch) scored by the verifiers; the best one is kept."""

    def __init__(self, verifiers, reference) -> None:
        self.verifiers, self.reference, self.scored = verifiers, reference, []

    def __call__(self, text: str, spoken) -> int:
        from engine.verify.scoring import rank

        scores = self.verifiers.score([t.audio for t in spoken.takes], text, self.reference)
        order = sorted(rank(scores), key=lambda row: not spoken.takes[row].codes)  # a take with speech first
        self.scored.append((text, spoken, scores, order))
        return order[0]

    def write_scores(self, out: Path, text: str, result) -> None:
        """Print each segment's ranking and write every take's scores to OUT.takes.json (atomically)."""
        import json

        from engine.audio.atomic import write_atomic
        from engine.errors import OutputFileError

        cell = lambda value, fmt: "-" if value is None else format(value, fmt)  # noqa: E731
        print(f"{'seg':>3} {'rank':>4} {'take':>4} {'seconds':>7} {'WER':>6} {'CER':>6} {'similarity':>10}  transcript")
        segments = []
        for number, (segment_text, spoken, scores, order) in enumerate(self.scored, 1):
            for place, row in enumerate(order):
                s = scores[row]
                print(f"{number:>3} {place + 1:>4} {row + 1:>4} {len(spoken.takes[row].codes) / 50:>7.2f} "
                      f"{cell(s.wer, '6.3f')} {cell(s.cer, '6.3f')} {cell(s.similarity, '10.3f')}  {s.transcript or ''}")
            segments.append({"text": segment_text, "best_index": order[0], "takes": [
                {"index": row, "rank": order.index(row), "finish_reason": t.finish_reason, "seconds": len(t.codes) / 50,
                 "scores": scores[row].to_dict(), "codes": list(t.codes)} for row, t in enumerate(spoken.takes)]})
        path = out.with_name(out.stem + ".takes.json")
        data = json.dumps({"text": text, "seed": result.seed, "segments": segments}, ensure_ascii=False, indent=1)
        try:
            write_atomic(path, data.encode("utf-8"))
        except OSError as error:
            raise OutputFileError(f"Cannot write {path}: {error.strerror or error}; choose another folder.") from None
        status(f"Wrote every take's scores to {path}.")


def _best_of_picker(args, synthesizer, voice, clip) -> _BestOfPicker:
    from engine.verify.scoring import Verifiers

    asr = None if args.asr.lower() == "none" else args.asr
    speaker = None if args.speaker_model.lower() == "none" or clip is None else args.speaker_model
    status("Loading verifiers…")
    verifiers = Verifiers.load(asr, speaker, device=synthesizer.lm.device.type)
    return _BestOfPicker(verifiers, clip.samples if clip else None)


def _run_transcribe(args: argparse.Namespace) -> None:
    from engine.audio.clip import load_audio
    from engine.verify.scoring import WhisperASR

    wave = load_audio(args.clip)
    status("Loading Whisper…")
    print(WhisperASR(args.asr, device=args.device).transcribe(wave, language=args.language))
