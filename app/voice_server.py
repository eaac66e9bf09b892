"""Settings → Server: "Serve voices on this computer" runs `main.py serve` beside the app.

The switch starts the speech API as a child process (QProcess) on 127.0.0.1 with the app's models,
device and voice library, and stops it when switched off or when the app quits. A child process
rather than a server inside the app: the API then never shares the window's engine queue or its
Stop button, and a crash of one leaves the other running; the cost is a second copy of the models
in memory while it runs. Needs the `server` extra (FastAPI, uvicorn); without it the switch is off
and says what to install.
"""
from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, Signal, Slot
from PySide6.QtWidgets import QCheckBox, QFormLayout, QLabel, QSpinBox, QWidget

log = logging.getLogger("llasa.app")

DEFAULT_PORT = 8808  # as cli.serve.DEFAULT_PORT (not imported: cli pulls in the engine's config only)
_STOP_WAIT_MS = 10_000  # a clean shutdown (cancel, join the engine thread) before the process is killed
_READY_LINE = "Models loaded"  # what `serve` prints once it answers speech requests


def server_unavailable_reason() -> str | None:
    """Why the server cannot run here (a missing package of the `server` extra), or None."""
    for module, package in (("fastapi", "fastapi"), ("uvicorn", "uvicorn"), ("multipart", "python-multipart")):
        if importlib.util.find_spec(module) is None:
            return f"Needs {package}: install llasa-studio[server] (pip install 'llasa-studio[server]')."
    return None


def serve_command(settings, port: int) -> list[str]:
    """The `main.py serve` command line for the app's settings (app.settings.AppSettings)."""
    if getattr(sys, "frozen", False):  # the packaged app: its executable runs main.main
        head = [sys.executable]
    else:
        head = [sys.executable, str(Path(__file__).resolve().parents[1] / "main.py")]
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--voices", str(settings.voices_folder),
            "--lm", settings.lm, "--codec", settings.codec, "--device", settings.device]
    if settings.quantization:
        args += ["--quant", settings.quantization]
    return head + args


class VoiceServer(QObject):
    """The `serve` child process. `state` is "stopped", "starting", "running" or "failed"; `message`
    says more (the URL, or the server's error line)."""

    state_changed = Signal(str, str)  # (state, message)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state, self.message, self.port = "stopped", "", DEFAULT_PORT
        self._command: list[str] | None = None
        self._output = ""
        self._process: QProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def sync(self, settings) -> None:
        """Start, restart (when the command changed) or stop the server to match the settings."""
        wanted = serve_command(settings, settings.serve_port) if settings.serve_voices else None
        if wanted is not None and server_unavailable_reason() is not None:
            wanted = None
        if wanted == self._command and (wanted is None or self.state in ("starting", "running")):
            return
        self.stop()
        if wanted is not None:
            self._start(wanted, settings.serve_port)

    def _start(self, command: list[str], port: int) -> None:
        self._command, self.port, self._output = command, port, ""
        process = QProcess(self)
        process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        process.readyReadStandardOutput.connect(self._read)
        process.finished.connect(self._finished)
        process.errorOccurred.connect(self._error)
        self._process = process
        self._set("starting", f"Loading the models for {self.url}…")
        log.info("starting the voice server: %s", " ".join(command))
        process.start(command[0], command[1:])

    def stop(self) -> None:
        """Stop the server (SIGTERM: a clean shutdown; killed after _STOP_WAIT_MS). Blocks until it ended."""
        process, self._process, self._command = self._process, None, None
        if process is not None:
            process.finished.disconnect(self._finished)
            process.errorOccurred.disconnect(self._error)
            if process.state() != QProcess.ProcessState.NotRunning:
                process.terminate()
                if not process.waitForFinished(_STOP_WAIT_MS):
                    log.warning("the voice server did not stop within %d ms; killing it", _STOP_WAIT_MS)
                    process.kill()
                    process.waitForFinished(_STOP_WAIT_MS)
            process.deleteLater()
        if self.state != "stopped":
            self._set("stopped", "")

    def _set(self, state: str, message: str) -> None:
        self.state, self.message = state, message
        self.state_changed.emit(state, message)

    @Slot()
    def _read(self) -> None:
        if self._process is None:
            return
        text = bytes(self._process.readAllStandardOutput()).decode("utf-8", errors="replace")
        self._output = (self._output + text)[-20_000:]
        for line in text.splitlines():
            log.info("voice server: %s", line.rstrip())
        if self.state == "starting" and _READY_LINE in self._output:
            self._set("running", f"Serving voices at {self.url}")

    @Slot(int, QProcess.ExitStatus)
    def _finished(self, code: int, _status: QProcess.ExitStatus) -> None:
        self._read()
        errors = [line[len("error: "):] for line in self._output.splitlines() if line.startswith("error: ")]
        self._process, self._command = None, None
        self._set("failed", errors[-1] if errors else f"The voice server stopped (exit code {code}); see the log.")

    @Slot(QProcess.ProcessError)
    def _error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:  # no finished() follows
            program = self._command[0] if self._command else "main.py serve"
            self._process, self._command = None, None
            self._set("failed", f"The voice server could not start ({program}).")


class ServerTab(QWidget):
    """The Settings tab: the switch, the port, and what a client should use."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.serve_check = QCheckBox("Serve voices on this computer")
        self.serve_check.setAccessibleName("Serve voices on this computer")
        self.serve_check.setToolTip("Other apps on this computer can speak with your voices through an "
                                    "OpenAI-compatible speech API")
        self.port_spin = QSpinBox()
        self.port_spin.setAccessibleName("Server port")
        self.port_spin.setRange(1024, 65535)
        self.hint_label = QLabel()
        self.hint_label.setWordWrap(True)
        self.hint_label.setAccessibleName("Server details")
        self.port_spin.valueChanged.connect(self._update_hint)
        reason = server_unavailable_reason()
        if reason is not None:
            self.serve_check.setEnabled(False)
            self.serve_check.setToolTip(reason)
        self.unavailable_reason = reason
        form = QFormLayout(self)
        form.addRow(self.serve_check)
        form.addRow("Port:", self.port_spin)
        form.addRow(self.hint_label)

    def _update_hint(self) -> None:
        if self.unavailable_reason:
            self.hint_label.setText(self.unavailable_reason)
            return
        self.hint_label.setText(
            f"Base URL http://127.0.0.1:{self.port_spin.value()}/v1 (POST /audio/speech, any API key): "
            "only this computer can connect. The server loads its own copy of the models while it runs."
        )

    def load(self, settings) -> None:
        self.serve_check.setChecked(bool(settings.serve_voices) and self.unavailable_reason is None)
        self.port_spin.setValue(settings.serve_port)
        self._update_hint()

    def values(self) -> dict:
        return {"serve_voices": self.serve_check.isChecked(), "serve_port": self.port_spin.value()}
