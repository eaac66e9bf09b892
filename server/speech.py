"""POST /v1/audio/speech: the OpenAI request body checked field by field, then one Generate job.

`parse_speech_request` is pure (body dict -> SpeechRequest or ApiError) so every rule is testable
without a model. Extension fields beyond OpenAI's: `stream` (wav/pcm sent as generated), `seed`,
`temperature`, `top_p`, `top_k`, `repetition_penalty` (engine.config.SamplingParams).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from engine.config import SamplingParams
from engine.errors import SettingsError
from server.errors import ApiError
from server.formats import FORMATS, STREAMING_FORMATS

SPEED_RANGE = (0.25, 4.0)  # OpenAI's accepted range; Llasa keeps the voice's own pace (see README)
OPENAI_MODEL_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")  # answered by the loaded Llasa model
DEFAULT_FORMAT = "mp3"  # OpenAI's default
_SAMPLING = {"temperature": float, "top_p": float, "top_k": int, "repetition_penalty": float}


@dataclass(frozen=True)
class SpeechRequest:
    text: str  # what to speak, as sent
    voice: str  # a voice-library name or id
    fmt: str  # one of server.formats.FORMATS
    speed: float  # accepted in SPEED_RANGE; does not change the audio
    stream: bool  # send audio chunks as they are generated (wav and pcm only)
    params: SamplingParams


def _number(body: dict, key: str, kind: type, default):
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ApiError(400, f"'{key}' must be a number, got {value!r}.", param=key)
    if kind is int and value != int(value):
        raise ApiError(400, f"'{key}' must be a whole number, got {value!r}.", param=key)
    return kind(value)


def parse_speech_request(body: object, model_names: tuple[str, ...], max_chars: int) -> SpeechRequest:
    """Check an OpenAI speech request body; ApiError (400, or 413 for text over `max_chars`) naming
    the field and, where there is a choice, the valid values. `model_names`: accepted `model` values
    (OpenAI's own names are accepted too, as aliases of the loaded model)."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object with 'input' and 'voice'.")
    model = body.get("model")
    accepted = (*model_names, *OPENAI_MODEL_ALIASES)
    if model is not None and model not in accepted:
        raise ApiError(400, f"Unknown model {model!r}; this server speaks with {', '.join(map(repr, accepted))}.",
                       param="model", code="model_not_found")
    text = body.get("input")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "'input' is empty: give the text to speak.", param="input")
    if len(text) > max_chars:
        raise ApiError(413, f"'input' is {len(text)} characters; this server takes at most {max_chars} per request.",
                       param="input", code="input_too_long")
    voice = body.get("voice")
    if isinstance(voice, dict):  # newer clients may send {"id": "..."} for custom voices
        voice = voice.get("id")
    if not isinstance(voice, str) or not voice.strip():
        raise ApiError(400, "'voice' is missing: give the name of a voice from GET /v1/voices.", param="voice")
    fmt = body.get("response_format") or DEFAULT_FORMAT
    if fmt not in FORMATS:
        raise ApiError(400, f"Unsupported response_format {fmt!r}; choose one of {', '.join(FORMATS)}.",
                       param="response_format")
    speed = _number(body, "speed", float, 1.0)
    if not SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]:
        raise ApiError(400, f"'speed' must be from {SPEED_RANGE[0]} to {SPEED_RANGE[1]}, got {speed}.", param="speed")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, f"'stream' must be true or false, got {stream!r}.", param="stream")
    if body.get("stream_format", "audio") != "audio":
        raise ApiError(400, "Only stream_format 'audio' is supported (no server-sent events).", param="stream_format")
    if stream and fmt not in STREAMING_FORMATS:
        raise ApiError(400, f"Streaming sends {' or '.join(STREAMING_FORMATS)}; response_format {fmt!r} is sent "
                       "whole. Drop 'stream' or choose wav or pcm.", param="stream")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ApiError(400, f"'seed' must be a whole number, got {seed!r}.", param="seed")
    defaults = SamplingParams()
    values = {key: _number(body, key, kind, getattr(defaults, key)) for key, kind in _SAMPLING.items()}
    try:
        params = SamplingParams(seed=seed, **values)
    except SettingsError as error:
        raise ApiError(400, str(error)) from None
    return SpeechRequest(text=text, voice=voice.strip(), fmt=fmt, speed=speed, stream=stream, params=params)
