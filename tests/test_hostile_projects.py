"""Hostile projects and books (issue 12, items 5, 6, 7 and 10): a damaged project.json, a cover pointing out of
the project, damaged take audio, quality mode without Whisper and a book without words."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from hostile import DAMAGE, assert_refused, call, project_with_takes, snapshot, tiny_project


def _set(meta: dict, where: str, value) -> None:
    """meta at JSON path `where` (a.b[0].c) = value."""
    import re

    keys = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", where)]
    target = meta
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value


DAMAGED_PROJECTS = [
    ("settings", [], "settings must be an object"),
    ("chapters[0].segments[1].text", None, "chapters[0].segments[1].text must be text, not null"),
    ("version", "1", "version must be a whole number"),
    ("title", 5, "title must be text"),
    ("chapters", {}, "chapters must be a list"),
    ("chapters[0].segments[0]", "Hello", "chapters[0].segments[0] must be an object"),
    ("chapters[0].segments[0].chosen", 3, "chapters[0].segments[0].chosen must be a take"),
    ("chapters[0].selected", "yes", "chapters[0].selected must be true/false"),
    ("settings.temperature", "hot", "settings.temperature must be a number"),
    ("settings.top_p", 7, "top_p must be in (0, 1]"),
    ("settings.base_seed", -1, "base_seed must be in 0 to"),
    ("max_tokens", None, "max_tokens must be a whole number"),
    ("cover", "../outside.jpg", "cover must be a file name inside the project"),
    ("cover", "/etc/passwd", "cover must be a file name inside the project"),
]


@pytest.mark.parametrize("where, value, message", DAMAGED_PROJECTS, ids=[f"{w}={v!r}" for w, v, _ in DAMAGED_PROJECTS])
def test_damaged_project_json_is_named_where_and_what(tmp_path, capsys, where, value, message):
    folder = tiny_project(tmp_path)
    meta = json.loads((folder / "project.json").read_text(encoding="utf-8"))
    _set(meta, where, value)
    (folder / "project.json").write_text(json.dumps(meta), encoding="utf-8")
    before = snapshot(folder)
    line = assert_refused(call(capsys, "narrate", folder), "project.json is damaged" if where != "cover" else "cover", message)
    assert "newer Llasa Studio" not in line
    assert snapshot(folder) == before


def test_a_cover_link_out_of_the_project_is_refused(tmp_path, capsys):
    folder = tiny_project(tmp_path)
    (tmp_path / "secret.jpg").write_bytes(b"not yours")
    (folder / "cover.jpg").symlink_to(tmp_path / "secret.jpg")
    meta = json.loads((folder / "project.json").read_text(encoding="utf-8"))
    (folder / "project.json").write_text(json.dumps(meta | {"cover": "cover.jpg"}), encoding="utf-8")
    assert_refused(call(capsys, "narrate", folder), "cover", "points outside the project folder")


# ---------------------------------------------------------------- item 7: damaged take audio


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_take_becomes_pending_on_open_and_export_refuses_cleanly(tmp_path, damage):
    from engine.book.project_export import export_project
    from engine.book.project import DONE, PENDING, NarrationProject
    from engine.errors import ProjectError

    folder = project_with_takes(tmp_path)
    project = NarrationProject.open(folder)
    first, second = [s for _, s in project.segments()]
    DAMAGE[damage](project.take_path(second))
    reopened = NarrationProject.open(folder)
    assert [reopened.status(first), reopened.status(second)] == [DONE, PENDING]
    assert len(reopened.notices) == 1 and "damaged" in reopened.notices[0]
    assert not project.take_path(second).exists()  # its .flac and .json are gone: it is simply pending
    with pytest.raises(ProjectError, match="not rendered yet"):
        export_project(reopened, tmp_path / "book.wav", "wav")
    # damaged after opening (another program, a disk error): export re-checks and refuses the same clean way
    DAMAGE[damage](project.take_path(first))
    with pytest.raises(ProjectError, match="damaged on disk"):
        export_project(project, tmp_path / "book.wav", "wav")
    assert project.status(first) == PENDING and not (tmp_path / "book.wav").exists()


@pytest.mark.slow
def test_resume_renders_a_damaged_take_again_and_exports(tiny_models, tmp_path, capsys):
    """End state: the damaged take is rendered again, the book exports; one warning says what happened."""
    from engine.book.project import DONE, NEEDS_CHECK, NarrationProject

    folder = project_with_takes(tmp_path, lm=tiny_models["lm"], codec=tiny_models["codec"])
    project = NarrationProject.open(folder)
    second = [s for _, s in project.segments()][1]
    DAMAGE["truncated"](project.take_path(second))
    result = call(capsys, "narrate", folder, "--device", "cpu", "--export", "wav", "--out", tmp_path / "book.wav")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert sum("warning:" in line and "damaged" in line for line in result.stderr.splitlines()) == 1
    assert "(1 this run)" in result.stderr
    project = NarrationProject.open(folder)
    # the tiny random LM never says "end", so the new take hits its cap: needs-check, exported as it is
    assert [project.status(s) for _, s in project.segments()] == [DONE, NEEDS_CHECK] and not project.notices
    assert sf.info(tmp_path / "book.wav").frames > 16000


# ---------------------------------------------------------------- item 5: quality mode without Whisper


def test_quality_mode_without_whisper_creates_nothing(tiny_models, tmp_path, capsys, monkeypatch):
    from engine.voices import VoiceLibrary

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))  # no model downloaded; nothing fetched
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    saved = VoiceLibrary(tmp_path / "lib").add("N", np.zeros(16000, np.float32) + 0.1, "Hello.", [1, 2, 3], "tiny")
    voice = VoiceLibrary(tmp_path / "lib").export(saved.id, tmp_path / "n.llasavoice")
    book = tmp_path / "book.txt"
    book.write_text("Chapter 1\n\nA short story.\n", encoding="utf-8")
    result = call(capsys, "narrate", tmp_path / "project", "--text-file", book, "--voice", voice, "--lm",
                  tiny_models["lm"], "--codec", tiny_models["codec"], "--candidates", "2")
    assert_refused(result, "Whisper", "not on this computer", "--asr none")
    assert not (tmp_path / "project").exists() and "Loading models" not in result.stderr


# ---------------------------------------------------------------- item 10: an empty book


@pytest.mark.parametrize("name, content", [("book.md", "#\n##\n\n###   \n\n#\n"), ("book.md", "# \n\n***\n\n---\n"),
                                           ("book.txt", "\n\n  \n...\n")])
def test_a_book_without_words_is_refused_before_creating(tmp_path, capsys, name, content):
    book = tmp_path / name
    book.write_text(content, encoding="utf-8")
    voice = tmp_path / "n.llasavoice"
    voice.write_bytes(b"checked after the book")
    result = call(capsys, "narrate", tmp_path / "project", "--text-file", book, "--voice", voice)
    assert_refused(result, name, "no text to narrate")
    assert not (tmp_path / "project").exists()
