"""Narration-project jobs on the engine thread with the tiny models: create, narrate (all, some
segments), throttled progress, cancel keeping finished takes, model switch, export."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from engine.book.importer import Book, Chapter
from engine.config import ModelChoice
from engine.book.project import NEEDS_CHECK, PENDING, NarrationProject, NarrationSettings
from engine.session import (
    Cancelled, CreateProject, EngineSession, ExportProject, Exported, Failed, LoadModels, ModelsLoaded, Narrate,
    Narrated, NarrationProgressed, Progress, ProjectCreated,
)
from engine.voices import VoiceLibrary

from engine_events import EventRecorder

FINAL = (ModelsLoaded, ProjectCreated, Narrated, Exported, Failed, Cancelled)
# A 2 s reference with a long transcript: a low speaking rate keeps the tiny LM's capped takes short.
TRANSCRIPT = "The quick brown fox jumps over the lazy dog, near the quiet river bank. " * 4
BOOK = Book("Session Book", "A. Author", (
    Chapter("One", "Chapter one.\n\nIt was a bright day.\n\nThe end of it."),
    Chapter("Two", "\n\n".join(f"Paragraph number {n} of the second chapter." for n in range(1, 8))),
))


def Recorder() -> EventRecorder:
    return EventRecorder(FINAL)


def choice(tiny_models, lm=None) -> ModelChoice:
    return ModelChoice(str(lm or tiny_models["lm"]), str(tiny_models["codec"]), device="cpu")


def settings_for(tiny_models, lm=None) -> NarrationSettings:
    return NarrationSettings(lm=str(lm or tiny_models["lm"]), codec=str(tiny_models["codec"]), base_seed=11)


@pytest.fixture(scope="module")
def voice(tmp_path_factory):
    codes = tuple(int(c) for c in np.random.default_rng(0).integers(0, 65536, 100))
    return VoiceLibrary(tmp_path_factory.mktemp("voices")).add(
        "Narrator", np.zeros(32000, np.float32), TRANSCRIPT, codes, "tiny")


@pytest.fixture
def session(tiny_models):
    recorder = Recorder()
    s = EngineSession(emit=recorder)
    s.start()
    s.submit(LoadModels(choice(tiny_models)))
    assert isinstance(recorder.final(), ModelsLoaded)
    yield s, recorder
    assert s.shutdown(timeout=60)


def create(session, recorder, folder, voice, settings) -> NarrationProject:
    session.submit(CreateProject("c", folder, BOOK, voice, settings, (0, 1)))
    event = recorder.final()
    assert event == ProjectCreated("c", folder), event
    return NarrationProject.open(folder)


@pytest.mark.slow
def test_create_narrate_some_segments_and_export(session, voice, tiny_models, tmp_path):
    s, recorder = session
    project = create(s, recorder, tmp_path / "book", voice, settings_for(tiny_models))  # the "GUI's" copy
    second = [seg for _, seg in project.segments([1])]
    loads = recorder.count(ModelsLoaded)
    s.submit(Narrate("n1", project.folder, chapters=(1,)))
    result = recorder.final().result
    assert (result.rendered, result.total, result.needs_check, result.cancelled) == (7, 7, 7, False)
    progress = [e.progress for e in recorder.of("n1", NarrationProgressed)]
    assert progress[0].segment_id is None and progress[0].done == 0
    finished = [p.segment_id for p in progress if p.status not in (None, PENDING)]
    assert sorted(finished) == sorted(seg.id for seg in second)  # each segment reported once (batched: in the order takes end)
    assert progress[-1].done == 7 and recorder.count(ModelsLoaded) == loads
    # The GUI's project sees the engine's takes once it re-reads them.
    assert project.status(second[0]) == PENDING
    assert project.reload_record(second[0]).codes > 0 and project.status(second[0]) == NEEDS_CHECK

    first = [seg for _, seg in project.segments([0])]
    project.new_take(second[3].id)
    s.submit(Narrate("n2", project.folder, segment_ids=(second[3].id, second[4].id)))
    result = recorder.final().result
    assert (result.rendered, result.total, result.cancelled) == (1, 2, False)  # only the pending one
    assert all(project.status(seg) == PENDING for seg in first)  # chapter one was not touched
    segment = project.chapters[1].segments[3]
    assert segment.takes == 2 and project.reload_record(segment).take == 1

    s.submit(Narrate("n3", project.folder, segment_ids=("9.9",)))
    assert "9.9" in recorder.final().message

    project.select_chapters([1])
    (tmp_path / "out").mkdir()
    s.submit(ExportProject("x", project.folder, tmp_path / "out", "flac", per_chapter=True))
    event = recorder.final()
    assert event == Exported("x", tmp_path / "out"), event
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["01 - Two.flac"]
    assert [e.stage for e in recorder.of("x", Progress)] == ["export"] * len(recorder.of("x", Progress))


@pytest.mark.slow
def test_cancel_keeps_finished_takes_and_drops_queued_runs(session, voice, tiny_models, tmp_path):
    s, recorder = session
    project = create(s, recorder, tmp_path / "book", voice, settings_for(tiny_models))
    stopped = threading.Event()

    def stop_after_first(event):
        if isinstance(event, NarrationProgressed) and event.progress.status not in (None, PENDING):
            if not stopped.is_set():
                stopped.set()
                s.cancel()

    recorder.on_event = stop_after_first
    s.submit(Narrate("n1", project.folder))
    result = recorder.final().result
    assert result.cancelled and 1 <= result.rendered < result.total == 10
    reopened = NarrationProject.open(project.folder)
    done = [seg.id for _, seg in reopened.segments() if reopened.status(seg) != PENDING]
    assert len(done) == result.rendered and done == [seg.id for _, seg in project.segments()][:len(done)]

    recorder.on_event = None
    s.submit(Narrate("n2", project.folder))  # running (or still queued) when cancel() comes
    s.submit(Narrate("n3", project.folder))  # queued: dropped with Cancelled
    s.cancel()
    n2, n3 = recorder.final(), recorder.final()
    assert n3 == Cancelled("n3")
    assert n2 == Cancelled("n2") or (isinstance(n2, Narrated) and n2.result.cancelled)


@pytest.mark.slow
def test_a_project_on_other_models_loads_them_first(session, voice, tiny_models, tmp_path):
    s, recorder = session
    other_lm = tmp_path / "other-lm"
    other_lm.symlink_to(tiny_models["lm"], target_is_directory=True)
    s.submit(CreateProject("c", tmp_path / "book", BOOK, voice, settings_for(tiny_models, other_lm)))
    loaded = recorder.final()
    assert isinstance(loaded, ModelsLoaded) and loaded.lm == str(other_lm)
    assert recorder.final() == ProjectCreated("c", tmp_path / "book")
    assert [e.request_id for e in recorder.events if isinstance(e, Progress) and e.stage == "load"][-2:] == ["c", "c"]
    loads = recorder.count(ModelsLoaded)
    s.submit(Narrate("n", tmp_path / "book", segment_ids=()))  # same models now: nothing reloads
    assert recorder.final().result.total == 0
    assert recorder.count(ModelsLoaded) == loads
