"""Quality mode in the app: the new-project dialog's choice, narration with best-of-N through the real
bridge and engine thread (tiny LM/codec, tiny random Whisper/WavLM), the segment table's error rate and
needs-check flag with the transcript in its tooltip, and the selected take's scores."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings, Qt  # noqa: E402

from gui_session import running_main_window  # noqa: E402
from app.new_project_dialog import narration_settings  # noqa: E402
from app.settings import AppSettings  # noqa: E402
from engine.models.tiny_verifiers import write_tiny_wavlm_sv, write_tiny_whisper  # noqa: E402
from engine.voices import VoiceLibrary  # noqa: E402

WAIT_MS = 300_000  # only guards against a hang
TRANSCRIPT = "The quick brown fox jumps over the lazy dog, near the quiet river bank. " * 4


@pytest.fixture
def main(qtbot, tmp_path, tiny_models):
    settings = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    settings.voices_folder, settings.device, settings.seed = tmp_path / "voices", "cpu", 5
    settings.lm, settings.codec = str(tiny_models["lm"]), str(tiny_models["codec"])
    settings.asr = str(tmp_path / "whisper")  # not there yet
    settings.speaker = str(write_tiny_wavlm_sv(tmp_path / "wavlm"))
    library = VoiceLibrary(settings.voices_folder)
    library.add("Narrator", np.random.default_rng(1).normal(0, 0.1, 32000).astype(np.float32), TRANSCRIPT,
                np.random.default_rng(0).integers(0, 65536, 100), "tiny")
    yield from running_main_window(qtbot, settings, library)


def test_settings_for_quality_mode(tmp_path):
    settings = AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    settings.asr, settings.speaker = "a/whisper", "nobody-here/no-speaker-model"
    off, on = narration_settings(settings), narration_settings(settings, 4)
    assert (off.candidates, off.asr, off.speaker) == (1, None, None)
    assert (on.candidates, on.asr, on.speaker) == (4, "a/whisper", None)  # a missing speaker model is left out
    settings.speaker = str(write_tiny_wavlm_sv(tmp_path / "wavlm"))
    assert narration_settings(settings, 2).speaker == settings.speaker


@pytest.mark.slow
def test_quality_project_in_the_app(qtbot, main, tmp_path):
    book = tmp_path / "book.txt"
    book.write_text("Chapter One\n\nIt was a bright cold day.\n\nThe clocks were striking.\n", encoding="utf-8")
    main.new_project_action.trigger()
    dialog = main.projects.dialog
    assert dialog.load_book(book)
    dialog.folder_edit.setText(str(tmp_path / "project"))
    assert [dialog.quality_combo.itemData(i) for i in range(dialog.quality_combo.count())] == [1, 2, 4, 8]
    assert "Whisper" in dialog.quality_note.text() and "longer" in dialog.quality_note.text()
    dialog.quality_combo.setCurrentIndex(1)  # 2 takes
    qtbot.mouseClick(dialog.create_button, Qt.MouseButton.LeftButton)
    assert "Whisper" in dialog.last_message.text() and dialog.isVisible()  # no Whisper on disk yet
    write_tiny_whisper(tmp_path / "whisper")
    with qtbot.waitSignal(dialog.created, timeout=WAIT_MS):
        qtbot.mouseClick(dialog.create_button, Qt.MouseButton.LeftButton)
    window = main.projects.windows[-1]
    project = window.project
    assert (project.settings.candidates, project.settings.asr) == (2, str(tmp_path / "whisper"))
    assert project.settings.speaker == main.settings.speaker

    with qtbot.waitSignal(window.bridge.narrated, timeout=WAIT_MS):
        qtbot.mouseClick(window.narrate_button, Qt.MouseButton.LeftButton)
    segments = project.chapters[0].segments
    assert window.last_result.rendered == len(segments) >= 2 and not window.last_result.failed
    table = window.segment_table
    for row, segment in enumerate(segments):
        record = project.record(segment)
        assert record.scores["n"] == 2.0 and record.flagged == (record.scores["error_rate"] > 0.15)
        assert table.item(row, 5).text() == f"WER {record.scores['error_rate']:.0%}"
        assert table.status_text(segment.id) == "needs check"
        if record.flagged:  # a random Whisper does not hear the text
            assert "error limit" in table.item(row, 1).toolTip()
            assert f"Whisper heard: “{record.transcript}”" in table.item(row, 1).toolTip()
    assert any(project.record(s).flagged for s in project.chapters[0].segments)
    first = project.chapters[0].segments[0]
    table.select_segment(first.id)
    text = window.scores_label.text()
    assert text.startswith("WER ") and "speaker similarity" in text and "best of 2 takes" in text
