"""Narration on a Ray cluster (optional extra: pip install ".[cluster]"): actors render, the driver writes.

`RayPool(address, choice, workers, batch)` is a take source for engine.book.narration.narrate, like
engine.book.workers.WorkerPool but over Ray: each actor loads the models once (one GPU each when the
cluster has GPUs) and renders lists of segment jobs with continuous batching; the driver keeps two
lists in flight per actor so none waits, and writes every take itself (one writer). An actor that dies
(its machine lost) has its unfinished jobs dealt to the others. Takes do not depend on where they were
rendered. Each machine joins with Ray's own `ray start` (README: "Narrating on several machines").
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import replace

from engine.config import ModelChoice, SamplingParams
from engine.errors import CancelledError, EngineError, SettingsError
from engine.book.workers import WorkerError

POLL_S = 0.2  # s: how often the driver checks cancel while waiting


class _Actor:
    """Runs in a Ray worker process: the models, loaded once."""

    def __init__(self, choice: ModelChoice, batch: int) -> None:
        from engine.speech.synth import Synthesizer

        self.synth, self.batch = Synthesizer.load(choice, with_encoder=False), batch

    def render(self, jobs: list, params: SamplingParams) -> list:
        from engine.speech.batch import render_many

        out = []
        for key, take in render_many(self.synth, jobs, params, batch=self.batch):
            out.append((key, ("error", type(take).__name__, str(take)) if isinstance(take, EngineError) else take))
        return out


class RayPool:
    """A take source over Ray actors at `address` ("HOST:PORT" of the head, or "auto")."""

    def __init__(self, address: str, choice: ModelChoice, workers: int | None = None, batch: int = 1) -> None:
        self.choice = choice  # what every actor loads: its runtime goes into the take keys (narration)
        try:
            import ray
        except ImportError:
            raise SettingsError('--ray needs Ray: pip install ".[cluster]" on every machine.') from None
        self._ray = ray
        try:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise SettingsError(f"--ray {address}: cannot join the Ray cluster ({error}); start it with `ray start`.") from None
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        count = workers or max(gpus, len([n for n in ray.nodes() if n.get("Alive")]))
        options = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        actor = ray.remote(max_restarts=0, **options)(_Actor)
        self.batch = batch
        mine = replace(choice, device="cuda" if gpus else "cpu")
        self._actors = {i: actor.remote(mine, batch) for i in range(count)}
        self.lost_jobs = 0  # jobs re-dealt because their actor died

    @property
    def actors(self) -> list:
        return list(self._actors.values())

    def close(self) -> None:
        for handle in self._actors.values():
            self._ray.kill(handle)
        self._actors.clear()
        self._ray.shutdown()

    def __enter__(self) -> "RayPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(
        self, jobs: Iterable, params: SamplingParams, cancel: threading.Event | None,
        on_tokens: Callable[[Hashable, int], None] | None,
    ) -> Iterator[tuple[Hashable, object]]:
        """Deal `jobs` to the actors in lists of 2 * batch; yield (key, Take or EngineError) as lists come back."""
        from engine import errors

        ray, queue, done = self._ray, deque(jobs), set()
        flying: dict = {}  # object ref -> (actor index, its jobs)
        size = 2 * self.batch
        while queue or flying:
            if cancel is not None and cancel.is_set():
                self.close()
                raise CancelledError("Narration was cancelled.")
            for i, handle in list(self._actors.items()):
                while queue and sum(1 for a, _ in flying.values() if a == i) < 2:
                    part = [queue.popleft() for _ in range(min(size, len(queue)))]
                    flying[handle.render.remote(part, params)] = (i, part)
            if not flying:
                break
            ready, _ = ray.wait(list(flying), num_returns=1, timeout=POLL_S)
            for ref in ready:
                i, part = flying.pop(ref)
                try:
                    results = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as error:
                    self._actors.pop(i, None)
                    self.lost_jobs += len(part)
                    queue.extendleft(reversed(part))
                    if not self._actors:
                        raise WorkerError(f"Every Ray actor stopped; the last: {str(error).splitlines()[0][:300]}") from None
                    continue
                for key, take in results:
                    if key in done:
                        continue
                    done.add(key)
                    if isinstance(take, tuple):
                        take = getattr(errors, take[1], EngineError)(take[2])
                    yield key, take
