"""A real `python main.py serve` subprocess on the tiny models, and the voice library it serves."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 300  # only guards against a hang; nothing is timed
TRANSCRIPT = ("The quick brown fox jumps over the lazy dog, near the quiet river bank. " * 8).strip()
# Speech tokens each test voice leaves the tiny model (random weights rarely say the end token, so a
# voice whose reference nearly fills the 2,048-token window keeps every request short).
VOICE_BUDGETS = {"Short": 150, "Long": 400}  # Short: the render path needs >= 1 s per segment


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_library(folder: Path, tiny_models: dict[str, Path]):
    """A voice library holding "Short" and "Long" (see VOICE_BUDGETS); reference clips are tones."""
    from transformers import AutoTokenizer

    from engine.config import CONTEXT_WINDOW
    from engine.lm.prompt import build_prompt
    from engine.lm.tokens import SpeechTokens
    from engine.voices import VoiceLibrary

    library = VoiceLibrary(folder)
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["lm"])
    tokens = SpeechTokens.from_tokenizer(tokenizer)
    probe = build_prompt(tokenizer, tokens, "Hi.", reference_codes=[7] * 100, reference_text=TRANSCRIPT)
    clip = (0.3 * np.sin(2 * np.pi * 220 * np.arange(32000) / 16000)).astype(np.float32)
    for name, budget in VOICE_BUDGETS.items():
        n_codes = 100 + CONTEXT_WINDOW - budget - len(probe)
        library.add(name, clip, TRANSCRIPT, [(i * 37) % 65536 for i in range(n_codes)], str(tiny_models["codec"]))
    return library


def get_json(url: str, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class ServerProcess:
    """`main.py serve ARGS` on a free port; stop() ends it (SIGTERM) and returns its exit code."""

    def __init__(self, *args: str, host: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"  # traffic only ever goes to this computer
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "serve", "--host", host, "--port", str(self.port), *map(str, args)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

    def wait(self, status: str = "ready", headers: dict | None = None) -> dict:
        """Poll GET /health until it reports `status` (the server must stay up meanwhile)."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server exited early:\n{self.process.stdout.read()}"
            try:
                code, health = get_json(self.url + "/health", headers)
                if code == 200 and health["status"] == status:
                    return health
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"the server did not become {status!r} within {WAIT_S} s")

    def health(self) -> dict:
        code, health = get_json(self.url + "/health")
        assert code == 200
        return health

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.terminate()
        output, _ = self.process.communicate(timeout=60)
        return self.process.returncode, output
