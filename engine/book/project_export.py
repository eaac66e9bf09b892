"""Export a narration project: the chosen takes of each chapter joined with their pauses, written as
one book file or one file per chapter, with optional subtitle sidecars timed from that same join.

The audio encoding, metadata and loudness live in engine.book.export; the cues in engine.book.subtitles.
A project is exported only when every segment of the chosen chapters has a take (ProjectError otherwise).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.book.project import FAILED, PENDING, NarrationProject
from engine.errors import ProjectError

if TYPE_CHECKING:
    from engine.book.subtitles import WordTimer

__all__ = ["chapter_audio", "export_project"]


def chapter_audio(project: NarrationProject, index: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Chapter `index`'s chosen takes joined with their pauses (before and after each segment):
    float32 [n] at 16 kHz and where each segment's take landed ([start, end) samples)."""
    from engine.speech.assemble import join_segments_timed

    segments = project.chapters[index].segments
    takes = [project.load_take(s) for s in segments]
    gaps = [s.pause_after + (segments[i + 1].pause_before if i + 1 < len(segments) else 0.0)
            for i, s in enumerate(segments)]
    return join_segments_timed(takes, gaps, lead_s=segments[0].pause_before if segments else 0.0)


def export_project(
    project: NarrationProject, dest: Path, fmt: str, *, per_chapter: bool = False,
    chapters: Sequence[int] | None = None, target_lufs: float = -18.0, narrator: str = "",
    on_progress: Callable[[int, int], None] | None = None, cancel: threading.Event | None = None,
    subtitles: Sequence[str] = (), word_timer: "WordTimer | None" = None,
) -> list[Path]:
    """Export the chosen takes of `chapters` (default the selected ones) as one book file at `dest`,
    or with `per_chapter` one file per chapter in the folder `dest`. `subtitles` ("srt", "vtt", "json")
    also writes those sidecars beside each file, one cue per segment, times from the assembly
    (engine.book.subtitles); `word_timer` (Whisper) adds word timings to the vtt and json sidecars.
    Returns the files written: the audio, then the sidecars.

    ProjectError when a segment is still pending or failed. Needs-check takes are exported as they are.
    """
    from engine.book.export import BookMetadata, ChapterAudio, export_book, export_chapters
    from engine.book.subtitles import WORD_FORMATS, ChapterMark, add_word_timings, check_formats, tile_cues, write_sidecars
    from engine.errors import SettingsError

    formats = check_formats(subtitles)
    if word_timer is not None and not set(formats) & set(WORD_FORMATS):
        raise SettingsError("Word timings go into the vtt and json subtitles: add one of them to the subtitle formats.")
    indices = list(chapters) if chapters is not None else [i for i, c in enumerate(project.chapters) if c.selected]
    if not indices:
        raise ProjectError("No chapters are selected to export; select at least one.")
    damaged = project.verify_takes(s for _, s in project.segments(indices))
    if damaged:
        raise ProjectError(
            f"{len(damaged)} take(s) were damaged on disk (first: segment {damaged[0]}) and are pending again; "
            "narrate the project to render them, then export again."
        )
    missing = [s.id for _, s in project.segments(indices) if project.status(s) in (PENDING, FAILED)]
    if missing:
        raise ProjectError(
            f"{len(missing)} segment(s) are not rendered yet or failed (first: {missing[0]}); "
            "narrate the project first and regenerate or edit failed segments."
        )
    timings: dict[int, tuple[int, list[tuple[int, int]]]] = {}  # chapter -> (samples, spans), from the export's own join

    def loader(index: int) -> Callable[[], np.ndarray]:
        def load() -> np.ndarray:
            wave, spans = chapter_audio(project, index)
            timings[index] = (len(wave), spans)
            return wave
        return load

    book = [ChapterAudio(project.chapters[i].title, loader(i)) for i in indices]
    metadata = BookMetadata(title=project.title, author=project.author, cover=project.cover, narrator=narrator)
    if per_chapter:
        files = list(export_chapters(book, Path(dest), fmt=fmt, metadata=metadata, target_lufs=target_lufs,
                                     on_progress=on_progress, cancel=cancel))
    else:
        files = [export_book(book, Path(dest), fmt=fmt, metadata=metadata, target_lufs=target_lufs,
                             on_progress=on_progress, cancel=cancel)]
    if not formats:
        return files

    def cues(index: int, offset: int) -> list:
        segments = project.chapters[index].segments
        total, spans = timings[index]
        made = tile_cues(spans, total, [s.text for s in segments], ids=[s.id for s in segments],
                         voices=[project.voice_of(s).name for s in segments], offset=offset)
        if word_timer is None:
            return made
        return add_word_timings(made, chapter_audio(project, index)[0], word_timer, offset=offset)  # the export's join

    sidecars: list[Path] = []
    if per_chapter:
        for index, path in zip(indices, files):
            total = timings[index][0]
            marks = [ChapterMark(project.chapters[index].title, 0, total)]
            sidecars += write_sidecars(path, formats, cues(index, 0), total, marks)
        return files + sidecars
    all_cues, marks, offset = [], [], 0
    for index in indices:
        total = timings[index][0]
        all_cues += cues(index, offset)
        marks.append(ChapterMark(project.chapters[index].title, offset, offset + total))
        offset += total
    return files + write_sidecars(files[0], formats, all_cues, offset, marks)
