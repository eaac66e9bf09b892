"""A narration project's quality mode and reference auto-transcription, on the engine thread.

Quality mode (NarrationSettings.candidates > 1): every segment is rendered as N candidates in one
batch (engine.speech.best_of.render_best_of), scored by the verifiers (engine.verify.scoring) and the ranking's
pick is stored, with its scores, as the segment's take; a take whose error rate is above the
project's max_error_rate is flagged needs-check (NarrationSettings.flags). Speaker similarity is
measured against the project's voice reference clip (voice/reference.flac).
``VerifierModels`` keeps the loaded Whisper / WavLM models on the engine thread, so transcribing
reference clips and narrating share one Whisper; the session clears it when the speech models change.
No torch at module level: the GUI imports ``verifier_problem``.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import EngineError

if TYPE_CHECKING:
    from engine.book.narration import SegmentRenderer, TakeJob
    from engine.book.project import NarrationProject, TakeRecord
    from engine.speech.synth import Synthesizer
    from engine.verify.scoring import Scores, Verifiers


def verifier_problem(model: str | Path, kind: str = "asr") -> str | None:
    """Why this verifier (kind "asr": Whisper, "speaker": WavLM x-vector) cannot be used offline (not
    downloaded, wrong folder), or None.

    Cheap: looks at the folder (config.json, safetensors names); loads no weights, never goes online.
    """
    from engine.errors import ModelNotFoundError
    from engine.verify.scoring import check_verifier_folder

    try:
        if kind == "asr":
            check_verifier_folder(model, "Whisper ASR", "whisper")
        else:
            check_verifier_folder(model, "Speaker model", "wavlm", allow_pickle=True)
    except ModelNotFoundError as error:
        if Path(model).expanduser().is_absolute() or str(model).startswith((".", "~")):
            return str(error)  # a folder that is not there
        name = "Whisper" if kind == "asr" else "speaker"
        return (f"The {name} model {model} is not on this computer: download it (hf download {model}) "
                f"or use a local {name} model folder.")
    except EngineError as error:
        return str(error)
    return None


def flatten_scores(scores: "Scores", candidates: int) -> dict[str, float]:
    """A take's Scores as TakeRecord.scores: wer, cer, error_rate, similarity (those measured), extra
    scorers' values, and n = candidates the take was picked from. The transcript goes to TakeRecord.transcript."""
    values: dict[str, Any] = {"wer": scores.wer, "cer": scores.cer, "error_rate": scores.error_rate,
                              "similarity": scores.similarity, **scores.extra}
    return {k: float(v) for k, v in values.items() if v is not None} | {"n": float(candidates)}


def error_label(scores: Mapping[str, float], text: str) -> str:
    """e.g. "WER 4%" ("CER" when the text is Chinese/Japanese); "" when no error rate was measured."""
    from engine.verify.scoring import is_cjk

    if "error_rate" not in scores:
        return ""
    return f"{'CER' if is_cjk(text) else 'WER'} {scores['error_rate']:.0%}"


def describe_scores(scores: Mapping[str, float], text: str) -> str:
    """One line about a take's scores, e.g. "WER 4% · speaker similarity 0.82 · best of 4 takes"."""
    parts = [error_label(scores, text)]
    if "similarity" in scores:
        parts.append(f"speaker similarity {scores['similarity']:.2f}")
    if scores.get("n", 1) > 1:
        parts.append(f"best of {scores['n']:.0f} takes")
    return " · ".join(p for p in parts if p)


def best_of_renderer(verifiers: "Verifiers", reference_audio: np.ndarray | None, candidates: int, *,
                     references: Mapping[str, np.ndarray] | None = None) -> "SegmentRenderer":
    """A narration SegmentRenderer: best-of-`candidates` takes, the verifiers' pick returned with its scores.

    ``reference_audio`` (float32 16 kHz) is what speaker similarity compares with (None: the voice's
    codes decoded); ``references`` maps a cast voice key (TakeJob.voice_key) to its own clip, so each
    character is compared with its own voice. The candidates are one batch of the Synthesizer's decoder
    (engine.speech.render). A best take without speech is a failed take (NoSpeechError).
    """
    from engine.book.narration import RenderedTake

    def render(synthesizer: "Synthesizer", job: "TakeJob") -> RenderedTake:
        from engine.errors import NoSpeechError
        from engine.speech.best_of import render_best_of

        reference = (references or {}).get(job.voice_key, reference_audio)
        result = render_best_of(synthesizer, job.text, job.voice, job.params, candidates, verifiers,
                                reference_audio=reference, max_new_tokens=job.max_new_tokens,
                                cancel=job.cancel, on_progress=job.on_progress)
        best = result.best
        if not best.codes:
            raise NoSpeechError("No candidate of this segment had any speech; regenerate it (another seed) or edit it.")
        return RenderedTake(best.audio, best.codes, best.finish_reason, flatten_scores(best.scores, candidates),
                            best.scores.transcript or "")

    return render


def reference_audio(project: "NarrationProject", key: str = "") -> np.ndarray:
    """The reference clip of a cast voice (default the narrator), float32 mono at 16 kHz."""
    import soundfile as sf

    wave, _ = sf.read(project.cast.get(key).voice.audio_path, dtype="float32", always_2d=True)
    return wave.mean(axis=1)


def whisper_language(language: str) -> str:
    """A project's language ("en", "ja", "zh-TW", "pt_BR") as Whisper's code ("en", "ja", "zh", "pt")."""
    return language.replace("_", "-").split("-")[0].strip().lower() or "en"


def regenerate_until_passes(project: "NarrationProject", synthesizer: "Synthesizer", segment_id: str,
                            render: "SegmentRenderer", *, max_tries: int = 4, cancel=None) -> tuple["TakeRecord", int]:
    """Quality mode on one segment: new takes (new seeds) until one passes (done: not flagged, not at the
    length cap), at most `max_tries` renders. When none passes, the take with the lowest error rate is
    chosen (a failed one never). Returns (the chosen take's record, takes rendered). A locked segment is refused
    (SettingsError); CancelledError keeps every finished take."""
    from engine.book.narration import render_segment
    from engine.book.project import DONE, PENDING

    from engine.errors import SettingsError

    if project.find(segment_id).locked:
        raise SettingsError(f"Segment {segment_id} is locked (its take is kept); unlock it first.")
    tries = 0
    while True:
        segment = project.find(segment_id)
        if project.status(segment) == PENDING:
            render_segment(project, synthesizer, segment_id, render=render, cancel=cancel)
            tries += 1
            segment = project.find(segment_id)
        if project.status(segment) == DONE or tries >= max_tries:
            break
        project.new_take(segment_id)
    if project.status(segment) != DONE:
        def badness(take: int) -> float:
            record = project.record(segment, take)
            if record is None or record.finish_reason == "failed":
                return float("inf")
            return record.scores.get("error_rate", 0.0) + (1.0 if record.finish_reason == "length" else 0.0)

        best = min(range(segment.takes), key=badness)
        if badness(best) < float("inf"):
            segment = project.choose_take(segment_id, best)
    return project.record(segment), tries


class VerifierModels:
    """Verifier models loaded on the engine thread, each once per (model, device), kept until clear()."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, str, str], Any] = {}

    def _get(self, kind: str, model: str | Path, device: str) -> Any:
        key = (kind, str(model), device)
        if key not in self._loaded:
            from engine.verify.scoring import SpeakerVerifier, WhisperASR

            self._loaded[key] = (WhisperASR if kind == "asr" else SpeakerVerifier)(model, device=device)
        return self._loaded[key]

    def asr(self, model: str | Path, device: str = "auto"):
        """The WhisperASR for `model` (ModelNotFoundError / ModelFormatError when it cannot load)."""
        return self._get("asr", model, device)

    def verifiers(self, asr: str | Path | None, speaker: str | Path | None, device: str = "auto") -> "Verifiers":
        """Fresh Verifiers (own cost counters) over the kept models."""
        from engine.verify.scoring import Verifiers

        scorers = ([self._get("asr", asr, device)] if asr else []) + ([self._get("speaker", speaker, device)] if speaker else [])
        return Verifiers(tuple(scorers))

    def renderer(self, project: "NarrationProject", device: str = "auto") -> "SegmentRenderer | None":
        """The project's quality-mode renderer, or None when quality mode is off (the default renderer)."""
        s = project.settings
        if s.candidates <= 1:
            return None
        return self.quality_renderer(project, s.candidates, device)

    def quality_renderer(self, project: "NarrationProject", candidates: int, device: str = "auto") -> "SegmentRenderer":
        """Best-of-`candidates` with the project's verifiers, hearing the project's language; each
        cast voice's takes are compared with that voice's clip. SettingsError without a verifier."""
        from engine.errors import SettingsError

        s = project.settings
        if not (s.asr or s.speaker):
            raise SettingsError("Quality mode needs a Whisper or speaker model: choose one in the project settings.")
        verifiers = self.verifiers(s.asr, s.speaker, device)
        verifiers.language = whisper_language(s.language)
        references = {m.key: reference_audio(project, m.key) for m in project.cast.members()}
        return best_of_renderer(verifiers, references.get(""), candidates, references=references)

    def clear(self) -> None:
        """Drop every loaded verifier (frees their memory once nothing else holds them)."""
        self._loaded.clear()
