"""Out of memory (issue 12, item 11): while loading, generating or narrating it is one error line with advice,
finished takes are kept, and the engine thread lives on."""
from __future__ import annotations

import numpy as np
import pytest

from hostile import DAMAGE, assert_refused, call, project_with_takes, snapshot


def _fail_like_a_full_memory(kind: str):
    """A replacement for torch.nn.functional.linear (the first op of every forward pass) that fails as memory does.

    "cpu": a real allocation the CPU allocator refuses (2**45 floats = 128 TiB), raising torch's own
    "DefaultCPUAllocator: can't allocate memory" RuntimeError. "cuda": torch.OutOfMemoryError raised by
    hand, because there is no CUDA device here to run out of.
    """
    import torch

    def linear(*args, **kwargs):
        if kind == "cuda":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.7 GiB total)")
        return torch.empty(2**45)

    return linear


@pytest.mark.parametrize("kind", ["cpu", "cuda"])
def test_out_of_memory_while_generating_is_one_line_with_advice(tiny_models, tmp_path, capsys, monkeypatch, kind):
    import torch

    monkeypatch.setattr(torch.nn.functional, "linear", _fail_like_a_full_memory(kind))
    result = call(capsys, "synth", "--lm", tiny_models["lm"], "--codec", tiny_models["codec"], "--text", "Hello.",
                  "--device", "cpu", "--out", tmp_path / "out.wav")
    line = assert_refused(result, "Out of memory", "GPU" if kind == "cuda" else "computer", "generating speech",
                          "smaller model", "4-bit", "shorter text", "close other apps")
    assert "DefaultCPUAllocator" not in line and list(tmp_path.iterdir()) == []


def test_out_of_memory_while_loading_is_one_line_with_advice(tiny_models, tmp_path, capsys, monkeypatch):
    """MemoryError is what Python raises when loading runs out of memory; raised here from the loader's call."""
    import transformers

    def from_pretrained(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    result = call(capsys, "synth", "--lm", tiny_models["lm"], "--codec", tiny_models["codec"], "--text", "Hello.",
                  "--device", "cpu", "--out", tmp_path / "out.wav")
    assert_refused(result, "Out of memory", "loading the models", "smaller model")


def test_out_of_memory_in_narrate_says_the_finished_takes_are_kept(tiny_models, tmp_path, capsys, monkeypatch):
    import torch

    folder = project_with_takes(tmp_path, lm=tiny_models["lm"], codec=tiny_models["codec"])
    project_json = folder / "project.json"
    from engine.book.project import NarrationProject

    project = NarrationProject.open(folder)
    second = [s for _, s in project.segments()][1]
    DAMAGE["empty"](project.take_path(second))  # one segment to render again; the other stays done
    before = {k: v for k, v in snapshot(folder).items() if not k.startswith("takes/" + second.id)}
    monkeypatch.setattr(torch.nn.functional, "linear", _fail_like_a_full_memory("cpu"))
    result = call(capsys, "narrate", folder, "--device", "cpu")
    assert_refused(result, "Out of memory", "narrating", "finished segments are kept")
    assert "nothing was written" not in result.stderr
    kept = NarrationProject.open(folder)
    assert kept.status([s for _, s in kept.segments()][0]) == "done"
    assert project_json.read_bytes() == before["project.json"]


@pytest.mark.slow
def test_out_of_memory_in_the_engine_thread_fails_the_job_and_the_engine_stays_usable(tiny_models, tmp_path,
                                                                                          monkeypatch):
    import torch

    from engine.config import ModelChoice, SamplingParams
    from engine.session import EngineSession, ExportAudio, Exported, Failed, Generate, LoadModels, ModelsLoaded
    from engine_events import EventRecorder

    recorder = EventRecorder((ModelsLoaded, Failed, Exported))
    session = EngineSession(emit=recorder)
    session.start()
    try:
        session.submit(LoadModels(ModelChoice(lm=str(tiny_models["lm"]), codec=str(tiny_models["codec"]), device="cpu")))
        assert isinstance(recorder.final(), ModelsLoaded)
        monkeypatch.setattr(torch.nn.functional, "linear", _fail_like_a_full_memory("cuda"))
        session.submit(Generate("g1", "Hello there.", None, SamplingParams(seed=1)))
        failed = recorder.final()
        assert isinstance(failed, Failed) and failed.request_id == "g1"
        assert failed.message.startswith("Out of memory (the GPU's)") and "4-bit" in failed.message
        monkeypatch.undo()
        session.submit(ExportAudio("e1", np.zeros(1600, np.float32), tmp_path / "ok.wav"))
        assert isinstance(recorder.final(), Exported)  # the engine thread lives on
    finally:
        assert session.shutdown(timeout=60)
