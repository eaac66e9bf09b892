"""Recording and live playback through real PortAudio devices (a PulseAudio null sink), and the
behaviour without PortAudio (its import made to fail in a subprocess)."""
from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine.audio.clip import SAMPLE_RATE
from engine.audio.devices import AudioDevice, Recorder, StreamPlayer, list_devices, play_audio
from engine.errors import AudioDeviceError

ROOT = Path(__file__).resolve().parents[1]


def wait_until(condition, timeout: float = 10.0) -> bool:
    """Poll `condition` until true or `timeout` s passed (a deadline, never an assert on time)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def align(recorded: np.ndarray, sent: np.ndarray) -> tuple[np.ndarray, float]:
    """The part of `recorded` that best matches `sent` and their normalised cross-correlation."""
    n = 1 << math.ceil(math.log2(len(recorded) + len(sent)))
    corr = np.fft.irfft(np.fft.rfft(recorded, n) * np.conj(np.fft.rfft(sent, n)), n)[: len(recorded) - len(sent) + 1]
    lag = int(np.argmax(np.abs(corr)))
    segment = recorded[lag : lag + len(sent)]
    return segment, float(corr[lag] / (np.linalg.norm(sent) * np.linalg.norm(segment) + 1e-12))


def start_recorder(max_seconds: float) -> Recorder:
    """A recorder on the sink's monitor (the default input) that is already receiving samples."""
    recorder = Recorder(max_seconds=max_seconds)
    recorder.start()
    assert wait_until(lambda: recorder.elapsed_s > 0.05), "no samples came from the monitor"
    return recorder


def rms_db(wave: np.ndarray) -> float:
    return 10 * math.log10(float(np.mean(np.square(wave, dtype=np.float64))) + 1e-20)


def test_without_portaudio_everything_says_so(no_portaudio_path):
    """sounddevice raises OSError when libportaudio is missing (see the no_portaudio_path fixture)."""
    script = textwrap.dedent("""
        import sys
        from engine.audio import devices
        from engine.errors import AudioDeviceError
        print(devices.audio_unavailable_reason())
        for make in (devices.list_devices, devices.Recorder, devices.StreamPlayer, lambda: devices.play_audio([0.0])):
            try:
                make()
            except AudioDeviceError as error:
                print(error)
        print("torch" in sys.modules, "PySide6" in sys.modules)
    """)
    env = {"PYTHONPATH": f"{no_portaudio_path}:{ROOT}", "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-c", script]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    expected = (
        "No audio system found (PortAudio is not installed): recording and live playback are off; "
        "export still works."
    )
    assert lines == [expected] * 5 + ["False False"]


def test_lists_the_null_sink_as_default_devices(pulse_null_sink):
    devices = list_devices()
    assert all(isinstance(d, AudioDevice) for d in devices)
    out = [d for d in devices if d.is_default_output]
    inp = [d for d in devices if d.is_default_input]
    assert len(out) == 1 and out[0].max_outputs > 0 and out[0].default_samplerate > 0
    assert len(inp) == 1 and inp[0].max_inputs > 0


def test_streamed_playback_is_recorded_back_from_the_monitor(pulse_null_sink, speech_clip_16k):
    sent = speech_clip_16k[0][: 3 * SAMPLE_RATE]
    recorder = start_recorder(max_seconds=10)
    player = StreamPlayer()
    player.start()

    def feed() -> None:  # 20 ms chunks at about 4x real time, as a fast generator would
        for i in range(0, len(sent), 320):
            player.feed(sent[i : i + 320])
            time.sleep(0.005)
        player.finish()

    feeder = threading.Thread(target=feed)
    feeder.start()
    assert player.is_playing
    assert player.wait(timeout=30)
    feeder.join(5)
    assert wait_until(lambda: recorder.elapsed_s > 0.5 + len(sent) / SAMPLE_RATE)  # pipeline delay
    recorded = recorder.stop()
    segment, peak = align(recorded, sent)
    level_difference = rms_db(segment) - rms_db(sent)
    print(f"playback: correlation {peak:.4f}, level {level_difference:+.2f} dB, underruns {player.underruns}")
    assert peak > 0.9
    assert abs(level_difference) < 1.0
    assert player.underruns == 0
    assert player.position_s == pytest.approx(len(sent) / SAMPLE_RATE)
    assert not player.is_playing


def test_underruns_are_counted_when_feeding_is_slower_than_real_time(pulse_null_sink):
    player = StreamPlayer(prebuffer_s=0.05)
    player.start()
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE // 10) / SAMPLE_RATE)).astype(np.float32)
    for _ in range(4):  # 0.1 s of audio every 0.3 s
        player.feed(tone)
        assert wait_until(lambda: player.underruns > 0 or player.position_s > 0)
        time.sleep(0.3)
    player.finish()
    assert player.wait(timeout=10)
    print(f"slow feeding: {player.underruns} underruns")
    assert player.underruns >= 2
    assert player.position_s == pytest.approx(0.4)


def test_stop_is_immediate_and_later_chunks_are_ignored(pulse_null_sink):
    player = play_audio(np.zeros(10 * SAMPLE_RATE, np.float32))
    assert wait_until(lambda: player.position_s > 0)
    player.stop()
    assert player.wait(timeout=0) and not player.is_playing
    position = player.position_s
    player.feed(np.zeros(1000, np.float32))  # e.g. the engine still streaming after the user stopped
    assert position < 5 and player.position_s == position


def test_recorder_level_meter_and_auto_stop(pulse_null_sink):
    recorder = start_recorder(max_seconds=1.5)
    assert recorder.is_recording
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE * 3) / SAMPLE_RATE)).astype(np.float32)
    player = play_audio(tone)
    assert wait_until(lambda: recorder.level_db > -10 or not recorder.is_recording)
    level = recorder.level_db
    assert wait_until(lambda: not recorder.is_recording)
    player.stop()
    take = recorder.stop()
    print(f"level meter during a -6.02 dBFS tone: {level:.2f} dBFS")
    assert level == pytest.approx(20 * math.log10(0.5), abs=0.5)
    assert recorder.elapsed_s == pytest.approx(1.5, abs=1 / recorder.rate)
    assert take.dtype == np.float32 and len(take) == round(1.5 * SAMPLE_RATE)


def test_unknown_device_is_a_clear_error(pulse_null_sink):
    with pytest.raises(AudioDeviceError, match="Choose another output device"):
        StreamPlayer(device=999)
    with pytest.raises(AudioDeviceError, match="Choose another input device"):
        Recorder(device=999)
