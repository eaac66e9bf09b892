"""A project window's runs: narrate, regenerate until the takes pass, and export, each a bridge request
that this window tracks by its request id (other windows' jobs are not its business). A narrate run
holds the project's writer lock (engine.book.lock) until it ends.

Mixed into app.project_window.ProjectWindow, whose project, widgets and refresh it uses.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Slot

from app.new_project_dialog import ask_export
from engine.book.lock import acquire_lock
from engine.book.project import PENDING, Segment
from engine.errors import EngineError


class ProjectRunMixin:
    """Start, stop and follow this window's narrate and export runs (state: _run_id, _export_id, _lock,
    _rendering, _eta, last_result, set by ProjectWindow.__init__)."""

    @Slot()
    def narrate(self) -> None:
        """Render every pending segment of the checked chapters."""
        if not self.is_running():
            self._start(None)

    def _start(self, segment_ids: tuple[str, ...] | None) -> None:
        try:  # one writer per project: refused while a `narrate` command (or another app) renders it
            self._lock = acquire_lock(self.project.folder)
        except EngineError as error:
            self.show_error(str(error))
            return
        if self._lock.notice:
            self.statusBar().showMessage(self._lock.notice, 10_000)
        self._eta = None
        self._run_id = self.bridge.narrate(self.project.folder, segment_ids=segment_ids)
        self.statusBar().showMessage("Narrating…")
        self.refresh()

    @Slot(object)
    def start_until_pass(self, segment_ids: tuple[str, ...]) -> None:
        """Quality mode on just these segments (new takes until one passes), tracked like a narrate run."""
        if not self.is_running():
            self._eta = None
            self._run_id = self.bridge.regenerate_until_passes(self.project.folder, tuple(segment_ids))
            self.statusBar().showMessage("Regenerating until the takes pass…")
            self.refresh()

    @Slot()
    def stop(self) -> None:
        if self.is_running():
            self.bridge.cancel(self._run_id)  # only this window's narration: other jobs keep running
            self.statusBar().showMessage("Stopping…")

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _end_run(self, message: str) -> None:
        self._release_lock()
        self._run_id, self._rendering, self._eta = None, None, None
        for _, segment in self.project.segments(list(range(len(self.project.chapters)))):
            if self.project.status(segment) == PENDING:  # anything the last events did not cover
                self.project.reload_record(segment)
        self.refresh()
        self.statusBar().showMessage(message, 10_000)

    @Slot(object)
    def _on_progressed(self, event) -> None:
        if event.request_id != self._run_id:
            return
        p = event.progress
        self._eta = p.eta_s
        ci_si = self.project.segment(p.segment_id) if p.segment_id else None
        segment = self.project.chapters[ci_si[0]].segments[ci_si[1]] if ci_si else None
        if segment is not None and p.status == PENDING and p.segment_id != self._rendering:
            self._rendering = p.segment_id
            self.segment_table.update_segment(self.project, segment, rendering=True)
        elif segment is not None and p.status != PENDING:
            self._rendering = None
            self.project.reload_record(segment)
            for same in self._same_take(segment):  # a repeated sentence is finished with its first copy
                self._refresh_segment(same)
            self._show_new_take(segment)
        self._update_progress()

    def _show_new_take(self, segment: Segment) -> None:
        """After a take was rendered: the player shows it when it shows (or should show) that segment."""
        if self._player_segment == segment.id or (
                self._player_segment is None and segment.id == self.segment_table.selected_id()):
            record = self.project.record(segment)
            if record is not None and record.finish_reason != "failed":
                self.player.set_audio(self.project.load_take(segment))
                self._player_segment = segment.id

    @Slot(object)
    def _on_narrated(self, event) -> None:
        if event.request_id == self._run_id:
            r = self.last_result = event.result
            self._end_run(f"Stopped: {r.rendered} segment(s) rendered, finished ones are kept." if r.cancelled
                          else f"Rendered {r.rendered} segment(s); {r.needs_check} to check, {r.failed} failed.")

    @Slot(object)
    def _on_cancelled(self, event) -> None:
        if event.request_id == self._run_id:
            self._end_run("Stopped.")
        elif event.request_id == self._export_id:
            self._export_id = None
            self._update_actions()

    @Slot(object)
    def _on_failed(self, event) -> None:
        if event.request_id is None or event.request_id not in (self._run_id, self._export_id):
            return
        if event.request_id == self._run_id:
            self._end_run("Narration failed.")
        else:
            self._export_id = None
            self._update_actions()
        self.show_error(event.message)

    @Slot()
    def choose_export(self) -> None:
        if (choice := ask_export(self, self.project.title, self.project.folder)) is not None:
            self.export_to(*choice)

    def export_to(self, dest: str | Path, fmt: str, per_chapter: bool = False, subtitles: tuple[str, ...] = ()) -> str:
        """Export the checked chapters (and `subtitles` sidecars) on the engine thread; returns the request id."""
        self._export_id = self.bridge.export_project(self.project.folder, Path(dest), fmt, per_chapter, subtitles)
        self.statusBar().showMessage("Exporting…")
        self._update_actions()
        return self._export_id

    @Slot(object)
    def _on_exported(self, event) -> None:
        if event.request_id == self._export_id:
            self._export_id = None
            self._update_actions()
            self.statusBar().showMessage(f"Exported to {event.path}", 10_000)
