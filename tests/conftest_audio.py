"""Real audio devices for tests: a private PulseAudio server whose only sink is a null sink.

Register with `pytest_plugins = ["conftest_audio"]` in tests/conftest.py. The `pulse_null_sink`
fixture starts `pulseaudio -n` (no default modules, so it never touches a real sound card or the
user's own server) on a socket in a temporary folder, points PULSE_SERVER at it for this process
and its children, and makes its null sink `llasa_test` the default output and its monitor
`llasa_test.monitor` the default input: what PortAudio plays through the ALSA 'default'/'pulse'
device can be recorded back from the default input. Needs the apt packages pulseaudio,
pulseaudio-utils (pactl, parec), libportaudio2 and libasound2-plugins (ALSA's pulse plugin);
skips, saying which is missing, without them.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deps import missing

SINK = "llasa_test"
MONITOR = f"{SINK}.monitor"
_START_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class PulseNullSink:
    """The running test server: its sink and monitor names and the PULSE_SERVER value."""

    sink: str
    monitor: str
    server: str

    def pactl(self, *args: str) -> str:
        """Run pactl against this server and return its output."""
        env = {**os.environ, "PULSE_SERVER": self.server}
        return subprocess.run(["pactl", *args], env=env, capture_output=True, text=True, timeout=10, check=True).stdout

    def playing_streams(self) -> int:
        """How many playback streams are connected to the sink now."""
        return len([line for line in self.pactl("list", "short", "sink-inputs").splitlines() if line.strip()])


class PulseUnavailable(RuntimeError):
    """The private PulseAudio server could not be started; the message says why."""


def _wait_for_server(server: str, daemon: subprocess.Popen, log: Path) -> None:
    env = {**os.environ, "PULSE_SERVER": server}
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise PulseUnavailable(f"PulseAudio exited at start (code {daemon.returncode}): {log.read_text()[-500:]}")
        if subprocess.run(["pactl", "info"], env=env, capture_output=True, timeout=10).returncode == 0:
            return
        time.sleep(0.1)
    raise PulseUnavailable(f"PulseAudio did not answer within {_START_TIMEOUT_S:.0f} s: {log.read_text()[-500:]}")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@contextlib.contextmanager
def null_sink_server(folder: Path) -> Iterator[PulseNullSink]:
    """Run a private PulseAudio server with null sink `llasa_test` as default output and its monitor
    as default input, with PULSE_SERVER set for this process and its children while inside."""
    for tool, package in (("pulseaudio", "pulseaudio"), ("pactl", "pulseaudio-utils"), ("parec", "pulseaudio-utils")):
        if shutil.which(tool) is None:
            raise PulseUnavailable(f"needs {tool} (apt-get install {package})")
    runtime, state = folder / "runtime", folder / "state"
    runtime.mkdir(mode=0o700, parents=True)
    state.mkdir(mode=0o700)
    server = f"unix:{runtime}/native"
    log = folder / "pulseaudio.log"
    daemon_env = {**os.environ, "PULSE_RUNTIME_PATH": str(runtime), "PULSE_STATE_PATH": str(state)}
    daemon_env.pop("PULSE_SERVER", None)
    with open(log, "w") as log_file:
        daemon = subprocess.Popen(
            [
                "pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit",
                "--use-pid-file=no", "--realtime=no", "--high-priority=no", "--log-target=stderr",
                f"--load=module-native-protocol-unix socket={runtime}/native auth-anonymous=1",
                f"--load=module-null-sink sink_name={SINK} format=float32le rate=48000 channels=2",
            ],
            env=daemon_env, stdout=log_file, stderr=subprocess.STDOUT,
        )
    keeper = None
    saved = os.environ.get("PULSE_SERVER")
    try:
        _wait_for_server(server, daemon, log)
        os.environ["PULSE_SERVER"] = server
        sink = PulseNullSink(SINK, MONITOR, server)
        sink.pactl("set-default-sink", SINK)
        sink.pactl("set-default-source", MONITOR)
        # An idle null sink runs with 2 s buffers, so a new stream would wait up to 2 s for its first
        # samples; a low-latency recorder kept on the monitor holds it at 20 ms, like a sound card.
        keeper = subprocess.Popen(
            ["parec", "--latency-msec=20", f"--device={MONITOR}", "--rate=16000", "--channels=1"],
            env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _check_portaudio_sees_it()
        yield sink
    finally:
        if keeper is not None:
            _stop(keeper)
        _stop(daemon)
        if saved is None:
            os.environ.pop("PULSE_SERVER", None)
        else:
            os.environ["PULSE_SERVER"] = saved


@pytest.fixture(scope="session")
def pulse_null_sink(tmp_path_factory) -> Iterator[PulseNullSink]:
    """A private PulseAudio server with a null sink; skips, saying why, where none can run."""
    try:
        with null_sink_server(tmp_path_factory.mktemp("pulse")) as sink:
            yield sink
    except PulseUnavailable as reason:
        missing(f"PulseAudio: {reason} (apt-get install pulseaudio pulseaudio-utils libportaudio2)")


def _check_portaudio_sees_it() -> None:
    """Skip with the reason when PortAudio cannot reach the server through ALSA's pulse plugin."""
    from engine.audio.devices import audio_unavailable_reason, list_devices, refresh_devices

    reason = audio_unavailable_reason()
    if reason is not None and "PortAudio is not installed" in reason:
        raise PulseUnavailable(f"{reason} (apt-get install libportaudio2)")
    refresh_devices()  # PortAudio lists devices once; this server may be newer than that list
    devices = list_devices()
    if not any(d.is_default_output and d.max_outputs for d in devices) or not any(
        d.is_default_input and d.max_inputs for d in devices
    ):
        raise PulseUnavailable(
            "PortAudio sees no PulseAudio device (apt-get install libasound2-plugins for ALSA's pulse "
            f"plugin); devices: {[d.name for d in devices]}"
        )


@pytest.fixture
def no_portaudio_path(tmp_path) -> Path:
    """A folder to put first on a child process's PYTHONPATH so that importing sounddevice raises
    OSError there, exactly as it does on a machine without libportaudio (via a sitecustomize)."""
    folder = tmp_path / "no_portaudio"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        "class NoPortAudio(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'sounddevice':\n"
        "            raise OSError('PortAudio library not found')\n"
        "sys.meta_path.insert(0, NoPortAudio())\n"
    )
    return folder
