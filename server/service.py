"""The server's one engine thread: every HTTP request becomes a job on a shared EngineSession.

`SpeechService` owns an `engine.session.EngineSession`, loads the models once, and hands each
request its own stream of events (keyed by request id, delivered onto the request's asyncio loop).
Jobs queue in the session in arrival order; leaving a request's stream early (a client that
disconnected, an error) cancels that job only, at its next token, so the next request starts.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

from engine.config import ModelChoice
from engine.session import (
    AudioChunk, Cancelled, EncodeVoice, EngineSession, Failed, Generate, Generated, LoadModels,
    ModelsLoaded, VoiceEncoded,
)

log = logging.getLogger("llasa.server")

_FINAL = (Generated, VoiceEncoded, Failed, Cancelled)  # the events that end a server job


@dataclass(frozen=True)
class LoadState:
    """Where model loading stands: "loading", "ready" or "failed" (with the engine's message)."""

    status: str
    message: str = ""
    loaded: ModelsLoaded | None = None


class SpeechService:
    """One EngineSession shared by every request; routes the session's events to the request that asked.

    Thread-safe: the engine thread delivers events, request handlers run on an asyncio loop.
    """

    def __init__(self, choice: ModelChoice) -> None:
        self.choice = choice
        self._session = EngineSession(emit=self._on_event)
        self._lock = threading.Lock()
        self._routes: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._in_flight: set[str] = set()  # submitted server jobs without a final event yet
        self._ids = itertools.count(1)
        self._state = LoadState("loading")
        self._settled = threading.Event()  # set once loading succeeded or failed
        self.counts: Counter[str] = Counter()  # finished speech jobs: "completed", "cancelled", "failed"

    # ---- lifecycle ----
    def start(self) -> None:
        """Start the engine thread and queue the model load (see `state`, `wait_loaded`)."""
        self._session.start()
        self._session.submit(LoadModels(self.choice))

    def wait_loaded(self, timeout: float | None = None) -> LoadState:
        """Block until the models loaded or failed to (or `timeout` s passed); the state then."""
        self._settled.wait(timeout)
        return self.state

    @property
    def state(self) -> LoadState:
        return self._state

    @property
    def in_flight(self) -> int:
        """Server jobs queued or running in the engine."""
        with self._lock:
            return len(self._in_flight)

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Cancel everything and stop the engine thread; True when it stopped in time."""
        return self._session.shutdown(timeout)

    # ---- requests ----
    def _new_id(self, kind: str) -> str:
        return f"api-{kind}-{next(self._ids)}"

    async def generate(self, text: str, voice, params) -> AsyncIterator[object]:
        """Queue a Generate job; yield its AudioChunk events, then Generated, Failed or Cancelled.

        Leaving the iteration before the final event (the client went away) cancels the job.
        """
        request_id = self._new_id("speech")
        async for event in self._run(Generate(request_id, text, voice, params)):
            yield event

    async def encode(self, samples, transcript: str) -> object:
        """Encode a reference clip (float32 [n], 16 kHz); VoiceEncoded or Failed."""
        request_id = self._new_id("voice")
        async for event in self._run(EncodeVoice(request_id, samples, transcript)):
            if isinstance(event, _FINAL):
                return event
        raise RuntimeError("the engine ended an encode job without a final event")

    async def _run(self, job) -> AsyncIterator[object]:
        request_id = job.request_id
        events: asyncio.Queue = asyncio.Queue()
        with self._lock:
            self._routes[request_id] = (asyncio.get_running_loop(), events)
            self._in_flight.add(request_id)
        finished = False
        try:
            self._session.submit(job)
            while True:
                event = await events.get()
                if isinstance(event, _FINAL):
                    finished = True
                yield event
                if finished:
                    return
        finally:
            with self._lock:
                self._routes.pop(request_id, None)
            if not finished:
                log.info("request %s left before its end: cancelling it", request_id)
                self._session.cancel(request_id)

    # ---- engine thread ----
    def _on_event(self, event: object) -> None:
        request_id = getattr(event, "request_id", None)
        if isinstance(event, ModelsLoaded):
            self._state = LoadState("ready", loaded=event)
            self._settled.set()
            log.info("models loaded on %s (%s, %s)", event.device, event.lm, event.quantization)
            return
        if isinstance(event, Failed) and request_id is None:  # only the model load has no request id
            self._state = LoadState("failed", message=event.message)
            self._settled.set()
            log.error("models failed to load: %s", event.message)
            return
        with self._lock:
            route = self._routes.get(request_id)
            if isinstance(event, _FINAL) and request_id in self._in_flight:
                self._in_flight.discard(request_id)
                if request_id.startswith("api-speech-"):
                    kind = {Generated: "completed", Cancelled: "cancelled"}.get(type(event), "failed")
                    self.counts[kind] += 1
        if route is not None and isinstance(event, (AudioChunk, *_FINAL)):
            loop, events = route
            try:
                loop.call_soon_threadsafe(events.put_nowait, event)
            except RuntimeError:  # the loop is closed: the server is shutting down
                pass
