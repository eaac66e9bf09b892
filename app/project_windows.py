"""The main window's bookkeeping of its open narration project windows (app.project_window.ProjectWindow):
one window per project folder, opened from File ▸ New/Open narration project and closed on quit."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Slot
from PySide6.QtWidgets import QFileDialog

from app.new_project_dialog import NewProjectDialog
from app.project_window import ProjectWindow
from engine.book.project import NarrationProject
from engine.errors import EngineError


class ProjectWindows(QObject):
    """The main window's open project windows: File ▸ New/Open narration project, closed on quit."""

    def __init__(self, main_window, models_ready) -> None:
        super().__init__(main_window)
        self._main, self._models_ready = main_window, models_ready
        self.windows: list[ProjectWindow] = []
        self.dialog: NewProjectDialog | None = None  # the last New project dialog

    @Slot()
    def new_project(self) -> NewProjectDialog:
        m = self._main
        self.dialog = NewProjectDialog(m.bridge, m.library, m.settings, self._models_ready(), m)
        self.dialog.created.connect(self.open_folder)
        self.dialog.open()
        return self.dialog

    @Slot()
    def choose_and_open(self) -> None:
        folder = QFileDialog.getExistingDirectory(self._main, "Open narration project")
        if folder:
            self.open_folder(folder)

    @Slot(object)
    def open_folder(self, folder: str | Path) -> ProjectWindow | None:
        """Open (or raise) the project window of `folder`; shows why when it is not a project."""
        folder = Path(folder).resolve()
        window = next((w for w in self.windows if w.project.folder.resolve() == folder), None)
        if window is None:
            try:
                project = NarrationProject.open(folder)
            except EngineError as error:
                self._main.show_error(str(error))
                return None
            window = ProjectWindow(self._main.bridge, project, self._main.settings.output_device,
                                   library=getattr(self._main, "library", None))
            window.closed.connect(lambda w: w in self.windows and self.windows.remove(w))
            self.windows.append(window)
        window.show()
        window.raise_()
        window.activateWindow()
        return window

    def close_all(self) -> None:
        for window in list(self.windows):
            window.close()
