"""One utterance end to end: (voice, text) -> 16 kHz waveform, as the Llasa model card does it.

`Synthesizer` owns the loaded LM and codec. It builds the exact model-card prompt, checks that it fits
Llasa's 2,048-token window, generates speech codes (a cancel event is checked every token), and
decodes prompt + generated codes together, cutting the prompt's samples, as the card does.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.audio.clip import FRAME_RATE, HOP_LENGTH, ReferenceClip
from engine.codec.model import XCodec2
from engine.config import CONTEXT_WINDOW, ModelChoice, SamplingParams
from engine.errors import CancelledError, InputTextError, ModelFormatError, TextTooLongError
from engine.lm.loading import LlasaLM, load_lm
from engine.lm.reference import generate_codes
from engine.models.resolve import check_codec_folder, check_lm_folder, resolve_model
from engine.lm.prompt import build_prompt
from engine.speech.stream import StreamingDecoder
from engine.text.pipeline import MIN_SPEECH_TOKENS, speaking_rate



@dataclass(frozen=True)
class Voice:
    """A voice to clone: its reference codes (50 per second) and what the reference says."""

    codes: tuple[int, ...]  # X-Codec2 codes of the reference clip, 0..65535
    transcript: str  # exact words spoken in the reference clip

    def __post_init__(self) -> None:
        if not self.transcript.strip():
            raise InputTextError("The reference transcript is empty: type exactly what the reference clip says.")


@dataclass(frozen=True)
class Synthesis:
    """The result of one utterance."""

    audio: np.ndarray  # float32 [codes * HOP_LENGTH] at 16 kHz, generated speech only
    codes: tuple[int, ...]  # generated speech codes
    finish_reason: str  # "end" (model finished) or "length" (cut at the context window)
    warnings: tuple[str, ...] = field(default=())


def speech_budget(prompt_length: int, text: str, voice: Voice | None) -> int:
    """Speech tokens left after the prompt; raises TextTooLongError when the text cannot fit.

    The need is estimated from the reference's own speaking rate (codes per transcript character).
    """
    rate = speaking_rate(len(voice.codes), voice.transcript) if voice else speaking_rate(0, "")
    needed = max(math.ceil(len(text.strip()) * rate), MIN_SPEECH_TOKENS)
    available = CONTEXT_WINDOW - prompt_length
    if needed > available:
        fits = max(int((available - MIN_SPEECH_TOKENS // 2) / rate), 0)
        reference = f" (with a {len(voice.codes) / FRAME_RATE:.1f} s reference)" if voice else ""
        raise TextTooLongError(
            f"Text does not fit in Llasa's {CONTEXT_WINDOW}-token window: the prompt{reference} takes "
            f"{prompt_length} tokens and the text needs about {needed} speech tokens, but only "
            f"{max(available, 0)} are left. Shorten the text to about {fits} characters"
            + (", or use a shorter reference clip." if voice else ".")
        )
    return available


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

    @classmethod
    def load(cls, choice: ModelChoice, *, with_encoder: bool = True) -> "Synthesizer":
        """Resolve, check and load both models; the codec encoder only when `with_encoder`."""
        lm_dir = resolve_model(choice.lm, "Llasa LM")
        codec_dir = resolve_model(choice.codec, "X-Codec2")
        check_lm_folder(lm_dir)
        check_codec_folder(codec_dir)
        if choice.backend == "llamacpp":  # "auto" stays torch here until the render path applies resolve_backend
            from engine.lm.backend import resolve_backend
            from engine.lm.llamacpp import load_llamacpp_lm

            resolve_backend(choice.backend, choice.device)  # DeviceError without the llamacpp extra
            lm = load_llamacpp_lm(lm_dir, choice.gguf_precision)
        else:
            lm = load_lm(lm_dir, quantization=choice.quantization, device=choice.device)
        codec_dtype = torch.float32 if lm.device.type == "cpu" else torch.float16
        codec = XCodec2.from_checkpoint(
            codec_dir, decode_only=not with_encoder, device=lm.device, dtype=codec_dtype
        )
        return cls(lm, codec, notices=(lm.notice,) if lm.notice else ())

    def encode_reference(self, clip: ReferenceClip, transcript: str) -> Voice:
        """Encode a loaded reference clip into a Voice (X-Codec2 codes, 50 per second)."""
        wave = torch.tensor(clip.samples)  # a copy: clip.samples is read-only
        codes = self.codec.encode(wave)
        return Voice(codes=tuple(int(c) for c in codes.tolist()), transcript=transcript.strip())

    def synthesize(
        self,
        text: str,
        voice: Voice | None = None,
        params: SamplingParams = SamplingParams(),
        *,
        cancel: threading.Event | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        on_audio: Callable[[np.ndarray], None] | None = None,
        max_new_tokens: int | None = None,
    ) -> Synthesis:
        """Speak `text` in `voice` (a random voice when None).

        on_progress(generated_tokens, token_budget) is called after every token. With on_audio,
        audio is decoded while generating (engine.speech.stream.StreamingDecoder): on_audio(float32 [n]
        at 16 kHz) receives consecutive chunks as they are ready, and the result's audio is their
        concatenation, i.e. what was heard. Raises TextTooLongError before generating when the text
        cannot fit, CancelledError when cancelled (no chunk follows the cancel). max_new_tokens caps
        the speech tokens below what the window leaves (a runaway guard); hitting either limit gives
        finish_reason "length".
        """
        text = text.strip()
        if not text:
            raise InputTextError("There is no text to speak.")
        prompt = build_prompt(
            self.lm.tokenizer,
            self.lm.tokens,
            text,
            reference_codes=voice.codes if voice else None,
            reference_text=voice.transcript if voice else "",
        )
        window_budget = speech_budget(len(prompt), text, voice)
        budget = window_budget if max_new_tokens is None else max(min(max_new_tokens, window_budget), 1)
        codes: list[int] = []
        chunks: list[np.ndarray] = []
        decoder = StreamingDecoder(self.codec, voice.codes if voice else ()) if on_audio else None
        if hasattr(self.lm, "decoder"):  # the llama.cpp LM (engine.lm.llamacpp): its own decode loop
            stream = self.lm.decoder(1, len(prompt) + budget).codes(prompt, params, max_new_tokens=budget, cancel=cancel)
        else:
            stream = generate_codes(self.lm, prompt, params, max_new_tokens=budget, cancel=cancel)
        while True:
            try:
                codes.append(next(stream))
            except StopIteration as stop:
                finish_reason = stop.value
                break
            for chunk in decoder.push(codes[-1:]) if decoder else ():
                chunks.append(chunk)
                on_audio(chunk)
            if on_progress is not None:
                on_progress(len(codes), budget)
        if finish_reason == "cancelled":
            raise CancelledError("Generation was cancelled.")
        warnings = []
        if finish_reason == "length" and budget == window_budget:
            warnings.append(
                f"The model had not finished speaking when the {CONTEXT_WINDOW}-token window was full: "
                "the audio may stop mid-sentence. Split the text into shorter parts."
            )
        if not codes:
            raise TextTooLongError("The model produced no speech for this text; try again with another seed.")
        if decoder:
            chunks.append(decoder.flush())
            on_audio(chunks[-1])
            audio = np.concatenate(chunks)
        else:
            audio = self.decode(codes, voice)
        return Synthesis(audio=audio, codes=tuple(codes), finish_reason=finish_reason, warnings=tuple(warnings))

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
