"""A narration project's quality mode: best-of-N takes picked by the verifiers, scores stored with each
take, segments above the error limit flagged needs-check; old project files still open.

No real Whisper/WavLM weights can exist here: the tiny random models of the same classes
(engine.models.tiny_verifiers) run the real loading and scoring code. Their transcripts are gibberish, so
every take's WER is high and the segments are honestly flagged; the flag rule itself is tested on
exact numbers.
"""
from __future__ import annotations

import hashlib
import json
import queue

import numpy as np
import pytest
import soundfile as sf

from engine.speech.best_of import render_best_of
from engine.book.importer import Book, Chapter
from engine.config import ModelChoice
from engine.errors import SettingsError
from engine.book.narration import TakeJob, create_project, segment_cap
from engine.book.project import DONE, FAILED, NEEDS_CHECK, PENDING, NarrationProject, NarrationSettings, TakeRecord
from engine.book.quality import VerifierModels, describe_scores, error_label, flatten_scores, reference_audio
from engine.session import (
    CreateProject, EngineSession, Failed, LoadModels, ModelsLoaded, Narrate, Narrated, ProjectCreated, Transcribe,
    Transcribed,
)
from engine.models.tiny_verifiers import write_tiny_wavlm_sv, write_tiny_whisper
from engine.verify.scoring import Scores, Verifiers, WhisperASR
from engine.voices import VoiceLibrary

WAIT_S = 300  # only guards against a hang
TRANSCRIPT = "The quick brown fox jumps over the lazy dog, near the quiet river bank. " * 4
BOOK = Book("Quality Book", "A. Author", (Chapter("One", "It was a bright day.\n\nThe clocks struck."),))
OLD_AUDIO_KEYS = ("lm", "codec", "quantization", "temperature", "top_p", "top_k", "repetition_penalty")


# ---------------------------------------------------------------- the rules, on exact numbers

def test_flag_rule_on_exact_numbers():
    s = NarrationSettings(max_error_rate=0.15)
    assert not s.flags({"error_rate": 0.15}) and s.flags({"error_rate": 0.1501}) and not s.flags({})
    assert not s.flags({"wer": 0.9})  # only the ranking rate (error_rate) counts
    assert NarrationSettings(max_error_rate=0.0).flags({"error_rate": 0.01})

    def record(reason: str, flagged: bool) -> TakeRecord:
        return TakeRecord("k", 0, 1, reason, 1.0, 50, {"error_rate": 0.5}, flagged=flagged)

    assert record("end", False).status == DONE and record("end", True).status == NEEDS_CHECK
    assert record("length", False).status == NEEDS_CHECK and record("failed", True).status == FAILED


def test_scores_flattened_and_described():
    scores = Scores(transcript="hello word", wer=0.5, cer=0.1, metric="wer", similarity=0.8125, extra={"mos": 3.5})
    flat = flatten_scores(scores, 4)
    assert flat == {"wer": 0.5, "cer": 0.1, "error_rate": 0.5, "similarity": 0.8125, "mos": 3.5, "n": 4.0}
    assert all(type(v) is float for v in flat.values())
    assert flatten_scores(Scores(similarity=0.5), 2) == {"similarity": 0.5, "n": 2.0}  # no ASR: no rates
    assert error_label(flat, "Hello world") == "WER 50%" and error_label({"error_rate": 0.04}, "你好") == "CER 4%"
    assert error_label({}, "Hello") == ""
    assert describe_scores(flat, "Hello world") == "WER 50% · speaker similarity 0.81 · best of 4 takes"


def test_quality_settings_validated_and_in_take_keys_only_when_on():
    with pytest.raises(SettingsError):
        NarrationSettings(candidates=2)  # no verifier
    with pytest.raises(SettingsError):
        NarrationSettings(candidates=9, asr="openai/whisper-small")
    off = NarrationSettings()
    assert tuple(off.audio_fields()) == OLD_AUDIO_KEYS  # unchanged: takes of older projects stay valid
    on = NarrationSettings(candidates=4, asr="a/whisper", speaker=None)
    assert on.audio_fields() == off.audio_fields() | {"candidates": 4, "asr": "a/whisper", "speaker": None}
    assert NarrationSettings(candidates=4, asr="b/whisper").audio_fields() != on.audio_fields()
    assert NarrationSettings(max_error_rate=0.5).audio_fields() == off.audio_fields()  # the flag, not the audio


def test_old_project_json_and_take_json_still_open(tmp_path, speech_clip_16k):
    codes = tuple(int(c) for c in np.random.default_rng(0).integers(0, 65536, 100))
    voice = VoiceLibrary(tmp_path / "voices").add("Narrator", speech_clip_16k[0], TRANSCRIPT, codes, "tiny")
    project = create_project(tmp_path / "p", BOOK, voice, NarrationSettings(base_seed=3), max_tokens=400,
                             tokens_per_char=0.8)
    meta = json.loads((project.folder / "project.json").read_text())
    for key in ("candidates", "max_error_rate", "asr", "speaker"):
        del meta["settings"][key]  # as written before quality mode existed
    (project.folder / "project.json").write_text(json.dumps(meta))
    segment = project.chapters[0].segments[0]
    # The key an older version computed: the same identity with the old audio fields.
    old_fields = {k: meta["settings"][k] for k in OLD_AUDIO_KEYS}
    voice_hash = hashlib.sha256(json.dumps([list(voice.codes), voice.transcript]).encode()).hexdigest()
    identity = {"text": segment.text, "voice": voice_hash, "settings": old_fields,
                "seed": project.take_seed(segment), "take": 0}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    sf.write(project.folder / "takes" / f"{key}.flac", np.zeros(3200, np.float32), 16000)
    old_record = {"key": key, "take": 0, "seed": 1, "finish_reason": "end", "duration_s": 0.2, "codes": 10,
                  "scores": {}, "error": ""}  # no transcript / flagged
    (project.folder / "takes" / f"{key}.json").write_text(json.dumps(old_record))
    reopened = NarrationProject.open(project.folder)
    assert reopened.settings.candidates == 1 and reopened.settings.max_error_rate == 0.15
    assert reopened.settings.asr is None and reopened.take_key(segment) == key
    record = reopened.record(segment)
    assert record is not None and record.transcript == "" and not record.flagged
    assert reopened.status(segment) == DONE and reopened.status(reopened.chapters[0].segments[1]) == PENDING


# ---------------------------------------------------------------- rendering, on the engine thread

@pytest.fixture(scope="module")
def verifier_dirs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("verifiers")
    return write_tiny_whisper(folder / "whisper"), write_tiny_wavlm_sv(folder / "wavlm")


class Events:
    def __init__(self) -> None:
        self.events: list[object] = []
        self.finals: queue.Queue = queue.Queue()

    def __call__(self, event: object) -> None:
        self.events.append(event)
        if isinstance(event, (ModelsLoaded, ProjectCreated, Narrated, Transcribed, Failed)):
            self.finals.put(event)

    def final(self) -> object:
        return self.finals.get(timeout=WAIT_S)


@pytest.mark.slow
def test_quality_project_renders_best_of_n_and_flags(tmp_path, tiny_models, verifier_dirs, speech_clip_16k):
    whisper, wavlm = (str(d) for d in verifier_dirs)
    codes = tuple(int(c) for c in np.random.default_rng(0).integers(0, 65536, 100))
    voice = VoiceLibrary(tmp_path / "voices").add("Narrator", speech_clip_16k[0], TRANSCRIPT, codes, "tiny")
    settings = NarrationSettings(lm=str(tiny_models["lm"]), codec=str(tiny_models["codec"]), base_seed=11,
                                 candidates=2, max_error_rate=0.15, asr=whisper, speaker=wavlm)
    events = Events()
    session = EngineSession(emit=events)
    session.start()
    try:
        session.submit(LoadModels(ModelChoice(settings.lm, settings.codec, device="cpu")))
        assert isinstance(events.final(), ModelsLoaded)
        session.submit(CreateProject("c", tmp_path / "book", BOOK, voice, settings))
        assert isinstance(events.final(), ProjectCreated)
        session.submit(Narrate("n", tmp_path / "book"))
        narrated = events.final()
        assert isinstance(narrated, Narrated), narrated
        # Transcribe shares the session's Whisper: same text as a WhisperASR run directly.
        clip = speech_clip_16k[0][:32000]
        session.submit(Transcribe("t", clip, "en", whisper))
        transcribed = events.final()
        assert isinstance(transcribed, Transcribed) and transcribed.request_id == "t"
    finally:
        assert session.shutdown(timeout=60)
    assert transcribed.text == WhisperASR(whisper, device="cpu").transcribe(clip, "en")

    project = NarrationProject.open(tmp_path / "book")
    segments = [s for _, s in project.segments()]
    assert narrated.result.rendered == len(segments) == 2
    flagged = 0
    for segment in segments:
        record = project.record(segment)
        stored = json.loads((project.folder / "takes" / f"{record.key}.json").read_text())
        assert stored["scores"]["n"] == 2.0 and set(stored["scores"]) >= {"wer", "cer", "error_rate", "similarity"}
        assert stored["transcript"] == record.transcript and isinstance(record.transcript, str)
        assert record.flagged == (record.scores["error_rate"] > 0.15) == stored["flagged"]
        assert project.status(segment) == (NEEDS_CHECK if record.flagged or record.finish_reason == "length" else DONE)
        flagged += record.flagged
    assert flagged >= 1  # a random Whisper does not hear the text
    assert narrated.result.needs_check == sum(project.status(s) == NEEDS_CHECK for s in segments)

    # The stored take is the ranking's pick among the N candidates of that seed (same job, run directly).
    from engine.speech.synth import Synthesizer

    synth = Synthesizer.load(ModelChoice(settings.lm, settings.codec, device="cpu"), with_encoder=False)
    segment = segments[0]
    verifiers = VerifierModels().verifiers(whisper, wavlm, "cpu")
    job = TakeJob(segment.text, voice.to_voice(), project.settings.sampling(project.take_seed(segment)),
                  segment_cap(segment.text, project.tokens_per_char))
    result = render_best_of(synth, job.text, job.voice, job.params, 2, verifiers,
                            reference_audio=reference_audio(project), max_new_tokens=job.max_new_tokens)
    record = project.record(segment)
    assert len(result.takes) == 2 and record.codes == len(result.best.codes)
    assert record.scores == flatten_scores(result.best.scores, 2) and record.transcript == result.best.scores.transcript
    stored_audio = project.load_take(segment)
    assert np.abs(stored_audio - np.clip(result.best.audio, -1, 1)).max() < 1e-4


def test_verifier_models_are_kept_and_shared(verifier_dirs):
    whisper, wavlm = verifier_dirs
    models = VerifierModels()
    asr = models.asr(whisper, "cpu")
    both = models.verifiers(whisper, wavlm, "cpu")
    assert isinstance(both, Verifiers) and both.scorers[0] is asr and models.asr(whisper, "cpu") is asr
    assert [s.name for s in models.verifiers(None, wavlm, "cpu").scorers] == ["speaker"]
    models.clear()
    assert models.asr(whisper, "cpu") is not asr
