"""The project window's production tabs: Cast, Selected segments, Pronunciation (issue #17).

Builds the three panels (app.cast_panel, app.segment_controls, app.pronunciation_editor) and wires
them to the window: plan changes re-list the segments, errors go to the window's message box, and
"regenerate until it passes" starts an engine run the window tracks like a narrate run.
"""
from __future__ import annotations

from PySide6.QtWidgets import QTabWidget

from app.cast_panel import CastPanel
from app.pronunciation_editor import PronunciationEditor
from app.segment_controls import SegmentControls


def production_tabs(window) -> QTabWidget:
    """The tabs for a ProjectWindow (kept as window.cast_panel, .segment_controls, .pronunciation_editor)."""
    project = window.project
    tabs = QTabWidget()
    tabs.setAccessibleName("Production")
    window.cast_panel = CastPanel(window.bridge, project, window.library)
    window.segment_controls = SegmentControls(project, window.segment_table.selected_ids)
    window.pronunciation_editor = PronunciationEditor(
        project, lambda: window.text_editor.textCursor().selectedText())
    tabs.addTab(window.segment_controls, "Selected segments")
    tabs.addTab(window.cast_panel, "Cast")
    tabs.addTab(window.pronunciation_editor, "Pronunciation")
    tabs.setMaximumHeight(240)

    def plan_changed(*_args) -> None:
        window.refresh()
        window.cast_panel.refresh()
        window.segment_controls.refresh()

    def segments_changed(ids) -> None:
        for segment_id in ids:
            window._refresh_segment(project.find(segment_id))
        window._update_progress()
        window.cast_panel.refresh()

    for panel in (window.cast_panel, window.segment_controls, window.pronunciation_editor):
        panel.error.connect(window.show_error)
    window.cast_panel.plan_changed.connect(plan_changed)
    window.pronunciation_editor.plan_changed.connect(plan_changed)
    window.segment_controls.changed.connect(segments_changed)
    window.segment_controls.until_pass_requested.connect(window.start_until_pass)
    window.segment_table.itemSelectionChanged.connect(window.segment_controls.refresh)
    window.production = tabs
    return tabs
