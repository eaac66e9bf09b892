"""`serve`: the OpenAI-compatible speech API on this computer (server/, the `server` extra)."""
from __future__ import annotations

import argparse
import ipaddress
import threading
from pathlib import Path

from cli.common import default_voices_folder, status
from engine.config import DEFAULT_CODEC, DEFAULT_LM, DEVICES, QUANTIZATIONS

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8808
_LOCAL_NAMES = ("localhost",)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="serve the voice library over an OpenAI-compatible speech API")
    serve.add_argument("--host", default=DEFAULT_HOST,
                       help=f"address to listen on (default {DEFAULT_HOST}: this computer only); any other needs --api-key")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    serve.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on every /v1 request")
    serve.add_argument("--api-key-file", type=Path, help="read the API key from this file (keeps it out of the process list)")
    serve.add_argument("--voices", type=Path, help="voice library folder (default: the app's)")
    serve.add_argument("--lm", default=DEFAULT_LM, help=f"Llasa LM: Hugging Face id or local folder (default {DEFAULT_LM})")
    serve.add_argument("--codec", default=DEFAULT_CODEC, help=f"X-Codec2: Hugging Face id or local folder (default {DEFAULT_CODEC})")
    serve.add_argument("--quant", choices=QUANTIZATIONS, help="LM weights: 4bit (default on CUDA), 8bit, bf16, fp32 (default on CPU)")
    serve.add_argument("--device", choices=DEVICES, default="auto", help="where to run (default auto: CUDA when present)")
    serve.add_argument("--max-input-chars", type=int, default=100_000, help="longest 'input' accepted per request (default 100000)")
    serve.set_defaults(run=_run_serve)


def is_local(host: str) -> bool:
    """True for loopback addresses (127.x, ::1) and 'localhost': only this computer can connect."""
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _api_key(args: argparse.Namespace) -> str | None:
    from engine.errors import SettingsError

    if args.api_key and args.api_key_file:
        raise SettingsError("Give --api-key or --api-key-file, not both.")
    if args.api_key_file:
        try:
            key = args.api_key_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise SettingsError(f"Cannot read --api-key-file {args.api_key_file}: {error.strerror or error}.") from None
        if not key:
            raise SettingsError(f"--api-key-file {args.api_key_file} is empty.")
        return key
    if args.api_key is not None and not args.api_key.strip():
        raise SettingsError("--api-key is empty.")
    return args.api_key.strip() if args.api_key else None


def _run_serve(args: argparse.Namespace) -> None:
    from engine.config import ModelChoice
    from engine.errors import EngineError, SettingsError
    from engine.voices import VoiceLibrary

    # Everything that can be checked before loading models is checked first.
    key = _api_key(args)
    if not is_local(args.host) and not key:
        raise SettingsError(f"--host {args.host} lets other computers connect: give --api-key (or --api-key-file) "
                            "so that only clients with the key can use the voices.")
    if not 0 < args.port < 65536:
        raise SettingsError(f"--port must be 1 to 65535, got {args.port}.")
    if args.max_input_chars < 1:
        raise SettingsError(f"--max-input-chars must be at least 1, got {args.max_input_chars}.")
    try:
        import uvicorn

        from server.app import create_app
        from server.service import SpeechService
    except ImportError as error:
        raise SettingsError(f"serve needs the server extra ({error.name} is missing): "
                            "pip install 'llasa-studio[server]'.") from None
    voices = args.voices or default_voices_folder()
    if voices.exists() and not voices.is_dir():
        raise SettingsError(f"--voices {voices} is a file; give the voice library folder.")
    library = VoiceLibrary(voices)
    choice = ModelChoice(lm=args.lm, codec=args.codec, quantization=args.quant, device=args.device)
    service = SpeechService(choice)
    app = create_app(service, library, api_key=key, max_input_chars=args.max_input_chars)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="info",
                                           timeout_graceful_shutdown=5))

    def watch_loading() -> None:
        state = service.wait_loaded()
        if state.status == "failed":
            server.should_exit = True  # loading failed: stop serving, the error is reported below
        else:
            status(f"Models loaded ({state.loaded.device}); serving {len(library.list())} voices from {voices}.")

    status(f"Loading models… the API answers 503 until they are ready. Voices: {voices}")
    service.start()
    threading.Thread(target=watch_loading, name="llasa-serve-load", daemon=True).start()
    url = f"http://{args.host if ':' not in args.host else f'[{args.host}]'}:{args.port}/v1"
    status(f"OpenAI base URL: {url}" + (" (API key required)" if key else ""))
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind; reported below as one line
        pass
    finally:
        service.shutdown(timeout=10)
    if service.state.status == "failed":
        raise EngineError(service.state.message)
    if not server.started:
        raise SettingsError(f"Could not listen on {args.host}:{args.port} (in use, or not an address of this "
                            "computer); choose another --port or --host.")
