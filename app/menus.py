"""The main window's commands: its actions and shortcuts, the menu bar, and the file dialogs and
help boxes the menus open. Dialog helpers return what the user chose; the window acts on it."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import soundfile as sf
from PySide6.QtCore import QMimeData, Qt, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QAbstractButton, QApplication, QComboBox, QFileDialog, QMainWindow, QMessageBox, QStyle, QWidget,
)

from app.resources import app_icon
from app.settings import documents_dir, logs_folder
from engine.audio import clip as audio

APP_TITLE = "Llasa Studio"
TEXT_SUFFIXES = (".txt", ".md")
VOICE_SUFFIX = ".llasavoice"
_EXPORT_NAMES = {".wav": "WAV", ".flac": "FLAC", ".mp3": "MP3", ".ogg": "Ogg Vorbis"}
ABOUT_TEXT = (
    "<h3>Llasa Studio</h3>"
    "<p>Clone a voice from a short clip and speak any text in it, locally.</p>"
    "<p>The app's code is Apache-2.0. The Llasa and X-Codec2 model weights are licensed "
    "<b>CC-BY-NC-4.0</b>: non-commercial use only, with attribution.</p>"
    "<p>Only clone voices with the speaker's permission.</p>"
)


def audio_suffixes() -> tuple[str, ...]:
    """File extensions soundfile can read here (lower case, with the dot)."""
    return tuple(f".{fmt.lower()}" for fmt in sf.available_formats()) + (".aif", ".oga")


def export_formats() -> dict[str, str]:
    """Extensions the engine can write here → display name (MP3 only when libsndfile encodes it)."""
    return {ext: _EXPORT_NAMES.get(ext, ext[1:].upper()) for ext in audio._WRITE_FORMATS}


def droppable_files(mime: QMimeData) -> list[Path]:
    """The local files in a drag that the window can take: text, audio clips, .llasavoice voices."""
    usable = TEXT_SUFFIXES + audio_suffixes() + (VOICE_SUFFIX,)
    return [
        Path(url.toLocalFile()) for url in mime.urls()
        if url.isLocalFile() and Path(url.toLocalFile()).suffix.lower() in usable
    ]


def _action(window: QMainWindow, text: str, slot: Callable, shortcut=None, tip: str = "",
            icon: QStyle.StandardPixmap | None = None) -> QAction:
    action = QAction(text, window)
    if icon is not None:
        action.setIcon(window.style().standardIcon(icon))
    if shortcut is not None:
        action.setShortcuts(shortcut if isinstance(shortcut, list) else [QKeySequence(shortcut)])
    if tip:
        action.setStatusTip(tip)
        action.setToolTip(tip)
    action.triggered.connect(slot)
    return action


def build_commands(window) -> None:
    """Create the window's actions (as `window.<name>_action`, plus `window.edit_actions`), register
    the window-wide shortcuts (Ctrl+Enter, Esc, Space) and fill the menu bar."""
    key, w = QKeySequence, window
    w.generate_action = _action(w, "Generate", w.generate, [key("Ctrl+Return"), key("Ctrl+Enter")],
                                "Speak the text in the chosen voice", QStyle.StandardPixmap.SP_MediaPlay)
    w.stop_action = _action(w, "Stop", w.stop, key(Qt.Key.Key_Escape), "Stop generating",
                            QStyle.StandardPixmap.SP_MediaStop)
    w.play_action = _action(w, "Play / Pause", lambda: play_shortcut(w), key(Qt.Key.Key_Space), "Play or pause")
    for action in (w.generate_action, w.stop_action, w.play_action):
        w.addAction(action)  # window-wide shortcuts
    w.open_text_action = _action(w, "Open text…", w.choose_text_file, key.StandardKey.Open, "Load a text file",
                                  QStyle.StandardPixmap.SP_DialogOpenButton)
    w.import_voice_action = _action(w, "Import voice…", w.choose_voice_import, None,
                                    "Import an audio clip or a .llasavoice file", QStyle.StandardPixmap.SP_DirOpenIcon)
    w.export_action = _action(w, "Export audio…", w.choose_export_path, key("Ctrl+E"), "Save the take",
                                QStyle.StandardPixmap.SP_DialogSaveButton)
    w.new_project_action = _action(w, "New narration project…", w.projects.new_project, key("Ctrl+Shift+N"),
                                   "Turn a book into an audiobook in a project folder")
    w.open_project_action = _action(w, "Open narration project…", w.projects.choose_and_open, key("Ctrl+Shift+O"),
                                    "Open a narration project folder")
    w.quit_action = _action(w, "Quit", w.close, key.StandardKey.Quit, "Quit Llasa Studio")
    w.models_action = _action(w, "Manage models…", w.open_models_dialog, None, "Download or pick models",
                               QStyle.StandardPixmap.SP_DriveHDIcon)
    w.preferences_action = _action(w, "Preferences…", w.open_preferences, key.StandardKey.Preferences,
                                   "Model, sampling, audio and storage settings")
    w.logs_action = _action(w, "Show logs", open_logs_folder, None, "Open the log folder")
    w.about_action = _action(w, "About Llasa Studio", lambda: show_about(w), None, "Version and licences")
    w.speed_action = _action(w, "Speed test…", w.speed_test.start, None,
                             "Measure how fast the loaded models speak on this computer")
    w.edit_actions = {  # standard editing, applied to the focused text field
        method: _action(w, text, lambda _=False, m=method: edit_focused(w, m), getattr(key.StandardKey, std))
        for method, text, std in (("undo", "Undo", "Undo"), ("redo", "Redo", "Redo"), ("cut", "Cut", "Cut"),
                                  ("copy", "Copy", "Copy"), ("paste", "Paste", "Paste"),
                                  ("selectAll", "Select all", "SelectAll"))
    }

    bar = w.menuBar()
    file_menu = bar.addMenu("&File")
    file_menu.addActions([w.open_text_action, w.import_voice_action, w.export_action])
    file_menu.addSeparator()
    file_menu.addActions([w.new_project_action, w.open_project_action])
    file_menu.addSeparator()
    file_menu.addAction(w.quit_action)
    edit_menu = bar.addMenu("&Edit")
    for method, action in w.edit_actions.items():
        if method in ("cut", "selectAll"):
            edit_menu.addSeparator()
        edit_menu.addAction(action)
    bar.addMenu("&Models").addAction(w.models_action)
    bar.addMenu("&Settings").addAction(w.preferences_action)
    bar.addMenu("&Help").addActions([w.speed_action, w.logs_action, w.about_action])


def play_shortcut(window) -> None:
    """Space: play/pause, unless the focus is in the text editor or on a button/combo box."""
    focus = QApplication.focusWidget()
    if isinstance(focus, QAbstractButton):  # Space keeps pressing the focused button
        focus.animateClick()
    elif isinstance(focus, QComboBox):
        focus.showPopup()
    elif focus is not window.text_edit:
        window.player.toggle_play()


def edit_focused(window, method: str) -> None:
    """Edit menu: apply `method` (undo, copy, …) to the focused text field, else the window's editor."""
    focus = QApplication.focusWidget()
    target = focus if focus is not None and hasattr(focus, method) and hasattr(focus, "paste") else window.text_edit
    getattr(target, method)()


def ask_text_file(parent: QWidget) -> str:
    """A text file to open, or "" when the user cancelled."""
    path, _ = QFileDialog.getOpenFileName(parent, "Open text", str(documents_dir()),
                                          "Text (*.txt *.md);;All files (*)")
    return path


def ask_voice_file(parent: QWidget) -> str:
    """An audio clip or .llasavoice file to import, or ""."""
    patterns = " ".join(f"*{s}" for s in audio_suffixes())
    path, _ = QFileDialog.getOpenFileName(
        parent, "Import voice", str(documents_dir()), f"Voices and audio (*{VOICE_SUFFIX} {patterns});;All files (*)"
    )
    return path


def export_start_path(name: str = "take.wav") -> str:
    """Where the Export dialog starts: `name` in the user's Documents folder."""
    return str(documents_dir() / name)


def ask_export_path(parent: QWidget, name: str = "take.wav") -> str:
    """Where to save the take, with a known extension (the chosen filter's when none was typed), or ""."""
    formats = export_formats()
    filters = [f"{name} (*{ext})" for ext, name in formats.items()]
    path, chosen = QFileDialog.getSaveFileName(parent, "Export audio", export_start_path(name), ";;".join(filters))
    if path and Path(path).suffix.lower() not in formats:
        path += next((ext for ext, name in formats.items() if chosen.startswith(name)), ".wav")
    return path


def open_logs_folder() -> None:
    """Help → Show logs: open the per-user log folder in the file manager."""
    folder = logs_folder()
    folder.mkdir(parents=True, exist_ok=True)
    QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))


def app_version() -> str:
    """The installed package's version (pyproject.toml), or "development copy" when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llasa-studio")
    except PackageNotFoundError:
        return "development copy"


def about_text() -> str:
    return ABOUT_TEXT.replace("</h3>", f"</h3><p>Version {app_version()}</p>", 1)


def show_about(parent: QWidget) -> QMessageBox:
    box = QMessageBox(QMessageBox.Icon.Information, f"About {APP_TITLE}", about_text(),
                      QMessageBox.StandardButton.Ok, parent)
    box.setIconPixmap(app_icon().pixmap(96, 96))
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    parent.about_box = box  # for tests and accessibility checks
    return box
