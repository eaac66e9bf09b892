"""Is the captured (optionally compiled) decode step safe on this device? Check once, remember, fall back.

On CUDA the decoder's step is captured in a CUDA graph (and optionally compiled) — fast, but it
cannot be tested in CI. So the first time a model runs on a device the captured step is checked
against the eager step: greedy decoding of ~32 tokens of a real prompt, token for token. On any
mismatch or capture/compile error the eager step is used, the reason is logged and shown ("fast
path off"), and the verdict is remembered per device + model + precision + torch version.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.audio.atomic import write_atomic

log = logging.getLogger("llasa.engine")

CHECK_TOKENS = 32  # greedy tokens compared between the eager and the captured step


@dataclass(frozen=True)
class FastPathVerdict:
    ok: bool  # True: use the captured step
    reason: str  # one line for the log and the status bar


def check_fast_path(eager: Callable[[], Sequence[int]], fast: Callable[[], Sequence[int]]) -> FastPathVerdict:
    """Run both greedy decodes and compare them token for token.

    An exception from `fast` (capture, compile, a kernel) is a failed check, not a crash; one from
    `eager` is a real problem and propagates.
    """
    expected = list(eager())
    try:
        got = list(fast())
    except Exception as error:  # noqa: BLE001 - any capture/compile failure means: use the eager step
        log.warning("Captured decode step failed; using the eager step", exc_info=True)
        return FastPathVerdict(False, f"fast path off: the captured step failed ({type(error).__name__}: {error})"[:300])
    if got != expected:
        index = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
        return FastPathVerdict(False, f"fast path off: the captured step differs from the eager step at token {index}")
    return FastPathVerdict(True, f"fast path on: captured step equals the eager step on {len(expected)} tokens")


def user_cache_dir() -> Path:
    """Per-user cache folder of Llasa Studio (verdicts, converted models)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "llasa-studio"


class VerdictCache:
    """Verdicts on disk as JSON {key: {"ok": bool, "reason": str}}; unreadable files count as empty."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else user_cache_dir() / "fast_path.json"

    @staticmethod
    def key(device_name: str, model: str, precision: str, torch_version: str, compiled: bool) -> str:
        return f"{device_name} | {model} | {precision} | torch {torch_version} | {'compiled' if compiled else 'graph'}"

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> FastPathVerdict | None:
        entry = self._read().get(key)
        if isinstance(entry, dict) and isinstance(entry.get("ok"), bool) and isinstance(entry.get("reason"), str):
            return FastPathVerdict(entry["ok"], entry["reason"])
        return None

    def put(self, key: str, verdict: FastPathVerdict) -> None:
        """Store a verdict (temp file + rename); a cache that cannot be written is only logged."""
        data = self._read()
        data[key] = asdict(verdict)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(data, indent=1).encode("utf-8"))
        except OSError as error:
            log.warning("Cannot remember the fast-path verdict in %s: %s", self.path, error)


def decide_fast_path(cache: VerdictCache, key: str, run_check: Callable[[], FastPathVerdict]) -> FastPathVerdict:
    """The remembered verdict for `key`, or run the check once and remember its answer."""
    verdict = cache.get(key)
    if verdict is None:
        verdict = run_check()
        cache.put(key, verdict)
        log.info("Fast path check (%s): %s", key, verdict.reason)
    return verdict


CHECK_TEXT = "The quick brown fox jumps over the lazy dog."  # the real prompt the check decodes


def verify_lm_fast_path(lm, model: str, cache: VerdictCache | None = None):
    """(lm with fast_path set, verdict) for an LM on CUDA: engine.lm.loading.LlasaLM, checked once per key."""
    import dataclasses

    import torch

    from engine.config import SamplingParams
    from engine.lm.decoder import FastDecoder
    from engine.lm.prompt import build_prompt

    prompt = build_prompt(lm.tokenizer, lm.tokens, CHECK_TEXT)
    greedy = SamplingParams(temperature=0.0)

    def run(cuda_graph: bool) -> list[int]:
        decoder = FastDecoder(lm, max_batch=1, max_length=len(prompt) + CHECK_TOKENS, cuda_graph=cuda_graph)
        return list(decoder.codes(prompt, greedy, max_new_tokens=CHECK_TOKENS))

    name = torch.cuda.get_device_name(lm.device) if lm.device.type == "cuda" else lm.device.type
    key = VerdictCache.key(name, model, lm.quantization, torch.__version__, compiled=False)
    verdict = decide_fast_path(cache or VerdictCache(), key, lambda: check_fast_path(lambda: run(False), lambda: run(True)))
    return dataclasses.replace(lm, fast_path=verdict.ok), verdict
