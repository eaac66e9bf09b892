"""The take player: waveform, play/pause/stop, position; plays a whole take or chunks as they arrive."""
from __future__ import annotations

import logging
import time

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QStyle, QToolButton, QWidget

from app.waveform import WaveformView
from engine.audio import devices
from engine.audio.clip import SAMPLE_RATE
from engine.errors import EngineError

WAVEFORM_REFRESH_S = 0.5  # s: while a take streams in, the waveform is redrawn at most this often

log = logging.getLogger("llasa.app")
_TICK_MS = 40  # playhead refresh interval


def format_time(seconds: float) -> str:
    """m:ss.s, e.g. 1:03.4."""
    minutes, secs = divmod(max(0.0, seconds), 60.0)
    return f"{int(minutes)}:{secs:04.1f}"


class PlayerWidget(QWidget):
    """Transport for one take: a finished clip (set_audio) or a live stream (append_chunk/end_stream).

    Plays through engine.audio.devices; when audio output is unavailable the transport is disabled and its
    tooltip says why, while the waveform still shows the take (so it can be exported).
    """

    play_toggled = Signal(bool)  # True: playback started; False: paused, stopped or played out
    failed = Signal(str)  # an audio device error the user should see

    def __init__(self, parent: QWidget | None = None, output_device: int | None = None) -> None:
        super().__init__(parent)
        self._device = output_device
        self._wave = np.zeros(0, np.float32)
        self._chunks: list[np.ndarray] = []
        self._drawn_at = 0.0  # time.monotonic() of the last waveform redraw while streaming
        self._player: devices.StreamPlayer | None = None
        self._live = False  # the current player is fed chunk by chunk
        self._live_muted = False  # the user stopped this take's live playback: stay quiet
        self._offset_s = 0.0  # s: where in the take the current player started
        self._position_s = 0.0  # s: where play resumes when not playing

        self.waveform = WaveformView(self)
        self.waveform.set_trim_enabled(False)
        self.waveform.setAccessibleName("Generated speech waveform")
        self.waveform.seek_requested.connect(self.seek)
        self.play_button = self._button(QStyle.StandardPixmap.SP_MediaPlay, "Play or pause", "Play / pause (Space)")
        self.play_button.clicked.connect(self.toggle_play)
        self.stop_button = self._button(QStyle.StandardPixmap.SP_MediaStop, "Stop playback", "Stop playback")
        self.stop_button.clicked.connect(self.stop)
        self.time_label = QLabel()
        self.time_label.setAccessibleName("Playback position")
        self.time_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.play_button)
        layout.addWidget(self.stop_button)
        layout.addWidget(self.waveform, 1)
        layout.addWidget(self.time_label)

        self._timer = QTimer(self)
        self._timer.setInterval(_TICK_MS)
        self._timer.timeout.connect(self._tick)

        self.unavailable_reason = devices.audio_unavailable_reason()
        if self.unavailable_reason is not None:
            tip = f"Playback is unavailable: {self.unavailable_reason}"
            for button in (self.play_button, self.stop_button):
                button.setEnabled(False)
                button.setToolTip(tip)
            self.setToolTip(tip)
            self.setAccessibleDescription(tip)
        self._refresh()

    def _button(self, icon: QStyle.StandardPixmap, name: str, tip: str) -> QToolButton:
        button = QToolButton(self)
        button.setIcon(self.style().standardIcon(icon))
        button.setAccessibleName(name)
        button.setToolTip(tip)
        button.setAutoRaise(True)
        return button

    # --- state --------------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        """Whether audio output works here (see unavailable_reason otherwise)."""
        return self.unavailable_reason is None

    def audio(self) -> np.ndarray:
        """The take shown: float32 [n] at 16 kHz (empty when there is none)."""
        self._join_stream()
        return self._wave

    def _join_stream(self) -> None:
        """Make _wave hold every chunk received so far (kept as the first chunk of the stream)."""
        if len(self._chunks) > 1 or (self._chunks and self._chunks[0] is not self._wave):
            self._wave = np.concatenate(self._chunks)
            self._chunks = [self._wave]

    def is_playing(self) -> bool:
        return self._player is not None

    def position_s(self) -> float:
        """s: playback position in the take."""
        if self._player is not None:
            return min(self._offset_s + self._player.position_s, self.duration_s())
        return self._position_s

    def duration_s(self) -> float:
        return len(self._wave) / SAMPLE_RATE

    @Slot(object)
    def set_output_device(self, index: int | None) -> None:
        """PortAudio output index (None = system default), used from the next playback on."""
        self._device = index

    # --- takes --------------------------------------------------------------------------------
    @Slot(object)
    def set_audio(self, wave: np.ndarray) -> None:
        """Show a finished take, float32 [n] at 16 kHz. A live stream still playing plays to its end."""
        self._wave = np.ascontiguousarray(wave, dtype=np.float32).reshape(-1)
        self._chunks = []
        self.waveform.set_samples(self._wave, SAMPLE_RATE)
        if self._live and self._player is not None:
            self._player.finish()
        elif self._player is None:
            self._position_s = 0.0
        self._refresh()

    @Slot(object)
    def append_chunk(self, chunk: np.ndarray) -> None:
        """Add the next float32 [n] 16 kHz chunk of a take being generated; plays it right away."""
        chunk = np.ascontiguousarray(chunk, dtype=np.float32).reshape(-1)
        if not self._chunks and not self._live:  # first chunk of a new take
            self._stop_player()
            self._position_s = 0.0
        self._chunks.append(chunk)
        now = time.monotonic()
        if len(self._chunks) <= 2 or now - self._drawn_at >= WAVEFORM_REFRESH_S:
            # A long text streams thousands of chunks: joining and redrawing everything on each one would
            # cost O(n^2); join what came so far (kept as the first chunk) at most a few times a second.
            self._join_stream()
            self.waveform.set_samples(self._wave, SAMPLE_RATE)
            self._drawn_at = now
        if self.available and not self._live_muted:
            try:
                if self._player is None:
                    self._player = devices.StreamPlayer(self._device, SAMPLE_RATE)
                    self._player.start()
                    self._live, self._offset_s = True, 0.0
                    self._timer.start()
                    self.play_toggled.emit(True)
                self._player.feed(chunk)
            except EngineError as e:
                self._live_muted = True
                self._stop_player()
                self.failed.emit(str(e))
        self._refresh()

    @Slot()
    def end_stream(self) -> None:
        """No more chunks for this take: let live playback play out what is queued."""
        if self._live and self._player is not None:
            self._player.finish()
        self._join_stream()
        self.waveform.set_samples(self._wave, SAMPLE_RATE)
        self._chunks = []

    @Slot()
    def clear(self) -> None:
        """Forget the take and stop playing."""
        self._stop_player()
        self._wave = np.zeros(0, np.float32)
        self._chunks = []
        self._live_muted = False
        self._position_s = 0.0
        self.waveform.clear()
        self._refresh()

    # --- transport ----------------------------------------------------------------------------
    @Slot()
    def toggle_play(self) -> None:
        """Play from the current position, or pause."""
        if self._player is not None:
            self.pause()
        else:
            self.play()

    @Slot()
    def play(self) -> None:
        if not self.available or self._player is not None or len(self._wave) == 0:
            return
        start_s = self._position_s if self._position_s < self.duration_s() - 0.01 else 0.0
        try:
            self._player = devices.play_audio(self._wave[int(start_s * SAMPLE_RATE):], SAMPLE_RATE, self._device)
        except EngineError as e:
            self.failed.emit(str(e))
            return
        self._live, self._offset_s = False, start_s
        self._timer.start()
        self.play_toggled.emit(True)
        self._refresh()

    @Slot()
    def pause(self) -> None:
        if self._player is None:
            return
        position = self.position_s()
        if self._live:
            self._live_muted = True
        self._stop_player()
        self._position_s = position
        self._refresh()

    @Slot()
    def stop(self) -> None:
        """Stop playing and go back to the start (mutes the rest of a live take)."""
        if self._live:
            self._live_muted = True
        self._stop_player()
        self._position_s = 0.0
        self._refresh()

    @Slot(float)
    def seek(self, seconds: float) -> None:
        """Move to `seconds`; a playing finished take continues from there."""
        seconds = min(max(0.0, seconds), self.duration_s())
        if self._live:
            return  # a live stream cannot jump
        playing = self._player is not None
        self._stop_player()
        self._position_s = seconds
        if playing:
            self.play()
        self._refresh()

    def _stop_player(self) -> None:
        player, self._player = self._player, None
        self._timer.stop()
        self._live = False
        if player is not None:
            try:
                player.stop()
            except EngineError as e:  # the device vanished: nothing left to stop
                log.warning("stopping playback: %s", e)
            self.play_toggled.emit(False)

    @Slot()
    def _tick(self) -> None:
        player = self._player
        if player is not None and not player.is_playing:
            self._stop_player()  # played out
            self._position_s = 0.0
        self._refresh()

    def _refresh(self) -> None:
        playing = self._player is not None
        icon = QStyle.StandardPixmap.SP_MediaPause if playing else QStyle.StandardPixmap.SP_MediaPlay
        self.play_button.setIcon(self.style().standardIcon(icon))
        if self.available:
            self.play_button.setEnabled(len(self._wave) > 0)
            self.stop_button.setEnabled(playing)
        position = self.position_s()
        self.waveform.set_playhead(position if (playing or position > 0) else None)
        self.time_label.setText(f"{format_time(position)} / {format_time(self.duration_s())}")
