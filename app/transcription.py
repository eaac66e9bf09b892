"""Auto-transcription of the reference clip: the voice panel's button, the Whisper chosen in the
settings (AppSettings.asr) and the engine thread's Transcribe job, wired together.

The button is enabled only when that Whisper is on disk (engine.book.quality.verifier_problem: no download,
no weights read); otherwise its tooltip says what to download. The answer fills the transcript
field, which stays editable. Errors are shown as messages.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QObject, Slot

from engine.book.quality import verifier_problem


class AutoTranscriber(QObject):
    """One transcription at a time; call refresh() after the settings change."""

    def __init__(self, panel, bridge, settings, show_error: Callable[[str], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._panel, self._bridge, self._settings, self._show_error = panel, bridge, settings, show_error
        self._request: str | None = None
        panel.transcribe_requested.connect(self.transcribe)
        bridge.transcribed.connect(self._on_transcribed)
        bridge.failed.connect(self._on_failed)
        bridge.cancelled.connect(self._on_failed)
        self.refresh()

    def is_busy(self) -> bool:
        return self._request is not None

    @Slot()
    def refresh(self) -> None:
        """Enable Auto-transcribe when the settings' Whisper is available locally; else say what to get."""
        if self.is_busy():
            return
        problem = verifier_problem(self._settings.asr)
        self._panel.set_transcribe_available(problem is None, "" if problem is None else (
            f"Auto-transcribe needs a Whisper speech recognition model. {problem} "
            "Set another one in Preferences → General."))

    @Slot(object)
    def transcribe(self, samples: np.ndarray) -> str | None:
        """Ask the engine what the clip says; returns the request id (None while one is running)."""
        if self.is_busy() or not len(samples):
            return None
        self._request = self._bridge.transcribe(np.asarray(samples, np.float32), self._settings.asr)
        self._panel.set_transcribe_available(False, "Transcribing… (the first time loads Whisper)")
        return self._request

    @Slot(object)
    def _on_transcribed(self, event) -> None:
        if event.request_id == self._request:
            self._request = None
            self._panel.set_transcript(event.text)
            self.refresh()

    @Slot(object)
    def _on_failed(self, event) -> None:
        if event.request_id is not None and event.request_id == self._request:
            self._request = None
            self.refresh()
            if hasattr(event, "message"):
                self._show_error(event.message)
