"""A small book narrated many ways gives byte-identical take files: one segment at a time, 4 at once,
and on 2 worker processes (one of them killed mid-book); only the driver writes the project."""
from __future__ import annotations

import numpy as np
import pytest

from engine.book.importer import Book, Chapter
from engine.book.narration import create_project, narrate, segment_budget
from engine.book.project import NarrationProject, NarrationSettings
from engine.config import ModelChoice
from engine.voices import VoiceLibrary

# A long transcript for 40 codes: a low speaking rate caps every take of the tiny random LM short.
TRANSCRIPT = "The quick brown fox jumps over the lazy dog, near the quiet river bank. " * 4
SENTENCES = ["It was late.", "The river ran past old stone walls.", "Birds sang.", "A boat drifted toward town.",
             "Nobody spoke.", "The bells rang twice, then stopped.", "Night fell.", "The end came quietly."]
BOOK = Book("Batch Book", "A. Author", (
    Chapter("One", "\n\n".join(SENTENCES[:4])), Chapter("Two", "\n\n".join(SENTENCES[4:])),
))


@pytest.fixture(scope="module")
def choice(tiny_models) -> ModelChoice:
    return ModelChoice(str(tiny_models["lm"]), str(tiny_models["codec"]), device="cpu", quantization="fp32")


@pytest.fixture(scope="module")
def synthesizer(choice):
    from engine.speech.synth import Synthesizer

    return Synthesizer.load(choice)


@pytest.fixture(scope="module")
def voice(tmp_path_factory, speech_clip_16k):
    codes = tuple(int(c) for c in np.random.default_rng(3).integers(0, 65536, 40))
    return VoiceLibrary(tmp_path_factory.mktemp("voices")).add("Narrator", speech_clip_16k[0][:16000], TRANSCRIPT,
                                                                codes, "tiny")


def new_project(folder, synthesizer, voice, choice) -> NarrationProject:
    settings = NarrationSettings(lm=choice.lm, codec=choice.codec, quantization="fp32", base_seed=7, temperature=0.9,
                                 top_p=0.95)
    max_tokens, rate = segment_budget(synthesizer, voice.codes, voice.transcript)
    return create_project(folder, BOOK, voice, settings, max_tokens=max_tokens, tokens_per_char=rate)


def take_bytes(project: NarrationProject) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((project.folder / "takes").iterdir())}


@pytest.fixture(scope="module")
def one_at_a_time(tmp_path_factory, synthesizer, voice, choice) -> dict[str, bytes]:
    project = new_project(tmp_path_factory.mktemp("b1") / "p", synthesizer, voice, choice)
    result = narrate(project, synthesizer, batch=1)
    assert (result.rendered, result.failed) == (8, 0)
    return take_bytes(project)


def test_batch_4_gives_the_same_take_files_as_batch_1(tmp_path, one_at_a_time, synthesizer, voice, choice):
    project = new_project(tmp_path / "p", synthesizer, voice, choice)
    events = []
    result = narrate(project, synthesizer, batch=4, on_progress=events.append)
    assert (result.rendered, result.total, result.cancelled) == (8, 8, False)
    assert take_bytes(project) == one_at_a_time and len(one_at_a_time) == 16
    assert len({v for k, v in one_at_a_time.items() if k.endswith(".flac")}) == 8  # 8 different takes
    finished = [e for e in events if e.status not in (None, "pending")]
    assert [e.done for e in finished] == list(range(1, 9)) and finished[-1].eta_s == pytest.approx(0, abs=1e-6)


def test_two_workers_one_killed_mid_book_give_the_same_takes(tmp_path, one_at_a_time, synthesizer, voice, choice):
    """Two spawned worker processes render the book; the driver (no models of its own) writes it. Worker 0
    is killed with SIGKILL once two segments are done: its unfinished segments go to worker 1."""
    import os
    import signal

    from engine.book.workers import WorkerPool

    project = new_project(tmp_path / "p", synthesizer, voice, choice)
    killed = []
    with WorkerPool(choice, 2, batch=2, threads=1) as pool:
        def kill_worker_0(progress):
            if progress.done >= 2 and not killed:
                os.kill(pool.pids[0], signal.SIGKILL)
                killed.append(progress.done)

        result = narrate(project, None, source=pool, on_progress=kill_worker_0)
        assert killed and pool.lost_jobs >= 1
    assert (result.rendered, result.failed, result.cancelled) == (8, 0, False)
    assert take_bytes(project) == one_at_a_time


def _free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture
def ray_cluster():
    """A local 2-node Ray cluster on 127.0.0.1 (a head and one more node, 1 CPU each), on ports chosen here,
    with its own temp folder; stopped by killing exactly the processes it started (their group, then
    any left that name its temp folder)."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    if os.environ.get("CI"):
        import ray  # noqa: F401 - CI installs the cluster extra: a missing Ray fails there
    else:
        pytest.importorskip("ray")
    ray_bin = str(Path(sys.executable).with_name("ray"))
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    gcs, *agent = _free_ports(9)
    common = ["--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--object-store-memory", str(100 * 2**20),
              "--temp-dir", temp, "--disable-usage-stats"]
    nodes = [["--head", "--port", str(gcs), "--include-dashboard", "false"],
             ["--address", f"127.0.0.1:{gcs}"]]
    procs = []
    for n, extra in enumerate(nodes):
        ports = agent[4 * n : 4 * n + 4]
        args = [ray_bin, "start", *extra, *common, "--dashboard-agent-listen-port", str(ports[0]),
                "--dashboard-agent-grpc-port", str(ports[1]), "--runtime-env-agent-port", str(ports[2]),
                "--metrics-export-port", str(ports[3])]
        procs.append(subprocess.Popen(args, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        if n == 0:
            _wait_for_port(gcs)
    try:
        yield f"127.0.0.1:{gcs}"
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):  # Ray's daemons that left the group
            try:
                if temp.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_port(port: int) -> None:
    import socket
    import time

    for _ in range(600):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"the Ray head did not listen on {port}")


@pytest.mark.slow
def test_a_local_two_node_ray_cluster_gives_the_same_takes(tmp_path, one_at_a_time, synthesizer, voice, choice,
                                                            ray_cluster):
    import time

    import ray

    from engine.book.cluster import RayPool

    ray.init(address=ray_cluster, log_to_driver=False)
    for _ in range(300):  # the second node registers a moment after the head
        if len([n for n in ray.nodes() if n.get("Alive")]) >= 2:
            break
        time.sleep(0.2)
    project = new_project(tmp_path / "p", synthesizer, voice, choice)
    with RayPool(ray_cluster, choice, batch=2) as pool:
        assert len(pool.actors) == 2
        result = narrate(project, None, source=pool)
    assert (result.rendered, result.failed) == (8, 0)
    assert take_bytes(project) == one_at_a_time
