"""Text of any length to speakable segments: markup -> pronunciations -> normalize -> split to a budget.

The one text pipeline of the render path: the main window, `synth`, the API server and narration
all plan their text here, so pause markup and pronunciation rules mean the same everywhere.
Pure functions; no model needed (the budget comes from engine.text.pipeline.budget_for_voice).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from engine.audio.clip import FRAME_RATE
from engine.errors import SettingsError
from engine.text.pipeline import Pause, estimate_tokens, normalize, parse_markup, split_text
from engine.text.pronunciation import PronunciationRule, apply_pronunciations


@dataclass(frozen=True)
class TextOptions:
    """How text becomes segments (besides the voice's token budget)."""

    paragraph_pause: float = 0.6  # s of silence at a blank line
    chapter_pause: float = 2.0  # s of silence at [chapter]
    language: str = "en"  # normalization language (engine.text.pipeline.normalize)
    pronunciations: tuple[PronunciationRule, ...] = ()  # applied before normalization, in order

    def __post_init__(self) -> None:
        if not (self.paragraph_pause >= 0 and self.chapter_pause >= 0):  # also refuses NaN
            raise SettingsError("Pauses must be >= 0 seconds.")


@dataclass(frozen=True)
class PlannedSegment:
    """One segment of speech and the silence that follows it."""

    text: str  # normalized text, never empty
    pause_after: float  # s of silence after this segment (0 = joined with a short crossfade)


def plan_text(source: str, options: TextOptions, *, max_tokens: int, tokens_per_char: float) -> tuple[PlannedSegment, ...]:
    """`source` as segments that each fit `max_tokens` speech tokens at `tokens_per_char`.

    Lines inside a paragraph are joined (hard-wrapped text); pauses from the markup go to the
    segment before them (a pause before the first segment is dropped). Raises InputTextError for
    malformed markup or rules; returns () when nothing speakable is left.
    """
    segments: list[PlannedSegment] = []
    for item in parse_markup(source, paragraph_pause=options.paragraph_pause, chapter_pause=options.chapter_pause):
        if isinstance(item, Pause):
            if segments:
                last = segments[-1]
                segments[-1] = PlannedSegment(last.text, last.pause_after + item.seconds)
            continue
        for chunk in speakable_chunks(item.text, options, max_tokens=max_tokens, tokens_per_char=tokens_per_char):
            segments.append(PlannedSegment(chunk, 0.0))
    return tuple(segments)


def speakable_chunks(text: str, options: TextOptions, *, max_tokens: int, tokens_per_char: float) -> list[str]:
    """One run of text without markup as segment texts: hard-wrapped lines joined, pronunciation rules
    applied, normalized, split to `max_tokens` speech tokens at `tokens_per_char`."""
    text = apply_pronunciations(re.sub(r"\s*\n\s*", " ", text), options.pronunciations)
    text = normalize(text, language=options.language)
    chunks = split_text(text, max_tokens=max_tokens, tokens_per_char=tokens_per_char) if text else []
    return [chunk.strip() for chunk in chunks if chunk.strip()]


def segment_cap(text: str, tokens_per_char: float) -> int:
    """Runaway guard: at most twice the estimated speech tokens plus one second per segment."""
    return 2 * estimate_tokens(text, tokens_per_char) + FRAME_RATE
