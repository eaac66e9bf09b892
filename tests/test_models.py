"""Model folder resolution and checks: wrong folders fail fast with a message naming the problem."""
import json

import pytest

from engine.errors import ModelFormatError, ModelNotFoundError
from engine.models.resolve import check_codec_folder, check_lm_folder, resolve_model


def _lm_folder(tmp_path, weights="model.safetensors"):
    folder = tmp_path / "lm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "tokenizer.json").write_text("{}")
    if weights.endswith(".safetensors"):  # a real (tiny) safetensors file: the check reads its header
        import numpy as np
        from safetensors.numpy import save_file

        save_file({"model.norm.weight": np.ones(4, np.float32)}, str(folder / weights))
    else:
        (folder / weights).write_bytes(b"weights")
    return folder


def test_local_folder_resolves_to_itself(tmp_path):
    assert resolve_model(tmp_path, "Llasa LM") == tmp_path


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(tmp_path / "nope", "Llasa LM")


def test_file_instead_of_folder(tmp_path):
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        resolve_model(file, "X-Codec2")


def test_repo_id_not_in_cache_says_how_to_get_it(tmp_path, monkeypatch):
    # An empty Hugging Face cache: nothing is downloaded, and nothing may be fetched.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match=r"HKUSTAudio/Llasa-1B is not downloaded yet.*hf download"):
        resolve_model("HKUSTAudio/Llasa-1B", "Llasa LM")


def test_complete_lm_folder_passes(tmp_path):
    check_lm_folder(_lm_folder(tmp_path))


def test_pickle_weights_are_refused(tmp_path):
    folder = _lm_folder(tmp_path, weights="pytorch_model.bin")
    with pytest.raises(ModelFormatError, match=r"pickle weights \(pytorch_model.bin\).*safetensors only"):
        check_lm_folder(folder)


def test_lm_folder_without_config_or_tokenizer(tmp_path):
    folder = _lm_folder(tmp_path)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelFormatError, match="no tokenizer files"):
        check_lm_folder(folder)
    (folder / "config.json").unlink()
    with pytest.raises(ModelFormatError, match="no config.json"):
        check_lm_folder(folder)


def test_missing_shard_is_named(tmp_path):
    folder = _lm_folder(tmp_path)
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelFormatError, match="missing weight files: model-00001-of-00002"):
        check_lm_folder(folder)


def test_lm_and_codec_folders_swapped(tmp_path):
    lm = _lm_folder(tmp_path)
    codec = tmp_path / "codec"
    codec.mkdir()
    (codec / "config.json").write_text(json.dumps({"model_type": "xcodec2", "codec_decoder_hidden_size": 1024}))
    with pytest.raises(ModelFormatError, match="is an X-Codec2 folder, not a Llasa LM"):
        check_lm_folder(codec)
    with pytest.raises(ModelFormatError, match="is a Llasa LM folder, not X-Codec2"):
        check_codec_folder(lm)


def test_codec_folder_with_foreign_weights(tmp_path):
    import torch
    from safetensors.torch import save_file

    folder = tmp_path / "codec"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "xcodec2"}))
    save_file({"encoder.weight": torch.zeros(2)}, folder / "model.safetensors")
    with pytest.raises(ModelFormatError, match="does not contain X-Codec2 weights"):
        check_codec_folder(folder)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelFormatError, match="unreadable"):
        check_codec_folder(folder)
