"""The device choices that cannot all run here, as plain functions tested on the CPU: the captured-step
self-check and its remembered verdict, the CPU precision probe's decision, device names."""
from __future__ import annotations

import json
import sys

import pytest
import torch

from engine.errors import DeviceError
from engine.lm.device import (
    CPU_BF16_MIN_SPEEDUP, choose_cpu_precision, cpu_native_bf16, default_precision, probe_cpu_bf16, resolve_device,
)
from engine.lm.fast_path import FastPathVerdict, VerdictCache, check_fast_path, decide_fast_path


def test_steps_that_agree_keep_the_fast_path():
    verdict = check_fast_path(lambda: [5, 6, 7], lambda: [5, 6, 7])
    assert verdict.ok and "3 tokens" in verdict.reason


def test_a_step_that_disagrees_turns_the_fast_path_off_and_says_where():
    verdict = check_fast_path(lambda: [5, 6, 7, 8], lambda: [5, 6, 9, 8])
    assert not verdict.ok and verdict.reason == "fast path off: the captured step differs from the eager step at token 2"
    shorter = check_fast_path(lambda: [5, 6, 7], lambda: [5, 6])
    assert not shorter.ok and "at token 2" in shorter.reason


def test_a_capture_error_is_a_failed_check_not_a_crash():
    def broken():
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    verdict = check_fast_path(lambda: [1], broken)
    assert not verdict.ok and "RuntimeError: CUDA error: operation not permitted" in verdict.reason


def test_an_eager_failure_propagates():
    with pytest.raises(ValueError):
        check_fast_path(lambda: (_ for _ in ()).throw(ValueError("real bug")), lambda: [1])


def test_the_verdict_is_remembered_per_key(tmp_path):
    cache = VerdictCache(tmp_path / "sub" / "fast_path.json")
    runs = []

    def check(ok: bool):
        def run() -> FastPathVerdict:
            runs.append(ok)
            return check_fast_path(lambda: [1, 2], lambda: [1, 2] if ok else [1, 3])
        return run

    key_a = VerdictCache.key("NVIDIA H200", "HKUSTAudio/Llasa-1B", "4bit", "2.13.0", compiled=False)
    key_b = VerdictCache.key("NVIDIA H200", "HKUSTAudio/Llasa-1B", "bf16", "2.13.0", compiled=False)
    assert decide_fast_path(cache, key_a, check(False)).ok is False
    assert decide_fast_path(cache, key_a, check(True)).ok is False  # remembered: not checked again
    assert decide_fast_path(cache, key_b, check(True)).ok is True
    assert runs == [False, True]
    stored = json.loads(cache.path.read_text())
    assert set(stored) == {key_a, key_b} and stored[key_a]["ok"] is False
    assert [p.name for p in cache.path.parent.iterdir()] == ["fast_path.json"]  # no temp file left


def test_a_damaged_cache_counts_as_empty(tmp_path):
    path = tmp_path / "fast_path.json"
    for content in ("{not json", "[1, 2]", '{"k": {"ok": "yes", "reason": 3}}'):
        path.write_text(content)
        assert VerdictCache(path).get("k") is None
    VerdictCache(path).put("k", FastPathVerdict(True, "fine"))
    assert VerdictCache(path).get("k") == FastPathVerdict(True, "fine")


def test_cpu_precision_follows_the_probe():
    assert choose_cpu_precision(fp32_seconds=2.3, bf16_seconds=1.0) == "bf16"  # native bf16 (AMX/AVX-512 BF16)
    assert choose_cpu_precision(fp32_seconds=1.0, bf16_seconds=1.2) == "fp32"  # emulated bf16: slower
    assert choose_cpu_precision(fp32_seconds=CPU_BF16_MIN_SPEEDUP * 0.999, bf16_seconds=1.0) == "fp32"
    fp32_s, bf16_s = probe_cpu_bf16()
    assert fp32_s > 0 and bf16_s > 0
    native = cpu_native_bf16()
    print(f"this CPU: native bf16 {native}; probe fp32 {fp32_s * 1e3:.2f} ms, bf16 {bf16_s * 1e3:.2f} ms per "
          f"decode-shaped product -> {choose_cpu_precision(fp32_s, bf16_s)}")
    if sys.platform.startswith("linux"):  # the flags decide, so the choice is the same on every run
        flags = set(open("/proc/cpuinfo", encoding="ascii", errors="replace").read().split())
        assert native == bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
        assert default_precision(torch.device("cpu")) == ("bf16" if native else "fp32")


def test_devices_that_are_missing_are_clear_errors():
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="No CUDA GPU"):
            resolve_device("cuda")
    if not (torch.backends.mps.is_available()):
        with pytest.raises(DeviceError, match="MPS GPU is not available"):
            resolve_device("mps")
    with pytest.raises(DeviceError, match="choose auto, cuda, mps or cpu"):
        resolve_device("tpu")
    assert resolve_device("cpu") == (torch.device("cpu"), None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_captured_step_passes_its_self_check_on_this_gpu(tiny_models, tmp_path):
    from engine.lm.fast_path import verify_lm_fast_path
    from engine.lm.loading import load_lm

    lm = load_lm(tiny_models["lm"], quantization="bf16", device="cuda")
    checked, verdict = verify_lm_fast_path(lm, "tiny", VerdictCache(tmp_path / "v.json"))
    print(verdict.reason)
    assert verdict.ok and checked.fast_path
