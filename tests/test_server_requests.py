"""The speech API's pure parts without a model: request checking, audio bodies, the bind rule."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from cli.serve import is_local
from server.errors import ApiError
from server.formats import FORMATS, encode_audio, pcm16, streaming_wav_header
from server.speech import parse_speech_request

MODELS = ("/models/Llasa-1B", "Llasa-1B", "llasa")


def parse(**body):
    return parse_speech_request({"model": "tts-1", "input": "Hello.", "voice": "Ann", **body}, MODELS, 100)


def test_a_plain_openai_request_gets_the_defaults():
    req = parse()
    assert (req.text, req.voice, req.fmt, req.speed, req.stream) == ("Hello.", "Ann", "mp3", 1.0, False)
    assert req.params.seed is None and req.params.temperature == 0.8


def test_extension_fields_set_sampling():
    req = parse(seed=7, temperature=0.5, top_p=0.9, top_k=40, repetition_penalty=1.1, stream=True,
                response_format="pcm", voice={"id": "Bob"}, model="Llasa-1B")
    assert (req.params.seed, req.params.temperature, req.params.top_p, req.params.top_k) == (7, 0.5, 0.9, 40)
    assert (req.stream, req.fmt, req.voice) == (True, "pcm", "Bob")


@pytest.mark.parametrize("body, status, words", [
    ({"input": ""}, 400, "'input' is empty"),
    ({"input": 5}, 400, "'input' is empty"),
    ({"input": "x" * 101}, 413, "at most 100"),
    ({"voice": ""}, 400, "'voice' is missing"),
    ({"response_format": "aac"}, 400, "choose one of wav, mp3, flac, opus, pcm"),
    ({"model": "gpt-4"}, 400, "Unknown model 'gpt-4'"),
    ({"speed": 0.1}, 400, "'speed' must be from 0.25 to 4.0"),
    ({"speed": "fast"}, 400, "'speed' must be a number"),
    ({"seed": 1.5}, 400, "'seed' must be a whole number"),
    ({"top_k": 2.5}, 400, "'top_k' must be a whole number"),
    ({"temperature": -1}, 400, "temperature must be in [0, 5]"),
    ({"top_p": 0}, 400, "top_p must be in (0, 1]"),
    ({"stream": "yes"}, 400, "'stream' must be true or false"),
    ({"stream": True, "response_format": "flac"}, 400, "choose wav or pcm"),
    ({"stream_format": "sse"}, 400, "no server-sent events"),
])
def test_bad_fields_are_named_in_the_error(body, status, words):
    with pytest.raises(ApiError) as caught:
        parse(**body)
    assert caught.value.status == status and words in caught.value.message


def test_a_body_that_is_not_an_object_is_refused():
    with pytest.raises(ApiError, match="JSON object"):
        parse_speech_request(["Hello"], MODELS, 100)


def test_error_response_has_the_openai_shape():
    response = ApiError(401, "Wrong API key.", code="invalid_api_key").response()
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert response.body == (b'{"error":{"message":"Wrong API key.","type":"authentication_error",'
                             b'"param":null,"code":"invalid_api_key"}}')


def test_every_format_decodes_to_the_same_16k_mono_take():
    wave = (0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)).astype(np.float32)
    wav = encode_audio(wave, "wav")
    samples, rate = sf.read(io.BytesIO(wav), dtype="int16")
    assert rate == 16000 and len(samples) == 8000
    assert encode_audio(wave, "pcm") == pcm16(wave) == wav[44:]  # raw pcm is the wav's data chunk
    for fmt in ("flac", "mp3", "opus"):
        info = sf.info(io.BytesIO(encode_audio(wave, fmt)))
        assert (info.samplerate, info.channels) == (16000, 1), fmt
    assert set(FORMATS) == {"wav", "mp3", "flac", "opus", "pcm"}


def test_a_streamed_wav_reads_to_the_end():
    wave = (0.25 * np.sin(2 * np.pi * 300 * np.arange(4000) / 16000)).astype(np.float32)
    body = streaming_wav_header() + pcm16(wave[:1000]) + pcm16(wave[1000:])
    samples, rate = sf.read(io.BytesIO(body), dtype="int16")
    assert rate == 16000 and np.array_equal(samples, sf.read(io.BytesIO(encode_audio(wave, "wav")), dtype="int16")[0])


@pytest.mark.parametrize("host, local", [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
                                         ("0.0.0.0", False), ("192.168.1.5", False), ("::", False), ("myhost", False)])
def test_only_loopback_binds_count_as_local(host, local):
    assert is_local(host) is local


def test_the_api_answers_503_until_the_models_are_loaded(tmp_path):
    """In process (starlette's TestClient): before loading, and after a load that failed (no model
    folder), speech gets 503 in OpenAI's shape while the rest of the API answers."""
    from starlette.testclient import TestClient

    from engine.config import ModelChoice
    from engine.voices import VoiceLibrary
    from server.app import create_app
    from server.service import SpeechService

    library = VoiceLibrary(tmp_path / "voices")
    library.add("Ann", np.full(16000, 0.1, np.float32), "Hello.", [1, 2, 3], "codec")
    service = SpeechService(ModelChoice(lm=str(tmp_path / "no-lm"), codec=str(tmp_path / "no-codec"), device="cpu"))
    client = TestClient(create_app(service, library))
    speak = {"model": "no-lm", "input": "Hi.", "voice": "Ann", "response_format": "wav"}
    response = client.post("/v1/audio/speech", json=speak)
    assert response.status_code == 503 and response.json()["error"]["code"] == "models_loading"
    assert client.get("/health").json()["status"] == "loading"
    service.start()
    try:
        assert service.wait_loaded(timeout=300).status == "failed"
        response = client.post("/v1/audio/speech", json=speak)
        error = response.json()["error"]
        assert response.status_code == 503 and error["code"] == "models_not_loaded"
        assert error["message"].startswith("The speech models could not be loaded: ") and "no-lm" in error["message"]
        assert [v["name"] for v in client.get("/v1/voices").json()["voices"]] == ["Ann"]
        assert client.post("/v1/audio/speech", content=b"{not json").status_code == 400
    finally:
        assert service.shutdown(timeout=60)
