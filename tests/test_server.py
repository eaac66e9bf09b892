"""`python main.py serve` end to end: the official openai client against a real server subprocess on
the tiny models. One server is shared by the module; every request goes to 127.0.0.1."""
from __future__ import annotations

import io
import json
import signal
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import openai  # the test extra: the official client, the one the tools people use are built on
import pytest
import soundfile as sf

from server_fixtures import WAIT_S, ServerProcess, get_json, make_library

pytestmark = pytest.mark.slow  # a server subprocess on the tiny models: minutes on 2 CPU cores



@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    library = make_library(tmp_path_factory.mktemp("voices"), tiny_models)
    proc = ServerProcess("--voices", library.root, "--lm", tiny_models["lm"], "--codec", tiny_models["codec"],
                         "--device", "cpu", "--max-input-chars", 2000)
    proc.wait("ready")
    proc.library = library
    yield proc
    code, output = proc.stop()
    # uvicorn shuts down cleanly on SIGTERM, then re-raises it so process managers see why it ended
    assert code in (0, -signal.SIGTERM) and "Finished server process" in output, output
    assert "Traceback" not in output, output


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed-locally", max_retries=0, timeout=WAIT_S)


def _wait_idle(server) -> dict:
    """/health once no server job is queued or running."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        health = server.health()
        if health["in_flight"] == 0:
            return health
        time.sleep(0.1)
    raise AssertionError("the engine stayed busy")


def test_speech_in_every_format_decodes_to_16k_mono(client):
    takes = {}
    for fmt in ("wav", "flac", "mp3", "opus", "pcm"):
        response = client.audio.speech.create(model="tts-1", voice="Short", input="Hello there.",
                                              response_format=fmt, extra_body={"seed": 11})
        takes[fmt] = response.content
    wave, rate = sf.read(io.BytesIO(takes["wav"]), dtype="int16")
    assert rate == 16000 and wave.ndim == 1 and len(wave) > 0 and len(wave) % 320 == 0
    for fmt in ("flac", "mp3", "opus"):
        info = sf.info(io.BytesIO(takes[fmt]))
        assert (info.samplerate, info.channels) == (16000, 1), fmt
    flac = sf.read(io.BytesIO(takes["flac"]), dtype="int16")[0]  # the same take: libsndfile rounds FLAC by 1 LSB otherwise
    assert len(flac) == len(wave) and np.abs(flac.astype(int) - wave).max() <= 1
    assert takes["pcm"] == wave.astype("<i2").tobytes()  # 16-bit little-endian mono, same samples
    mp3, _ = sf.read(io.BytesIO(takes["mp3"]), dtype="float32")
    assert abs(len(mp3) - len(wave)) < 16000 * 0.2  # the same take, give or take the encoder's padding


def test_the_same_seed_gives_the_same_bytes_as_synth(client, server, tiny_models, tmp_path):
    """The API and `main.py synth --voice` make one take for one seed (extension fields seed, temperature,
    top_p), byte for byte in WAV."""
    import subprocess
    import sys

    from server_fixtures import ROOT

    sampling = {"seed": 21, "temperature": 0.9, "top_p": 0.95}
    served = client.audio.speech.create(model="tts-1", voice="Short", input="Same take.",
                                        response_format="wav", extra_body=sampling).content
    out = tmp_path / "synth.wav"
    result = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "synth", "--voices", server.library.root, "--voice", "short",
         "--text", "Same take.", "--lm", tiny_models["lm"], "--codec", tiny_models["codec"], "--device", "cpu",
         "--seed", "21", "--temperature", "0.9", "--top-p", "0.95", "--out", out],
        cwd=ROOT, capture_output=True, text=True, timeout=WAIT_S,
    )
    assert result.returncode == 0, result.stderr
    written = out.read_bytes()
    assert len(served) == len(written)  # the same speech tokens
    assert served == written


def test_input_of_any_length_is_spoken(client):
    """Four sentences are more than one window holds for the Short voice: the render path splits them."""
    text = "One thing first. Then another. And a third one. Finally the end."
    take = client.audio.speech.create(model="tts-1", voice="Short", input=text, response_format="wav",
                                      extra_body={"seed": 2})
    wave, rate = sf.read(io.BytesIO(take.content), dtype="int16")
    assert rate == 16000 and len(wave) > 16000 * 60 / 50  # longer than one window's 60 tokens


def test_bad_requests_get_openai_errors_and_the_server_stays_up(client, server):
    cases = [
        (dict(voice="Nobody", input="Hi."), 400, "voice_not_found", "'Long', 'Short'"),
        (dict(voice="Short", input="   "), 400, None, "'input' is empty"),
        (dict(voice="Short", input="Hi.", response_format="aac"), 400, None, "wav, mp3, flac, opus, pcm"),
        (dict(voice="Short", input="Hi.", model="whisper-1"), 400, "model_not_found", "tts-1"),
        (dict(voice="Short", input="Hi.", speed=9), 400, None, "'speed' must be from 0.25 to 4.0"),
        (dict(voice="Short", input="x" * 2001), 413, "input_too_long", "at most 2000"),
    ]
    for kwargs, status, code, words in cases:
        kwargs.setdefault("model", "tts-1")
        with pytest.raises(openai.APIStatusError) as caught:
            client.audio.speech.create(**kwargs)
        error = caught.value
        assert error.status_code == status, kwargs
        body = error.response.json()["error"]
        assert set(body) == {"message", "type", "param", "code"} and body["code"] == code, body
        assert words in body["message"], body
    with pytest.raises(openai.BadRequestError, match="stream"):
        client.audio.speech.create(model="tts-1", voice="Short", input="Hi.", response_format="mp3",
                                   extra_body={"stream": True})
    assert server.health()["status"] == "ready"


def test_stream_sends_audio_before_generation_ends_and_a_disconnect_frees_the_engine(client, server):
    """The client reads the first chunk of a ~400-token take and hangs up: the take is then cancelled,
    which proves the bytes arrived while it was still being generated; the next request is served."""
    before = _wait_idle(server)["requests"]
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="Long", input="Hello there.", response_format="wav", extra_body={"stream": True, "seed": 3},
    ) as response:
        assert response.headers["content-type"] == "audio/wav"
        first = next(response.iter_bytes())
    assert first[:4] == b"RIFF" and len(first) > 44  # the header comes with the first audio
    after = _wait_idle(server)["requests"]
    assert after.get("cancelled", 0) == before.get("cancelled", 0) + 1
    assert after.get("completed", 0) == before.get("completed", 0)
    take = client.audio.speech.create(model="tts-1", voice="Short", input="Next one.", response_format="pcm")
    assert len(take.content) > 0


def test_twenty_concurrent_requests_all_complete(client, server):
    before = _wait_idle(server)["requests"].get("completed", 0)
    texts = [f"Line {i}." for i in range(20)]

    def speak(text: str) -> bytes:
        return client.audio.speech.create(model="tts-1", voice="Short", input=text, response_format="pcm").content

    with ThreadPoolExecutor(20) as pool:
        takes = list(pool.map(speak, texts))
    assert all(len(take) > 0 and len(take) % 640 == 0 for take in takes)
    health = _wait_idle(server)
    assert health["status"] == "ready" and health["requests"]["completed"] == before + 20


def test_voices_list_and_upload(server, speech_clip_16k, tmp_path):
    status, listing = get_json(server.url + "/v1/voices")
    assert status == 200
    assert [(v["name"], v["transcript"][:9]) for v in listing["voices"]] == [("Long", "The quick"), ("Short", "The quick")]
    assert all(v["duration"] > 20 for v in listing["voices"])
    _, wav_path = speech_clip_16k
    added = _post_voice(server, {"transcript": "The quick brown fox jumps over the lazy dog, near the quiet river bank.",
                                 "name": "Fox"}, {"audio": ("fox.wav", wav_path.read_bytes())})
    assert added["name"] == "Fox" and 3 < added["duration"] < 6  # encoded by the server's codec, 50 codes/s
    short = next(v for v in server.library.list() if v.name == "Short")
    shared = server.library.export(short.id, tmp_path / "short.llasavoice")
    assert _post_voice(server, {}, {"file": ("short.llasavoice", shared.read_bytes())})["name"] == "Short (2)"
    status, error = get_json(server.url + "/v1/voices/Nobody")
    assert status == 404 and error["error"]["code"] == "voice_not_found"
    assert [v["name"] for v in get_json(server.url + "/v1/voices")[1]["voices"]] == ["Fox", "Long", "Short", "Short (2)"]


def _post_voice(server, fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> dict:
    body, boundary = _multipart(fields, files)
    request = urllib.request.Request(server.url + "/v1/voices", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=WAIT_S) as response:
        assert response.status == 201
        return json.loads(response.read())


def _multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "llasa-test-boundary"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), boundary


def test_a_non_local_bind_needs_an_api_key(tiny_models, tmp_path):
    """--host 0.0.0.0 without a key is refused before anything loads; with one, every /v1 request needs it
    (401 in OpenAI's shape) while /health stays open. Requests only ever go to 127.0.0.1."""
    import subprocess
    import sys

    from server_fixtures import ROOT

    refused = subprocess.run([sys.executable, str(ROOT / "main.py"), "serve", "--host", "0.0.0.0", "--voices", tmp_path],
                             cwd=ROOT, capture_output=True, text=True, timeout=WAIT_S)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("error: --host 0.0.0.0 lets other computers connect: give --api-key"), refused.stderr
    key = tmp_path / "key.txt"
    key.write_text("s3cret-key\n")
    proc = ServerProcess("--voices", tmp_path / "voices", "--api-key-file", key, "--lm", tiny_models["lm"],
                         "--codec", tiny_models["codec"], "--device", "cpu", host="0.0.0.0")
    try:
        proc.wait("ready")
        for headers, message in (({}, "Missing API key"), ({"Authorization": "Bearer wrong"}, "Wrong API key")):
            status, body = get_json(proc.url + "/v1/models", headers)
            assert status == 401 and body["error"]["code"] == "invalid_api_key" and message in body["error"]["message"]
        keyed = openai.OpenAI(base_url=proc.url + "/v1", api_key="s3cret-key", max_retries=0, timeout=WAIT_S)
        assert [m.id for m in keyed.models.list()][:1] == [str(tiny_models["lm"])]
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=proc.url + "/v1", api_key="nope", max_retries=0).audio.speech.create(
                model="tts-1", voice="Short", input="Hi.")
        assert get_json(proc.url + "/health")[0] == 200
    finally:
        code, output = proc.stop()
    assert "Traceback" not in output, output


def test_a_port_in_use_is_one_error_line(server, tiny_models, tmp_path):
    import subprocess
    import sys

    from server_fixtures import ROOT

    result = subprocess.run([sys.executable, str(ROOT / "main.py"), "serve", "--port", str(server.port), "--voices", tmp_path,
                             "--lm", tiny_models["lm"], "--codec", tiny_models["codec"], "--device", "cpu"],
                            cwd=ROOT, capture_output=True, text=True, timeout=WAIT_S)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [(f"error: Could not listen on 127.0.0.1:{server.port} (in use, or not an "
                                              "address of this computer); choose another --port or --host.")]
    assert server.health()["status"] == "ready"
