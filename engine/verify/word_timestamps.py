"""Word-level timings from Whisper, mapped back to the intended text.

transformers times each generated token (``generate(return_token_timestamps=True)``: the cross-attention
of the model's alignment heads, median-filtered, aligned to the audio frames by dynamic time warping,
20 ms steps); token i spans from the time of token i-1 (0 for the first) to its own, as transformers'
ASR pipeline reads them. Tokens are joined into pieces that decode to whole characters (a Chinese
character can span several byte-level tokens), the pieces into words, and the heard words are aligned to
the intended text's words (engine.verify.word_alignment). Clips over 30 s are cut at quiet spots like
WhisperASR.transcribe_batch, and each piece's times are shifted by where it starts.

A model whose generation_config.json has no ``alignment_heads`` (fine-tuned copies often lack them)
uses Whisper's own default, as openai/whisper does: every head of the last half of the decoder layers.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from engine.errors import SettingsError
from engine.verify.scoring import SAMPLE_RATE, _padded, split_for_whisper
from engine.verify.word_alignment import TimedWord, align_words, heard_from_pieces

if TYPE_CHECKING:
    from engine.verify.scoring import WhisperASR


def default_alignment_heads(decoder_layers: int, heads: int) -> list[list[int]]:
    """[layer, head] pairs: every head of the last half of the decoder layers (openai/whisper's default)."""
    return [[layer, head] for layer in range(decoder_layers // 2, decoder_layers) for head in range(heads)]


def _decoded_pieces(tokenizer, tokens: Sequence[tuple[int, float, float]]) -> list[tuple[str, float, float]]:
    """(text, start, end) pieces of whole characters: tokens are joined until they decode without U+FFFD
    (at most 4: a UTF-8 character has at most 4 bytes, so a longer run is bytes that are no character)."""
    pieces, run = [], []
    for k, token in enumerate(tokens):
        run.append(token)
        text = tokenizer.decode([t for t, _, _ in run])
        if "\ufffd" not in text or len(run) == 4 or k == len(tokens) - 1:
            pieces.append((text, run[0][1], run[-1][2]))
            run = []
    return pieces


def heard_words(asr: "WhisperASR", waves: Sequence[np.ndarray],
                language: str | None = None) -> list[list[TimedWord]]:
    """What Whisper hears in each 16 kHz clip, word by word with times in s from the clip's start
    (offsets index the transcript of the 30 s piece a word is in); ``language`` a Whisper code ("en",
    "zh") or None to detect it. SettingsError for an unknown language."""
    import torch

    model, tokenizer = asr.model, asr.processor.tokenizer
    if getattr(model.generation_config, "alignment_heads", None) is None:
        model.generation_config.alignment_heads = default_alignment_heads(
            model.config.decoder_layers, model.config.decoder_attention_heads)
    pieces = []  # (clip index, start in s, audio)
    for k, wave in enumerate(waves):
        start = 0
        for piece in split_for_whisper(_padded(wave, 1600)):
            pieces.append((k, start / SAMPLE_RATE, piece))
            start += len(piece)
    special = set(tokenizer.all_special_ids)
    words: list[list[TimedWord]] = [[] for _ in waves]
    for first in range(0, len(pieces), asr.batch_size):
        batch = pieces[first : first + asr.batch_size]
        inputs = asr.processor.feature_extractor([p for _, _, p in batch], sampling_rate=SAMPLE_RATE,
                                                 return_tensors="pt", return_attention_mask=True)
        limits = [min(asr.max_tokens, 24 + 16 * len(p) // SAMPLE_RATE) for _, _, p in batch]  # as transcribe_batch
        try:
            with torch.inference_mode():
                out = model.generate(inputs.input_features.to(asr.device, model.dtype),
                                     attention_mask=inputs.attention_mask.to(asr.device), language=language,
                                     task="transcribe", max_new_tokens=max(limits), return_token_timestamps=True)
        except ValueError as error:
            if language is None:
                raise
            raise SettingsError(f"Whisper does not know the language {language!r}; use a code such as en or zh.") from error
        for (k, offset, _), row, times, limit in zip(batch, out["sequences"].tolist(),
                                                      out["token_timestamps"].float().cpu().tolist(), limits):
            tokens = [(token, offset + (times[i - 1] if i else 0.0), offset + times[i])
                      for i, token in enumerate(row) if token not in special][:limit]
            words[k] += heard_from_pieces(_decoded_pieces(tokenizer, tokens))
    return words


def word_timings(asr: "WhisperASR", waves: Sequence[np.ndarray], texts: Sequence[str],
                 language: str | None = None) -> list[list[TimedWord]]:
    """Each text's words (engine.verify.word_alignment.word_spans), with when they are spoken in its clip:
    s from the clip's start, in order, inside [0, clip duration]; offsets index the text."""
    if len(waves) != len(texts):
        raise ValueError(f"one text per clip: {len(texts)} texts for {len(waves)} clips")
    heard = heard_words(asr, waves, language)
    return [align_words(text, said, len(wave) / SAMPLE_RATE) for wave, text, said in zip(waves, texts, heard)]
