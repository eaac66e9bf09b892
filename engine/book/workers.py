"""Worker processes for narration: each loads the models once and renders segments it is sent; the driver writes.

`WorkerPool(choice, workers, batch)` is a take source for engine.book.narration.narrate: it starts
`workers` processes (spawned: no state shared with the driver), each with its own Synthesizer
running continuous batching over `batch` rows (engine.speech.batch.render_many), and deals the jobs
out over one pipe per worker, keeping each worker ~2 batches ahead so its rows never wait. Workers
send back audio, codes and the finish reason; only the driver writes the project (one writer, the
crash-safety rules unchanged). A worker that dies (killed, out of memory) has its unfinished jobs
dealt to the others; a take does not depend on where it was rendered, so the book is the same.
On CUDA, worker i uses GPU i % device_count.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import threading
import traceback
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import replace
from multiprocessing.connection import Connection, wait

from engine.config import ModelChoice, SamplingParams
from engine.errors import CancelledError, EngineError

log = logging.getLogger("llasa.engine")
POLL_S = 0.2  # s: how often the driver checks cancel and dead workers while waiting


class WorkerError(EngineError):
    """A worker failed in a way another worker cannot fix (e.g. every worker died)."""


def _worker_main(conn: Connection, choice: ModelChoice, batch: int, threads: int) -> None:
    """A worker: load the models once, then render job rounds until told to stop."""
    import torch

    from engine.speech.batch import render_many
    from engine.speech.synth import Synthesizer

    if threads:
        torch.set_num_threads(threads)
    try:
        synth = Synthesizer.load(choice, with_encoder=False)
    except Exception as error:  # noqa: BLE001 - reported to the driver, which stops with the reason
        conn.send(("dead", f"{type(error).__name__}: {error}"))
        return
    conn.send(("ready", None))
    while True:
        message = conn.recv()
        if message[0] == "stop":
            return
        params: SamplingParams = message[1]

        def jobs():
            while True:
                item = conn.recv()
                if item[0] == "stop":
                    raise SystemExit(0)
                if item[0] == "end":
                    return
                yield item[1]

        def on_tokens(key: Hashable, drawn: int) -> None:
            conn.send(("tokens", (key, drawn)))

        try:
            for key, take in render_many(synth, jobs(), params, batch=batch, on_tokens=on_tokens):
                if isinstance(take, EngineError):
                    conn.send(("error", (key, type(take).__name__, str(take))))
                else:
                    conn.send(("take", (key, take)))
        except Exception:  # noqa: BLE001 - the driver re-deals this worker's jobs
            conn.send(("dead", traceback.format_exc(limit=3)))
            return
        conn.send(("round", None))


class WorkerPool:
    """A take source over worker processes (see the module docstring). Use as a context manager, or close()."""

    def __init__(self, choice: ModelChoice, workers: int, batch: int = 1, *, threads: int | None = None) -> None:
        if workers < 1:
            raise WorkerError(f"--workers {workers}: use at least 1 worker.")
        import os

        context = mp.get_context("spawn")
        self.choice = choice  # what every worker loads: its runtime goes into the take keys (narration)
        self.batch, self._procs, self._conns = batch, [], []
        threads = threads if threads is not None else max(1, (os.cpu_count() or 1) // workers)
        cuda = _cuda_count() if choice.device in ("auto", "cuda") else 0
        for i in range(workers):
            mine = replace(choice, device=f"cuda:{i % cuda}") if cuda else choice
            parent, child = context.Pipe()
            proc = context.Process(target=_worker_main, args=(child, mine, batch, threads), daemon=True,
                                   name=f"llasa-worker-{i}")
            proc.start()
            child.close()
            self._procs.append(proc)
            self._conns.append(parent)
        self._alive = set(range(workers))
        self.lost_jobs = 0  # jobs re-dealt because their worker stopped

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop every worker (politely, then for good)."""
        for i in list(self._alive):
            try:
                self._conns[i].send(("stop", None))
            except OSError:
                pass
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._alive.clear()

    def _lose(self, worker: int, why: str, queue: deque, outstanding: dict[int, list]) -> None:
        log.warning("Narration worker %d stopped (%s); its segments go to the others", worker, why.strip()[-300:])
        self._alive.discard(worker)
        self.lost_jobs += len(outstanding.get(worker, []))
        queue.extendleft(reversed(outstanding.pop(worker, [])))
        if self._procs[worker].is_alive():
            self._procs[worker].kill()
        if not self._alive:
            raise WorkerError(f"Every narration worker stopped; the last said: {why.strip().splitlines()[-1][:300]}")

    def __call__(
        self, jobs: Iterable, params: SamplingParams, cancel: threading.Event | None,
        on_tokens: Callable[[Hashable, int], None] | None,
    ) -> Iterator[tuple[Hashable, object]]:
        """Deal `jobs` (engine.speech.batch.SegmentJob) to the workers; yield (key, Take or EngineError) as they come."""
        from engine import errors

        queue, outstanding, done = deque(jobs), {i: [] for i in self._alive}, set()
        state = {i: "idle" for i in self._alive}  # idle -> open (takes jobs) -> closing (finishing its rows) -> idle
        ahead = self.batch + 2  # jobs a worker holds: its rows and two waiting, so a freed row never waits
        while True:
            if cancel is not None and cancel.is_set():
                self.close()  # rows in flight are dropped: their segments stay pending
                raise CancelledError("Narration was cancelled.")
            for i in sorted(self._alive):
                if queue and state[i] == "idle":
                    self._conns[i].send(("round", params))
                    state[i] = "open"
                if state[i] == "open":
                    while queue and len(outstanding[i]) < ahead:
                        job = queue.popleft()
                        outstanding[i].append(job)
                        self._conns[i].send(("job", job))
                    if not queue:  # nothing more for it now: let it finish its rows (a lost job reopens it)
                        self._conns[i].send(("end", None))
                        state[i] = "closing"
            if not queue and all(state[i] == "idle" for i in self._alive):
                return
            by_conn = {self._conns[i]: i for i in self._alive} | {self._procs[i].sentinel: i for i in self._alive}
            for ready in wait(list(by_conn), timeout=POLL_S):
                i = by_conn[ready]
                if i not in self._alive:
                    continue
                if ready is not self._conns[i] and self._conns[i].poll():
                    ready = self._conns[i]  # read what it sent before it died first
                try:
                    kind, body = self._conns[i].recv() if ready is self._conns[i] else ("dead", "the process exited")
                except (EOFError, OSError):
                    kind, body = "dead", "the process exited"
                if kind == "dead":
                    self._lose(i, body, queue, outstanding)
                elif kind == "round":
                    state[i] = "idle"
                elif kind == "tokens" and on_tokens is not None:
                    on_tokens(*body)
                elif kind in ("take", "error"):
                    key = body[0]
                    outstanding[i] = [j for j in outstanding[i] if j.key != key]
                    if key in done:
                        continue
                    done.add(key)
                    yield key, body[1] if kind == "take" else getattr(errors, body[1], EngineError)(body[2])


def _cuda_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001
        return 0
