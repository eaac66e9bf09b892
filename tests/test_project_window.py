"""The narration project window with the real bridge, engine thread and tiny models: create a project
through the dialog, narrate, play, edit, regenerate, choose takes, stop, export, errors."""
from __future__ import annotations

import os
import threading

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings, Qt  # noqa: E402
from PySide6.QtWidgets import QAbstractButton, QComboBox, QLineEdit, QPlainTextEdit  # noqa: E402

from app.bridge import EngineBridge  # noqa: E402
from gui_session import running_main_window  # noqa: E402
from app.settings import AppSettings  # noqa: E402
from engine.book.project import NarrationProject  # noqa: E402
from engine.voices import VoiceLibrary  # noqa: E402

WAIT_MS = 300_000  # only guards against a hang; nothing is timed
# A 2 s reference with a long transcript: a low speaking rate keeps the tiny LM's capped takes short.
TRANSCRIPT = "The quick brown fox jumps over the lazy dog, near the quiet river bank. " * 4
BOOK = ("Chapter One\n\nIt was a bright cold day.\n\nThe clocks were striking.\n\n"
        "Chapter Two\n\nA second chapter begins here.\n\nIt ends soon after.\n")


@pytest.fixture
def main(qtbot, tmp_path, tiny_models):
    settings = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    settings.voices_folder, settings.device = tmp_path / "voices", "cpu"
    settings.lm, settings.codec, settings.seed = str(tiny_models["lm"]), str(tiny_models["codec"]), 5
    library = VoiceLibrary(settings.voices_folder)
    codes = np.random.default_rng(0).integers(0, 65536, 100)
    library.add("Narrator", np.zeros(32000, np.float32), TRANSCRIPT, codes, "tiny")
    yield from running_main_window(qtbot, settings, library)


def create_through_dialog(qtbot, main, tmp_path, book_text=BOOK):
    book = tmp_path / "my_book.txt"
    book.write_text(book_text, encoding="utf-8")
    main.new_project_action.trigger()
    dialog = main.projects.dialog
    assert dialog.load_book(book) and dialog.chapter_list.count() == 2
    assert dialog.title_edit.text() == "my book" and dialog.folder_edit.text().endswith("my book")
    dialog.title_edit.selectAll()
    qtbot.keyClicks(dialog.title_edit, "The Clock Book")
    assert dialog.folder_edit.text().endswith("The Clock Book")  # the folder follows the title
    dialog.folder_edit.selectAll()
    qtbot.keyClicks(dialog.folder_edit, str(tmp_path / "project"))
    qtbot.keyClicks(dialog.author_edit, "A. Writer")
    assert dialog.voice_combo.currentText() == "Narrator"
    with qtbot.waitSignal(dialog.created, timeout=WAIT_MS):
        qtbot.mouseClick(dialog.create_button, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible() and len(main.projects.windows) == 1
    return main.projects.windows[-1]


def narrate(qtbot, window, button=None):
    with qtbot.waitSignal(window.bridge.narrated, timeout=WAIT_MS):
        qtbot.mouseClick(button or window.narrate_button, Qt.MouseButton.LeftButton)
    return window.last_result


def take_files(window) -> set[str]:
    return {p.name for p in (window.project.folder / "takes").iterdir()}


@pytest.mark.slow
def test_create_narrate_play_edit_regenerate_choose_and_export(qtbot, main, tmp_path):
    window = create_through_dialog(qtbot, main, tmp_path)
    project = window.project
    assert window.windowTitle().startswith("The Clock Book") and project.author == "A. Writer"
    assert [window.chapter_list.item(i).text() for i in range(2)] == ["Chapter One — 0/3", "Chapter Two — 0/3"]
    assert window.progress_label.text().startswith("0/6 segments")
    controls = [w for cls in (QAbstractButton, QComboBox, QLineEdit, QPlainTextEdit) for w in window.findChildren(cls)
                if w.isVisibleTo(window) and not isinstance(w.parent(), QComboBox)]
    assert [type(w).__name__ for w in controls if not w.accessibleName()] == []

    result = narrate(qtbot, window)
    assert (result.rendered, result.total, result.cancelled) == (6, 6, False)
    assert window.progress_label.text().startswith("6/6 segments")
    assert window.progress_bar.value() == window.progress_bar.maximum() == 6
    table = window.segment_table
    # The tiny random LM never says the end token: every take stops at its cap ("needs check").
    assert [table.status_text(s.id) for s in project.chapters[0].segments] == ["needs check"] * 3
    assert window.chapter_list.item(1).text() == "Chapter Two — 3/3" and window.narrate_button.isEnabled()

    second = project.chapters[0].segments[1]
    table.select_segment(second.id)
    assert window.text_editor.toPlainText() == "It was a bright cold day."
    window.play_selected()
    assert len(window.player.audio()) == project.record(second).codes * 320

    before = take_files(window)
    window.text_editor.setPlainText("Dr. Smith paid $5.")
    qtbot.mouseClick(window.save_text_button, Qt.MouseButton.LeftButton)
    assert [table.status_text(s.id) for s in project.chapters[0].segments] == ["needs check", "pending", "needs check"]
    assert window.text_editor.toPlainText() == "Doctor Smith paid five dollars."
    assert window.progress_label.text().startswith("5/6 segments")
    result = narrate(qtbot, window)
    assert result.rendered == 1 and len(take_files(window) - before) == 2  # exactly one take (.flac + .json)
    assert table.status_text(second.id) == "needs check"

    window.text_editor.setPlainText("word " * 3000)
    qtbot.mouseClick(window.save_text_button, Qt.MouseButton.LeftButton)
    assert "too long" in window.last_message.text() and table.status_text(second.id) == "needs check"

    first_take = project.record(project.chapters[0].segments[1])
    result = narrate(qtbot, window, window.regenerate_button)
    segment = project.chapters[0].segments[1]
    assert result.rendered == 1 and (segment.takes, segment.chosen) == (2, 1)
    assert window.take_combo.count() == 2 and window.take_combo.currentIndex() == 1
    assert table.item(1, 4).text() == "2/2" and project.record(segment).seed != first_take.seed
    window.take_combo.setFocus()
    qtbot.keyClick(window.take_combo, Qt.Key.Key_Up)  # back to take 1
    segment = project.chapters[0].segments[1]
    assert segment.chosen == 0 and table.item(1, 4).text() == "1/2"
    assert NarrationProject.open(project.folder).chapters[0].segments[1].chosen == 0  # saved
    window.play_selected()
    assert len(window.player.audio()) == first_take.codes * 320

    with qtbot.waitSignal(window.bridge.exported, timeout=WAIT_MS):
        window.export_to(tmp_path / "book.m4b", "m4b")
    assert (tmp_path / "book.m4b").stat().st_size > 0
    (tmp_path / "chapters").mkdir()
    with qtbot.waitSignal(window.bridge.exported, timeout=WAIT_MS):
        window.export_to(tmp_path / "chapters", "flac", per_chapter=True)
    assert sorted(p.name for p in (tmp_path / "chapters").iterdir()) == ["01 - Chapter One.flac",
                                                                         "02 - Chapter Two.flac"]
    assert main.last_message is None
    main.close()
    assert main.projects.windows == []  # quitting closes the project windows


@pytest.mark.slow
def test_stop_keeps_finished_takes_and_project_failures_stay_in_their_window(qtbot, main, tmp_path):
    long_book = BOOK + "\n\n" + "\n\n".join(f"Paragraph number {n} of the last part." for n in range(1, 9))
    window = create_through_dialog(qtbot, main, tmp_path, long_book)
    total = sum(1 for _ in window.project.segments())
    assert total == 14

    def stop_after_first(event):
        if event.progress.status not in (None, "pending") and window.stop_button.isEnabled():
            qtbot.mouseClick(window.stop_button, Qt.MouseButton.LeftButton)

    main.bridge.narration_progressed.connect(stop_after_first)
    result = narrate(qtbot, window)
    main.bridge.narration_progressed.disconnect(stop_after_first)
    assert result.cancelled and 1 <= result.rendered < total
    assert window.progress_label.text().startswith(f"{result.rendered}/{total} segments")
    assert not window.stop_button.isEnabled() and window.narrate_button.isEnabled()
    reopened = NarrationProject.open(window.project.folder)
    finished = [s.id for _, s in reopened.segments() if reopened.status(s) != "pending"]
    assert len(finished) == result.rendered  # a batch of segments renders at once: any of them, each kept

    with qtbot.waitSignal(main.bridge.failed, timeout=WAIT_MS):  # pending segments: the engine refuses
        window.export_to(tmp_path / "book.flac", "flac")
    assert "not rendered yet" in window.last_message.text()
    assert main.last_message is None and window.export_button.isEnabled()

    assert main.projects.open_folder(window.project.folder) is window  # already open: raised, not doubled
    assert main.projects.open_folder(tmp_path) is None and "not a narration project" in main.last_message.text()


def test_new_project_needs_loaded_models(qtbot, tmp_path):
    from app.new_project_dialog import NewProjectDialog

    settings = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    bridge = EngineBridge()
    try:
        dialog = NewProjectDialog(bridge, VoiceLibrary(tmp_path / "voices"), settings, models_ready=False)
        qtbot.addWidget(dialog)
        assert "Load the models first" in dialog.status_label.text()
        (tmp_path / "b.epub").write_bytes(b"not a zip")
        assert not dialog.load_book(tmp_path / "b.epub") and "b.epub" in dialog.last_message.text()
        dialog.accept()
        assert "Load the models first" in dialog.last_message.text() and dialog.result() == 0
    finally:
        assert bridge.shutdown(10.0)


@pytest.mark.slow
def test_each_windows_stop_and_close_cancel_only_their_own_job(qtbot, main, tmp_path):
    from engine.session import NarrationProgressed, Progress

    window = create_through_dialog(qtbot, main, tmp_path)
    codes = np.random.default_rng(0).integers(0, 65536, 1700)  # a 34 s reference: Generate's budget is ~190 tokens
    long_voice = main.library.add("Long reference", np.zeros(16000, np.float32), TRANSCRIPT, codes, "tiny")
    main.voice_panel.refresh_library(select=long_voice.id)
    main.text_edit.setPlainText("Hello there.")
    moment, held, release = [None], threading.Event(), threading.Event()

    def hold(event):  # on the engine thread (direct connection): it waits here while the GUI acts
        if moment[0] is not None and moment[0](event):
            moment[0] = None
            held.set()
            release.wait(WAIT_MS / 1000)

    def hold_at(predicate):
        held.clear()
        release.clear()
        moment[0] = predicate

    main.bridge._event_arrived.connect(hold, Qt.ConnectionType.DirectConnection)
    try:
        # The main window's Stop cancels its queued Generate; the project's narration goes on.
        hold_at(lambda e: isinstance(e, NarrationProgressed))
        qtbot.mouseClick(window.narrate_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(held.is_set, timeout=WAIT_MS)
        main.generate()
        assert main.is_generating() and main.stop_button.isEnabled() and main.last_message is None
        with qtbot.waitSignal(main.bridge.cancelled, timeout=WAIT_MS):
            qtbot.mouseClick(main.stop_button, Qt.MouseButton.LeftButton)
        assert not main.is_generating() and window.is_running()
        with qtbot.waitSignal(main.bridge.narrated, timeout=WAIT_MS):
            release.set()
        assert (window.last_result.rendered, window.last_result.cancelled) == (6, False)

        # The project window's Stop cancels its queued narration; the main window's Generate goes on.
        hold_at(lambda e: isinstance(e, Progress) and e.stage == "generate" and e.done == 25)
        main.generate()
        qtbot.waitUntil(held.is_set, timeout=WAIT_MS)
        window.segment_table.select_segment(window.project.chapters[0].segments[0].id)
        qtbot.mouseClick(window.regenerate_button, Qt.MouseButton.LeftButton)  # a new take, queued
        assert window.is_running()
        with qtbot.waitSignal(main.bridge.cancelled, timeout=WAIT_MS):
            qtbot.mouseClick(window.stop_button, Qt.MouseButton.LeftButton)
        assert not window.is_running() and main.is_generating()
        with qtbot.waitSignal(main.bridge.generated, timeout=WAIT_MS):
            release.set()
        assert main.last_take() is not None and main.last_message is None

        # One writer per project: while another process holds the project's lock, Narrate is refused by name.
        import subprocess
        import sys

        holder = ("import sys; from engine.book.lock import acquire_lock; lock = acquire_lock(sys.argv[1]); "
                  "print('held', flush=True); sys.stdin.read(); lock.release()")
        child = subprocess.Popen([sys.executable, "-c", holder, str(window.project.folder)], text=True,
                                 cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert child.stdout.readline().strip() == "held"
            qtbot.mouseClick(window.narrate_button, Qt.MouseButton.LeftButton)
            assert not window.is_running() and f"is being narrated by PID {child.pid} on host" in window.last_message.text()
        finally:
            child.communicate("")

        # Closing the project window cancels its queued narration only.
        hold_at(lambda e: isinstance(e, Progress) and e.stage == "generate" and e.done == 25)
        main.generate()
        qtbot.waitUntil(held.is_set, timeout=WAIT_MS)
        qtbot.mouseClick(window.narrate_button, Qt.MouseButton.LeftButton)
        run_id = window._run_id
        window.confirmed_close = True  # the "Stop narrating?" question is tested in the next test
        with qtbot.waitSignal(main.bridge.cancelled, timeout=WAIT_MS,
                              check_params_cb=lambda e: e.request_id == run_id):
            window.close()
        assert main.is_generating()
        with qtbot.waitSignal(main.bridge.generated, timeout=WAIT_MS):
            release.set()
        assert not main.is_generating() and main.last_message is None
    finally:
        moment[0] = None
        release.set()
        main.bridge._event_arrived.disconnect(hold)


@pytest.mark.slow
def test_repeated_sentences_placement_errors_column_regenerate_and_closing(qtbot, main, tmp_path):
    from app.segment_table import ERRORS_COLUMN
    from gui_session import answer_next_question

    book = "Chapter One\n\nThe bell rang.\n\nThe bell rang.\n\nChapter Two\n\nThe end came.\n"
    window = create_through_dialog(qtbot, main, tmp_path, book_text=book)
    project, table = window.project, window.segment_table
    area = window.screen().availableGeometry()
    frame = window.frameGeometry()
    assert frame.left() >= area.left() and frame.top() >= area.top() and window.height() <= area.height()
    assert table.isColumnHidden(ERRORS_COLUMN)  # no verifiers in this project: no error rates to show

    segments = project.chapters[0].segments
    assert segments[1].text == segments[2].text
    at_the_end = []

    def snapshot(event):  # after the window handled the run's last progress event
        if event.progress.done == event.progress.total:
            at_the_end.append([table.status_text(s.id) for s in segments])

    main.bridge.narration_progressed.connect(snapshot)
    with qtbot.waitSignal(window.bridge.narrated, timeout=WAIT_MS):
        qtbot.mouseClick(window.narrate_button, Qt.MouseButton.LeftButton)
        seen = answer_next_question("Keep working")  # 8. closing during narration asks first
        window.close()
        assert "being narrated" in seen[0] and window.isVisible()
    main.bridge.narration_progressed.disconnect(snapshot)
    result = window.last_result
    assert (result.rendered, result.total) == (4, 5)  # the repeated sentence is rendered once
    assert len(take_files(window)) == 2 * 4
    assert at_the_end and "pending" not in at_the_end[-1] and "rendering…" not in at_the_end[-1]  # live table

    # after Regenerate the player shows the new take, not the old one
    table.select_segment(segments[0].id)
    window.play_selected()
    old = window.player.audio().copy()
    with qtbot.waitSignal(window.bridge.narrated, timeout=WAIT_MS):
        qtbot.mouseClick(window.regenerate_button, Qt.MouseButton.LeftButton)
        assert len(window.player.audio()) == 0  # the old take is not shown as if it were the new one
    segment = project.find(segments[0].id)
    np.testing.assert_array_equal(window.player.audio(), project.load_take(segment))
    assert not np.array_equal(window.player.audio(), old)

    with qtbot.waitSignal(window.bridge.narrated, timeout=WAIT_MS):
        qtbot.mouseClick(window.regenerate_button, Qt.MouseButton.LeftButton)
        answer_next_question("Stop and close")
        window.close()
    assert window not in main.projects.windows


def test_opening_a_project_with_a_damaged_take_says_so_in_its_window(qtbot, main, tmp_path):
    """What opening repaired reaches the user: the damaged take is named in a box and the status bar,
    and the segment is pending again in the table."""
    from hostile import DAMAGE, project_with_takes

    from engine.book.project import PENDING

    folder = project_with_takes(tmp_path)
    project = NarrationProject.open(folder)
    first, second = [s for _, s in project.segments()]
    DAMAGE["garbage"](project.take_path(second))
    window = main.projects.open_folder(folder)
    qtbot.addWidget(window)
    text = window.last_message.text()
    assert text.startswith("Opening this project found:") and project.take_path(second).name in text
    assert "damaged" in text and "rendered again" in text
    assert "damaged" in window.statusBar().currentMessage()
    assert window.project.status(second) == PENDING and window.project.status(first) != PENDING
    assert main.projects.open_folder(folder) is window and window.last_message.text() == text  # raised, not told twice
