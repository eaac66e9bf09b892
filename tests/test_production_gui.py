"""The project window's production tabs with the real bridge and engine thread (tiny models): the cast
panel (add from library through the engine's budget measurement, rename, refused removal, dialogue
voice), multi-select voice/pause/lock controls, the pronunciation editor's preview and apply, and
"regenerate until it passes" refused with a clear message when quality mode is off."""
from __future__ import annotations

import os

import numpy as np
import pytest
import srt

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QItemSelectionModel, QSettings, Qt  # noqa: E402

from app.settings import AppSettings  # noqa: E402
from engine.book.importer import Book, Chapter  # noqa: E402
from engine.book.narration import create_project  # noqa: E402
from engine.book.plan import NarrationSettings  # noqa: E402
from engine.book.project import PENDING, TakeRecord  # noqa: E402
from engine.voices import VoiceLibrary  # noqa: E402
from gui_session import running_main_window  # noqa: E402

WAIT_MS = 300_000  # only guards against a hang; nothing is timed
TRANSCRIPT = "The quick brown fox jumps over the lazy dog, near the quiet river bank. " * 4
BOOK = Book("Tabs", "", (Chapter("One", 'The GUI woke. "Hello," said Ann. [voice: Bob]Bob uses the GUI.[/voice]'),))


@pytest.fixture
def window(qtbot, tmp_path, tiny_models):
    settings = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    settings.voices_folder, settings.device = tmp_path / "voices", "cpu"
    settings.lm, settings.codec, settings.seed = str(tiny_models["lm"]), str(tiny_models["codec"]), 5
    library = VoiceLibrary(settings.voices_folder)
    rng = np.random.default_rng(0)
    voices = {name: library.add(name, rng.normal(0, 0.1, 16000).astype(np.float32), TRANSCRIPT,
                                rng.integers(0, 65536, 80), "tiny") for name in ("Narrator", "Bob", "Ann")}
    project = create_project(tmp_path / "p", BOOK, voices["Narrator"],
                             NarrationSettings(lm=settings.lm, codec=settings.codec, base_seed=2),
                             max_tokens=400, tokens_per_char=0.1, cast=[(voices["Bob"], 400, 0.1)])
    for _, segment in project.segments():  # finished takes, written through the project's own store
        audio = (0.2 * np.sin(np.arange(8000) / 5)).astype(np.float32)
        project.write_take(segment, 0, audio, TakeRecord(project.take_key(segment), 0, 1, "end", 0.5, 25))
    for main in running_main_window(qtbot, settings, library):
        yield main.projects.open_folder(project.folder)


def select_rows(table, rows):
    table.clearSelection()
    model = table.selectionModel()
    for r in rows:
        model.select(table.model().index(r, 0), QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows)


def voice_cells(window):
    table = window.segment_table
    return [table.item(r, 6).text() for r in range(table.rowCount())]


@pytest.mark.slow
def test_production_tabs_edit_the_cast_segments_and_rules(qtbot, window):
    project, table = window.project, window.segment_table
    assert voice_cells(window) == ["Narrator", "Bob"]
    with qtbot.waitSignal(window.bridge.exported, timeout=WAIT_MS):  # the export dialog's subtitles choice
        window.export_to(project.folder.parent / "book.flac", "flac", subtitles=("srt",))
    cues = list(srt.parse((project.folder.parent / "book.srt").read_text()))
    assert [c.content for c in cues] == [s.text for _, s in project.segments()]
    cast = window.cast_panel
    assert [cast.cast_list.item(i).text() for i in range(cast.cast_list.count())] == \
        ["Narrator — 1 segment", "Bob — 1 segment"]

    # Add Ann from the library: the engine measures her budget first.
    cast.library_combo.setCurrentIndex(cast.library_combo.findText("Ann"))
    with qtbot.waitSignal(cast.plan_changed, timeout=WAIT_MS):
        qtbot.mouseClick(cast.add_button, Qt.MouseButton.LeftButton)
    ann = project.cast.names()["Ann"]
    assert project.cast.get(ann).max_tokens > 0 and cast.cast_list.item(2).text() == "Ann — 0 segments"
    # Quoted speech to Ann: the book is planned again; the narrator's sentence is cut around the quote.
    cast.dialogue_combo.setCurrentIndex(cast.dialogue_combo.findText("Ann"))
    cast.dialogue_combo.activated.emit(cast.dialogue_combo.currentIndex())
    assert voice_cells(window) == ["Narrator", "Ann", "Narrator", "Bob"]
    assert [window.segment_table.status_text(s.id) for s in project.chapters[0].segments] == \
        ["pending", "pending", "pending", "done"]
    # Bob cannot go while he reads a segment; renaming him rewrites the markup.
    cast.cast_list.setCurrentRow(1)
    qtbot.mouseClick(cast.remove_button, Qt.MouseButton.LeftButton)
    assert "Bob is still used (1." in window.last_message.text()
    cast.name_edit.setText("Robert")
    qtbot.mouseClick(cast.rename_button, Qt.MouseButton.LeftButton)
    assert "[voice: Robert]" in project.chapters[0].source and voice_cells(window)[-1] == "Robert"

    # Select two rows: give them Robert's voice, set pauses, keep the last take.
    controls = window.segment_controls
    select_rows(table, [0, 3])
    assert controls.summary.text() == "2 segment(s) selected"
    controls.voice_combo.setCurrentIndex(controls.voice_combo.findText("Robert"))
    qtbot.mouseClick(controls.voice_button, Qt.MouseButton.LeftButton)
    assert voice_cells(window)[0] == "Robert" and table.status_text(project.chapters[0].segments[0].id) == "pending"
    assert table.status_text(project.chapters[0].segments[3].id) == "done"  # it already was Robert's
    controls.after_box.setValue(1.25)
    qtbot.mouseClick(controls.pause_button, Qt.MouseButton.LeftButton)
    assert [project.find(i).pause_after for i in ("1.1", "1.4")] == [1.25, 1.25]
    select_rows(table, [3])
    qtbot.mouseClick(controls.lock_button, Qt.MouseButton.LeftButton)
    assert voice_cells(window)[3] == "Robert · kept"

    # A rule from the selected word: preview names exactly the segments it changes, apply re-plans.
    editor = window.pronunciation_editor
    select_rows(table, [0])
    cursor = window.text_editor.textCursor()
    cursor.setPosition(4)
    cursor.setPosition(7, cursor.MoveMode.KeepAnchor)
    window.text_editor.setTextCursor(cursor)
    qtbot.mouseClick(editor.use_selection_button, Qt.MouseButton.LeftButton)
    assert editor.pattern_edit.text() == "GUI"
    editor.replacement_edit.setText("gooey")
    qtbot.mouseClick(editor.preview_button, Qt.MouseButton.LeftButton)
    assert editor.preview_text.toPlainText() == "1 segment(s) change:\n1.1: The GUI woke. → The gooey woke."
    assert project.settings.pronunciations == ()  # a preview changes nothing
    with qtbot.waitSignal(editor.plan_changed) as changed:
        qtbot.mouseClick(editor.add_button, Qt.MouseButton.LeftButton)
    assert changed.args == [["1.1"]] and editor.rule_list.item(0).text() == "GUI → gooey"
    assert project.find("1.4").text == "Bob uses the GUI."  # kept: locked before the rule came
    assert table.item(0, 2).text() == "The gooey woke." and project.status(project.find("1.1")) == PENDING

    # Regenerate until it passes needs quality mode: the engine says so, the window stays usable.
    select_rows(table, [1])
    with qtbot.waitSignal(window.bridge.failed, timeout=WAIT_MS):
        qtbot.mouseClick(controls.until_pass_button, Qt.MouseButton.LeftButton)
    assert "uses quality mode" in window.last_message.text() and not window.is_running()


@pytest.mark.slow
def test_new_project_dialog_takes_the_cast_the_markup_names(qtbot, window, tmp_path):
    from PySide6.QtWidgets import QApplication

    dialog_owner = next(w for w in QApplication.topLevelWidgets() if type(w).__name__ == "MainWindow")
    book = tmp_path / "cast_book.txt"
    book.write_text("Chapter One\n\nShe knocked. [voice: Ann]Come in.[/voice]\n", encoding="utf-8")
    dialog_owner.new_project_action.trigger()
    dialog = dialog_owner.projects.dialog
    assert dialog.load_book(book)
    checked = [dialog.cast_list.item(i).text() for i in range(dialog.cast_list.count())
               if dialog.cast_list.item(i).checkState() == Qt.CheckState.Checked]
    assert checked == ["Ann"]  # named by the markup
    dialog.folder_edit.setText(str(tmp_path / "cast project"))
    dialog.voice_combo.setCurrentIndex(dialog.voice_combo.findText("Narrator"))
    with qtbot.waitSignal(dialog.created, timeout=WAIT_MS):
        qtbot.mouseClick(dialog.create_button, Qt.MouseButton.LeftButton)
    created = dialog_owner.projects.windows[-1].project
    assert [(created.voice_of(s).name, s.text) for _, s in created.segments()] == [
        ("Narrator", "Chapter One"), ("Narrator", "She knocked."), ("Ann", "Come in.")]
