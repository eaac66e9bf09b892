"""PlayerWidget: shows takes, plays them through engine.audio.devices, or says why it cannot."""
from __future__ import annotations

import os

import numpy as np
import pytest

from deps import missing

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.player import PlayerWidget, format_time  # noqa: E402
from engine.audio import devices  # noqa: E402
from engine.audio.clip import SAMPLE_RATE  # noqa: E402


def tone(seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture
def audio_reason(request) -> str | None:
    """Why audio is unavailable here (None when it works), with the PulseAudio null sink if there is one."""
    try:
        request.getfixturevalue("pulse_null_sink")
    except (pytest.FixtureLookupError, pytest.skip.Exception):
        pass  # no sink here: test whichever branch this machine gives
    return devices.audio_unavailable_reason()


@pytest.fixture
def player(qtbot, audio_reason):
    widget = PlayerWidget()
    qtbot.addWidget(widget)
    yield widget
    widget.clear()


def test_format_time():
    assert format_time(0) == "0:00.0" and format_time(63.44) == "1:03.4" and format_time(-1) == "0:00.0"


def test_takes_are_shown_and_cleared(player):
    player.set_audio(tone(1.5))
    assert player.duration_s() == pytest.approx(1.5)
    assert player.time_label.text() == "0:00.0 / 0:01.5"
    assert player.waveform.duration_s() == pytest.approx(1.5)
    player.clear()
    assert len(player.audio()) == 0 and player.time_label.text() == "0:00.0 / 0:00.0"
    assert not player.play_button.isEnabled()


def test_live_chunks_grow_the_take(player):
    chunks = [tone(0.2, 300), tone(0.2, 500), tone(0.1, 700)]
    for chunk in chunks:
        player.append_chunk(chunk)
    np.testing.assert_array_equal(player.audio(), np.concatenate(chunks))
    player.stop()  # silence the rest of the live take
    player.end_stream()
    assert not player.is_playing()
    full = np.concatenate(chunks)
    player.set_audio(full)
    assert player.duration_s() == pytest.approx(0.5)


def test_plays_a_short_clip_or_is_disabled_with_the_reason(qtbot, player, audio_reason):
    player.set_audio(tone(0.4))
    if audio_reason is not None:
        assert player.unavailable_reason == audio_reason and not player.available
        assert not player.play_button.isEnabled() and not player.stop_button.isEnabled()
        assert audio_reason in player.play_button.toolTip() and audio_reason in player.toolTip()
        player.toggle_play()  # does nothing, raises nothing
        assert not player.is_playing()
        return
    assert player.available and player.play_button.isEnabled()
    toggles: list[bool] = []
    player.play_toggled.connect(toggles.append)
    player.play_button.click()
    assert player.is_playing() and player.stop_button.isEnabled() and toggles == [True]
    stream = player._player  # the engine.audio.devices.StreamPlayer playing it
    qtbot.waitUntil(lambda: not player.is_playing(), timeout=10_000)
    assert toggles == [True, False]  # started, played out
    assert stream.position_s == pytest.approx(0.4)  # every sample went to the device
    assert not player.is_playing() and player.position_s() == 0.0


def test_pause_keeps_the_position(qtbot, player, audio_reason):
    if audio_reason is not None:
        missing(f"audio unavailable here: {audio_reason} (PulseAudio and PortAudio: apt-get install pulseaudio libportaudio2)")
    player.set_audio(tone(3.0))
    player.play()
    qtbot.waitUntil(lambda: player.position_s() > 0.2, timeout=5_000)
    player.toggle_play()
    paused = player.position_s()
    assert not player.is_playing() and 0.2 < paused < 3.0
    player.seek(2.9)
    assert player.position_s() == pytest.approx(2.9)
    player.stop()
    assert player.position_s() == 0.0


def test_without_audio_devices_the_transport_is_disabled_with_the_reason():
    """PortAudio with no reachable PulseAudio server (and no sound card) lists no device at all."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import json\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "import numpy as np\n"
        "from app.player import PlayerWidget\n"
        "p = PlayerWidget()\n"
        "p.set_audio(np.zeros(8000, np.float32))\n"
        "p.toggle_play()\n"
        "print(json.dumps([p.unavailable_reason, p.play_button.isEnabled(), p.is_playing(), p.play_button.toolTip()]))\n"
    )
    env = {**os.environ, "PULSE_SERVER": "unix:/nonexistent/pulse-socket", "QT_QPA_PLATFORM": "offscreen"}
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    reason, enabled, playing, tip = json.loads(result.stdout.strip().splitlines()[-1])
    if reason is None:
        pytest.skip("this machine has an audio device besides PulseAudio")
    assert not enabled and not playing and reason in tip
