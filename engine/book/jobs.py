"""Narration-project jobs for the engine thread (engine.session runs them): create, narrate, export.

The engine thread opens the project from disk for every job, so the GUI's own NarrationProject
(for display and edits) and the engine's never share state; the engine only writes takes, never
project.json. A job first makes sure the project's models are loaded (engine.session passes
`models_for`). Cancel: a running Narrate stops within a token, keeps every finished take and ends
with Narrated(result.cancelled=True); an export ends with Cancelled (engine.session). A project in
quality mode is narrated with the renderer the session gives (engine.book.quality.VerifierModels.renderer).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.book.importer import Book
from engine.events import Exported, Narrated, NarrationProgressed, Progress, ProjectCreated, VoiceMeasured
from engine.book.narration import NarrationProgress
from engine.book.project import PENDING, NarrationProject, NarrationSettings
from engine.voices import SavedVoice

if TYPE_CHECKING:
    from engine.book.narration import SegmentRenderer
    from engine.speech.synth import Synthesizer

PROGRESS_INTERVAL_S = 0.25  # s: at most this often a NarrationProgressed while a segment is rendered


# ---- jobs (GUI -> engine) ----
@dataclass(frozen=True)
class CreateProject:
    """Plan `book` for `voice` on the project's models and write a new project into `folder`;
    answered by ProjectCreated. `chapters` (0-based) are the selected ones, None = all."""

    request_id: str
    folder: Path
    book: Book
    voice: SavedVoice
    settings: NarrationSettings
    chapters: tuple[int, ...] | None = None
    cast: tuple[SavedVoice, ...] = ()  # the other voices (each measured on the model here), for [voice: Name]


@dataclass(frozen=True)
class Narrate:
    """Render the pending segments of `chapters` (0-based; None = the selected ones), or with
    `segment_ids` the pending ones of just those segments (regenerate). NarrationProgressed events,
    then Narrated."""

    request_id: str
    folder: Path
    chapters: tuple[int, ...] | None = None
    segment_ids: tuple[str, ...] | None = None
    batch: int | None = None  # segments rendered at once; None: chosen from device memory


@dataclass(frozen=True)
class ExportProject:
    """Export the selected chapters' chosen takes (engine.book.project_export.export_project): one file at
    `dest`, or with `per_chapter` one file per chapter in the folder `dest`. Progress(stage "export")
    events, then Exported(request_id, dest)."""

    request_id: str
    folder: Path
    dest: Path
    fmt: str  # "wav" | "flac" | "mp3" | "m4b"
    per_chapter: bool = False
    subtitles: tuple[str, ...] = ()  # sidecars beside each file: "srt", "vtt", "json" (engine.book.subtitles)


@dataclass(frozen=True)
class RegenerateUntilPasses:
    """Quality mode on just these segments (engine.book.quality.regenerate_until_passes): new takes until
    one passes, at most `max_tries` each. Needs the project's quality mode (a verifier and 2+ candidates).
    NarrationProgressed after each segment, then Narrated."""

    request_id: str
    folder: Path
    segment_ids: tuple[str, ...]
    max_tries: int = 4


@dataclass(frozen=True)
class MeasureVoice:
    """Measure a library voice's segment budget on the project's model (engine.book.narration.segment_budget),
    so the GUI can add it to the project's cast; answered by VoiceMeasured."""

    request_id: str
    folder: Path  # the project (its settings choose the model)
    voice: SavedVoice


PROJECT_JOBS = (CreateProject, Narrate, ExportProject, RegenerateUntilPasses, MeasureVoice)
ModelsFor = Callable[[NarrationSettings, str], "Synthesizer"]
RendererFor = Callable[[NarrationProject], "SegmentRenderer | None"]  # e.g. engine.book.quality.VerifierModels.renderer


def run_project_job(job: object, models_for: ModelsFor, emit: Callable[[object], None],
                    cancel: threading.Event, renderer_for: RendererFor | None = None) -> None:
    """Run one of PROJECT_JOBS on the engine thread; EngineError/CancelledError propagate to the session.
    `renderer_for(project)` gives a Narrate its segment renderer (None: the default, one take per segment)."""
    if isinstance(job, CreateProject):
        from engine.book.narration import create_project, segment_budget

        synth = models_for(job.settings, job.request_id)
        max_tokens, rate = segment_budget(synth, job.voice.codes, job.voice.transcript)
        cast = [(v, *segment_budget(synth, v.codes, v.transcript)) for v in job.cast]
        create_project(Path(job.folder), job.book, job.voice, job.settings, max_tokens=max_tokens,
                       tokens_per_char=rate, chapters=job.chapters, cast=cast)
        emit(ProjectCreated(job.request_id, Path(job.folder)))
    elif isinstance(job, Narrate):
        from engine.book.narration import narrate

        project = NarrationProject.open(Path(job.folder))
        synth = models_for(project.settings, job.request_id)
        report = _throttled(lambda p: emit(NarrationProgressed(job.request_id, p)))
        chapters = list(job.chapters) if job.chapters is not None else None
        render = renderer_for(project) if renderer_for is not None else None
        result = narrate(project, synth, chapters=chapters, segment_ids=job.segment_ids, on_progress=report,
                         cancel=cancel, batch=job.batch, **({"render": render} if render is not None else {}))
        emit(Narrated(job.request_id, result))
    elif isinstance(job, ExportProject):
        from engine.book.project_export import export_project

        project = NarrationProject.open(Path(job.folder))
        export_project(project, Path(job.dest), job.fmt, per_chapter=job.per_chapter, cancel=cancel,
                       subtitles=job.subtitles,
                       on_progress=lambda done, total: emit(Progress(job.request_id, "export", done, total)))
        emit(Exported(job.request_id, Path(job.dest)))
    elif isinstance(job, MeasureVoice):
        from engine.book.narration import segment_budget

        synth = models_for(NarrationProject.open(Path(job.folder)).settings, job.request_id)
        emit(VoiceMeasured(job.request_id, job.voice, *segment_budget(synth, job.voice.codes, job.voice.transcript)))
    elif isinstance(job, RegenerateUntilPasses):
        _regenerate(job, models_for, emit, cancel, renderer_for)
    else:
        raise TypeError(f"not a project job: {job!r}")


def _regenerate(job: RegenerateUntilPasses, models_for: ModelsFor, emit: Callable[[object], None],
                cancel: threading.Event, renderer_for: RendererFor | None) -> None:
    from engine.book.narration import NarrationResult
    from engine.book.project import DONE, FAILED, NEEDS_CHECK
    from engine.book.quality import regenerate_until_passes
    from engine.errors import CancelledError, SettingsError

    project = NarrationProject.open(Path(job.folder))
    render = renderer_for(project) if renderer_for is not None else None
    if render is None:
        raise SettingsError("\"Regenerate until it passes\" uses quality mode: turn it on (2+ takes per segment and "
                            "a Whisper model) in the project settings.")
    synth = models_for(project.settings, job.request_id)
    audio_s, cancelled, rendered = 0.0, False, 0
    for done, segment_id in enumerate(job.segment_ids):
        try:
            record, tries = regenerate_until_passes(project, synth, segment_id, render, max_tries=job.max_tries,
                                                    cancel=cancel)
        except CancelledError:
            cancelled = True
            break
        rendered += tries
        audio_s += record.duration_s if record else 0.0
        emit(NarrationProgressed(job.request_id, NarrationProgress(done + 1, len(job.segment_ids), audio_s, None,
                                                                   segment_id, project.status(project.find(segment_id)))))
    statuses = [project.status(project.find(i)) for i in job.segment_ids]
    emit(Narrated(job.request_id, NarrationResult(rendered, len(statuses), statuses.count(DONE), statuses.count(NEEDS_CHECK),
                                                  statuses.count(FAILED), audio_s, cancelled)))


def _throttled(send: Callable[[NarrationProgress], None]) -> Callable[[NarrationProgress], None]:
    """Pass on the start, every finished segment, and token progress at most every PROGRESS_INTERVAL_S."""
    last = [-1e9]

    def on_progress(progress: NarrationProgress) -> None:
        now = time.monotonic()
        boundary = progress.segment_id is None or progress.status != PENDING
        if boundary or now - last[0] >= PROGRESS_INTERVAL_S:
            last[0] = now
            send(progress)

    return on_progress
