"""The segment list of one chapter of a narration project: #, status, text, duration, take and, in
quality mode, the chosen take's error rate (a flagged take reads needs check; its tooltip has the transcript).

Display only: it reads the GUI's own NarrationProject and says which segment is selected.
Status is shown as text plus a standard style icon (so it reads in light and dark palettes).
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QStyle, QTableWidget, QTableWidgetItem, QWidget

from engine.book.project import DONE, FAILED, NEEDS_CHECK, PENDING, NarrationProject, Segment, TakeRecord
from engine.book.quality import describe_scores, error_label

RENDERING = "rendering"  # shown while the engine renders the segment (not a stored status)
STATUS_TEXT = {PENDING: "pending", DONE: "done", NEEDS_CHECK: "needs check", FAILED: "failed",
               RENDERING: "rendering…"}
STATUS_TIP = {
    PENDING: "Not rendered yet", DONE: "Rendered", RENDERING: "Being rendered now",
    NEEDS_CHECK: "The take hit the length limit: listen to it, regenerate or edit it",
    FAILED: "Rendering failed: regenerate or edit the text",
}
_ICONS = {DONE: QStyle.StandardPixmap.SP_DialogApplyButton, NEEDS_CHECK: QStyle.StandardPixmap.SP_MessageBoxWarning,
          FAILED: QStyle.StandardPixmap.SP_MessageBoxCritical, RENDERING: QStyle.StandardPixmap.SP_BrowserReload}
COLUMNS = ("#", "Status", "Text", "Duration", "Take", "Errors", "Voice")
ERRORS_COLUMN = 5  # quality mode's error rate: hidden for projects without verifiers
_ID_ROLE = Qt.ItemDataRole.UserRole


def score_tip(record: TakeRecord, text: str) -> str:
    """The chosen take's scores and what Whisper heard, for tooltips and the project window."""
    heard = f"\nWhisper heard: “{record.transcript}”" if record.transcript else ""
    flag = "\nAbove the project's error limit: listen to it, regenerate or edit it." if record.flagged else ""
    return describe_scores(record.scores, text) + heard + flag


class SegmentTable(QTableWidget):
    """Rows = the segments of the chapter shown; several may be selected (Ctrl/Shift)."""

    segment_selected = Signal(object)  # the selected segment's id, or None

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(COLUMNS)
        self.setAccessibleName("Segments")
        self.setToolTip("The chapter's segments: select one to play, edit, regenerate or choose its take")
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setWordWrap(False)
        self.verticalHeader().hide()
        header = self.horizontalHeader()
        for column in range(len(COLUMNS)):
            mode = QHeaderView.ResizeMode.Stretch if column == 2 else QHeaderView.ResizeMode.ResizeToContents
            header.setSectionResizeMode(column, mode)
        self._ids: list[str] = []
        self.itemSelectionChanged.connect(lambda: self.segment_selected.emit(self.selected_id()))

    def show_chapter(self, project: NarrationProject, chapter: int) -> None:
        """List the segments of chapter `chapter` (0-based); keeps the selection when the id is still there."""
        keep = self.selected_id()
        segments = project.chapters[chapter].segments if 0 <= chapter < len(project.chapters) else ()
        self.blockSignals(True)
        self.setRowCount(len(segments))
        self._ids = [s.id for s in segments]
        for row, segment in enumerate(segments):
            self._fill(row, project, segment)
        self.blockSignals(False)
        if keep in self._ids:
            self.select_segment(keep)
        else:
            self.clearSelection()
            self.segment_selected.emit(None)

    def update_segment(self, project: NarrationProject, segment: Segment, rendering: bool = False) -> None:
        """Refresh one segment's row if it is listed."""
        if segment.id in self._ids:
            self._fill(self._ids.index(segment.id), project, segment, rendering)

    def _fill(self, row: int, project: NarrationProject, segment: Segment, rendering: bool = False) -> None:
        record = project.record(segment)
        status = RENDERING if rendering else (record.status if record else PENDING)
        duration = f"{record.duration_s:.1f} s" if record and record.finish_reason != "failed" else ""
        cells = (segment.id.split(".")[-1], STATUS_TEXT[status], segment.text, duration,
                 f"{segment.chosen + 1}/{segment.takes}", error_label(record.scores, segment.text) if record else "",
                 project.voice_of(segment).name + (" · kept" if segment.locked else ""))
        for column, text in enumerate(cells):
            item = QTableWidgetItem(text)
            item.setData(_ID_ROLE, segment.id)
            if column == 1:
                if status in _ICONS:
                    item.setIcon(self.style().standardIcon(_ICONS[status]))
                item.setToolTip(record.error if record and record.error else score_tip(record, segment.text)
                                if record and record.flagged else STATUS_TIP[status])
            elif column == 2:
                item.setToolTip(segment.text)
            elif column == 5 and record and record.scores:
                item.setToolTip(score_tip(record, segment.text))
            self.setItem(row, column, item)

    def selected_id(self) -> str | None:
        """The selected segment (the first, in reading order, when several are)."""
        ids = self.selected_ids()
        return ids[0] if ids else None

    def selected_ids(self) -> list[str]:
        """The selected segments in reading order."""
        rows = sorted(r.row() for r in (self.selectionModel().selectedRows() if self.selectionModel() else []))
        return [self._ids[r] for r in rows if r < len(self._ids)]

    @Slot(str)
    def select_segment(self, segment_id: str) -> None:
        if segment_id in self._ids:
            self.selectRow(self._ids.index(segment_id))

    def status_text(self, segment_id: str) -> str:
        """The status cell's text of a listed segment (for tests and accessibility checks)."""
        return self.item(self._ids.index(segment_id), 1).text()
