"""The engine thread on the tiny models: load, encode, streamed generation, cancel, errors, shutdown."""
from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.config import CONTEXT_WINDOW, ModelChoice, SamplingParams
from engine.session import (
    AudioChunk, Cancelled, EncodeVoice, EngineSession, ExportAudio, Exported, Failed, Generate, Generated,
    LoadModels, ModelsLoaded, Narrated, Progress, ProjectCreated, VoiceEncoded, memory_summary,
)

from engine_events import WAIT_S, EventRecorder

FINAL = (ModelsLoaded, VoiceEncoded, Generated, Exported, Failed, Cancelled, ProjectCreated, Narrated)
TEXT = "Hello there."


def Recorder(on_event=None) -> EventRecorder:
    return EventRecorder(FINAL, on_event)


def _choice(tiny_models) -> ModelChoice:
    return ModelChoice(lm=str(tiny_models["lm"]), codec=str(tiny_models["codec"]), device="cpu")


@pytest.fixture(scope="module")
def synth(tiny_models):
    from engine.speech.synth import Synthesizer

    return Synthesizer.load(_choice(tiny_models))


@pytest.fixture(scope="module")
def short_voice(synth):
    """A voice whose reference nearly fills the window, so the tiny model's speech is cut after ~100 tokens.

    (Random weights rarely say the end token; a real-length reference would make every test generate
    ~1,700 tokens.)
    """
    from engine.lm.prompt import build_prompt
    from engine.speech.synth import Voice, speech_budget

    transcript = "The quick brown fox jumps over the lazy dog, near the quiet river bank. " * 4
    tokenizer, tokens = synth.lm.tokenizer, synth.lm.tokens
    probe = build_prompt(tokenizer, tokens, TEXT, reference_codes=[7] * 100, reference_text=transcript.strip())
    n_codes = 100 + CONTEXT_WINDOW - 100 - len(probe)
    voice = Voice(codes=tuple((i * 37) % 65536 for i in range(n_codes)), transcript=transcript.strip())
    prompt = build_prompt(tokenizer, tokens, TEXT, reference_codes=voice.codes, reference_text=voice.transcript)
    assert speech_budget(len(prompt), TEXT, voice) == 100
    return voice


@pytest.fixture
def session_factory():
    sessions = []

    def make(recorder: Recorder, start: bool = True) -> EngineSession:
        session = EngineSession(emit=recorder)
        if start:
            session.start()
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.shutdown(timeout=60)


@pytest.fixture(scope="module")
def loaded(tiny_models):
    """A started session with the tiny models loaded (shared: loading takes seconds)."""
    recorder = Recorder()
    session = EngineSession(emit=recorder)
    session.start()
    session.submit(LoadModels(_choice(tiny_models)))
    event = recorder.final()
    assert isinstance(event, ModelsLoaded), event
    yield session, recorder
    assert session.shutdown(timeout=60)


def test_load_reports_device_and_runs_on_the_engine_thread(loaded, tiny_models):
    session, recorder = loaded
    loaded_event = next(e for e in recorder.events if isinstance(e, ModelsLoaded))
    assert loaded_event.device == "CPU" and loaded_event.quantization == "fp32"
    assert loaded_event.lm == str(tiny_models["lm"])
    assert isinstance(recorder.events[0], Progress) and recorder.events[0].stage == "load"
    assert recorder.threads == {"llasa-engine"}


def test_jobs_before_loading_fail_with_a_readable_message(session_factory):
    recorder = Recorder()
    session = session_factory(recorder)
    session.submit(Generate("g1", TEXT, None, SamplingParams()))
    event = recorder.final()
    assert event == Failed("g1", event.message) and event.message.startswith("Models are not loaded yet")


def test_encode_voice(loaded, speech_clip_16k):
    session, recorder = loaded
    samples, _ = speech_clip_16k
    session.submit(EncodeVoice("e1", samples, "  The quick brown fox.  "))
    event = recorder.final()
    assert isinstance(event, VoiceEncoded) and event.request_id == "e1"
    assert len(event.voice.codes) == len(samples) // 320 + 1
    assert event.voice.transcript == "The quick brown fox."
    assert isinstance(recorder.of("e1")[0], Progress)


def test_encode_refuses_empty_transcript_and_short_clip(loaded):
    session, recorder = loaded
    session.submit(EncodeVoice("e2", np.zeros(16000, np.float32), " "))
    assert re.search("transcript is empty", recorder.final().message)
    session.submit(EncodeVoice("e3", np.zeros(8000, np.float32), "words"))
    assert re.search(r"only 0\.5 s", recorder.final().message)


def test_generate_streams_chunks_that_make_the_result(loaded, synth, short_voice):
    session, recorder = loaded
    session.submit(Generate("g2", TEXT, short_voice, SamplingParams(seed=3)))
    result = recorder.final()
    assert isinstance(result, Generated), result
    events = recorder.of("g2")
    chunks = [e.samples for e in events if isinstance(e, AudioChunk)]
    assert len(chunks) >= 2  # audio arrived before the end, in pieces
    assert np.array_equal(np.concatenate(chunks), result.audio)
    assert result.audio.dtype == np.float32 and len(result.audio) == len(result.codes) * 320
    progress = [e.done for e in events if isinstance(e, Progress)]
    assert progress[:3] == [0, 25, 50] and progress[-1] == len(result.codes)
    # the streamed loop draws exactly the tokens Synthesizer.synthesize draws
    reference = synth.synthesize(TEXT, short_voice, SamplingParams(seed=3))
    assert result.codes == reference.codes
    assert result.warnings == reference.warnings
    assert len(result.audio) == len(reference.audio)  # how close the windowed decode is: tests/test_stream.py
    assert events[-1] is result


def test_cancel_stops_at_the_next_token_and_drops_queued_generations(tiny_models, short_voice, session_factory):
    release = threading.Event()
    seen_25 = threading.Event()

    def on_event(event):  # the engine thread waits here while the test thread cancels
        if isinstance(event, Progress) and event.request_id == "a" and event.done == 25:
            seen_25.set()
            release.wait(WAIT_S)

    recorder = Recorder(on_event)
    session = session_factory(recorder, start=False)
    session.submit(LoadModels(_choice(tiny_models)))
    for request_id in ("a", "b", "c"):
        session.submit(Generate(request_id, TEXT, short_voice, SamplingParams(seed=1)))
    session.start()
    assert isinstance(recorder.final(), ModelsLoaded)
    assert seen_25.wait(WAIT_S)
    session.cancel()  # from this (the "GUI") thread
    release.set()
    assert [recorder.final() for _ in range(3)] == [Cancelled("a"), Cancelled("b"), Cancelled("c")]
    a_events = recorder.of("a")
    assert a_events[-1] == Cancelled("a")
    assert max(e.done for e in a_events if isinstance(e, Progress)) == 25
    assert not any(isinstance(e, (Generated, Failed)) for e in recorder.events)
    assert recorder.of("b") == [Cancelled("b")]
    # a job submitted after the cancel runs normally
    session.submit(Generate("d", TEXT, short_voice, SamplingParams(seed=1)))
    assert isinstance(recorder.final(), Generated)


def test_export_writes_the_file(loaded, tmp_path):
    session, recorder = loaded
    wave = (0.1 * np.sin(np.arange(16000) / 10)).astype(np.float32)
    session.submit(ExportAudio("x1", wave, tmp_path / "out.flac"))
    assert recorder.final() == Exported("x1", tmp_path / "out.flac")
    data, rate = sf.read(tmp_path / "out.flac", dtype="float32")
    assert rate == 16000 and len(data) == len(wave)


def test_errors_become_failed_events(loaded, tmp_path, caplog):
    session, recorder = loaded
    session.submit(Generate("f1", "   ", None, SamplingParams()))
    assert recorder.final() == Failed("f1", "There is no text to speak.")
    session.submit(ExportAudio("f2", np.zeros(10, np.float32), tmp_path / "missing" / "out.wav"))
    assert "Cannot write" in recorder.final().message
    with caplog.at_level(logging.ERROR, logger="llasa.engine"):
        session.submit(ExportAudio("f3", np.zeros((2, 2, 2), np.float32), tmp_path / "out.wav"))
        event = recorder.final()
    assert event.request_id == "f3"
    assert event.message.startswith("Unexpected error: ValueError: write_audio expects")
    assert event.message.endswith("— details are in the log.")
    assert any(r.exc_info for r in caplog.records)  # the traceback is logged
    # the thread survived all of this
    session.submit(ExportAudio("f4", np.zeros(10, np.float32), tmp_path / "ok.wav"))
    assert isinstance(recorder.final(), Exported)


def test_shutdown_joins_and_refuses_new_jobs(session_factory):
    session = session_factory(Recorder())
    assert session.shutdown(timeout=30) is True
    with pytest.raises(RuntimeError):
        session.submit(ExportAudio("z", np.zeros(1, np.float32), "x.wav"))


def test_memory_summary():
    assert re.fullmatch(r"RAM \d+\.\d GB", memory_summary())


def test_session_module_does_not_import_torch():
    code = "import sys, engine.session; print('torch' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- per-job cancel: one window's Stop never ends another window's job ----
NARRATOR_TRANSCRIPT = "The quick brown fox jumps over the lazy dog, near the quiet river bank. " * 4


@pytest.fixture
def one_segment_project(loaded, tiny_models, tmp_path):
    """A narration project of one short segment, created on the loaded session (its takes are capped short)."""
    from engine.book.importer import Book, Chapter
    from engine.book.project import NarrationSettings
    from engine.session import CreateProject
    from engine.voices import VoiceLibrary

    session, recorder = loaded
    codes = tuple(int(c) for c in np.random.default_rng(0).integers(0, 65536, 100))
    voice = VoiceLibrary(tmp_path / "voices").add("Narrator", np.zeros(32000, np.float32),
                                                  NARRATOR_TRANSCRIPT, codes, "tiny")
    settings = NarrationSettings(lm=str(tiny_models["lm"]), codec=str(tiny_models["codec"]), base_seed=11)
    book = Book("Cancel Book", "A. Author", (Chapter("One", "It was a bright day."),))
    session.submit(CreateProject("c", tmp_path / "book", book, voice, settings))
    assert recorder.final() == ProjectCreated("c", tmp_path / "book")
    return tmp_path / "book"


def _hold(recorder, is_the_moment) -> tuple[threading.Event, threading.Event]:
    """Make the engine thread wait at the first event matching `is_the_moment` until released."""
    reached, release = threading.Event(), threading.Event()

    def on_event(event):
        if not reached.is_set() and is_the_moment(event):
            reached.set()
            release.wait(WAIT_S)

    recorder.on_event = on_event
    return reached, release


def test_cancelling_a_queued_generate_leaves_the_running_narration_alone(loaded, short_voice, one_segment_project):
    from engine.session import Narrate, NarrationProgressed

    session, recorder = loaded
    reached, release = _hold(recorder, lambda e: isinstance(e, NarrationProgressed) and e.request_id == "n")
    try:
        session.submit(Narrate("n", one_segment_project))
        assert reached.wait(WAIT_S)  # the narration runs (held at its first event)
        session.submit(Generate("g", TEXT, short_voice, SamplingParams(seed=1)))
        session.cancel("g")  # the main window's Stop
        assert recorder.final() == Cancelled("g")  # answered at once, while the narration still runs
        session.cancel("no-such-job")
    finally:
        release.set()
    done = recorder.final()
    assert isinstance(done, Narrated) and done.request_id == "n", done
    assert (done.result.rendered, done.result.total, done.result.cancelled) == (1, 1, False)
    assert recorder.of("g") == [Cancelled("g")]  # never ran
    recorder.on_event = None


def test_cancelling_a_queued_narration_leaves_the_running_generate_alone(loaded, short_voice, one_segment_project):
    from engine.book.project import NarrationProject
    from engine.session import Narrate

    session, recorder = loaded
    before = {p.name: p.read_bytes() for p in one_segment_project.rglob("*") if p.is_file()}
    reached, release = _hold(recorder, lambda e: isinstance(e, Progress) and e.request_id == "g" and e.done == 25)
    try:
        session.submit(Generate("g", TEXT, short_voice, SamplingParams(seed=1)))
        session.submit(Narrate("n", one_segment_project))
        assert reached.wait(WAIT_S)
        session.cancel("n")  # the project window's Stop
        assert recorder.final() == Cancelled("n")
    finally:
        release.set()
    assert isinstance(recorder.final(), Generated)
    assert {p.name: p.read_bytes() for p in one_segment_project.rglob("*") if p.is_file()} == before
    assert NarrationProject.open(one_segment_project).status(
        next(s for _, s in NarrationProject.open(one_segment_project).segments())) == "pending"

    # Cancelling the running job by its id stops it, and only it: the narration queued behind it runs.
    reached, release = _hold(recorder, lambda e: isinstance(e, Progress) and e.request_id == "g2" and e.done == 25)
    try:
        session.submit(Generate("g2", TEXT, short_voice, SamplingParams(seed=1)))
        session.submit(Narrate("n2", one_segment_project))
        assert reached.wait(WAIT_S)
        session.cancel("g2")
    finally:
        release.set()
    assert recorder.final() == Cancelled("g2")
    done = recorder.final()
    assert isinstance(done, Narrated) and (done.result.rendered, done.result.cancelled) == (1, False), done
    recorder.on_event = None
