"""Hostile model folders (issue 12, item 4): a damaged config, weights, index or chat template is refused
with a message that names it, and nothing is written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hostile import assert_refused, call


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(data | changes), encoding="utf-8")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGED_MODELS = {
    "lm config.json is a list": (lambda lm, codec: (lm / "config.json").write_text("[1, 2]"), "not a JSON object"),
    "codec config.json is a list": (lambda lm, codec: (codec / "config.json").write_text("[]"), "not a JSON object"),
    "lm weights truncated": (lambda lm, codec: _truncate(lm / "model.safetensors"), "truncated"),
    "codec weights truncated": (lambda lm, codec: _truncate(codec / "model.safetensors"), "truncated"),
    "weight index not JSON": (lambda lm, codec: (lm / "model.safetensors.index.json").write_text("{weight"),
                              "model.safetensors.index.json"),
    "vocab_size mismatch": (lambda lm, codec: _edit_json(lm / "config.json", vocab_size=70000), "vocab_size 70000"),
    "chat template syntax error": (lambda lm, codec: (lm / "chat_template.jinja").write_text("{% for x in %}"),
                                   "chat template"),
    "chat template sandbox escape": (lambda lm, codec: (lm / "chat_template.jinja").write_text(
        "{{ ''.__class__.__mro__[1].__subclasses__() }}{% for m in messages %}{{ m['content'] }}{% endfor %}"),
        "SecurityError"),
    "codec decoder_heads 0": (lambda lm, codec: _edit_json(codec / "config.json", decoder_heads=0), "decoder_heads"),
}


@pytest.mark.parametrize("case", DAMAGED_MODELS)
def test_damaged_model_folders_are_refused_with_a_clear_message(tiny_models, tmp_path, capsys, case):
    import shutil

    lm, codec = tmp_path / "lm", tmp_path / "codec"
    shutil.copytree(tiny_models["lm"], lm)
    shutil.copytree(tiny_models["codec"], codec)
    damage, words = DAMAGED_MODELS[case]
    damage(lm, codec)
    out = tmp_path / "out"
    out.mkdir()
    result = call(capsys, "synth", "--lm", lm, "--codec", codec, "--text", "Hi.", "--out", out / "out.wav", "--device", "cpu")
    assert_refused(result, words)
    assert list(out.iterdir()) == []
