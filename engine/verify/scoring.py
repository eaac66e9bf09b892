"""Verifiers that score a spoken take: Whisper ASR (word/character error rate against the intended text)
and a WavLM x-vector speaker model (cosine similarity to the reference clip), as in the Llasa paper.

Error rates use our own Levenshtein distance on text normalized the same way on both sides
(``normalize_for_scoring``). Which rate ranks a take: CER when the intended text contains a Chinese
or Japanese character (Han, Hiragana, Katakana; these scripts do not separate words by spaces),
WER otherwise; Chinese is compared in one script (``transcript_scores``). Ranking (``rank``): lowest error rate first; takes whose error rates are within
``TIE_TOLERANCE`` of the best remaining one tie, and the tie goes to the higher speaker similarity.
Extra scorers plug in behind the ``Scorer`` protocol; their values are reported, not ranked.
Models load from a local folder or an already-downloaded hub id; nothing is downloaded here.
"""
from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from engine.errors import ModelFormatError, SettingsError
from engine.text.pipeline import normalize
from engine.verify.chinese_script import fold_script, is_chinese, match_script

DEFAULT_ASR = "openai/whisper-small"  # multilingual, 244 M parameters
LARGE_ASR = "openai/whisper-large-v3-turbo"  # multilingual, 809 M parameters: better on hard text
DEFAULT_SPEAKER = "microsoft/wavlm-base-plus-sv"
SAMPLE_RATE = 16_000  # Hz: every waveform here is mono float32 at 16 kHz
TIE_TOLERANCE = 0.01  # error rates closer than this (absolute, i.e. 1 point of WER/CER) are a tie
WHISPER_WINDOW_S = 30.0  # Whisper hears at most 30 s at once; longer audio is cut at a quiet spot
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")


# ---------------------------------------------------------------- text and error rates

def is_cjk(text: str) -> bool:
    """True when the text has a Han, Hiragana or Katakana character: score it by CER."""
    return bool(_CJK.search(text))


def normalize_for_scoring(text: str) -> str:
    """engine.text.pipeline.normalize (numbers etc. to words for English), NFKC, casefold, punctuation and
    symbols to spaces (apostrophes dropped: "don't" == "dont"), whitespace collapsed."""
    text = normalize(text, language="zh" if is_cjk(text) else "en")
    text = unicodedata.normalize("NFKC", text).casefold().replace("'", "")
    text = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    return " ".join(text.split())


@dataclass(frozen=True)
class ErrorCounts:
    """Edit operations turning the reference into the hypothesis (a minimal Levenshtein alignment)."""

    substitutions: int
    deletions: int
    insertions: int
    reference_length: int  # words (WER) or characters (CER) in the reference

    @property
    def rate(self) -> float:
        """(S + D + I) / N; an empty reference counts as length 1."""
        return (self.substitutions + self.deletions + self.insertions) / max(self.reference_length, 1)


def edit_counts(reference: Sequence[Any], hypothesis: Sequence[Any]) -> ErrorCounts:
    """Levenshtein alignment of two sequences; among equally short alignments the one with the
    most substitutions, then deletions, is counted (deterministic)."""
    # Row of (cost, -substitutions, -deletions) tuples: min() then prefers substitutions, then deletions.
    previous = [(j, 0, 0) for j in range(len(hypothesis) + 1)]  # j insertions
    for i, ref in enumerate(reference, 1):
        current = [(i, 0, -i)]  # i deletions
        for j, hyp in enumerate(hypothesis, 1):
            cost, s, d = previous[j - 1]
            diagonal = (cost, s, d) if ref == hyp else (cost + 1, s - 1, d)
            cost, s, d = previous[j]
            deletion = (cost + 1, s, d - 1)
            cost, s, d = current[j - 1]
            current.append(min(diagonal, deletion, (cost + 1, s, d)))
        previous = current
    cost, s, d = previous[-1]
    insertions = cost + s + d  # cost = S + D + I
    return ErrorCounts(-s, -d, insertions, len(reference))


def word_errors(reference: str, hypothesis: str) -> ErrorCounts:
    """Word edit counts after normalize_for_scoring on both sides."""
    return edit_counts(normalize_for_scoring(reference).split(), normalize_for_scoring(hypothesis).split())


def char_errors(reference: str, hypothesis: str) -> ErrorCounts:
    """Character edit counts after normalize_for_scoring on both sides, spaces removed."""
    ref, hyp = (normalize_for_scoring(t).replace(" ", "") for t in (reference, hypothesis))
    return edit_counts(ref, hyp)


def transcript_scores(text: str, transcript: str, language: str | None = None) -> dict[str, Any]:
    """Scores fields for one transcript of `text` heard in `language` (Whisper code): the transcript
    written in the script the text uses (traditional or simplified Chinese, engine.verify.chinese_script),
    WER, CER and the metric that ranks. Chinese is compared with both sides folded into one script, so
    a take is not charged for the script Whisper writes in."""
    transcript = match_script(transcript, text, language)
    same = is_chinese(text, language)
    ref, hyp = (fold_script(text), fold_script(transcript)) if same else (text, transcript)
    return {"transcript": transcript, "wer": word_errors(ref, hyp).rate, "cer": char_errors(ref, hyp).rate,
            "metric": "cer" if is_cjk(text) else "wer"}


# ---------------------------------------------------------------- scores and ranking

@dataclass(frozen=True)
class Scores:
    """What the verifiers said about one take; None where that verifier did not run."""

    transcript: str | None = None  # what the ASR heard
    wer: float | None = None  # word error rate vs the intended text, 0 = perfect (may exceed 1)
    cer: float | None = None  # character error rate, spaces ignored
    metric: str | None = None  # "wer" or "cer": the rate that ranks this take (see is_cjk)
    similarity: float | None = None  # cosine similarity of speaker x-vectors, -1..1, higher = closer
    extra: dict[str, float] = field(default_factory=dict)  # values of extra scorers, by name

    @property
    def error_rate(self) -> float | None:
        return None if self.metric is None else getattr(self, self.metric)

    def to_dict(self) -> dict[str, Any]:
        return {"transcript": self.transcript, "wer": self.wer, "cer": self.cer, "metric": self.metric,
                "error_rate": self.error_rate, "similarity": self.similarity, **self.extra}


def rank(scores: Sequence[Scores], tolerance: float = TIE_TOLERANCE) -> list[int]:
    """Indices of ``scores``, best first: repeatedly take, among the takes whose error rate is within
    ``tolerance`` of the lowest remaining one, the one with the highest similarity (earlier index on
    a full tie). A missing error rate counts as 0 and a missing similarity as lowest."""
    def error(i: int) -> float:
        return scores[i].error_rate or 0.0

    def similarity(i: int) -> float:
        value = scores[i].similarity
        return -np.inf if value is None else value

    left, order = list(range(len(scores))), []
    while left:
        lowest = min(error(i) for i in left)
        tied = [i for i in left if error(i) <= lowest + tolerance]
        best = max(tied, key=lambda i: (similarity(i), -error(i), -i))
        order.append(best)
        left.remove(best)
    return order


class Scorer(Protocol):
    """Something that scores a batch of takes; returns one dict of Scores fields (or extra values) per take."""

    name: str
    partial_ok: bool  # meaningful on the first seconds of a take (used by the chunk-level search)

    def score(self, audio: Sequence[np.ndarray], *, text: str, reference: np.ndarray | None) -> list[dict[str, Any]]:
        ...


# ---------------------------------------------------------------- loading

# The default speaker model (microsoft/wavlm-base-plus-sv) is published as a pickle only. For it we
# accept pytorch_model.bin, loaded by transformers with torch.load(weights_only=True): that unpickler
# rebuilds tensors and plain containers only and refuses anything that would run code.
WEIGHTS_ONLY_PICKLE = "pytorch_model.bin"


def check_verifier_folder(model: str | Path, what: str, model_type: str, *, allow_pickle: bool = False) -> Path:
    """Resolve a local folder or cached hub id and check it holds a `model_type` model in safetensors
    (or, with allow_pickle, a pytorch_model.bin that is loaded weights-only). Loads no weights."""
    from engine.models.resolve import _raise_no_safetensors, _read_config, resolve_model

    folder = resolve_model(model, what)
    config = _read_config(folder, what)
    if config.get("model_type") != model_type:
        raise ModelFormatError(
            f"{what} folder {folder} holds a {config.get('model_type', 'unknown')!r} model; expected {model_type!r}."
        )
    if not any(folder.glob("*.safetensors")) and not (allow_pickle and (folder / WEIGHTS_ONLY_PICKLE).is_file()):
        _raise_no_safetensors(folder, what)
    return folder


def _load_error(what: str, folder: Path, error: BaseException) -> ModelFormatError:
    return ModelFormatError(f"Cannot load the {what} from {folder}: {str(error).splitlines()[0] if str(error) else type(error).__name__}")


def _device(device: str):
    from engine.lm.device import resolve_device

    return resolve_device(device)[0]


def _padded(wave: np.ndarray, min_samples: int) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    return np.pad(wave, (0, max(min_samples - len(wave), 0)))


def split_for_whisper(wave: np.ndarray, window_s: float = WHISPER_WINDOW_S) -> list[np.ndarray]:
    """Cut audio longer than Whisper's window at the quietest 20 ms within its last 5 s, repeatedly."""
    window, frame, pieces = int(window_s * SAMPLE_RATE), SAMPLE_RATE // 50, []
    while len(wave) > window:
        search = wave[window - 5 * SAMPLE_RATE : window]
        energy = (search[: len(search) // frame * frame].reshape(-1, frame) ** 2).sum(1)
        cut = window - 5 * SAMPLE_RATE + int(np.argmin(energy)) * frame + frame // 2
        pieces.append(wave[:cut])
        wave = wave[cut:]
    return pieces + [wave]


class WhisperASR:
    """Whisper speech recognition (WhisperForConditionalGeneration), batched; fp16 on CUDA, fp32 on the CPU."""

    name, partial_ok = "asr", False

    def __init__(self, model: str | Path = DEFAULT_ASR, *, device: str = "auto", batch_size: int = 8) -> None:
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        from safetensors import SafetensorError

        folder = check_verifier_folder(model, "Whisper ASR", "whisper")
        self.device, self.batch_size = _device(device), batch_size
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        try:
            self.processor = WhisperProcessor.from_pretrained(folder, local_files_only=True)
            self.model = WhisperForConditionalGeneration.from_pretrained(
                folder, dtype=dtype, use_safetensors=True, local_files_only=True).to(self.device).eval()
        except (OSError, ValueError, KeyError, SafetensorError) as error:
            raise _load_error("Whisper ASR", folder, error) from error
        self.max_tokens = int(self.model.config.max_target_positions) - 8  # room for the task prefix

    def transcribe(self, wave16k: np.ndarray, language: str | None = None) -> str:
        """Text spoken in a 16 kHz clip; ``language`` ("en", "zh", ...) or None to detect it."""
        return self.transcribe_batch([wave16k], language=language)[0]

    def transcribe_batch(self, waves: Sequence[np.ndarray], language: str | None = None) -> list[str]:
        """One transcript per clip; clips over 30 s are cut at quiet spots and their texts joined."""
        import torch

        pieces = [(k, piece) for k, wave in enumerate(waves) for piece in split_for_whisper(_padded(wave, 1600))]
        texts: list[list[str]] = [[] for _ in waves]
        for start in range(0, len(pieces), self.batch_size):
            batch = pieces[start : start + self.batch_size]
            features = self.processor.feature_extractor(
                [p for _, p in batch], sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
            # A cap against looping: ~4x the rate of English speech; each row is cut to its own cap so
            # that a clip gets the same transcript in any batch.
            limits = [min(self.max_tokens, 24 + 16 * len(p) // SAMPLE_RATE) for _, p in batch]
            try:
                with torch.inference_mode():
                    ids = self.model.generate(
                        features.to(self.device, self.model.dtype),
                        attention_mask=torch.ones(features.shape[0], features.shape[-1], dtype=torch.long,
                                                  device=self.device),
                        language=language, task="transcribe", max_new_tokens=max(limits),
                    )
            except ValueError as error:
                if language is None:
                    raise
                raise SettingsError(f"Whisper does not know the language {language!r}; use a code such as en or zh.") from error
            special = set(self.processor.tokenizer.all_special_ids)
            for (k, _), row, limit in zip(batch, ids.tolist(), limits):
                row = [i for i in row if i not in special][:limit]
                texts[k].append(self.processor.tokenizer.decode(row).strip())
        return [("" if is_cjk("".join(t)) else " ").join(t).strip() for t in texts]

    def score(self, audio: Sequence[np.ndarray], *, text: str, reference: np.ndarray | None = None,
              language: str | None = None) -> list[dict[str, Any]]:
        """Transcribe the takes in ``language`` (a Whisper code such as "ja"; None: "zh" for Chinese or
        Japanese characters, else "en") and compare with ``text``."""
        language = language or ("zh" if is_cjk(text) else "en")
        return [transcript_scores(text, t, language) for t in self.transcribe_batch(audio, language=language)]


class SpeakerVerifier:
    """Speaker x-vectors from WavLMForXVector; similarity = cosine of candidate and reference x-vectors.

    Clips are embedded one at a time: the WavLM feature encoder's group norm sees padding, so a
    padded batch would give a clip another x-vector than it gets alone.
    """

    name, partial_ok = "speaker", True

    def __init__(self, model: str | Path = DEFAULT_SPEAKER, *, device: str = "auto") -> None:
        from transformers import AutoFeatureExtractor, WavLMForXVector

        import pickle

        from safetensors import SafetensorError

        folder = check_verifier_folder(model, "Speaker model", "wavlm", allow_pickle=True)
        self.device = _device(device)
        safetensors = any(folder.glob("*.safetensors"))
        try:
            self.extractor = AutoFeatureExtractor.from_pretrained(folder, local_files_only=True)
            self.model = WavLMForXVector.from_pretrained(  # a pickle is loaded weights_only (see WEIGHTS_ONLY_PICKLE)
                folder, use_safetensors=safetensors, local_files_only=True).to(self.device).eval()
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError, pickle.UnpicklingError) as error:
            raise _load_error("speaker model", folder, error) from error
        self._reference: tuple[bytes, np.ndarray] | None = None  # last reference and its x-vector

    def embed(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """Unit-length x-vectors, float32 [len(waves), dim]."""
        import torch

        vectors = []
        for wave in waves:
            inputs = self.extractor(_padded(wave, SAMPLE_RATE // 2), sampling_rate=SAMPLE_RATE, return_tensors="pt")
            with torch.inference_mode():
                vector = self.model(**inputs.to(self.device)).embeddings[0].float()
            vectors.append(torch.nn.functional.normalize(vector, dim=-1).cpu().numpy())
        return np.stack(vectors) if vectors else np.zeros((0, 0), np.float32)

    def similarity(self, waves: Sequence[np.ndarray], reference: np.ndarray) -> list[float]:
        """Cosine similarity of each clip's x-vector to the reference's (the reference is embedded once)."""
        key = np.asarray(reference, dtype=np.float32).tobytes()
        if self._reference is None or self._reference[0] != key:
            self._reference = (key, self.embed([reference])[0])
        return [float(v @ self._reference[1]) for v in self.embed(waves)]

    def score(self, audio: Sequence[np.ndarray], *, text: str, reference: np.ndarray | None) -> list[dict[str, Any]]:
        return [{} for _ in audio] if reference is None else [{"similarity": s} for s in self.similarity(audio, reference)]


@dataclass
class Verifiers:
    """The scorers used to judge takes, with counters of their use."""

    scorers: tuple[Scorer, ...]
    calls: int = 0  # clips scored (one clip through every applicable scorer counts once)
    seconds: float = 0.0  # wall time spent scoring
    audio_seconds: float = 0.0  # duration of the audio scored
    language: str | None = None  # what the ASR hears (Whisper code, e.g. "ja"); None: guessed from the text

    @classmethod
    def load(cls, asr: str | Path | None = DEFAULT_ASR, speaker: str | Path | None = DEFAULT_SPEAKER, *,
             device: str = "auto", extra: Sequence[Scorer] = ()) -> "Verifiers":
        """Load the ASR and/or speaker model (None skips one); ModelNotFoundError if not downloaded."""
        scorers: list[Scorer] = [WhisperASR(asr, device=device)] if asr else []
        scorers += [SpeakerVerifier(speaker, device=device)] if speaker else []
        return cls(tuple(scorers) + tuple(extra))

    def score(self, audio: Sequence[np.ndarray], text: str, reference: np.ndarray | None = None, *,
              partial: bool = False) -> list[Scores]:
        """Scores per clip; ``partial`` (the start of a take) runs only the scorers with partial_ok."""
        start, fields = time.perf_counter(), [dict() for _ in audio]
        for scorer in self.scorers:
            if scorer.partial_ok or not partial:
                heard = {"language": self.language} if self.language and isinstance(scorer, WhisperASR) else {}
                for merged, new in zip(fields, scorer.score(audio, text=text, reference=reference, **heard)):
                    merged.update(new)
        self.calls += len(audio)
        self.seconds += time.perf_counter() - start
        self.audio_seconds += sum(len(a) for a in audio) / SAMPLE_RATE
        names = {"transcript", "wer", "cer", "metric", "similarity"}
        return [Scores(**{k: v for k, v in f.items() if k in names}, extra={k: v for k, v in f.items() if k not in names})
                for f in fields]
