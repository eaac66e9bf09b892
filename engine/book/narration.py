"""Long-form narration: plan a book into segments, render the missing takes in order.

A project (engine.book.project) holds the segments and their takes. `narrate` renders every pending
segment of the chosen chapters, one segment's audio in memory at a time, writing each take as soon
as it is finished, so a crash or cancel loses at most the segment being rendered and running
`narrate` again resumes there. The per-segment render is a plain callable (`SegmentRenderer`): the
default speaks the segment once with Synthesizer.synthesize; the best-of-N renderer with quality scores
(engine.book.quality.best_of_renderer, a project's quality mode) plugs in the same way. torch is only imported when rendering starts.
Exporting the book is engine.book.project_export.
"""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.audio.clip import SAMPLE_RATE
from engine.book.importer import Book
from engine.book.lock import writes_project
from engine.config import SamplingParams
from engine.errors import CancelledError, EngineError, NoSpeechError, OutOfMemoryError, ProjectError
from engine.book.plan import plan_chapter, plan_segments
from engine.book.project import (
    DONE, FAILED, NEEDS_CHECK, PENDING, NarrationProject, NarrationSettings, ProjectChapter, Runtime, Segment,
    TakeRecord,
)
from engine.text.pipeline import estimate_tokens
from engine.text.plan import segment_cap
from engine.voices import SavedVoice

if TYPE_CHECKING:
    from engine.speech.batch import SegmentJob
    from engine.speech.render import Take
    from engine.speech.synth import Synthesizer, Voice

__all__ = [
    "DONE", "FAILED", "NEEDS_CHECK", "PENDING", "NarrationProgress", "NarrationResult", "RenderedTake",
    "SegmentRenderer", "TakeJob", "TakeSource", "create_project",
    "local_source", "narrate", "parse_chapter_spec", "plan_segments", "render_segment", "segment_budget",
    "segment_cap", "store_take", "synthesize_take",
]


# ---------------------------------------------------------------- planning

def segment_budget(synthesizer: "Synthesizer", codes: Sequence[int], transcript: str) -> tuple[int, float]:
    """(max speech tokens per segment, speech tokens per character) for a voice on this model."""
    from engine.speech.render import voice_budget
    from engine.speech.synth import Voice

    return voice_budget(synthesizer, Voice(tuple(codes), transcript) if codes else None)


def create_project(
    folder: Path, book: Book, voice: SavedVoice, settings: NarrationSettings, *, max_tokens: int,
    tokens_per_char: float, chapters: Sequence[int] | None = None, fingerprint: str = "",
    cast: Sequence[tuple[SavedVoice, int, float]] = (),
) -> NarrationProject:
    """Plan `book` and write a new project folder (see NarrationProject.create); `chapters` (0-based)
    are the selected ones, default all. `max_tokens` and `tokens_per_char` come from segment_budget,
    for the narrator `voice` and for each other voice of the `cast` ((voice, max tokens, tokens per char);
    [voice: Name] markup names them by their library names; settings.dialogue_voice names one of them
    here, the project stores its key). InputTextError (line, column, valid names) for bad markup or
    cast names, before anything is written."""
    from engine.book.cast import check_name
    from engine.book.plan import NARRATOR_NAME
    from engine.text.cast_markup import resolve_voice

    names = {NARRATOR_NAME: NARRATOR_NAME}
    for saved, _, _ in cast:
        names[check_name(saved.name, list(names))] = saved.name
    budgets = {v.name: (m, r) for v, m, r in cast}
    if settings.dialogue_voice is not None:
        try:
            resolve_voice(settings.dialogue_voice, names)
        except KeyError:
            from engine.errors import SettingsError

            raise SettingsError(f"The dialogue voice {settings.dialogue_voice!r} is not in the cast "
                                f"(valid: {', '.join(names)}).") from None
    for i, c in enumerate(book.chapters):  # the markup is checked on the whole book first: nothing is written on error
        plan_chapter(c.title, i, c.text, settings, max_tokens, tokens_per_char, names=names, budgets=budgets)
    selected = set(range(len(book.chapters)) if chapters is None else chapters)
    unplanned = [ProjectChapter(c.title, c.text, (), i in selected) for i, c in enumerate(book.chapters)]
    cover = (book.cover, book.cover_suffix) if book.cover else None
    return NarrationProject.create(
        folder, title=book.title, author=book.author, chapters=unplanned, voice=voice, settings=settings,
        max_tokens=max_tokens, tokens_per_char=tokens_per_char, cover=cover, fingerprint=fingerprint,
        cast=cast, plan=True,
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
    voice_key: str = ""  # the cast voice (engine.book.cast) speaking it: quality mode compares with its clip


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
    """The default renderer: one take through the render path (engine.speech.render.speak_segment).

    A take without speech is a failed take (NoSpeechError), as everywhere else.
    """
    from engine.speech.render import speak_segment

    drawn = 0

    def on_step(step: list[int | None]) -> None:
        nonlocal drawn
        if step[0] is not None and job.on_progress is not None:
            drawn += 1
            job.on_progress(drawn, job.max_new_tokens)

    spoken = speak_segment(synthesizer, job.text, job.voice, job.params, max_new_tokens=job.max_new_tokens,
                           cancel=job.cancel, on_step=on_step)
    take = spoken.takes[0]
    if not take.codes:
        raise NoSpeechError("The model produced no speech for this segment; regenerate it (another seed) or edit it.")
    return RenderedTake(take.audio, take.codes, take.finish_reason)


def render_segment(
    project: NarrationProject, synthesizer: "Synthesizer", segment_id: str, *,
    render: SegmentRenderer = synthesize_take, cancel: threading.Event | None = None,
    on_tokens: Callable[[int, int], None] | None = None, voice: "Voice | None" = None,
) -> TakeRecord:
    """Render the chosen take of one segment in its cast voice (`voice`: that voice, already converted)
    and store it; returns its record (also for a failure).

    A user-fixable failure (EngineError, e.g. no speech produced) is stored as a failed take; the
    user regenerates (a new take, a new seed) or edits the text. CancelledError propagates and
    nothing is stored.
    """
    segment = project.find(segment_id)
    take, seed = segment.chosen, project.take_seed(segment)
    speaker = project.voice_of(segment)
    job = TakeJob(segment.text, voice or speaker.voice.to_voice(), project.settings.sampling(seed),
                  segment_cap(segment.text, speaker.tokens_per_char), cancel, on_tokens, segment.voice)
    key = project.take_key(segment)
    try:
        rendered = render(synthesizer, job)
    except (CancelledError, OutOfMemoryError):  # stops the run; a failed take would be rendered again anyway
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


# ---------------------------------------------------------------- many takes at once

# (jobs, sampling params, cancel, on_tokens(key, codes so far)) -> (key, take or error) as each take finishes:
# engine.speech.batch.render_many on this process's device (local_source), or a pool of workers
# (engine.book.workers); the driver alone writes the project.
TakeSource = Callable[
    [Iterable["SegmentJob"], SamplingParams, "threading.Event | None", "Callable[[Hashable, int], None] | None"],
    Iterator[tuple[Hashable, "Take | EngineError"]],
]


def local_source(synthesizer: "Synthesizer", batch: int | None = None) -> TakeSource:
    """Takes rendered here, `batch` segments at once (default: engine.lm.batching.default_batch)."""
    from engine.lm.batching import default_batch
    from engine.speech.batch import render_many

    rows = batch or default_batch(synthesizer.lm)
    return lambda jobs, params, cancel, on_tokens: render_many(synthesizer, jobs, params, batch=rows, cancel=cancel,
                                                               on_tokens=on_tokens)


def store_take(project: NarrationProject, segment: Segment, result: "Take | EngineError") -> TakeRecord:
    """Write the chosen take of `segment` from a take source's answer; a take without speech or an
    error is stored as a failed take (the user regenerates or edits it)."""
    take, seed, key = segment.chosen, project.take_seed(segment), project.take_key(segment)
    if not isinstance(result, EngineError) and not result.codes:
        result = NoSpeechError("The model produced no speech for this segment; regenerate it (another seed) or edit it.")
    if isinstance(result, EngineError):
        record = TakeRecord(key, take, seed, "failed", 0.0, 0, {}, str(result))
        project.write_take(segment, take, None, record)
        return record
    record = TakeRecord(key, take, seed, result.finish_reason, len(result.audio) / SAMPLE_RATE, len(result.codes), {})
    project.write_take(segment, take, result.audio, record)
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


@writes_project  # one writer per project: ProjectLockedError when another process renders it
def narrate(
    project: NarrationProject, synthesizer: "Synthesizer | None", *, chapters: Sequence[int] | None = None,
    segment_ids: Sequence[str] | None = None, render: SegmentRenderer = synthesize_take,
    on_progress: Callable[[NarrationProgress], None] | None = None, cancel: threading.Event | None = None,
    batch: int | None = None, source: TakeSource | None = None,
) -> NarrationResult:
    """Render every pending segment of `chapters` (0-based; default the selected ones), in reading order,
    or with `segment_ids` the pending ones of just those segments, in that order (regenerate).

    One take per segment (the default renderer) is rendered `batch` segments at once (default from
    device memory) by `source` (default: local_source on `synthesizer`; engine.book.workers for
    worker processes, then `synthesizer` may be None); a take is the same whatever the batch. A
    custom renderer (quality mode: candidates per segment) renders one segment after another.
    Finished takes are on disk as soon as each segment ends, so a crash loses at most the batch in
    flight; cancel stops within a chunk of steps (a token with a custom renderer) and keeps them.
    Failed segments are recorded and skipped, not retried. ProjectError for an unknown segment id.
    """
    if synthesizer is not None:
        project.use_runtime(Runtime(synthesizer.lm.device.type, synthesizer.lm.quantization))  # part of take keys
    elif (choice := getattr(source, "choice", None)) is not None:  # worker processes load this choice
        from engine.lm.backend import resolve_backend
        from engine.lm.device import default_precision, resolve_device

        if resolve_backend(choice.backend, choice.device) == "llamacpp":
            project.use_runtime(Runtime("cpu", choice.gguf_precision))  # as LlamaCppLM reports it
        else:
            device = resolve_device(choice.device)[0]
            project.use_runtime(Runtime(device.type, choice.quantization or default_precision(device)))
    if segment_ids is not None:
        scope = [_find(project, segment_id) for segment_id in dict.fromkeys(segment_ids)]
    else:
        scope = [segment for _, segment in project.segments(list(chapters) if chapters is not None else None)]
    todo = [s for s in scope if project.status(s) == PENDING]
    voices = {m.key: m.voice.to_voice() for m in project.cast.members() if any(s.voice == m.key for s in todo)}
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
    if render is synthesize_take and todo:
        from engine.speech.batch import SegmentJob

        source = source or local_source(synthesizer, batch)
        by_id, copies = {}, {}  # identical segments (same take key) are rendered once
        for s in todo:
            same = copies.setdefault(project.take_key(s), [])
            if not same:
                by_id[s.id] = s
            same.append(s)
        jobs = (SegmentJob(s.id, s.text, voices[s.voice], project.take_seed(s),
                           segment_cap(s.text, project.voice_of(s).tokens_per_char)) for s in by_id.values())
        last_report = {}

        def on_row(key: Hashable, drawn: int) -> None:
            if drawn - last_report.get(key, 0) >= 25:
                last_report[key] = drawn
                report(by_id[key], PENDING, drawn)

        try:
            for key, result in source(jobs, project.settings.sampling(0), cancel, on_row):
                segment = by_id[key]
                record = store_take(project, segment, result)
                rendered += 1
                for same in copies[project.take_key(segment)]:  # the segment and its identical copies
                    finished, audio_s = finished + 1, audio_s + record.duration_s
                    estimated_done += estimate_tokens(same.text, project.tokens_per_char)
                    report(same, record.status)
        except CancelledError:
            cancelled = True
        todo = []
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
                                    on_tokens=on_tokens, voice=voices[segment.voice])
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


# ---------------------------------------------------------------- choosing chapters

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
