"""Microphone recording and live playback through PortAudio (sounddevice); no torch, no Qt.

sounddevice is imported on first use, so the app starts (and exports) on machines without
PortAudio; every entry point then raises AudioDeviceError with a sentence a user can act on.
Audio callbacks only copy samples in or out of buffers (they run on PortAudio's real-time thread);
everything else happens on the caller's thread. Stopping is bounded: a stream that does not close
within STOP_TIMEOUT_S is abandoned and logged.
"""
from __future__ import annotations

import logging
import math
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from engine.audio.clip import SAMPLE_RATE, resample
from engine.errors import AudioDeviceError

log = logging.getLogger(__name__)

NO_PORTAUDIO = (
    "No audio system found (PortAudio is not installed): recording and live playback are off; "
    "export still works."
)
NO_DEVICES = "No audio devices found: recording and live playback are off; export still works."
STOP_TIMEOUT_S = 2.0  # s: longest wait for PortAudio to stop and close a stream
LEVEL_WINDOW_S = 0.05  # s: Recorder.level_db looks at this much of the latest input
STREAM_LATENCY_S = 0.1  # s: device buffering; smaller buffers underrun on PulseAudio's ALSA plugin


def _sounddevice():
    """The sounddevice module; AudioDeviceError when PortAudio cannot be loaded."""
    try:
        import sounddevice
    except OSError as error:  # sounddevice raises OSError when libportaudio is missing
        raise AudioDeviceError(NO_PORTAUDIO) from error
    return sounddevice


def audio_unavailable_reason() -> str | None:
    """None when PortAudio works and lists at least one device, else why audio I/O is off."""
    try:
        devices = list_devices()
    except AudioDeviceError as error:
        return str(error)
    return None if devices else NO_DEVICES


@dataclass(frozen=True)
class AudioDevice:
    """One PortAudio device as the settings dialog shows it."""

    index: int  # PortAudio device index (what Recorder/StreamPlayer take)
    name: str  # human-readable name, with the host API when there are several
    max_inputs: int  # input channels (0: output only)
    max_outputs: int  # output channels (0: input only)
    default_samplerate: float  # Hz: the rate the device runs at natively
    is_default_input: bool  # the system's default microphone
    is_default_output: bool  # the system's default speakers


def list_devices() -> list[AudioDevice]:
    """Every input and output device PortAudio sees; AudioDeviceError when PortAudio is unusable."""
    sd = _sounddevice()
    try:
        infos, apis = sd.query_devices(), sd.query_hostapis()
    except sd.PortAudioError as error:
        raise AudioDeviceError(f"The audio system cannot list devices ({error}).") from error
    default_in, default_out = (_default_index(sd, kind) for kind in ("input", "output"))
    return [
        AudioDevice(
            index=info["index"],
            name=info["name"] if len(apis) < 2 else f"{info['name']} ({apis[info['hostapi']]['name']})",
            max_inputs=info["max_input_channels"],
            max_outputs=info["max_output_channels"],
            default_samplerate=float(info["default_samplerate"]),
            is_default_input=info["index"] == default_in,
            is_default_output=info["index"] == default_out,
        )
        for info in infos
    ]


def refresh_devices() -> None:
    """Re-scan devices (PortAudio lists them once, when it starts). Only while no stream is open."""
    sd = _sounddevice()
    sd._terminate()  # sounddevice's (private) way to re-initialise PortAudio
    sd._initialize()


def _default_index(sd, kind: str) -> int:
    try:
        return int(sd.query_devices(kind=kind)["index"])
    except (sd.PortAudioError, ValueError):
        return -1


def _device_info(sd, device: int | None, kind: str) -> dict:
    """PortAudio's description of `device` (None: the default) for `kind` ("input"/"output")."""
    try:
        info = sd.query_devices(device, kind=kind)
    except (sd.PortAudioError, ValueError) as error:
        which = "default" if device is None else f"number {device}"
        raise AudioDeviceError(
            f"No usable audio {kind} device ({which}): {error}. Choose another {kind} device in Settings."
        ) from error
    if info[f"max_{kind}_channels"] < 1:
        raise AudioDeviceError(
            f"'{info['name']}' has no {kind} channels; choose another {kind} device in Settings."
        )
    return info


def _close(stream, what: str) -> None:
    """Abort and close a PortAudio stream from a helper thread, waiting at most STOP_TIMEOUT_S."""

    def close() -> None:
        try:
            stream.abort(ignore_errors=True)
            stream.close(ignore_errors=True)
        except Exception:  # a failing driver must not take the app down while stopping
            log.exception("closing the %s stream failed", what)

    closer = threading.Thread(target=close, name=f"close-{what}", daemon=True)
    closer.start()
    closer.join(STOP_TIMEOUT_S)
    if closer.is_alive():
        log.warning("the %s stream did not close within %.1f s; abandoned", what, STOP_TIMEOUT_S)


class Recorder:
    """Records one mono take from an input device, at its own rate, returned at 16 kHz.

    Stops by itself after max_seconds; stop() then still returns the take.
    """

    def __init__(self, device: int | None = None, max_seconds: float = 15.0) -> None:
        if not max_seconds > 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        self._sd = _sounddevice()
        self._info = _device_info(self._sd, device, "input")
        self.device = device
        self.max_seconds = max_seconds
        self.rate = int(self._info["default_samplerate"])  # Hz, the device's native rate
        self._max_frames = int(round(max_seconds * self.rate))
        self._lock = threading.Lock()
        self._blocks: list[np.ndarray] = []  # float32 [frames, channels], filled by the callback
        self._frames = 0
        self._stream = None
        self._finished = threading.Event()
        self._finished.set()

    def start(self) -> None:
        """Open the device and start recording (a new take: earlier samples are dropped)."""
        if self._stream is not None:
            raise RuntimeError("Recorder is already recording")
        sd = self._sd
        with self._lock:
            self._blocks, self._frames = [], 0
        self._finished.clear()
        channels = min(self._info["max_input_channels"], 2)
        try:
            sd.check_input_settings(self.device, channels=1, samplerate=self.rate, dtype="float32")
            channels = 1
        except (sd.PortAudioError, ValueError):
            pass  # some devices only open in stereo: downmixed in stop()
        try:
            self._stream = sd.InputStream(
                device=self.device, channels=channels, samplerate=self.rate, dtype="float32",
                latency=STREAM_LATENCY_S, callback=self._callback, finished_callback=self._finished.set,
            )
            self._stream.start()
        except sd.PortAudioError as error:
            self._stream = None
            self._finished.set()
            raise AudioDeviceError(
                f"Cannot record from '{self._info['name']}' ({error}); check that it is plugged in and "
                "not used by another program, or choose another input device in Settings."
            ) from error

    def _callback(self, indata, frames, time, status) -> None:
        with self._lock:
            take = min(frames, self._max_frames - self._frames)
            self._blocks.append(indata[:take].copy())
            self._frames += take
            full = self._frames >= self._max_frames
        if full:
            raise self._sd.CallbackStop

    def stop(self) -> np.ndarray:
        """Stop (if still recording) and return the take: float32 [n] mono at 16 kHz."""
        if self._stream is not None:
            _close(self._stream, "input")
            self._stream = None
        self._finished.set()
        with self._lock:
            blocks = self._blocks
        if not blocks:
            return np.zeros(0, np.float32)
        take = np.concatenate(blocks)
        return resample(take.mean(axis=1, dtype=np.float32), self.rate, SAMPLE_RATE)

    @property
    def is_recording(self) -> bool:
        """True from start() until stop() or until max_seconds were recorded."""
        return self._stream is not None and not self._finished.is_set()

    @property
    def elapsed_s(self) -> float:
        """Seconds recorded so far."""
        return self._frames / self.rate

    @property
    def level_db(self) -> float:
        """Peak level of the latest ~50 ms in dBFS (-inf for silence or nothing yet); any thread."""
        want = max(1, int(LEVEL_WINDOW_S * self.rate))
        with self._lock:
            recent, count = [], 0
            for block in reversed(self._blocks):
                recent.append(block)
                count += len(block)
                if count >= want:
                    break
        peak = max((float(np.abs(block).max()) for block in recent if block.size), default=0.0)
        return 20.0 * math.log10(peak) if peak > 0 else -math.inf


class StreamPlayer:
    """Plays float32 chunks fed from any thread, as they come, through a queue the callback drains.

    Playback begins once prebuffer_s of audio is queued (or finish() was called). When the queue
    runs dry before finish(), silence is played, `underruns` is counted, and playback waits for
    prebuffer_s again. feed() never blocks on the audio device.
    """

    def __init__(
        self, device: int | None = None, sample_rate: int = SAMPLE_RATE, prebuffer_s: float = 0.1
    ) -> None:
        self._sd = sd = _sounddevice()
        self._info = _device_info(sd, device, "output")
        self.device = device
        self.sample_rate = int(sample_rate)  # Hz of the fed chunks
        self._prebuffer = max(1, int(prebuffer_s * self.sample_rate))
        self._channels = 1
        try:
            sd.check_output_settings(device, channels=1, samplerate=self.sample_rate, dtype="float32")
        except (sd.PortAudioError, ValueError):
            try:  # some devices only open in stereo: the mono signal goes to both channels
                self._channels = min(self._info["max_output_channels"], 2)
                sd.check_output_settings(
                    device, channels=self._channels, samplerate=self.sample_rate, dtype="float32"
                )
            except (sd.PortAudioError, ValueError) as error:
                raise AudioDeviceError(
                    f"'{self._info['name']}' cannot play {self.sample_rate} Hz audio ({error}); "
                    "choose another output device in Settings."
                ) from error
        self._lock = threading.Lock()
        self._queue: deque[np.ndarray] = deque()  # chunks not yet (fully) played
        self._offset = 0  # samples of _queue[0] already played
        self._queued = 0  # samples in the queue, minus _offset
        self._played = 0  # samples handed to the device
        self._playing = False  # False while (re)filling the prebuffer
        self._finishing = False  # finish() or stop() was called
        self._stopped = False
        self._underruns = 0
        self._stream = None
        self._done = threading.Event()

    def start(self) -> None:
        """Open the output device; audio starts once the prebuffer is filled."""
        if self._stream is not None:
            raise RuntimeError("StreamPlayer was already started")
        sd = self._sd
        try:
            self._stream = sd.OutputStream(
                device=self.device, channels=self._channels, samplerate=self.sample_rate, dtype="float32",
                latency=STREAM_LATENCY_S, callback=self._callback, finished_callback=self._done.set,
            )
            self._stream.start()
        except sd.PortAudioError as error:
            self._done.set()
            raise AudioDeviceError(
                f"Cannot play on '{self._info['name']}' ({error}); check that it is connected, or choose "
                "another output device in Settings."
            ) from error

    def feed(self, chunk: np.ndarray) -> None:
        """Queue float32 [n] samples at sample_rate; returns at once. Ignored after stop()."""
        samples = np.array(chunk, dtype=np.float32, copy=True).reshape(-1)
        with self._lock:
            if self._stopped:
                return
            if self._finishing:
                raise RuntimeError("StreamPlayer.feed() after finish()")
            self._queue.append(samples)
            self._queued += len(samples)

    def finish(self) -> None:
        """No more chunks will come: play out what is queued, then stop."""
        with self._lock:
            self._finishing = True

    def stop(self) -> None:
        """Stop playback now, dropping what is queued (bounded; safe to call twice)."""
        with self._lock:
            self._stopped = self._finishing = True
            self._queue.clear()
            self._queued = 0
        if self._stream is not None:
            _close(self._stream, "output")
        self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until playback ended (after finish() or stop()); False when `timeout` s passed first."""
        return self._done.wait(timeout)

    @property
    def position_s(self) -> float:
        """Seconds of fed audio handed to the device so far."""
        return self._played / self.sample_rate

    @property
    def is_playing(self) -> bool:
        """True from start() until playback ended."""
        return self._stream is not None and not self._done.is_set()

    @property
    def underruns(self) -> int:
        """How many times the queue ran dry before finish() (each time, silence was played)."""
        return self._underruns

    def _callback(self, outdata, frames, time, status) -> None:
        with self._lock:
            if not self._playing and (self._queued >= self._prebuffer or self._finishing):
                self._playing = True
            written = self._copy_out(outdata, frames) if self._playing else 0
            outdata[written:] = 0.0
            self._played += written
            if written < frames and self._playing:
                if not self._finishing:
                    self._underruns += 1
                    self._playing = False  # refill the prebuffer before going on
                    return
        if written < frames and self._finishing:
            raise self._sd.CallbackStop  # PortAudio plays out what it has, then calls finished_callback

    def _copy_out(self, outdata, frames: int) -> int:
        """Move up to `frames` queued samples into outdata (all channels); returns how many."""
        written = 0
        while written < frames and self._queue:
            head = self._queue[0]
            n = min(frames - written, len(head) - self._offset)
            outdata[written : written + n] = head[self._offset : self._offset + n, None]
            written += n
            self._offset += n
            if self._offset == len(head):
                self._queue.popleft()
                self._offset = 0
        self._queued -= written
        return written


def play_audio(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, device: int | None = None) -> StreamPlayer:
    """Start playing float32 [n] and return the (already finished-fed) player: wait() or stop() it."""
    player = StreamPlayer(device=device, sample_rate=sample_rate)
    player.start()
    player.feed(wave)
    player.finish()
    return player
