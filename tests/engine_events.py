"""EventRecorder: the emit() target the engine-thread tests give EngineSession."""
from __future__ import annotations

import queue
import threading

WAIT_S = 300  # only guards against a hang; nothing is timed


class EventRecorder:
    """Records every event (and the threads they came from) and lets a test wait for job-ending events."""

    def __init__(self, finals: tuple[type, ...], on_event=None) -> None:
        self.events: list[object] = []
        self.threads: set[str] = set()
        self.on_event = on_event
        self._final_types = finals
        self._finals: queue.Queue = queue.Queue()

    def __call__(self, event: object) -> None:
        self.threads.add(threading.current_thread().name)
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)
        if isinstance(event, self._final_types):
            self._finals.put(event)

    def final(self) -> object:
        """The next job-ending event (waits for it)."""
        return self._finals.get(timeout=WAIT_S)

    def of(self, request_id: str | None, kind: type = object) -> list:
        """The events of one request (of one kind)."""
        return [e for e in self.events if isinstance(e, kind) and getattr(e, "request_id", None) == request_id]

    def count(self, kind: type) -> int:
        return sum(isinstance(e, kind) for e in self.events)
