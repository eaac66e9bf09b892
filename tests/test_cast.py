"""Several voices in one book: voice markup, the dialogue rule, chapter voices, the cast on disk, take keys."""
from __future__ import annotations

import numpy as np
import pytest

from engine.book.importer import Book, Chapter
from engine.book.narration import create_project, narrate, segment_cap
from engine.book.plan import NarrationSettings, plan_segments
from engine.book.project import PENDING, NarrationProject
from engine.errors import InputTextError, ProjectError, SettingsError
from engine.text.cast_markup import check_voice_markup, rename_in_markup, split_voices
from engine.voices import VoiceLibrary

NAMES = {"Narrator": "", "Alice": "alice", "Bob": "bob"}
SOURCE = ('It was late. "Who is there?" she asked, "and why?"\n\n'
          "[voice: bob]I am Bob. \"Quoted\" words stay mine.\n\nStill me.[/voice] The door closed.")


def voices_of(segments):
    return [(s.voice, s.text) for s in segments]


def test_markup_and_dialogue_give_each_segment_one_voice():
    settings = NarrationSettings(dialogue_voice="alice", paragraph_pause=0.5)
    segments = plan_segments(SOURCE, settings, 400, 1.0, names=NAMES, id_prefix="1.")
    assert voices_of(segments) == [
        ("", "It was late."), ("alice", '"Who is there?"'), ("", "she asked,"), ("alice", '"and why?"'),
        ("bob", 'I am Bob. "Quoted" words stay mine.'), ("bob", "Still me."), ("", "The door closed."),
    ]
    assert [s.pause_after for s in segments] == [0, 0, 0, 0.5, 0.5, 0, 2.0]
    # Without a dialogue voice the quotes are the narrator's; a chapter voice takes the unmarked text.
    plain = plan_segments(SOURCE, NarrationSettings(), 400, 1.0, names=NAMES, default_voice="alice")
    assert [v for v, _ in voices_of(plain)] == ["alice", "bob", "bob", "alice"]
    # Each voice is split to its own budget: Bob's 10-token budget cuts his passage into short pieces.
    tight = plan_segments(SOURCE, NarrationSettings(), 400, 1.0, names=NAMES, budgets={"bob": (10, 1.0)})
    assert all(len(s.text) <= 10 or " " not in s.text for s in tight if s.voice == "bob")
    assert len([s for s in tight if s.voice == "bob"]) > 2


def test_an_open_quote_runs_to_the_end_of_its_paragraph_and_wordless_bits_join():
    runs, open_passage = split_voices('"Run, she said. Run!\n', NAMES, dialogue="alice")
    assert runs[0].voice == "alice" and open_passage is None
    runs, _ = split_voices('"Hi". He nodded.', NAMES, dialogue="alice")
    assert [(r.voice, r.text) for r in runs] == [("alice", '"Hi".'), ("", "He nodded.")]
    runs, _ = split_voices("\u201cCurly,\u201d she said.", NAMES, dialogue="alice")
    assert [(r.voice, r.text) for r in runs] == [("alice", "\u201cCurly,\u201d"), ("", "she said.")]


@pytest.mark.parametrize("text, where, what", [
    ("Fine.\n  [voice: Carol]Hi[/voice]", "Line 2, column 3", "unknown voice 'Carol'"),
    ("[voice: Bob]a\n[voice: Alice]b[/voice][/voice]", "Line 2, column 1", "do not nest"),
    ("ok[/voice]", "Line 1, column 3", "closes no passage"),
    ("x\n\n[VOICE: bob]never closed", "Line 3, column 1", "never closed"),
    ("[voice]x[/voice]", "Line 1, column 1", "needs a name"),
    ("[voice: Bob x", "Line 1, column 1", "broken voice tag"),
])
def test_bad_markup_names_line_column_and_the_valid_names(text, where, what):
    with pytest.raises(InputTextError) as error:
        check_voice_markup(text, NAMES)
    assert str(error.value).startswith(where) and what in str(error.value)
    if "unknown" in what or "needs a name" in what:
        assert "Valid names: Alice, Bob, Narrator." in str(error.value)
    assert rename_in_markup("[voice: BOB]x[/voice]", "bob", "Robert") == "[voice: Robert]x[/voice]"


def make_voice(library: VoiceLibrary, name: str, seed: int, transcript: str):
    codes = tuple(int(c) for c in np.random.default_rng(seed).integers(0, 65536, 60))
    clip = np.random.default_rng(seed).normal(0, 0.1, 16000).astype(np.float32)
    return library.add(name, clip, transcript, codes, "tiny")


@pytest.fixture()
def cast_voices(tmp_path):
    library = VoiceLibrary(tmp_path / "library")
    transcript = "The quick brown fox jumps over the lazy dog, near the quiet river bank. " * 4
    return {name: make_voice(library, name, seed, transcript[: 200 + 40 * seed])
            for seed, name in enumerate(("Narrator", "Alice", "Bob"))}


def make_cast_project(folder, voices, **settings):
    book = Book("Cast", "", (Chapter("One", SOURCE), Chapter("Two", "Plain narration. [voice: Alice]Alice here.[/voice]")))
    settings = NarrationSettings(lm="tiny-lm", codec="tiny-codec", base_seed=3, **settings)
    cast = [(voices["Alice"], 300, 0.2), (voices["Bob"], 200, 0.3)]
    return create_project(folder, book, voices["Narrator"], settings, max_tokens=400, tokens_per_char=0.25, cast=cast)


def test_the_cast_lives_in_the_project_and_take_keys_cover_the_voice(tmp_path, cast_voices):
    project = make_cast_project(tmp_path / "p", cast_voices, dialogue_voice="Alice")
    alice, bob = (project.cast.names()[n] for n in ("Alice", "Bob"))
    assert project.settings.dialogue_voice == alice  # named at creation, stored by key
    reopened = NarrationProject.open(project.folder)
    assert [(m.name, m.max_tokens) for m in reopened.cast.members()] == [("Narrator", 400), ("Alice", 300), ("Bob", 200)]
    assert (reopened.folder / "cast" / alice / "reference.flac").is_file()
    segments = [s for _, s in reopened.segments()]
    assert {s.voice for s in segments} == {"", alice, bob}
    assert [s.voice for s in reopened.chapters[1].segments] == ["", alice]

    # The take key covers the voice: moving one segment to Bob changes exactly its key.
    keys = {s.id: reopened.take_key(s) for s in segments}
    target = reopened.chapters[1].segments[0]
    (moved,) = reopened.set_voice([target.id], bob)
    changed = [s.id for _, s in reopened.segments() if reopened.take_key(s) != keys[s.id]]
    assert changed == [target.id] and moved.voice == bob and "voice" in moved.user
    # Renaming keeps keys and rewrites the markup; removing a voice in use is refused with the users named.
    reopened.rename_voice(bob, "Robert")
    assert "[voice: Robert]" in reopened.chapters[0].source
    assert all(reopened.take_key(s) == keys[s.id] for _, s in reopened.segments() if s.id != target.id)
    with pytest.raises(ProjectError, match=r"Robert is still used \(1\.5, 1\.6, 2\.1"):
        reopened.remove_voice(bob)
    with pytest.raises(ProjectError, match="no voice 'nobody'"):
        reopened.set_voice([target.id], "nobody")
    assert NarrationProject.open(project.folder).find(target.id).voice == bob


def test_bad_markup_or_an_unknown_dialogue_voice_writes_nothing(tmp_path, cast_voices):
    book = Book("Bad", "", (Chapter("One", "Fine."), Chapter("Two", "ok\n[voice: Carol]x[/voice]")))
    with pytest.raises(InputTextError, match=r"^Chapter 2 \(Two\): Line 2, column 1: unknown voice 'Carol'.*Valid names: Alice, Narrator"):
        create_project(tmp_path / "p", book, cast_voices["Narrator"], NarrationSettings(), max_tokens=400,
                       tokens_per_char=0.25, cast=[(cast_voices["Alice"], 300, 0.2)])
    with pytest.raises(SettingsError, match="dialogue voice 'Zed'"):
        make_cast_project(tmp_path / "q", cast_voices, dialogue_voice="Zed")
    assert not (tmp_path / "p").exists() and not (tmp_path / "q").exists()


def test_each_segment_is_rendered_in_its_own_voice(tmp_path, tiny_models, cast_voices):
    from engine.config import ModelChoice
    from engine.speech.render import speak_segment
    from engine.speech.synth import Synthesizer

    synth = Synthesizer.load(ModelChoice(str(tiny_models["lm"]), str(tiny_models["codec"]), device="cpu"))
    book = Book("Two voices", "", (Chapter("One", 'Hi. "Yes." [voice: Bob]No.[/voice]'),))
    cast = [(cast_voices["Alice"], 300, 0.2), (cast_voices["Bob"], 200, 0.3)]
    project = create_project(tmp_path / "p", book, cast_voices["Narrator"],
                             NarrationSettings(lm="tiny-lm", codec="tiny-codec", base_seed=3, dialogue_voice="Alice"),
                             max_tokens=400, tokens_per_char=0.25, cast=cast)
    assert narrate(project, synth).rendered == 3
    for segment in project.chapters[0].segments:
        member = project.voice_of(segment)
        alone = speak_segment(synth, segment.text, member.voice.to_voice(), project.settings.sampling(
            project.take_seed(segment)), max_new_tokens=segment_cap(segment.text, member.tokens_per_char)).takes[0]
        take = project.load_take(segment)  # stored as 16-bit FLAC: equal to the quantization step
        assert len(take) == len(alone.audio) and np.abs(take - np.clip(alone.audio, -1, 1)).max() <= 1 / 32768 + 1e-7
        assert project.status(segment) != PENDING
    assert [project.voice_of(s).name for s in project.chapters[0].segments] == ["Narrator", "Alice", "Bob"]


@pytest.mark.slow
def test_narrate_cli_takes_a_cast_and_a_dialogue_voice(tmp_path, tiny_models, cast_voices):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    library = VoiceLibrary(tmp_path / "library")
    files = {name: library.export(voice.id, tmp_path / f"{name}.llasavoice") for name, voice in cast_voices.items()}
    book = tmp_path / "book.txt"
    book.write_text('Chapter 1\n\nShe waved. "Hello!" [voice: Bobby]Hi.[/voice]\n', encoding="utf-8")
    project = tmp_path / "project"

    def run(*extra):
        args = ["narrate", project, "--text-file", book, "--voice", files["Narrator"], "--lm", tiny_models["lm"],
                "--codec", tiny_models["codec"], "--seed", "1", *extra]
        return subprocess.run([sys.executable, str(root / "main.py"), *map(str, args)], cwd=root,
                              capture_output=True, text=True, timeout=600)

    for extra, message in [
        (["--cast", f"Alice={files['Alice']}"], "Chapter 1 (Chapter 1): Line 3, column 21: unknown voice 'Bobby'"),
        (["--cast", f"Bobby={files['Bob']}", "--dialogue-voice", "Alice"], "--dialogue-voice Alice: not in the cast"),
        (["--cast", "Bobby"], "write NAME=FILE.llasavoice"),
        (["--cast", f"Narrator={files['Bob']}"], "is taken"),
    ]:
        result = run(*extra)
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 2 and last.startswith("error: ") and message in last, result.stderr
        assert not project.exists()
    result = run("--cast", f"Alice={files['Alice']}", "--cast", f"Bobby={files['Bob']}", "--dialogue-voice", "alice")
    assert result.returncode == 0, result.stderr
    assert "voices: Narrator, Alice, Bobby" in result.stderr
    opened = NarrationProject.open(project)
    assert [(opened.voice_of(s).name, s.text) for _, s in opened.segments()] == [
        ("Narrator", "Chapter one"), ("Narrator", "She waved."), ("Alice", '"Hello!"'), ("Bobby", "Hi.")]
    assert all(opened.record(s) is not None for _, s in opened.segments())
