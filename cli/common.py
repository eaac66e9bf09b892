"""What the subcommands share: status lines on stderr (stdout stays for results, e.g. a transcript), and
where the app keeps its voice library."""
from __future__ import annotations

import sys
from pathlib import Path


def status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_voices_folder() -> Path:
    """The app's voice library (Qt's per-user AppDataLocation for Llasa Studio, as app.settings uses)."""
    from PySide6.QtCore import QCoreApplication, QStandardPaths

    from app.main import APP_NAME, ORGANIZATION

    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APP_NAME)
    return Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)) / "voices"
