"""The narration project window (one top-level window per open project; app/project_windows.py keeps
the open ones). Edits go to the window's own NarrationProject (saved at once); narrate and export run on
the engine thread through the bridge, which reads the project from disk, so edits wait for a run."""
from __future__ import annotations

import logging

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QComboBox, QGroupBox, QLabel, QListWidget, QListWidgetItem, QMainWindow, QMessageBox,
    QPlainTextEdit, QProgressBar, QSplitter, QVBoxLayout, QWidget,
)

from app.confirm import confirm_stop
from app.new_project_dialog import warn
from app.placement import place_on_screen
from app.player import PlayerWidget
from app.production_tabs import production_tabs
from app.project_run import ProjectRunMixin
from app.segment_table import ERRORS_COLUMN, STATUS_TEXT, SegmentTable, score_tip
from app.voice_library_view import named, named_button, row
from engine.book.lock import ProjectLock
from engine.errors import EngineError
from engine.book.project import PENDING, NarrationProject, Segment

log = logging.getLogger("llasa.app")


def format_eta(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


class ProjectWindow(ProjectRunMixin, QMainWindow):
    """Chapters (checked = selected), the chapter's segments, the selected segment's actions, progress;
    narrate and export runs are app.project_run's."""

    closed = Signal(object)  # this window, when it closes

    def __init__(self, bridge, project: NarrationProject, output_device: int | None = None,
                 parent: QWidget | None = None, library=None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.bridge, self.project, self.library = bridge, project, library
        self._run_id: str | None = None  # the narrate run in progress
        self._lock: ProjectLock | None = None  # the project's writer lock, held while narrating
        self._export_id: str | None = None
        self._rendering: str | None = None  # the segment being rendered
        self._eta: float | None = None
        self.last_message: QMessageBox | None = None
        self.last_result = None  # the last run's engine.book.narration.NarrationResult
        self.confirmed_close = False  # the user already agreed to stop the run (quitting the app)
        self._player_segment: str | None = None  # the segment whose take the player shows
        self.setWindowTitle(f"{project.title} — Llasa Studio narration")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self._build(output_device)
        quality = project.settings.candidates > 1 or bool(project.settings.asr)
        self.segment_table.setColumnHidden(ERRORS_COLUMN, not quality)  # error rates exist in quality mode only
        place_on_screen(self, (1100, 720))
        for signal, slot in self._bridge_slots():
            signal.connect(slot)
        self.refresh()
        if project.notices:  # what opening repaired (a damaged take is pending again): say so once
            self.show_error("Opening this project found:\n" + "\n".join(f"• {n}" for n in project.notices))

    def _build(self, output_device: int | None) -> None:
        self.chapter_list = named(QListWidget(), "Chapters", "Checked chapters are narrated and exported")
        self.chapter_list.currentRowChanged.connect(self._show_chapter)
        self.chapter_list.itemChanged.connect(self._on_chapter_checked)
        self.segment_table = SegmentTable()
        self.segment_table.segment_selected.connect(self._on_segment_selected)
        self.text_editor = named(QPlainTextEdit(), "Segment text", "Edit the selected segment's text, then Save")
        self.text_editor.setMaximumHeight(90)
        self.save_text_button = named_button("Save text", "Save the edited text (the segment is rendered again)",
                                             self.save_text)
        self.play_button = named_button("Play", "Play the selected segment's chosen take", self.play_selected)
        self.regenerate_button = named_button("Regenerate", "Render a new take of the selected segment",
                                              self.regenerate_selected)
        self.take_combo = named(QComboBox(), "Take", "The take that is played and exported")
        self.take_combo.activated.connect(self.choose_take)
        self.scores_label = named(QLabel(), "Take scores", "What the verifiers measured on the chosen take (quality mode)")
        self.scores_label.setWordWrap(True)
        self.player = named(PlayerWidget(self, output_device=output_device), "Player")
        self.player.setMaximumHeight(110)
        self.player.failed.connect(self.show_error)
        self.narrate_button = named_button("Narrate", "Render every pending segment of the checked chapters",
                                           self.narrate)
        self.stop_button = named_button("Stop", "Stop narrating (finished segments are kept)", self.stop)
        self.export_button = named_button("Export…", "Export the checked chapters as an audiobook",
                                          self.choose_export)
        self.progress_bar = named(QProgressBar(), "Narration progress")
        self.progress_label = named(QLabel(), "Narration status")

        segment_box = QGroupBox("Selected segment")
        box = QVBoxLayout(segment_box)
        box.addWidget(self.text_editor)
        box.addLayout(row(self.save_text_button, self.play_button, self.regenerate_button, QLabel("Take"),
                          (self.take_combo, 1)))
        box.addWidget(self.scores_label)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.segment_table, 1)
        right_layout.addWidget(segment_box)
        right_layout.addWidget(production_tabs(self))  # cast, selected segments, pronunciation
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.chapter_list)
        splitter.addWidget(right)
        splitter.setSizes([280, 820])
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.player)
        layout.addLayout(row(self.narrate_button, self.stop_button, self.export_button, (self.progress_bar, 1)))
        layout.addWidget(self.progress_label)
        self.setCentralWidget(central)

    def _bridge_slots(self):
        b = self.bridge
        return ((b.narration_progressed, self._on_progressed), (b.narrated, self._on_narrated),
                (b.failed, self._on_failed), (b.cancelled, self._on_cancelled), (b.exported, self._on_exported))

    # --- state ----------------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self._run_id is not None

    def selected_segment(self) -> Segment | None:
        segment_id = self.segment_table.selected_id()
        if segment_id is None:
            return None
        ci, si = self.project.segment(segment_id)
        return self.project.chapters[ci].segments[si]

    def totals(self) -> tuple[int, int, float]:
        """(finished segments, segments, seconds of audio) of the checked chapters."""
        records = [self.project.record(s) for _, s in self.project.segments()]
        return sum(r is not None for r in records), len(records), sum(r.duration_s for r in records if r)

    def refresh(self) -> None:
        """Re-list chapters (with done/total), the current chapter's segments, progress and actions."""
        current = max(self.chapter_list.currentRow(), 0)
        self.chapter_list.blockSignals(True)
        self.chapter_list.clear()
        for ci, chapter in enumerate(self.project.chapters):
            item = QListWidgetItem()
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable if not self.is_running()
                          else item.flags() & ~Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if chapter.selected else Qt.CheckState.Unchecked)
            self.chapter_list.addItem(item)
            self._label_chapter(ci)
        self.chapter_list.setCurrentRow(min(current, self.chapter_list.count() - 1))
        self.chapter_list.blockSignals(False)
        self._show_chapter(self.chapter_list.currentRow())

    def _label_chapter(self, ci: int) -> None:
        chapter = self.project.chapters[ci]
        done = sum(self.project.status(s) != PENDING for s in chapter.segments)
        item = self.chapter_list.item(ci)
        item.setText(f"{chapter.title or f'Chapter {ci + 1}'} — {done}/{len(chapter.segments)}")
        item.setToolTip(f"{done} of {len(chapter.segments)} segments rendered")

    @Slot(int)
    def _show_chapter(self, ci: int) -> None:
        self.segment_table.show_chapter(self.project, ci)
        self._update_progress()
        self._update_actions()

    def _update_progress(self) -> None:
        done, total, audio_s = self.totals()
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(done)
        text = f"{done}/{total} segments · {audio_s / 60:.1f} min of audio"
        if self.is_running():
            text += f" · ETA {format_eta(self._eta)}" if self._eta is not None else " · ETA estimating…"
        self.progress_label.setText(text)

    def _update_actions(self) -> None:
        segment, idle = self.selected_segment(), not self.is_running()
        finished = segment is not None and self.project.record(segment) is not None
        playable = finished and self.project.record(segment).finish_reason != "failed"
        self.play_button.setEnabled(playable and self.player.available)
        for widget in (self.text_editor, self.save_text_button, self.regenerate_button, self.take_combo):
            widget.setEnabled(idle and segment is not None)
        self.narrate_button.setEnabled(idle and any(True for _ in self.project.segments()))
        self.stop_button.setEnabled(not idle)
        self.export_button.setEnabled(idle and self._export_id is None)
        if hasattr(self, "production"):  # the production tabs edit the project: not while the engine renders
            self.production.setEnabled(idle)

    def _refresh_segment(self, segment: Segment, rendering: bool = False) -> None:
        self.segment_table.update_segment(self.project, segment, rendering)
        self._label_chapter(self.project.segment(segment.id)[0])
        if segment.id == self.segment_table.selected_id():
            self._on_segment_selected(segment.id)

    def _same_take(self, segment: Segment) -> list[Segment]:
        """Every segment (all chapters) that shares `segment`'s chosen take: identical text and take."""
        key = self.project.take_key(segment)
        return [s for _, s in self.project.segments(list(range(len(self.project.chapters))))
                if self.project.take_key(s) == key]

    @Slot(object)
    def _on_segment_selected(self, segment_id: str | None) -> None:
        segment = self.selected_segment()
        self.text_editor.setPlainText(segment.text if segment else "")
        self.take_combo.clear()
        for take in range(segment.takes if segment else 0):
            record = self.project.record(segment, take)
            self.take_combo.addItem(f"Take {take + 1} · {STATUS_TEXT[record.status if record else PENDING]}")
        if segment is not None:
            self.take_combo.setCurrentIndex(segment.chosen)
        record = self.project.record(segment) if segment is not None else None
        self.scores_label.setText(score_tip(record, segment.text) if record and record.scores else "")
        self._update_actions()

    @Slot(str)
    def show_error(self, message: str) -> None:
        self.last_message = warn(self, message)
        self.statusBar().showMessage(message, 10_000)

    # --- segment actions ------------------------------------------------------------------------
    @Slot()
    def play_selected(self) -> None:
        """Play the selected segment's chosen take in the embedded player."""
        segment = self.selected_segment()
        if segment is None:
            return
        try:
            wave = self.project.load_take(segment)
        except Exception as error:  # noqa: BLE001 - a missing or damaged file: say so, keep the window
            log.exception("cannot load take of %s", segment.id)
            self.show_error(f"Cannot play segment {segment.id}: {error}. Regenerate it.")
            return
        self.player.set_audio(wave)
        self._player_segment = segment.id
        if self.player.available:
            self.player.play()

    @Slot()
    def save_text(self) -> None:
        """Store the edited text; only this segment goes back to pending."""
        segment = self.selected_segment()
        if segment is None or self.is_running():
            return
        try:
            segment = self.project.edit_segment(segment.id, self.text_editor.toPlainText())
        except EngineError as error:
            self.show_error(str(error))
            return
        self._refresh_segment(segment)
        self._update_progress()

    @Slot()
    def regenerate_selected(self) -> None:
        """A new take of the selected segment (a new seed), rendered now."""
        segment = self.selected_segment()
        if segment is None or self.is_running():
            return
        segment = self.project.new_take(segment.id)
        if self._player_segment in (None, segment.id):  # the old take must not stay on screen as if current
            self.player.stop()
            self.player.clear()
            self._player_segment = segment.id
        self._refresh_segment(segment)
        self._start((segment.id,))

    @Slot(int)
    def choose_take(self, take: int) -> None:
        segment = self.selected_segment()
        if segment is None or self.is_running() or not 0 <= take < segment.takes:
            return
        self._refresh_segment(self.project.choose_take(segment.id, take))
        self._update_progress()

    @Slot(QListWidgetItem)
    def _on_chapter_checked(self, item: QListWidgetItem) -> None:
        if self.is_running():
            return
        checked = [i for i in range(self.chapter_list.count())
                   if self.chapter_list.item(i).checkState() == Qt.CheckState.Checked]
        self.project.select_chapters(checked)
        self._update_progress()
        self._update_actions()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt name)
        if self.is_running() and not self.confirmed_close and not confirm_stop(
                self, "Stop narrating?", "The book is being narrated. Closing this window stops it; the segments "
                "finished so far are kept and Narrate continues from there.", "Stop and close"):
            event.ignore()
            return
        for request_id in (self._run_id, self._export_id):  # this window's jobs only
            self.bridge.cancel(request_id)
        self._release_lock()  # a cancelled narration still running holds the lock itself until it ends
        self.player.stop()
        for signal, slot in self._bridge_slots():
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError):  # closed twice
                pass
        self.closed.emit(self)
        super().closeEvent(event)
