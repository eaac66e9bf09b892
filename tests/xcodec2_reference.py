"""Import the reference X-Codec2 code (PyPI ``xcodec2==0.1.5``) for parity tests only.

The package pins torch 2.5 and pulls torchtune/torchao, so CI installs it with ``--no-deps``
(see scripts/test.sh) and this module supplies what it imports but does not use:
- ``torchaudio``: imported by ``vq/bs_roformer5.py``, never called -> an empty stub module;
- ``torchtune.modules.RotaryPositionalEmbeddings``: loaded from torchtune's own
  ``modules/position_embeddings.py`` by file path (the package ``__init__`` needs torchao);
- ``facebook/w2v-bert-2.0`` downloads in ``XCodec2Model.__init__``: replaced by models built from
  the same embedded config our engine uses, because nothing here can reach the hub.
Never imported by ``engine/``.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path

import pytest

from deps import missing


def _install_shims() -> None:
    if "torchaudio" not in sys.modules:
        stub = types.ModuleType("torchaudio")
        # A spec without a distribution: transformers' availability probe then says "not installed".
        stub.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
        sys.modules["torchaudio"] = stub
    if "torchtune.modules" in sys.modules:
        return
    spec = importlib.util.find_spec("torchtune")
    if spec is None or not spec.submodule_search_locations:
        missing("reference code not installed: pip install --no-deps torchtune==0.6.1")
    path = Path(list(spec.submodule_search_locations)[0]) / "modules" / "position_embeddings.py"
    file_spec = importlib.util.spec_from_file_location("_torchtune_position_embeddings", path)
    module = importlib.util.module_from_spec(file_spec)
    file_spec.loader.exec_module(module)
    torchtune = types.ModuleType("torchtune")
    modules = types.ModuleType("torchtune.modules")
    modules.RotaryPositionalEmbeddings = module.RotaryPositionalEmbeddings
    torchtune.modules = modules
    sys.modules["torchtune"] = torchtune
    sys.modules["torchtune.modules"] = modules


def reference_package():
    """Return the ``xcodec2`` package's modules after installing the shims (skips if absent)."""
    _install_shims()
    try:
        from xcodec2 import modeling_xcodec2
        from xcodec2.vq import codec_decoder_vocos, codec_encoder, module
    except ImportError as error:  # pragma: no cover - depends on the test environment
        missing(f"reference xcodec2 not importable ({error}); run scripts/test.sh")
    return types.SimpleNamespace(
        modeling=modeling_xcodec2, decoder=codec_decoder_vocos, encoder=codec_encoder, module=module
    )
