"""Tiny random Llasa LM + X-Codec2 in the official on-disk layouts, for tests and demos.

They exercise every real loading and inference path in seconds on a CPU. They speak noise:
random weights, so any audio they produce is meaningless by design.
"""
from __future__ import annotations

from pathlib import Path

import torch

from engine.codec.model import CodecConfig, XCodec2
from engine.lm.tiny import write_tiny_lm


def write_tiny_models(folder: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """Write a tiny LM to folder/lm and a tiny codec to folder/codec; return both folders."""
    folder = Path(folder)
    lm_dir, codec_dir = folder / "lm", folder / "codec"
    write_tiny_lm(lm_dir, seed=seed)
    torch.manual_seed(seed)
    codec = XCodec2.from_config(CodecConfig.tiny())
    with torch.no_grad():
        # Default init leaves the FSQ input so small that every frame rounds to one code; a larger
        # fc_prior spreads reference clips over many codes, as a trained codec does.
        codec.fc_prior.weight.mul_(10)
    codec.save_checkpoint(codec_dir)
    return lm_dir, codec_dir
