"""The loaded speech models: `Synthesizer` owns the Llasa LM and X-Codec2, and `Voice` is a cloned voice.

Takes are made by engine.speech.render (the one render path); the Synthesizer gives it the LM's
decoder and decodes codes as the model card does: prompt + generated codes together, cutting the
prompt's samples.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.audio.clip import HOP_LENGTH, ReferenceClip
from engine.codec.model import XCodec2
from engine.config import CONTEXT_WINDOW, ModelChoice, SamplingParams
from engine.errors import DeviceError, InputTextError, ModelFormatError
from engine.lm.fast_path import VerdictCache, verify_lm_fast_path
from engine.lm.loading import LlasaLM, load_lm
from engine.models.resolve import check_codec_folder, check_lm_folder, resolve_model

log = logging.getLogger("llasa.engine")
_GREEDY = SamplingParams(temperature=0.0)


@dataclass(frozen=True)
class Voice:
    """A voice to clone: its reference codes (50 per second) and what the reference says."""

    codes: tuple[int, ...]  # X-Codec2 codes of the reference clip, 0..65535
    transcript: str  # exact words spoken in the reference clip

    def __post_init__(self) -> None:
        if not self.transcript.strip():
            raise InputTextError("The reference transcript is empty: type exactly what the reference clip says.")


class Synthesizer:
    """Owns a loaded Llasa LM and X-Codec2 and turns (voice, text) into audio."""

    def __init__(self, lm: LlasaLM, codec: XCodec2, notices: tuple[str, ...] = ()) -> None:
        if lm.tokens.num_codes != codec.num_codes:
            raise ModelFormatError(
                f"The LM speaks {lm.tokens.num_codes} speech codes but the codec has {codec.num_codes}: "
                "they are not a Llasa/X-Codec2 pair."
            )
        self.lm = lm
        self.codec = codec
        self.notices = notices  # user-facing notes from loading, e.g. "running on CPU"
        self._decoders: dict[int, object] = {}  # rows -> decoder (engine.lm.decoder.FastDecoder or a backend's)

    @classmethod
    def load(cls, choice: ModelChoice, *, with_encoder: bool = True, verdicts: VerdictCache | None = None,
             on_progress: Callable[[str, float], None] | None = None) -> "Synthesizer":
        """Resolve, check and load both models; the codec encoder only when `with_encoder`.

        The LM runs where engine.lm.backend.resolve_backend says: llama.cpp converts the model to GGUF
        the first time (`on_progress(stage, fraction)` reports it); when "auto" chose llama.cpp and it
        cannot load the model, PyTorch does, with a notice. On CUDA the captured decode step is checked
        against the eager one once per device and model (engine.lm.fast_path; `verdicts` keeps the
        answers). On Apple's MPS a model that fails to load or run there is loaded on the CPU instead.
        """
        lm_dir = resolve_model(choice.lm, "Llasa LM")
        codec_dir = resolve_model(choice.codec, "X-Codec2")
        check_lm_folder(lm_dir)
        check_codec_folder(codec_dir)
        lm, notices = _load_lm_on_backend(lm_dir, choice, on_progress)
        if lm.device.type == "cuda" and lm.backend == "torch":
            lm, verdict = verify_lm_fast_path(lm, str(choice.lm), verdicts)
            if not verdict.ok:
                notices.append(verdict.reason)
        # The codec runs in fp32 everywhere: its decoder costs ~22 ms per 10 s of audio on an H100, so
        # reduced precision would buy nothing worth its error.
        codec = XCodec2.from_checkpoint(codec_dir, decode_only=not with_encoder, device=lm.device, dtype=torch.float32)
        return cls(lm, codec, notices=tuple(notices))

    def encode_reference(self, clip: ReferenceClip, transcript: str) -> Voice:
        """Encode a loaded reference clip into a Voice (X-Codec2 codes, 50 per second)."""
        wave = torch.tensor(clip.samples)  # a copy: clip.samples is read-only
        codes = self.codec.encode(wave)
        return Voice(codes=tuple(int(c) for c in codes.tolist()), transcript=transcript.strip())

    def decoder(self, rows: int = 1):
        """The LM's decoder for batches of `rows` (kept, so a captured step is reused across takes)."""
        if rows not in self._decoders:
            self._decoders.clear()  # one batch size at a time: a decoder holds a full-window KV cache
            self._decoders[rows] = self.lm.decoder(max_batch=rows, max_length=CONTEXT_WINDOW)
        return self._decoders[rows]

    def decode(self, codes: list[int], voice: Voice | None = None) -> np.ndarray:
        """Waveform of `codes` (float32, len(codes) * 320 samples).

        As in the model card, the reference codes are decoded in front of the new ones (the decoder
        attends over the whole sequence, so this gives the start of the speech its context) and the
        reference's samples are cut off again.
        """
        prefix = list(voice.codes) if voice else []
        all_codes = torch.tensor(prefix + list(codes), dtype=torch.long)
        wave = self.codec.decode(all_codes)[0].float().cpu().numpy()
        return np.ascontiguousarray(wave[len(prefix) * HOP_LENGTH :], dtype=np.float32)


def read_text_file(path: str | Path) -> str:
    """Read a UTF-8 text file to speak; InputTextError with the reason when it cannot be read."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputTextError(f"Text file {path} does not exist.") from None
    except IsADirectoryError:
        raise InputTextError(f"Text file {path} is a folder, not a file.") from None
    except UnicodeDecodeError:
        raise InputTextError(f"Text file {path} is not UTF-8 text; save it as UTF-8 and try again.") from None
    except OSError as error:
        raise InputTextError(f"Text file {path} cannot be read ({error.strerror}).") from None
    if not text.strip():
        raise InputTextError(f"Text file {path} is empty.")
    return text


def _load_lm_on_backend(folder: Path, choice: ModelChoice,
                        on_progress: Callable[[str, float], None] | None) -> tuple[LlasaLM, list[str]]:
    """The LM on the backend resolve_backend picks (DeviceError: llama.cpp asked for, not installed),
    and the notices to show. An "auto" llama.cpp that fails to convert or load falls back to PyTorch."""
    from engine.lm.backend import resolve_backend

    if resolve_backend(choice.backend, choice.device) == "llamacpp":
        from engine.lm.llamacpp import load_llamacpp_lm

        try:
            lm = load_llamacpp_lm(folder, choice.gguf_precision, on_progress)
            return lm, [lm.notice] if lm.notice else []
        except (DeviceError, ModelFormatError) as error:
            if choice.backend == "llamacpp":
                raise
            log.warning("llama.cpp could not load the LM; using PyTorch", exc_info=True)
            fallback = f"llama.cpp could not load the model ({error}); running it on PyTorch"
    else:
        fallback = None
    lm = _load_lm_with_fallback(folder, choice)
    return lm, [note for note in (fallback, lm.notice) if note]


def _load_lm_with_fallback(folder: Path, choice: ModelChoice) -> LlasaLM:
    """load_lm; on MPS, a load or a first decode step that fails there falls back to the CPU."""
    lm = load_lm(folder, quantization=choice.quantization, device=choice.device)
    if lm.device.type != "mps":
        return lm
    try:
        list(lm.decoder(max_batch=1, max_length=8).codes([lm.tokens.speech_start_id], _GREEDY, max_new_tokens=2))
        return lm
    except Exception as error:  # noqa: BLE001 - MPS kernels vary by macOS version; the CPU always works
        log.warning("The LM failed on MPS; falling back to the CPU", exc_info=True)
        cpu = load_lm(folder, quantization=None, device="cpu")
        notice = f"Apple GPU (MPS) failed ({type(error).__name__}): running on the CPU in {cpu.quantization}"
        return dataclasses.replace(cpu, notice=notice)
