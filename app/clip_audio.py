"""The voice panel's recording and playback: record a reference from the chosen input device (with a
level meter and a clock, stopping by itself at MAX_RECORD_S) and play clips with a playhead on the waveform.

Mixed into app.voice_panel.VoicePanel, whose widgets it drives (device_combo, record_button, level_meter,
level_label, timer_label, unavailable_label, waveform) and whose set_clip receives a finished recording.
"""
from __future__ import annotations

from datetime import datetime

import numpy as np
from PySide6.QtCore import QTimer, Slot

from app.voice_library_view import attempt
from engine.audio import devices
from engine.audio.clip import SAMPLE_RATE
from engine.errors import EngineError

MAX_RECORD_S = 15.0  # s: recording stops by itself here (the most a reference can use)
POLL_MS = 33  # ms: level meter / timer / playhead refresh (~30 Hz)
METER_FLOOR_DB = -60.0  # dBFS shown as an empty meter


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


class ClipAudioMixin:
    """Recorder, player and the poll timer that refreshes the meter, clock and playhead while either runs."""

    def _init_audio(self) -> None:
        """The audio state, before the widgets are built (the panel's __init__ calls it)."""
        self._recorder: devices.Recorder | None = None
        self._player = None  # devices.StreamPlayer playing a clip or a saved voice
        self._player_offset_s = 0.0  # s: where in the waveform the playing audio starts
        self._audio_ok = False
        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self._on_poll)

    # --- recording ------------------------------------------------------------------------------
    @Slot()
    def refresh_devices(self) -> None:
        """List input devices, or disable recording with the reason audio is unavailable."""
        reason = devices.audio_unavailable_reason()
        inputs: list = []
        if reason is None:
            try:
                inputs = [d for d in devices.list_devices() if d.max_inputs > 0]
            except EngineError as error:
                reason = str(error)
        if reason is None and not inputs:
            reason = "No microphone or other input device was found."
        current = self.device_combo.currentData()
        self.device_combo.clear()
        for d in inputs:
            self.device_combo.addItem(d.name + (" (default)" if d.is_default_input else ""), d.index)
            if d.index == current or (current is None and d.is_default_input):
                self.device_combo.setCurrentIndex(self.device_combo.count() - 1)
        self.set_recording_available(reason is None, reason or "")

    @Slot(bool, str)
    def set_recording_available(self, available: bool, reason: str = "") -> None:
        """Enable recording and playback, or disable them showing `reason` (why audio is unavailable)."""
        self._audio_ok = bool(available)
        self.unavailable_label.setText("" if available else f"Recording and playback are off: {reason}")
        self.unavailable_label.setVisible(not available)
        for w in self._audio_widgets:
            w.setToolTip(self._tips[w] if available else reason)
        self.library_view.set_audio_available(available, reason)
        self._update_buttons()

    def is_recording(self) -> bool:
        return self._recorder is not None

    @Slot()
    def toggle_recording(self) -> None:
        """Record button: start a recording, or stop the one running."""
        if self._recorder is not None:
            self._finish_recording()
            return
        self._stop_player()
        recorder = attempt(self, "Cannot record", self._start_recorder)
        if recorder is None:
            return
        self._recorder = recorder
        self.timer_label.setText(f"0:00 / {_clock(MAX_RECORD_S)}")
        for w in (self.level_meter, self.level_label):
            w.show()
        self.record_button.setText("Stop")
        self.record_button.setAccessibleName("Stop recording")
        self._poll.start()
        self._update_buttons()

    def _start_recorder(self) -> devices.Recorder:
        recorder = devices.Recorder(device=self.device_combo.currentData(), max_seconds=MAX_RECORD_S)
        recorder.start()
        return recorder

    def _finish_recording(self) -> None:
        recorder, self._recorder = self._recorder, None
        self.record_button.setText("Record")
        self.record_button.setAccessibleName("Record")
        self.level_meter.setValue(0)
        for w in (self.level_meter, self.level_label):
            w.hide()
        samples = attempt(self, "Recording failed", recorder.stop)
        self._update_buttons()
        if samples is not None and len(samples):
            self.set_clip(samples, name=f"Recording {datetime.now():%Y-%m-%d %H:%M}")
        else:
            self._update_clock()

    # --- playback -------------------------------------------------------------------------------
    @Slot()
    def play_clip(self) -> None:
        """Play the trimmed clip, with a playhead on the waveform."""
        self._play(self.trimmed_samples(), self.waveform.trim_range()[0])

    def _play(self, samples: np.ndarray, waveform_offset_s: float | None) -> None:
        self._stop_player()
        if not (self._audio_ok and len(samples)):
            return
        self._player = attempt(self, "Cannot play audio", devices.play_audio, samples, SAMPLE_RATE)
        if self._player is None:
            return
        self._player_offset_s = -1.0 if waveform_offset_s is None else waveform_offset_s
        self._poll.start()

    def _stop_player(self) -> None:
        if self._player is not None:
            self._player.stop()
            self._player = None
        self.waveform.set_playhead(None)

    def _on_poll(self) -> None:
        if self._recorder is not None:
            level = self._recorder.level_db
            self.level_meter.setValue(int(max(0.0, min(-METER_FLOOR_DB, level - METER_FLOOR_DB)) * 10))
            self.timer_label.setText(f"{_clock(self._recorder.elapsed_s)} / {_clock(MAX_RECORD_S)}")
            if not self._recorder.is_recording:  # reached MAX_RECORD_S (or the device stopped)
                self._finish_recording()
        if self._player is not None:
            if self._player.is_playing:
                if self._player_offset_s >= 0:
                    self.waveform.set_playhead(self._player_offset_s + self._player.position_s)
            else:
                self._player = None
                self.waveform.set_playhead(None)
        if self._recorder is None and self._player is None:
            self._poll.stop()

    def shutdown(self) -> None:
        """Stop recording and playback (the window is closing)."""
        self._poll.stop()
        if self._recorder is not None:
            recorder, self._recorder = self._recorder, None
            recorder.stop()
        self._stop_player()
