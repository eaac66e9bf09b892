"""Where models live: resolve a Hugging Face repo id or a local folder, and check what is in it.

Nothing here downloads. A repo id resolves only to a copy already in the local Hugging Face cache;
the GUI's model manager (and `hf download`) fetch models, this module just finds them. Checks are
cheap (file names, config.json, safetensors headers) and run before any weights are read, so a wrong
folder fails in milliseconds with a message that says which folder and what is wrong.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from engine.errors import ModelFormatError, ModelNotFoundError

LICENCE = "CC-BY-NC-4.0"  # Llasa and X-Codec2 weights: non-commercial use only
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_CODEC_KEY_PREFIX = "generator.backbone."


def resolve_model(id_or_dir: str | Path, what: str) -> Path:
    """Return the local folder for a model given as a folder path or a Hugging Face repo id.

    `what` names the model in messages ("Llasa LM", "X-Codec2"). Raises ModelNotFoundError when
    the folder does not exist or the repo id is not in the local cache.
    """
    path = Path(id_or_dir).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(f"{what} path {path} is a file; expected a model folder.")
        return path
    text = str(id_or_dir)
    if not _REPO_ID.match(text) or text.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"{what} folder {path} does not exist.")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(text, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        raise ModelNotFoundError(
            f"{what} {text} is not downloaded yet: download it first (`hf download {text}`), "
            f"or pass a local folder. Licence: {LICENCE}."
        ) from None


def _read_config(folder: Path, what: str) -> dict:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelFormatError(f"{what} folder {folder} has no config.json; is it a complete model folder?")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFormatError(f"{what} folder {folder}: config.json is unreadable ({error}).") from None
    if not isinstance(config, dict):
        raise ModelFormatError(f"{what} folder {folder}: config.json is not a JSON object of settings; "
                               "download the model again.")
    return config


def _safetensors_shapes(path: Path, what: str) -> dict[str, list[int]]:
    """Tensor name -> shape from a safetensors header; ModelFormatError when the file is damaged or truncated."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as error:  # safetensors raises SafetensorError, OSError and others for damaged files
        raise ModelFormatError(f"{what} weights {path} are unreadable or truncated ({error}); "
                               "download the model again.") from None


def _raise_no_safetensors(folder: Path, what: str) -> None:
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    if pickles:
        raise ModelFormatError(
            f"{what} folder {folder} has only pickle weights ({', '.join(pickles[:3])}), no .safetensors: "
            "pickle files can run code when loaded, so Llasa Studio loads safetensors only. "
            "Download the safetensors version of the model."
        )
    raise ModelFormatError(f"{what} folder {folder} has no .safetensors weights.")


def check_lm_folder(folder: Path) -> None:
    """Raise ModelFormatError unless `folder` looks like a complete Llasa LM in safetensors."""
    what = "Llasa LM"
    config = _read_config(folder, what)
    if _is_codec_config(config):
        raise ModelFormatError(f"{folder} is an X-Codec2 folder, not a Llasa LM; pass it as the codec (--codec).")
    if config.get("model_type") != "llama":
        raise ModelFormatError(
            f"{what} folder {folder} holds a {config.get('model_type', 'unknown')!r} model; Llasa is a 'llama' model."
        )
    if not any(folder.glob("*.safetensors")):
        _raise_no_safetensors(folder, what)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
            shards = {str(name) for name in weight_map.values()}
        except (OSError, UnicodeDecodeError, ValueError, AttributeError) as error:
            raise ModelFormatError(f"{what} folder {folder}: {index.name} is not a valid weight index "
                                   f"({error}); download the model again.") from None
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if missing:
            raise ModelFormatError(f"{what} folder {folder} is missing weight files: {', '.join(missing[:3])}.")
    if not (folder / "tokenizer.json").is_file() and not (folder / "tokenizer_config.json").is_file():
        raise ModelFormatError(f"{what} folder {folder} has no tokenizer files (tokenizer.json).")
    shapes: dict[str, list[int]] = {}
    for weights in sorted(folder.glob("*.safetensors")):  # headers only: milliseconds, no weights read
        shapes.update(_safetensors_shapes(weights, what))
    embedding = shapes.get("model.embed_tokens.weight")
    vocab = config.get("vocab_size")
    if embedding and vocab != embedding[0]:
        raise ModelFormatError(
            f"{what} folder {folder}: config.json says vocab_size {vocab!r} but the weights hold {embedding[0]} "
            "token embeddings; the config and the weights do not belong together."
        )


def check_codec_folder(folder: Path) -> None:
    """Raise ModelFormatError unless `folder` holds an X-Codec2 checkpoint (model.safetensors)."""
    what = "X-Codec2"
    config = _read_config(folder, what)
    if config.get("model_type") == "llama":
        raise ModelFormatError(f"{folder} is a Llasa LM folder, not X-Codec2; pass it as the LM (--lm).")
    weights = folder / "model.safetensors"
    if not weights.is_file():
        if not any(folder.glob("*.safetensors")):
            _raise_no_safetensors(folder, what)
        raise ModelFormatError(f"{what} folder {folder} has no model.safetensors.")
    keys = list(_safetensors_shapes(weights, what))
    if not any(key.startswith(_CODEC_KEY_PREFIX) for key in keys):
        raise ModelFormatError(f"{weights} does not contain X-Codec2 weights (no {_CODEC_KEY_PREFIX}* tensors).")


def _is_codec_config(config: dict) -> bool:
    return str(config.get("model_type", "")).startswith("xcodec") or "codec_decoder_hidden_size" in config
