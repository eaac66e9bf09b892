"""Per-segment control and re-planning: pauses, voice overrides, hand edits and locks survive a new
plan; the take keys decide what is rendered again; quality mode hears the project's language and can
regenerate one segment until it passes."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine.book.importer import Book, Chapter
from engine.book.narration import TakeJob, create_project, render_segment
from engine.book.plan import NarrationSettings
from engine.book.project import DONE, PENDING, NarrationProject, TakeRecord
from engine.book.project_export import chapter_audio
from engine.errors import SettingsError
from engine.text.pronunciation import PronunciationRule
from engine.voices import VoiceLibrary

BOOK = Book("Control", "", (
    Chapter("One", "The GUI is here. Second sentence.\n\nA new paragraph. [voice: Bob]Bob speaks about the GUI.[/voice]"),
    Chapter("Two", "Nothing about interfaces here."),
))


def make_voice(library, name, seed):
    rng = np.random.default_rng(seed)
    return library.add(name, rng.normal(0, 0.1, 16000).astype(np.float32), "A short transcript of the clip.",
                       tuple(int(c) for c in rng.integers(0, 65536, 60)), "tiny")


@pytest.fixture()
def project(tmp_path):
    library = VoiceLibrary(tmp_path / "library")
    narrator, bob, alice = (make_voice(library, n, s) for s, n in enumerate(("Narrator", "Bob", "Alice")))
    settings = NarrationSettings(lm="tiny-lm", codec="tiny-codec", base_seed=1, paragraph_pause=0.5)
    return create_project(tmp_path / "p", BOOK, narrator, settings, max_tokens=6, tokens_per_char=0.2,
                          cast=[(bob, 6, 0.2), (alice, 6, 0.2)])


def fake_take(project, segment_id, seconds=0.5):
    """A finished take written through the project's own store (a real FLAC and its .json)."""
    segment = project.find(segment_id)
    audio = (0.2 * np.sin(np.arange(int(seconds * 16000)) / 5)).astype(np.float32)
    record = TakeRecord(project.take_key(segment), segment.chosen, project.take_seed(segment), "end", seconds, 25)
    project.write_take(segment, segment.chosen, audio, record)


def test_replanning_keeps_ids_takes_and_what_the_user_set(project):
    ids = [s.id for _, s in project.segments()]
    assert [project.find(i).text for i in ids] == ["The GUI is here.", "Second sentence.", "A new paragraph.",
                                                   "Bob speaks about the GUI.", "Nothing about interfaces here."]
    for segment_id in ids:
        fake_take(project, segment_id)
    alice = project.cast.names()["Alice"]
    project.set_pauses(["1.3"], after=1.5, before=0.25)
    project.set_voice(["2.1"], alice)
    fake_take(project, "2.1")
    project.edit_segment("1.1", "The G U I is here!")
    fake_take(project, "1.1")
    project.lock(["1.4"])
    keys = {i: project.take_key(project.find(i)) for i in ids}

    # A pronunciation rule and a new paragraph pause: every chapter is planned again.
    rule = PronunciationRule("GUI", "gooey")
    changed = project.update_settings(dataclasses.replace(project.settings, pronunciations=(rule,), paragraph_pause=0.8))
    assert changed == []  # 1.1 was edited by hand, 1.4 is locked: no chosen take changed
    assert [s.id for _, s in project.segments()] == ids
    assert project.find("1.1").text == "The G U I is here!" and project.find("1.1").planned == "The gooey is here."
    assert project.find("1.4").text == "Bob speaks about the GUI."  # locked: its text and take are kept
    assert (project.find("1.3").pause_after, project.find("1.3").pause_before) == (1.5, 0.25)  # the user's pauses
    assert project.find("1.2").pause_after == 0.8  # the new paragraph pause
    assert project.find("2.1").voice == alice  # the user's voice
    assert all(project.status(project.find(i)) == DONE for i in ids)

    # An audio setting changes every key but the locked one; unlocking releases it.
    changed = project.update_settings(dataclasses.replace(project.settings, temperature=0.5))
    assert changed == [i for i in ids if i != "1.4"] and project.take_key(project.find("1.4")) == keys["1.4"]
    with pytest.raises(SettingsError, match="1.4 is locked"):
        project.edit_segment("1.4", "Other words.")
    with pytest.raises(SettingsError, match="1.4 is locked"):
        project.new_take("1.4")
    project.lock(["1.4"], locked=False)
    assert project.find("1.4").text == "Bob speaks about the GUI." and project.status(project.find("1.4")) == PENDING
    assert project.replan() == ["1.4"]  # the rule now reaches it
    assert project.find("1.4").text == "Bob speaks about the gooey."
    with pytest.raises(SettingsError, match="no take yet"):
        project.lock(["1.4"])
    reopened = NarrationProject.open(project.folder)
    assert [dataclasses.asdict(s) for _, s in reopened.segments()] == [dataclasses.asdict(s) for _, s in project.segments()]


def test_pauses_before_and_after_shape_the_assembly(project):
    for _, segment in project.segments([0]):
        fake_take(project, segment.id, seconds=0.3)
    _, spans = chapter_audio(project, 0)
    project.set_pauses(["1.2"], before=1.0)
    project.set_pauses(["1.1"], before=0.5)
    _, moved = chapter_audio(project, 0)
    shift = lambda i: (moved[i][0] - spans[i][0]) / 16000  # noqa: E731
    assert moved[0][0] == spans[0][0] + int(0.5 * 16000) - 0  # a lead silence before the first take
    assert shift(1) == pytest.approx(1.5, abs=0.02)  # 0.5 s lead, and the crossfade to 1.2 became 1.0 s of silence
    assert shift(3) == pytest.approx(shift(1), abs=1e-9)
    with pytest.raises(SettingsError, match="0 to 60 seconds"):
        project.set_pauses(["1.1"], after=-1)


def test_a_changed_voice_rerenders_only_the_selection(project):
    ids = [s.id for _, s in project.segments()]
    for segment_id in ids:
        fake_take(project, segment_id)
    alice = project.cast.names()["Alice"]
    project.set_voice(["1.1", "2.1"], alice)
    assert [i for i in ids if project.status(project.find(i)) == PENDING] == ["1.1", "2.1"]
    project.set_voice(["1.1", "2.1"], "")  # back to the narrator: the old takes are found again
    assert all(project.status(project.find(i)) != PENDING for i in ids)
    project.set_chapter_voice(0, alice)  # the chapter's unmarked text; the user's choice on 1.1 wins
    assert [project.find(i).voice for i in ids[:4]] == ["", alice, alice, project.cast.names()["Bob"]]


# ---------------------------------------------------------------- quality mode, on the tiny models

@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    from engine.models.tiny_verifiers import write_tiny_whisper

    return str(write_tiny_whisper(tmp_path_factory.mktemp("whisper") / "whisper"))


@pytest.mark.slow
def test_quality_mode_hears_the_project_language_and_regenerates_until_it_passes(tmp_path, tiny_models, whisper):
    from engine.book.quality import VerifierModels, regenerate_until_passes
    from engine.config import ModelChoice
    from engine.speech.synth import Synthesizer
    from engine.verify.scoring import WhisperASR

    synth = Synthesizer.load(ModelChoice(str(tiny_models["lm"]), str(tiny_models["codec"]), device="cpu"))
    library = VoiceLibrary(tmp_path / "library")
    narrator = make_voice(library, "Narrator", 0)
    settings = NarrationSettings(lm="tiny-lm", codec="tiny-codec", base_seed=1, language="ja-JP", candidates=2,
                                 asr=whisper, max_error_rate=1000.0)
    book = Book("Q", "", (Chapter("One", "\u3053\u3093\u306b\u3061\u306f\u3002\u732b\u304c\u3044\u308b\u3002"),))
    project = create_project(tmp_path / "p", book, narrator, settings, max_tokens=60, tokens_per_char=0.5)
    quality = VerifierModels().renderer(project, "cpu")
    (segment,) = project.chapters[0].segments
    jobs, takes = [], []

    def render(synthesizer, job):
        """Quality mode, the finish reason read as "end": the tiny random LM never says the end token (a
        real one does), so every take would hit the length cap and never pass."""
        jobs.append(job)
        takes.append(quality(synthesizer, job))
        return dataclasses.replace(takes[-1], finish_reason="end")

    # Whisper hears Japanese (the project's language), not the "zh" a CJK text used to get.
    record = render_segment(project, synth, segment.id, render=render)
    asr = WhisperASR(whisper, device="cpu")
    assert record.transcript == takes[0].transcript == asr.transcribe(takes[0].audio, "ja")
    assert asr.transcribe(takes[0].audio, "ja") != asr.transcribe(takes[0].audio, "zh")  # the language matters
    assert record.status == DONE  # a huge max_error_rate: it passes at once
    assert regenerate_until_passes(project, synth, segment.id, render, max_tries=3) == (record, 0)

    # A strict limit: three new takes, none passes, the one with the lowest error rate is chosen.
    project.update_settings(dataclasses.replace(project.settings, max_error_rate=0.0))
    project.new_take(segment.id)
    chosen, tries = regenerate_until_passes(project, synth, segment.id, render, max_tries=3)
    segment = project.find(segment.id)
    assert tries == 3 and segment.takes == 4
    rates = [project.record(segment, t).scores["error_rate"] for t in range(segment.takes)]
    assert chosen.scores["error_rate"] == min(rates) and segment.chosen == int(np.argmin(rates))
    assert isinstance(jobs[0], TakeJob) and jobs[0].voice_key == ""
