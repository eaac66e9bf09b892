"""A book with a narrator and two character voices, end to end on the tiny models: planned voices,
export with SRT/WebVTT/JSON sidecars whose cues are the assembly's own boundaries, M4B chapters that
agree with the cues, and a pronunciation edit that re-renders exactly the segments whose text changed."""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import srt
import webvtt

from engine.book.importer import Book, Chapter
from engine.book.narration import create_project, narrate, segment_budget
from engine.book.plan import NarrationSettings
from engine.book.project import NarrationProject
from engine.book.project_export import chapter_audio, export_project
from engine.config import ModelChoice
from engine.text.pronunciation import PronunciationRule
from engine.voices import VoiceLibrary

RATE = 16000
BOOK = Book("Voices", "A. Author", (
    Chapter("Arrival", 'The train stopped. "Is this the place?" asked the girl.\n\n'
                       "[voice: Bob]Yes. This is Lyon, and the GUI is broken.[/voice] The porter smiled."),
    Chapter("Night", 'Night fell. "Sleep now," she said. The GUI glowed.\n\n[voice: bob]Good night.[/voice]'),
))


@pytest.fixture(scope="module")
def synth(tiny_models):
    from engine.speech.synth import Synthesizer

    return Synthesizer.load(ModelChoice(str(tiny_models["lm"]), str(tiny_models["codec"]), device="cpu"))


def voice(library: VoiceLibrary, name: str, seed: int):
    rng = np.random.default_rng(seed)
    transcript = "The quick brown fox jumps over the lazy dog, near the quiet river bank. " * (3 + seed)
    return library.add(name, rng.normal(0, 0.1, 16000).astype(np.float32), transcript,
                       tuple(int(c) for c in rng.integers(0, 65536, 50)), "tiny")


def ffmpeg_chapters(path: Path) -> list[tuple[int, int]]:
    """The file's chapter marks as ffmpeg reads them, in samples at 16 kHz."""
    import imageio_ffmpeg

    text = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"],
                          capture_output=True, text=True, check=True).stdout
    marks = re.findall(r"\[CHAPTER\]\nTIMEBASE=(\d+)/(\d+)\nSTART=(\d+)\nEND=(\d+)", text)
    return [(round(int(s) * int(n) * RATE / int(d)), round(int(e) * int(n) * RATE / int(d))) for n, d, s, e in marks]


def ms(samples: int) -> int:
    return round(samples * 1000 / RATE)


@pytest.mark.slow
def test_a_three_voice_book_exports_exact_cues_and_a_rule_edit_rerenders_only_what_changed(tmp_path, synth):
    library = VoiceLibrary(tmp_path / "library")
    narrator, alice, bob = (voice(library, name, seed) for seed, name in enumerate(("Narrator", "Alice", "Bob")))
    settings = NarrationSettings(lm="tiny-lm", codec="tiny-codec", base_seed=7, dialogue_voice="Alice")
    budget = segment_budget(synth, narrator.codes, narrator.transcript)
    cast = [(v, *segment_budget(synth, v.codes, v.transcript)) for v in (alice, bob)]
    project = create_project(tmp_path / "p", BOOK, narrator, settings, max_tokens=budget[0], tokens_per_char=budget[1],
                             cast=cast)

    # The planned segments carry the right voice, one voice each.
    spoken = [(project.voice_of(s).name, s.text) for _, s in project.segments()]
    assert spoken == [
        ("Narrator", "The train stopped."), ("Alice", '"Is this the place?"'), ("Narrator", "asked the girl."),
        ("Bob", "Yes. This is Lyon, and the GUI is broken."), ("Narrator", "The porter smiled."),
        ("Narrator", "Night fell."), ("Alice", '"Sleep now,"'), ("Narrator", "she said. The GUI glowed."),
        ("Bob", "Good night."),
    ]
    assert narrate(project, synth).rendered == len(spoken)

    # Export an M4B and a FLAC of the book, with every sidecar.
    files = export_project(project, tmp_path / "book.m4b", "m4b", subtitles=("srt", "vtt", "json"))
    assert [f.name for f in files] == ["book.m4b", "book.srt", "book.vtt", "book.timings.json"]
    timings = json.loads((tmp_path / "book.timings.json").read_text())
    (flac, flac_json) = export_project(project, tmp_path / "book.flac", "flac", subtitles=("json",))
    assert json.loads(flac_json.read_text()) == timings
    total = timings["samples"]
    assert sf.info(flac).frames == total

    # Per chapter: each file has its own sidecars, starting at 0 and ending with the chapter.
    folder = tmp_path / "chapters"
    per_chapter = export_project(project, folder, "wav", per_chapter=True, subtitles=("srt",))
    assert [p.suffix for p in per_chapter] == [".wav", ".wav", ".srt", ".srt"]
    for wav, subtitle in zip(per_chapter[:2], per_chapter[2:]):
        chapter_cues = list(srt.parse(subtitle.read_text()))
        assert subtitle.stem == wav.stem and chapter_cues[0].start.total_seconds() == 0
        assert round(chapter_cues[-1].end.total_seconds() * 1000) == ms(sf.info(wav).frames)

    # The cues are the assembly's own boundaries, to the sample: each take's span from the join.
    offset, expected_speech, chapter_marks = 0, [], []
    for index in range(len(project.chapters)):
        wave, spans = chapter_audio(project, index)
        expected_speech += [(offset + s, offset + e) for s, e in spans]
        chapter_marks.append((offset, offset + len(wave)))
        offset += len(wave)
    cues = timings["cues"]
    assert offset == total and [(c["speech_start"], c["speech_end"]) for c in cues] == expected_speech
    assert [c["segment"] for c in cues] == [s.id for _, s in project.segments()]
    assert [(c["voice"], c["text"]) for c in cues] == spoken
    assert cues[0]["start"] == 0 and cues[-1]["end"] == total
    assert all(a["end"] == b["start"] for a, b in zip(cues, cues[1:]))  # no gap, no overlap
    for a, b in zip(cues, cues[1:]):  # a cue starts where its take starts, or mid-crossfade
        assert b["start"] == (b["speech_start"] if b["speech_start"] >= a["speech_end"]
                              else (a["speech_end"] + b["speech_start"]) // 2)

    # SRT and WebVTT parse with the standard parsers, carry the same times (to the millisecond) and tile the audio.
    subs = list(srt.parse((tmp_path / "book.srt").read_text()))
    assert [(round(s.start.total_seconds() * 1000), round(s.end.total_seconds() * 1000)) for s in subs] == \
        [(ms(c["start"]), ms(c["end"])) for c in cues]
    assert [s.content for s in subs] == [t for _, t in spoken]
    assert subs[0].start.total_seconds() == 0 and round(subs[-1].end.total_seconds() * 1000) == ms(total)
    captions = webvtt.read(str(tmp_path / "book.vtt"))
    assert [c.identifier for c in captions] == [c["segment"] for c in cues]
    assert [(c.start, c.end) for c in captions] == [(_vtt(s.start), _vtt(s.end)) for s in subs]

    # The M4B's chapter marks are the JSON's, and each chapter starts with its first cue.
    assert ffmpeg_chapters(tmp_path / "book.m4b") == chapter_marks
    assert [(m["start"], m["end"]) for m in timings["chapters"]] == chapter_marks
    firsts = [next(c["start"] for c in cues if c["segment"].startswith(f"{i + 1}.")) for i in range(2)]
    assert firsts == [start for start, _ in chapter_marks]

    # A pronunciation rule re-renders exactly the segments whose normalized text changed.
    before = {s.id: s.text for _, s in project.segments()}
    takes_before = set(p.name for p in (project.folder / "takes").iterdir())
    rule = PronunciationRule("GUI", "gooey")
    changed = project.update_settings(dataclasses.replace(project.settings, pronunciations=(rule,)))
    after = {s.id: s.text for _, s in project.segments()}
    assert after.keys() == before.keys()  # same plan: ids kept
    assert changed == [i for i in before if before[i] != after[i]] == ["1.4", "2.3"]
    assert narrate(project, synth).rendered == 2
    assert NarrationProject.open(project.folder).find("1.4").text == "Yes. This is Lyon, and the gooey is broken."
    new_files = set(p.name for p in (project.folder / "takes").iterdir()) - takes_before
    assert len(new_files) == 4  # one .flac and one .json per changed segment; nothing else rendered
    # A pause change re-plans but changes no take.
    assert project.update_settings(dataclasses.replace(project.settings, paragraph_pause=1.2)) == []
    assert narrate(project, synth).rendered == 0


def _vtt(delta) -> str:
    total_ms = round(delta.total_seconds() * 1000)
    h, rest = divmod(total_ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, milli = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{milli:03d}"
