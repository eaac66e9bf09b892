"""Long-form narration: plan a book into segments, render the missing takes in order, export the book.

A project (engine.book.project) holds the segments and their takes. `narrate` renders every pending
segment of the chosen chapters, one segment's audio in memory at a time, writing each take as soon
as it is finished, so a crash or cancel loses at most the segment being rendered and running
`narrate` again resumes there. The per-segment render is a plain callable (`SegmentRenderer`): the
default speaks the segment once with Synthesizer.synthesize; the best-of-N renderer with quality scores
(engine.book.quality.best_of_renderer, a project's quality mode) plugs in the same way. torch is only imported when rendering starts.
"""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.audio.clip import FRAME_RATE, SAMPLE_RATE
from engine.book.importer import Book
from engine.config import SamplingParams
from engine.errors import CancelledError, EngineError, ProjectError
from engine.book.project import (
    DONE, FAILED, NEEDS_CHECK, PENDING, NarrationProject, NarrationSettings, ProjectChapter, Segment, TakeRecord,
)
from engine.text.pipeline import Pause, apply_pronunciations, estimate_tokens, normalize, parse_markup, split_text
from engine.voices import SavedVoice

if TYPE_CHECKING:
    from engine.speech.synth import Synthesizer, Voice

__all__ = [
    "DONE", "FAILED", "NEEDS_CHECK", "PENDING", "NarrationProgress", "NarrationResult", "RenderedTake",
    "SegmentRenderer", "TakeJob", "create_project", "export_project", "narrate", "plan_segments",
    "parse_chapter_spec", "render_segment", "segment_budget", "segment_cap", "synthesize_take",
]


# ---------------------------------------------------------------- planning

def segment_budget(synthesizer: "Synthesizer", codes: Sequence[int], transcript: str) -> tuple[int, float]:
    """(max speech tokens per segment, speech tokens per character) for a voice on this model.

    The prompt overhead (chat template, instruction, transcript) is measured with
    engine.lm.prompt.build_prompt on the model's own tokenizer.
    """
    from engine.lm.prompt import build_prompt
    from engine.text.pipeline import budget_for_voice

    lm = synthesizer.lm
    prompt = build_prompt(lm.tokenizer, lm.tokens, "x", reference_codes=list(codes), reference_text=transcript)
    return budget_for_voice(len(codes), transcript, len(prompt) - len(codes) - 1)


def plan_segments(
    source: str, settings: NarrationSettings, max_tokens: int, tokens_per_char: float, *, id_prefix: str = ""
) -> tuple[Segment, ...]:
    """A chapter's text as segments: markup -> pronunciations -> normalize -> split to the budget.

    Lines inside a paragraph are joined (hard-wrapped text); pauses from the markup go to the segment
    before them; the last segment is followed by at least the chapter pause (the gap to the next
    chapter in a whole-book export). Segment ids are f"{id_prefix}{n}" with n counting from 1.
    """
    segments: list[Segment] = []
    for item in parse_markup(source, paragraph_pause=settings.paragraph_pause, chapter_pause=settings.chapter_pause):
        if isinstance(item, Pause):
            if segments:
                segments[-1] = replace(segments[-1], pause_after=segments[-1].pause_after + item.seconds)
            continue
        text = apply_pronunciations(re.sub(r"\s*\n\s*", " ", item.text), settings.pronunciations)
        text = normalize(text, language=settings.language)
        for chunk in split_text(text, max_tokens=max_tokens, tokens_per_char=tokens_per_char) if text else ():
            segments.append(Segment(f"{id_prefix}{len(segments) + 1}", chunk.strip(), 0.0))
    if segments:
        segments[-1] = replace(segments[-1], pause_after=max(segments[-1].pause_after, settings.chapter_pause))
    return tuple(segments)


def create_project(
    folder: Path, book: Book, voice: SavedVoice, settings: NarrationSettings, *, max_tokens: int,
    tokens_per_char: float, chapters: Sequence[int] | None = None, fingerprint: str = "",
) -> NarrationProject:
    """Plan `book` and write a new project folder (see NarrationProject.create); `chapters` (0-based)
    are the selected ones, default all. `max_tokens` and `tokens_per_char` come from segment_budget."""
    selected = set(range(len(book.chapters)) if chapters is None else chapters)
    planned = [
        ProjectChapter(c.title, c.text, plan_segments(c.text, settings, max_tokens, tokens_per_char,
                                                       id_prefix=f"{i + 1}."), i in selected)
        for i, c in enumerate(book.chapters)
    ]
    cover = (book.cover, book.cover_suffix) if book.cover else None
    return NarrationProject.create(
        folder, title=book.title, author=book.author, chapters=planned, voice=voice, settings=settings,
        max_tokens=max_tokens, tokens_per_char=tokens_per_char, cover=cover, fingerprint=fingerprint,
    )


# ---------------------------------------------------------------- rendering one take

@dataclass(frozen=True)
class TakeJob:
    """Everything a renderer needs for one take of one segment."""

    text: str  # the segment's text
    voice: "Voice"
    params: SamplingParams  # with the take's seed
    max_new_tokens: int  # runaway guard: at most this many speech tokens (the window may allow fewer)
    cancel: threading.Event | None = None
    on_progress: Callable[[int, int], None] | None = None  # (tokens generated, token budget)


@dataclass(frozen=True)
class RenderedTake:
    """A renderer's answer."""

    audio: np.ndarray  # float32 [n] at 16 kHz
    codes: tuple[int, ...]  # the speech codes generated
    finish_reason: str  # "end" or "length"
    scores: Mapping[str, float] = field(default_factory=dict)  # quality scores, if the renderer measures any
    transcript: str = ""  # what the ASR heard, if the renderer ran one


SegmentRenderer = Callable[["Synthesizer", TakeJob], RenderedTake]


def synthesize_take(synthesizer: "Synthesizer", job: TakeJob) -> RenderedTake:
    """The default renderer: one Synthesizer.synthesize call, no scores."""
    result = synthesizer.synthesize(job.text, job.voice, job.params, cancel=job.cancel,
                                    on_progress=job.on_progress, max_new_tokens=job.max_new_tokens)
    return RenderedTake(result.audio, result.codes, result.finish_reason)


def segment_cap(text: str, tokens_per_char: float) -> int:
    """Runaway guard: twice the estimated speech tokens plus one second (the window may cap it lower)."""
    return 2 * estimate_tokens(text, tokens_per_char) + FRAME_RATE


def render_segment(
    project: NarrationProject, synthesizer: "Synthesizer", segment_id: str, *,
    render: SegmentRenderer = synthesize_take, cancel: threading.Event | None = None,
    on_tokens: Callable[[int, int], None] | None = None, voice: "Voice | None" = None,
) -> TakeRecord:
    """Render the chosen take of one segment and store it; returns its record (also for a failure).

    A user-fixable failure (EngineError, e.g. no speech produced) is stored as a failed take; the
    user regenerates (a new take, a new seed) or edits the text. CancelledError propagates and
    nothing is stored.
    """
    segment = project.find(segment_id)
    take, seed = segment.chosen, project.take_seed(segment)
    job = TakeJob(segment.text, voice or project.voice.to_voice(), project.settings.sampling(seed),
                  segment_cap(segment.text, project.tokens_per_char), cancel, on_tokens)
    key = project.take_key(segment)
    try:
        rendered = render(synthesizer, job)
    except CancelledError:
        raise
    except EngineError as error:
        record = TakeRecord(key, take, seed, "failed", 0.0, 0, {}, str(error))
        project.write_take(segment, take, None, record)
        return record
    record = TakeRecord(key, take, seed, rendered.finish_reason, len(rendered.audio) / SAMPLE_RATE,
                        len(rendered.codes), dict(rendered.scores), transcript=rendered.transcript,
                        flagged=project.settings.flags(rendered.scores))
    project.write_take(segment, take, rendered.audio, record)
    return record


# ---------------------------------------------------------------- the render loop

@dataclass(frozen=True)
class NarrationProgress:
    """Where a narrate run stands; sent when it starts, every 25 tokens, and after each segment."""

    done: int  # segments of the chosen chapters that are finished (done, needs-check or failed)
    total: int  # segments in the chosen chapters
    audio_s: float  # seconds of audio of the finished segments
    eta_s: float | None  # estimated seconds left; None until this run has finished a segment
    segment_id: str | None = None  # the segment being rendered or just finished
    status: str | None = None  # its status; PENDING while it is being rendered
    tokens: int = 0  # speech tokens generated so far for that segment


@dataclass(frozen=True)
class NarrationResult:
    """How a narrate run ended."""

    rendered: int  # takes rendered by this run
    total: int  # segments in the chosen chapters
    done: int  # of them: done
    needs_check: int  # of them: hit the length cap or flagged by quality mode, listen to them
    failed: int  # of them: failed, regenerate or edit them
    audio_s: float  # seconds of audio of the finished segments
    cancelled: bool  # stopped by the cancel event before the end


def narrate(
    project: NarrationProject, synthesizer: "Synthesizer", *, chapters: Sequence[int] | None = None,
    segment_ids: Sequence[str] | None = None, render: SegmentRenderer = synthesize_take,
    on_progress: Callable[[NarrationProgress], None] | None = None, cancel: threading.Event | None = None,
) -> NarrationResult:
    """Render every pending segment of `chapters` (0-based; default the selected ones), in reading order,
    or with `segment_ids` the pending ones of just those segments, in that order (regenerate).

    Finished takes are on disk as soon as each segment ends; cancel (checked every token) stops
    within a token and keeps them. Failed segments are recorded and skipped, not retried.
    ProjectError for an unknown segment id.
    """
    if segment_ids is not None:
        scope = [_find(project, segment_id) for segment_id in dict.fromkeys(segment_ids)]
    else:
        scope = [segment for _, segment in project.segments(list(chapters) if chapters is not None else None)]
    todo = [s for s in scope if project.status(s) == PENDING]
    voice = project.voice.to_voice()
    finished = len(scope) - len(todo)
    audio_s = sum(r.duration_s for s in scope if (r := project.record(s)) is not None)
    remaining = sum(estimate_tokens(s.text, project.tokens_per_char) for s in todo)
    start, estimated_done, rendered = time.monotonic(), 0, 0

    def report(segment: Segment | None = None, status: str | None = None, tokens: int = 0) -> None:
        if on_progress is None:
            return
        elapsed = time.monotonic() - start
        eta = elapsed * (remaining - estimated_done) / estimated_done if estimated_done else None
        on_progress(NarrationProgress(finished, len(scope), audio_s, eta, segment.id if segment else None,
                                      status, tokens))

    report()
    cancelled = False
    for segment in todo:
        if cancel is not None and cancel.is_set():
            cancelled = True
            break
        if (record := project.record(segment)) is not None:  # an identical segment earlier in this run made it
            finished += 1
            audio_s += record.duration_s
            report(segment, record.status)
            continue

        def on_tokens(done: int, budget: int, segment: Segment = segment) -> None:
            if done % 25 == 0:
                report(segment, PENDING, done)

        try:
            record = render_segment(project, synthesizer, segment.id, render=render, cancel=cancel,
                                    on_tokens=on_tokens, voice=voice)
        except CancelledError:
            cancelled = True
            break
        rendered += 1
        finished += 1
        audio_s += record.duration_s
        estimated_done += estimate_tokens(segment.text, project.tokens_per_char)
        report(segment, record.status)
    statuses = [project.status(s) for s in scope]
    return NarrationResult(rendered, len(scope), statuses.count(DONE), statuses.count(NEEDS_CHECK),
                           statuses.count(FAILED), audio_s, cancelled)


def _find(project: NarrationProject, segment_id: str) -> Segment:
    try:
        return project.find(segment_id)
    except KeyError:
        raise ProjectError(f"Segment {segment_id} is not in {project.folder}; reopen the project.") from None


# ---------------------------------------------------------------- export

def export_project(
    project: NarrationProject, dest: Path, fmt: str, *, per_chapter: bool = False,
    chapters: Sequence[int] | None = None, target_lufs: float = -18.0, narrator: str = "",
    on_progress: Callable[[int, int], None] | None = None, cancel: threading.Event | None = None,
) -> list[Path]:
    """Export the chosen takes of `chapters` (default the selected ones) as one book file at `dest`,
    or with `per_chapter` one file per chapter in the folder `dest`. Returns the files written.

    ProjectError when a segment is still pending or failed. Needs-check takes are exported as they are.
    """
    from engine.book.assemble import join_segments
    from engine.book.export import BookMetadata, ChapterAudio, export_book, export_chapters

    indices = list(chapters) if chapters is not None else [i for i, c in enumerate(project.chapters) if c.selected]
    if not indices:
        raise ProjectError("No chapters are selected to export; select at least one.")
    missing = [s.id for _, s in project.segments(indices) if project.status(s) in (PENDING, FAILED)]
    if missing:
        raise ProjectError(
            f"{len(missing)} segment(s) are not rendered yet or failed (first: {missing[0]}); "
            "narrate the project first and regenerate or edit failed segments."
        )

    def loader(index: int) -> Callable[[], np.ndarray]:
        segments = project.chapters[index].segments
        return lambda: join_segments([project.load_take(s) for s in segments], [s.pause_after for s in segments])

    book = [ChapterAudio(project.chapters[i].title, loader(i)) for i in indices]
    metadata = BookMetadata(title=project.title, author=project.author, cover=project.cover, narrator=narrator)
    if per_chapter:
        return list(export_chapters(book, Path(dest), fmt=fmt, metadata=metadata, target_lufs=target_lufs,
                                    on_progress=on_progress, cancel=cancel))
    return [export_book(book, Path(dest), fmt=fmt, metadata=metadata, target_lufs=target_lufs,
                        on_progress=on_progress, cancel=cancel)]


def parse_chapter_spec(spec: str, count: int) -> list[int]:
    """"1,3-5" -> [0, 2, 3, 4] (1-based ranges in, 0-based indices out); SettingsError when malformed
    or outside 1..count."""
    from engine.errors import SettingsError

    chosen: set[int] = set()
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        first, last = (int(m[1]), int(m[2] or m[1])) if m else (0, -1)
        if not m or not 1 <= first <= last <= count:
            raise SettingsError(f"--chapters {spec!r}: use chapter numbers 1 to {count}, e.g. 1,3-5.")
        chosen.update(range(first - 1, last))
    return sorted(chosen)
