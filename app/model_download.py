"""Model downloads for the Models dialog: a worker that fetches repos on its own thread with summed
byte progress, and the dialog's start / cancel / finish handling of it.

`ModelDownload` is a mixin of ModelsDialog (it uses the dialog's _missing(), consent box, progress bar,
status label and refresh()). Cancelling keeps the partial files, so downloading again resumes.
"""
from __future__ import annotations

import logging
import threading

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from engine.errors import CancelledError, EngineError, HubUnreachableError
from engine.models import downloads

log = logging.getLogger("llasa.app")


def human_bytes(n: int) -> str:
    """'3.4 GB' style size (decimal units, as download sites show them)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit in ("B", "kB") else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


class DownloadWorker(QObject):
    """Downloads repos one after another on its own thread; reports summed byte progress."""

    progress = Signal(object, object)  # (done bytes, total bytes) over all repos; int may exceed 2**31
    finished = Signal()
    failed = Signal(str, bool)  # (message, hub unreachable)
    cancelled = Signal()

    def __init__(self, repos: list[tuple[str, int]], cancel: threading.Event) -> None:
        super().__init__()
        self._repos = repos  # (repo id, expected bytes)
        self._cancel = cancel

    @Slot()
    def run(self) -> None:
        totals = {repo: size for repo, size in self._repos}
        done = dict.fromkeys(totals, 0)

        try:
            for repo, _ in self._repos:
                def on_progress(d: int, t: int, repo: str = repo) -> None:
                    done[repo], totals[repo] = d, (t or totals[repo])
                    self.progress.emit(sum(done.values()), sum(totals.values()))

                downloads.download(repo, on_progress=on_progress, cancel=self._cancel)
                done[repo] = totals[repo]
        except CancelledError:
            self.cancelled.emit()
        except HubUnreachableError as error:
            self.failed.emit(str(error), True)
        except EngineError as error:
            self.failed.emit(str(error), False)
        except Exception as error:  # a bug: log it, keep the dialog alive
            log.exception("download failed")
            self.failed.emit(f"Unexpected error while downloading ({error}); details are in the log.", False)
        else:
            self.finished.emit()



class ModelDownload:
    """ModelsDialog's download methods: is_downloading, start_download, cancel_download."""

    def is_downloading(self) -> bool:
        return self._thread is not None

    @Slot()
    def start_download(self) -> None:
        """Download what the chosen models still need, off the GUI thread."""
        missing = self._missing()
        if not missing or not self.consent_box.isChecked() or self.is_downloading():
            return
        self._cancel = threading.Event()
        self._thread = QThread(self)
        self._worker = DownloadWorker(missing, self._cancel)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.progress.connect(self._on_progress)
        self._worker.finished.connect(lambda: self._on_done("Download complete."))
        self._worker.cancelled.connect(self._on_cancelled)
        self._worker.failed.connect(self._on_failed)
        for signal in (self._worker.finished, self._worker.cancelled, self._worker.failed):
            signal.connect(self._thread.quit, Qt.ConnectionType.DirectConnection)  # even while GUI waits
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("Starting…")
        self.progress_bar.show()
        self.cancel_download_button.show()
        self.status_label.setText("Downloading " + ", ".join(repo for repo, _ in missing) + "…")
        self._thread.start()
        self.refresh()

    @Slot()
    def cancel_download(self) -> None:
        self._cancel.set()

    @Slot(object, object)
    def _on_progress(self, done: int, total: int) -> None:
        self.progress_bar.setValue(int(1000 * done / total) if total else 0)
        self.progress_bar.setFormat(f"{human_bytes(done)} of {human_bytes(total)}")

    def _on_failed(self, message: str, unreachable: bool) -> None:
        self.progress_bar.hide()  # a bar left on "Starting…" would say it is still trying
        if unreachable:
            message = (
                f"{message}\nCannot download now. If you already have the model folders, "
                "click “Use a local folder…”."
            )
        self._on_done(message)
        if unreachable:
            self.local_button.setFocus()

    def _on_cancelled(self) -> None:
        self.progress_bar.setFormat("Cancelled at %p%")
        self._on_done("Download cancelled; Download again to resume.")

    def _on_done(self, message: str) -> None:
        thread, self._thread, self._worker = self._thread, None, None
        if thread is not None:
            thread.quit()
            thread.wait(5000)
        self.cancel_download_button.hide()
        self.status_label.setText(message)
        self.refresh()

    def _stop_download(self) -> None:
        if self._thread is not None:
            self._cancel.set()
            if not self._thread.wait(10_000):
                log.warning("download thread did not stop within 10 s")
