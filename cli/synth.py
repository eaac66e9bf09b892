"""`synth` (one utterance, optionally best-of-N verifier-picked, optionally played live) and `transcribe`."""
from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from cli.common import add_backend_arguments, status
from engine.config import DEFAULT_CODEC, DEFAULT_LM, DEVICES, QUANTIZATIONS
from engine.verify.scoring import DEFAULT_ASR, DEFAULT_SPEAKER


def add_synth_parser(subparsers: argparse._SubParsersAction) -> None:
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
    add_backend_arguments(synth)
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



def add_transcribe_parser(subparsers: argparse._SubParsersAction) -> None:
    transcribe = subparsers.add_parser("transcribe", help="print what an audio clip says (Whisper), e.g. for --ref-text")
    transcribe.add_argument("clip", type=Path, help="audio file (wav/flac/ogg/mp3)")
    transcribe.add_argument("--asr", default=DEFAULT_ASR, help=f"Whisper model: Hugging Face id or local folder (default {DEFAULT_ASR})")
    transcribe.add_argument("--language", help="language code (en, zh, ...); default: detected")
    transcribe.add_argument("--device", choices=DEVICES, default="auto", help="where to run (default auto: CUDA when present)")
    transcribe.set_defaults(run=_run_transcribe)



def _run_synth(args: argparse.Namespace) -> None:
    from engine.audio.clip import check_output_path, load_reference, write_audio
    from engine.config import ModelChoice, SamplingParams
    from engine.errors import InputTextError, SettingsError
    from engine.audio.devices import StreamPlayer
    from engine.speech.synth import Synthesizer, read_text_file

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
    synthesizer = Synthesizer.load(choice, with_encoder=clip is not None)
    for notice in synthesizer.notices:
        status(notice)
    voice = synthesizer.encode_reference(clip, args.ref_text) if clip else None
    if voice is None:
        status("No reference clip: the model picks a random voice.")

    def progress(done: int, budget: int) -> None:
        if sys.stderr.isatty() and done % 25 == 0:
            print(f"\rGenerating… {done} tokens ({done / 50:.1f} s of audio)", end="", file=sys.stderr, flush=True)

    if args.candidates > 1:
        return _synth_best_of(args, synthesizer, text, voice, params, clip, progress)
    try:
        if player:
            player.start()
            status("Generating and playing…")
        on_audio = player.feed if player else None
        result = synthesizer.synthesize(text, voice, params, cancel=threading.Event(), on_progress=progress, on_audio=on_audio)
        if player:
            player.finish()
        if sys.stderr.isatty():
            print(file=sys.stderr)
        for warning in result.warnings:
            status(f"warning: {warning}")
        write_audio(args.out, result.audio)
        status(f"Wrote {args.out} ({len(result.audio) / 16000:.2f} s, {len(result.codes)} speech tokens).")
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

    from engine.audio.clip import write_audio
    from engine.speech.best_of import render_best_of
    from engine.verify.scoring import Verifiers

    asr = None if args.asr.lower() == "none" else args.asr
    speaker = None if args.speaker_model.lower() == "none" or clip is None else args.speaker_model
    status("Loading verifiers…")
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
        status(f"warning: {warning}")
    write_audio(args.out, best.audio)
    takes_path = args.out.with_name(args.out.stem + ".takes.json")
    fd, tmp = tempfile.mkstemp(dir=takes_path.parent, prefix=".takes-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"text": text, **result.to_dict()}, handle, ensure_ascii=False, indent=1)
    os.replace(tmp, takes_path)
    c = result.cost
    status(f"Wrote {args.out} (take {best.index + 1} of {args.candidates}, {len(best.audio) / 16000:.2f} s, "
            f"{len(best.codes)} speech tokens) and {takes_path}. Cost: {c.tokens} tokens, {c.verifier_calls} verifier "
            f"calls, {c.generate_s:.1f} s generating, {c.verify_s:.1f} s verifying.")


def _run_transcribe(args: argparse.Namespace) -> None:
    from engine.audio.clip import load_audio
    from engine.verify.scoring import WhisperASR

    wave = load_audio(args.clip)
    status("Loading Whisper…")
    print(WhisperASR(args.asr, device=args.device).transcribe(wave, language=args.language))
