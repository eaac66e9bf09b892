"""Narration projects on the tiny models: planning, rendering, resume leftovers, edits, takes, export."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import soundfile as sf

from engine.book.importer import Book, Chapter
from engine.config import ModelChoice, SamplingParams
from engine.errors import ProjectError, TextTooLongError
from engine.book.narration import (
    DONE, FAILED, NEEDS_CHECK, PENDING, RenderedTake, create_project, narrate, parse_chapter_spec,
    TakeJob, plan_segments, segment_budget, segment_cap, synthesize_take,
)
from engine.book.project_export import export_project
from engine.book.project import NarrationProject, NarrationSettings
from engine.text.pipeline import normalize
from engine.voices import VoiceLibrary

# A 2 s "clip" with a long transcript: a low speaking rate keeps the tiny LM's capped takes short.
TRANSCRIPT = "The quick brown fox jumps over the lazy dog, near the quiet river bank. " * 4
BOOK = Book("Test Book", "A. Author", (
    Chapter("One", "Chapter one.\n\nIt was 3 pm. [pause 1.5s] The end of the first part.\nNext line."),
    Chapter("Two", "A second chapter, with two sentences. Here is the other one."),
))


@pytest.fixture(scope="module")
def synthesizer(tiny_models):
    from engine.speech.synth import Synthesizer

    return Synthesizer.load(ModelChoice(str(tiny_models["lm"]), str(tiny_models["codec"]), device="cpu"))


@pytest.fixture(scope="module")
def voice(tmp_path_factory, speech_clip_16k):
    rng = np.random.default_rng(0)
    codes = tuple(int(c) for c in rng.integers(0, 65536, 100))
    library = VoiceLibrary(tmp_path_factory.mktemp("voices"))
    return library.add("Narrator", speech_clip_16k[0][:32000], TRANSCRIPT, codes, "tiny")


def make_project(folder, synthesizer, voice, book=BOOK, **settings):
    settings = NarrationSettings(lm="tiny-lm", codec="tiny-codec", base_seed=11, **settings)
    max_tokens, rate = segment_budget(synthesizer, voice.codes, voice.transcript)
    return create_project(folder, book, voice, settings, max_tokens=max_tokens, tokens_per_char=rate)


def take_files(project):
    return sorted(p.name for p in (project.folder / "takes").iterdir())


def test_plan_segments_keeps_pauses_and_the_normalized_text():
    settings = NarrationSettings(paragraph_pause=0.5, chapter_pause=2.5)
    source = "First para, with 2 clauses. Second sentence!\n\nNew para.[pause 1.2s]After the pause."
    segments = plan_segments(source, settings, max_tokens=60, tokens_per_char=2.0, id_prefix="3.")
    assert [s.id for s in segments] == [f"3.{n}" for n in range(1, len(segments) + 1)]
    assert all(2 * len(s.text) <= 60 for s in segments)
    assert " ".join(s.text for s in segments) == normalize(source.replace("\n\n", " ").replace("[pause 1.2s]", " "))
    pauses = {s.text: s.pause_after for s in segments}
    assert pauses["Second sentence!"] == 0.5 and pauses["New para."] == 1.2 and pauses["After the pause."] == 2.5
    assert parse_chapter_spec("1,3-4, 2", 5) == [0, 1, 2, 3]


def test_narrate_renders_every_segment_and_a_reopened_project_shows_them(tmp_path, synthesizer, voice):
    project = make_project(tmp_path / "p", synthesizer, voice)
    segments = [s for _, s in project.segments()]
    assert len(segments) >= 4 and all(project.status(s) == PENDING for s in segments)
    events = []
    result = narrate(project, synthesizer, on_progress=events.append)
    assert (result.rendered, result.total, result.failed, result.cancelled) == (len(segments), len(segments), 0, False)
    assert [e.done for e in events if e.tokens == 0] == list(range(len(segments) + 1))
    assert events[-1].eta_s == pytest.approx(0, abs=1e-6)

    reopened = NarrationProject.open(project.folder)
    for segment in segments:
        record = reopened.record(segment)
        # The tiny random LM never says the end token: each take stops at its runaway cap.
        assert reopened.status(segment) == NEEDS_CHECK and record.finish_reason == "length"
        assert record.codes == segment_cap(segment.text, project.tokens_per_char)
        audio = reopened.load_take(segment)
        assert len(audio) == record.codes * 320 and record.duration_s == len(audio) / 16000
        assert json.loads(reopened.take_path(segment).with_suffix(".json").read_text())["scores"] == {}
    assert len(take_files(reopened)) == 2 * len(segments)
    assert narrate(reopened, synthesizer).rendered == 0  # nothing left to do


def test_editing_one_segment_renders_exactly_that_one_and_takes_are_kept(tmp_path, synthesizer, voice):
    project = make_project(tmp_path / "p", synthesizer, voice)
    narrate(project, synthesizer)
    before = set(take_files(project))
    target = [s for _, s in project.segments()][2]
    original = target.text
    edited = project.edit_segment(target.id, "Dr. Smith paid $5.")
    assert edited.text == "Doctor Smith paid five dollars." and project.status(edited) == PENDING
    assert narrate(project, synthesizer).rendered == 1
    assert len(set(take_files(project)) - before) == 2  # one .flac + one .json
    project.edit_segment(target.id, original)  # back to the old text: its take is still there
    assert narrate(project, synthesizer).rendered == 0

    first = project.record(target)
    project.new_take(target.id)
    segment = project.chapters[0].segments[2]
    assert (segment.takes, segment.chosen, project.status(segment)) == (2, 1, PENDING)
    assert narrate(project, synthesizer).rendered == 1
    second = project.record(segment)
    assert second.seed != first.seed and second.key != first.key
    project.choose_take(target.id, 0)
    assert NarrationProject.open(project.folder).record(target).key == first.key
    with pytest.raises(TextTooLongError):
        project.edit_segment(target.id, "word " * 5000)


def test_open_removes_what_a_kill_left_behind(tmp_path, synthesizer, voice):
    project = make_project(tmp_path / "p", synthesizer, voice)
    first = [s for _, s in project.segments()][0]
    narrate(project, synthesizer, chapters=[1])
    takes = project.folder / "takes"
    (takes / ".abc.flac.x1.tmp").write_bytes(b"half")
    (project.folder / ".project.json.x2.tmp").write_bytes(b"{")
    orphan = takes / (project.take_key(first) + ".flac")  # audio written, killed before its .json
    sf.write(orphan, np.zeros(320, np.float32), 16000)
    reopened = NarrationProject.open(project.folder)
    assert not list(project.folder.rglob("*.tmp")) and not orphan.exists()
    assert reopened.status(first) == PENDING


def test_cancel_keeps_finished_takes_and_resume_continues(tmp_path, synthesizer, voice):
    project = make_project(tmp_path / "p", synthesizer, voice)
    cancel = threading.Event()

    def stop_after_first(progress):
        if progress.done == 1:
            cancel.set()

    result = narrate(project, synthesizer, on_progress=stop_after_first, cancel=cancel)
    assert result.cancelled and result.rendered == 1
    assert len(take_files(project)) == 2
    assert narrate(project, synthesizer).rendered == result.total - 1


def test_a_pluggable_renderer_scores_and_failures_are_recorded(tmp_path, synthesizer, voice):
    project = make_project(tmp_path / "p", synthesizer, voice)
    calls = []

    def scored(synth, job):
        calls.append(job)
        if len(calls) == 2:
            raise TextTooLongError("The model produced no speech for this text; try again with another seed.")
        take = synthesize_take(synth, job)
        return RenderedTake(take.audio, take.codes, "end", {"wer": 0.25})

    result = narrate(project, synthesizer, render=scored)
    assert (result.done, result.failed) == (result.total - 1, 1)
    segments = [s for _, s in project.segments()]
    assert project.record(segments[0]).scores == {"wer": 0.25} and project.status(segments[0]) == DONE
    assert project.status(segments[1]) == FAILED and "no speech" in project.record(segments[1]).error
    assert calls[0].max_new_tokens == segment_cap(segments[0].text, project.tokens_per_char)
    assert calls[0].params.seed == project.take_seed(segments[0])
    assert narrate(project, synthesizer).rendered == 0  # a failure is not retried with the same seed
    with pytest.raises(ProjectError, match="not rendered yet or failed"):
        export_project(project, tmp_path / "book.wav", "wav")


def test_a_take_is_capped_by_max_new_tokens(synthesizer, voice):
    job = TakeJob("Hello there.", voice.to_voice(), SamplingParams(seed=1), max_new_tokens=7)
    take = synthesize_take(synthesizer, job)
    assert (len(take.codes), take.finish_reason, len(take.audio)) == (7, "length", 7 * 320)


def test_creating_into_a_used_folder_is_refused(tmp_path, synthesizer, voice):
    make_project(tmp_path / "p", synthesizer, voice)
    with pytest.raises(ProjectError, match="already holds"):
        make_project(tmp_path / "p", synthesizer, voice)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ProjectError, match="not empty"):
        make_project(tmp_path / "other", synthesizer, voice)
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["notes.txt"]


def test_export_whole_book_and_per_chapter(tmp_path, synthesizer, voice):
    project = make_project(tmp_path / "p", synthesizer, voice)
    narrate(project, synthesizer)
    (book,) = export_project(project, tmp_path / "book.flac", "flac")
    data, rate = sf.read(book)
    assert rate == 16000 and len(data) > 0
    chapters = tmp_path / "chapters"
    chapters.mkdir()
    files = export_project(project, chapters, "wav", per_chapter=True)
    assert len(files) == 2 and all(f.parent == chapters for f in files)
    lengths = [sf.info(f).frames for f in files]
    assert sum(lengths) == len(data)


def test_the_take_key_holds_the_resolved_device_and_precision(tmp_path, synthesizer, voice):
    """'auto' may run as fp32 on a CPU or 4-bit on a GPU: the key holds what was resolved, so a resumed
    project never mixes takes of two runtimes. (No CUDA here: the cuda/4bit runtime is only a key.)"""
    import hashlib

    from engine.book.narration import render_segment
    from engine.book.project import Runtime

    project = make_project(tmp_path / "p", synthesizer, voice)
    first, second = [s for _, s in project.segments()][:2]
    # A project from before runtime.json keeps the old key: the pre-runtime formula, written out here.
    voice_hash = hashlib.sha256(json.dumps([list(voice.codes), voice.transcript]).encode()).hexdigest()
    old = {"text": first.text, "voice": voice_hash, "settings": project.settings.audio_fields(),
           "seed": project.take_seed(first, 0), "take": 0}
    assert project.runtime is None
    assert project.take_key(first) == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()
    render_segment(project, synthesizer, first.id)  # rendered without a runtime recorded: an "old" take
    assert project.status(first) == NEEDS_CHECK

    cpu, other_cpu, gpu = Runtime("cpu", "fp32"), Runtime("cpu", "fp32"), Runtime("cuda", "4bit")
    keys = {}
    for name, runtime in (("cpu", cpu), ("cpu again", other_cpu), ("gpu", gpu), ("cpu 4bit", Runtime("cpu", "4bit"))):
        project.use_runtime(runtime)
        keys[name] = project.take_key(first)
    assert keys["cpu"] == keys["cpu again"] and len({keys["cpu"], keys["gpu"], keys["cpu 4bit"]}) == 3
    assert keys["cpu"] != hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()

    # narrate() records the runtime the models resolved to; the old take is pending under it, rendered again.
    fresh = NarrationProject.open(project.folder)
    assert fresh.runtime == Runtime("cpu", "4bit") and fresh.status(first) == PENDING  # the last one recorded
    result = narrate(fresh, synthesizer, segment_ids=(first.id, second.id))
    assert result.rendered == 2
    assert json.loads((project.folder / "runtime.json").read_text()) == {"device": "cpu", "precision": "fp32"}
    reopened = NarrationProject.open(project.folder)
    assert reopened.runtime == cpu and reopened.status(first) == reopened.status(second) == NEEDS_CHECK
    reopened.use_runtime(gpu)  # resumed on a GPU in 4-bit: every take of the CPU run is pending
    assert reopened.status(first) == reopened.status(second) == PENDING
    reopened.use_runtime(cpu)  # and back: the CPU takes are found again
    assert reopened.status(first) == NEEDS_CHECK

    (project.folder / "runtime.json").write_text("[1, 2]")
    with pytest.raises(ProjectError, match="runtime.json is damaged"):
        NarrationProject.open(project.folder)
