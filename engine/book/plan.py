"""A book's plan: the settings that shape it, its chapters and segments, the planner and re-planning.

A chapter's source (markup kept) is planned into segments: voice markup (engine.text.cast_markup)
-> pause markup -> pronunciations -> normalize -> split to the speaking voice's token budget. A
segment is spoken by one voice; the planner never puts two voices in one segment.

Re-planning (after a pronunciation or pause change) plans the source again and aligns the new
segments with the old ones by their planned text: a segment whose text and voice did not change
keeps its takes and the user's settings (pauses, voice, lock), so the take keys decide what is
rendered again. No torch, no project folder here.
"""
from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, replace

from engine.config import DEFAULT_CODEC, DEFAULT_LM, SEED_MAX, ModelChoice, SamplingParams, check_number
from engine.errors import InputTextError, SettingsError
from engine.text.cast_markup import check_voice_markup, split_voices
from engine.text.pipeline import Pause, parse_markup
from engine.text.plan import TextOptions, speakable_chunks
from engine.text.pronunciation import PronunciationRule

NARRATOR = ""  # the voice key of the project's narrator
NARRATOR_NAME = "Narrator"  # how markup and the app name the narrator
# NarrationSettings fields that change the plan (not the audio of an unchanged segment)
PLAN_FIELDS = ("paragraph_pause", "chapter_pause", "language", "pronunciations", "dialogue_voice")
USER_FIELDS = ("text", "voice", "pauses")  # what Segment.user may name


@dataclass(frozen=True)
class NarrationSettings:
    """How a project is narrated. Model and sampling fields shape the audio (they are in take keys)."""

    lm: str = DEFAULT_LM  # Llasa LM: Hugging Face id or local folder
    codec: str = DEFAULT_CODEC  # X-Codec2: Hugging Face id or local folder
    quantization: str | None = None  # as ModelChoice.quantization
    temperature: float = 0.8  # as SamplingParams
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    base_seed: int = 0  # every take's seed derives from it, the segment's text and the take number
    paragraph_pause: float = 0.6  # s of silence at a blank line
    chapter_pause: float = 2.0  # s of silence at [chapter]
    language: str = "en"  # normalization language (engine.text.pipeline.normalize); Whisper hears it too
    pronunciations: tuple[PronunciationRule, ...] = ()  # applied before normalization, in order
    # Quality mode (engine.book.quality): candidates per segment, 1 = off, 2..8 = best-of-N picked by the verifiers
    # (engine.verify.scoring.rank). A segment whose best take's error rate (WER; CER for Chinese/Japanese) is
    # above max_error_rate is flagged needs-check. asr / speaker: verifier models (hub id or folder),
    # None = not used; quality mode needs at least one.
    candidates: int = 1
    max_error_rate: float = 0.15  # 0.15 = 15 % of the words (characters) wrong
    asr: str | None = None  # Whisper ASR
    speaker: str | None = None  # WavLM x-vector speaker model
    dialogue_voice: str | None = None  # cast key that speaks quoted text; None = quotes are the narrator's

    def __post_init__(self) -> None:
        self.sampling(0)  # validates the sampling fields
        check_number("base_seed", self.base_seed, 0, SEED_MAX, whole=True)
        self.model_choice()
        check_number("max_error_rate", self.max_error_rate, 0.0, 1000.0)  # an error rate can exceed 1 (insertions)
        check_number("paragraph_pause", self.paragraph_pause, 0.0, 60.0)  # seconds
        check_number("chapter_pause", self.chapter_pause, 0.0, 60.0)
        check_number("candidates", self.candidates, 1, 8, whole=True)
        if not 1 <= self.candidates <= 8 or (self.candidates > 1 and not (self.asr or self.speaker)):
            raise SettingsError("Quality mode needs 2 to 8 candidates and a Whisper or speaker model.")

    def text_options(self) -> TextOptions:
        """How the project's text becomes segments (engine.text.plan, the render path's planning)."""
        return TextOptions(self.paragraph_pause, self.chapter_pause, self.language, self.pronunciations)

    def sampling(self, seed: int) -> SamplingParams:
        return SamplingParams(self.temperature, self.top_p, self.top_k, self.repetition_penalty, seed)

    def model_choice(self, device: str = "auto") -> ModelChoice:
        return ModelChoice(self.lm, self.codec, self.quantization, device)

    def audio_fields(self) -> dict:
        """The settings that change a take's audio; quality mode's only when on (older keys stay valid)."""
        quality = ("candidates", "asr", "speaker") if self.candidates > 1 else ()
        return {k: getattr(self, k) for k in ("lm", "codec", "quantization", "temperature", "top_p", "top_k",
                                              "repetition_penalty") + quality}

    def plan_fields(self) -> dict:
        """The settings the planner reads: when they change, the chapters are planned again."""
        return {k: getattr(self, k) for k in PLAN_FIELDS}

    def flags(self, scores: Mapping[str, float]) -> bool:
        """True when a take's error rate is above max_error_rate (it needs a listen)."""
        return scores.get("error_rate", 0.0) > self.max_error_rate

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["pronunciations"] = [dataclasses.asdict(rule) for rule in self.pronunciations]
        return data

    @classmethod
    def from_json(cls, data: dict) -> "NarrationSettings":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["pronunciations"] = tuple(PronunciationRule(**r) for r in data.get("pronunciations", ()))
        return cls(**values)


@dataclass(frozen=True)
class Segment:
    """One model call's worth of text, the voice that speaks it and what to do around it."""

    id: str  # unique in the project, stable across edits and re-planning
    text: str  # what the model speaks (pronunciations applied, normalized)
    pause_after: float  # s of silence after it; 0 = joined to the next with a short crossfade
    takes: int = 1  # take numbers 0..takes-1 belong to this segment
    chosen: int = 0  # the take that is played and exported
    voice: str = NARRATOR  # cast key of the voice that speaks it
    pause_before: float = 0.0  # s of silence added before it (set by the user)
    locked: str = ""  # the take key kept whatever changes ("keep this take"); "" = not locked
    planned: str = ""  # the planner's text when the user edited `text` ("" = text is the planner's)
    user: tuple[str, ...] = ()  # USER_FIELDS the user set by hand: re-planning keeps them

    @classmethod
    def from_json(cls, data: dict) -> "Segment":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["user"] = tuple(values.get("user", ()))
        return cls(**values)

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"user": list(self.user)}


@dataclass(frozen=True)
class ProjectChapter:
    title: str
    source: str  # the imported chapter text, markup kept (segments are planned from it)
    segments: tuple[Segment, ...]
    selected: bool = True  # narrated and exported
    voice: str = NARRATOR  # cast key that speaks the chapter's unmarked text


Budgets = Mapping[str, tuple[int, float]]  # voice key -> (max speech tokens per segment, tokens per char)


def plan_segments(
    source: str, settings: NarrationSettings, max_tokens: int, tokens_per_char: float, *, id_prefix: str = "",
    names: Mapping[str, str] | None = None, budgets: Budgets | None = None, default_voice: str = NARRATOR,
) -> tuple[Segment, ...]:
    """A chapter's text as segments, each spoken by one voice.

    names: cast display name -> voice key, for [voice: Name] markup (None: only the narrator).
    budgets: each voice's (max tokens, tokens per char); a voice not in it uses max_tokens and
    tokens_per_char. default_voice speaks the unmarked text. Lines inside a paragraph are joined
    (hard-wrapped text); pauses from the markup go to the segment before them; the last segment is
    followed by at least the chapter pause. Segment ids are f"{id_prefix}{n}", n counting from 1.
    InputTextError (line and column, valid names) for bad voice or pause markup.
    """
    names = dict(names) if names is not None else {NARRATOR_NAME: NARRATOR}
    check_voice_markup(source, names)
    dialogue, options = settings.dialogue_voice, settings.text_options()
    segments: list[Segment] = []
    passage: str | None = None
    for item in parse_markup(source, paragraph_pause=settings.paragraph_pause, chapter_pause=settings.chapter_pause):
        if isinstance(item, Pause):
            if segments:
                segments[-1] = replace(segments[-1], pause_after=segments[-1].pause_after + item.seconds)
            continue
        runs, passage = split_voices(item.text, names, passage=passage, dialogue=dialogue)
        for run in runs:
            voice = run.voice or default_voice
            limit, rate = (budgets or {}).get(voice, (max_tokens, tokens_per_char))
            for chunk in speakable_chunks(run.text, options, max_tokens=limit, tokens_per_char=rate):
                segments.append(Segment(f"{id_prefix}{len(segments) + 1}", chunk, 0.0, voice=voice))
    if segments:
        segments[-1] = replace(segments[-1], pause_after=max(segments[-1].pause_after, settings.chapter_pause))
    return tuple(segments)


def plan_chapter(title: str, index: int, source: str, settings: NarrationSettings, max_tokens: int,
                 tokens_per_char: float, **options) -> tuple[Segment, ...]:
    """plan_segments for chapter `index` (0-based) with ids "{index + 1}.{n}"; an InputTextError names the chapter."""
    try:
        return plan_segments(source, settings, max_tokens, tokens_per_char, id_prefix=f"{index + 1}.", **options)
    except InputTextError as error:
        raise InputTextError(f"Chapter {index + 1} ({title}): {error}") from None


def carry_over(old: tuple[Segment, ...], new: tuple[Segment, ...], id_prefix: str = "") -> tuple[Segment, ...]:
    """The new plan of a chapter with what the user made of the old one.

    New and old segments are aligned by planned text (difflib). A matched segment keeps its takes
    and chosen take when its text and voice are the same, and the user's hand-set fields
    (Segment.user: text, voice, pauses) and a lock. A segment whose text changed (same place, one for
    one) keeps the user's voice and pauses but starts again at take 0; a locked one keeps its text
    and take. Ids are numbered again in reading order ("{id_prefix}{n}"): takes are found by their
    keys, not by id, so an unchanged plan keeps every id.
    """
    matcher = difflib.SequenceMatcher(None, [s.planned or s.text for s in old], [s.text for s in new], autojunk=False)
    result: list[Segment] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal" or i2 - i1 == j2 - j1:
            result += [_merge_segment(b, p, same_text=tag == "equal") for b, p in zip(old[i1:i2], new[j1:j2])]
        else:
            result += new[j1:j2]
    return tuple(replace(s, id=f"{id_prefix}{n}") for n, s in enumerate(result, 1))


def _merge_segment(before: Segment, planned: Segment, *, same_text: bool) -> Segment:
    merged = replace(planned, id=before.id, user=before.user)
    if "voice" in before.user:
        merged = replace(merged, voice=before.voice)
    if "pauses" in before.user:
        merged = replace(merged, pause_before=before.pause_before, pause_after=before.pause_after)
    if "text" in before.user or before.locked:
        merged = replace(merged, text=before.text, planned=planned.text if "text" in before.user else "")
    if before.locked:
        return replace(merged, text=before.text, voice=before.voice, takes=before.takes, chosen=before.chosen,
                       locked=before.locked)
    if (same_text or "text" in before.user) and merged.text == before.text and merged.voice == before.voice:
        merged = replace(merged, takes=before.takes, chosen=before.chosen)
    return merged
