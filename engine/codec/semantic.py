"""The semantic half of X-Codec2's encoder input: w2v-bert-2.0 layer-16 hidden states.

The official checkpoint carries the w2v-bert weights (prefix ``semantic_model.``) but the reference
code downloads facebook/w2v-bert-2.0's config and feature-extractor settings at construction; both
are embedded here so that nothing is downloaded.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel

from engine.audio.clip import SAMPLE_RATE

SEMANTIC_LAYER = 16  # hidden_states index used by X-Codec2: the output of the 16th encoder layer

# facebook/w2v-bert-2.0 config.json (the values transformers' Wav2Vec2BertConfig defaults mirror).
# mask_time_prob > 0 makes the model own `masked_spec_embed`, which is in the checkpoint; masking
# itself only happens in training mode.
W2V_BERT_CONFIG: dict[str, Any] = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "feature_projection_input_dim": 160,
    "hidden_act": "swish",
    "hidden_dropout": 0.0,
    "activation_dropout": 0.0,
    "attention_dropout": 0.0,
    "feat_proj_dropout": 0.0,
    "final_dropout": 0.1,
    "layerdrop": 0.1,
    "conformer_conv_dropout": 0.1,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-5,
    "apply_spec_augment": True,
    "mask_time_prob": 0.05,
    "mask_time_length": 10,
    "mask_time_min_masks": 2,
    "mask_feature_prob": 0.0,
    "mask_feature_length": 10,
    "mask_feature_min_masks": 0,
    "add_adapter": False,
    "use_intermediate_ffn_before_adapter": False,
    "output_hidden_size": 1024,
    "position_embeddings_type": "relative_key",
    "rotary_embedding_base": 10000,
    "max_source_positions": 5000,
    "left_max_position_embeddings": 64,
    "right_max_position_embeddings": 8,
    "conv_depthwise_kernel_size": 31,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}

# facebook/w2v-bert-2.0 preprocessor_config.json (SeamlessM4TFeatureExtractor).
FEATURE_EXTRACTOR_SETTINGS: dict[str, Any] = {
    "feature_size": 80,
    "num_mel_bins": 80,
    "sampling_rate": SAMPLE_RATE,
    "stride": 2,
    "padding_value": 1.0,
    "padding_side": "right",
    "return_attention_mask": True,
}


def build_semantic_model(overrides: dict[str, Any] | None = None) -> Wav2Vec2BertModel:
    """A randomly initialised w2v-bert-2.0 in eval mode: the embedded config updated with
    ``overrides`` (Wav2Vec2BertConfig fields, e.g. tiny sizes for tests). Downloads nothing."""
    config = Wav2Vec2BertConfig(**{**W2V_BERT_CONFIG, **(overrides or {})})
    return Wav2Vec2BertModel(config).eval()


def truncate_to_semantic_layer(model: Wav2Vec2BertModel) -> Wav2Vec2BertModel:
    """Drop the encoder layers after SEMANTIC_LAYER (in place; call after strict loading).

    Layers past 16 never influence X-Codec2's codes, so this saves their compute and a third of the
    model's memory; `semantic_hidden_states` gives identical results before and after.
    """
    if len(model.encoder.layers) > SEMANTIC_LAYER:
        model.encoder.layers = nn.ModuleList(model.encoder.layers[:SEMANTIC_LAYER])
        model.config.num_hidden_layers = SEMANTIC_LAYER
    return model


@lru_cache(maxsize=1)
def _feature_extractor() -> SeamlessM4TFeatureExtractor:
    return SeamlessM4TFeatureExtractor(**FEATURE_EXTRACTOR_SETTINGS)


def semantic_features(padded_wave: torch.Tensor | np.ndarray) -> torch.Tensor:
    """SeamlessM4T log-mel features (80 bins, frames stacked in pairs) of a 16 kHz mono waveform.

    padded_wave: float [samples] at 16 kHz, already padded by 160 samples on each side.
    Returns float32 [1, frames, 160] on the CPU, one frame per 320 samples.
    """
    if isinstance(padded_wave, torch.Tensor):
        padded_wave = padded_wave.detach().to("cpu", torch.float32).numpy()
    wave = np.asarray(padded_wave, dtype=np.float32)
    return _feature_extractor()(wave, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features


@torch.no_grad()
def semantic_hidden_states(model: Wav2Vec2BertModel, features: torch.Tensor) -> torch.Tensor:
    """Hidden state after encoder layer SEMANTIC_LAYER (= ``hidden_states[16]`` of a full forward).

    features: float [1, frames, 160] from `semantic_features` (moved to the model's device/dtype here).
    Returns [1, frames, hidden] in the model's dtype. Runs all of the model's layers: call
    `truncate_to_semantic_layer` once after loading to run only the first 16.
    """
    weight = model.feature_projection.projection.weight
    features = features.to(device=weight.device, dtype=weight.dtype)
    return model(features, output_hidden_states=True).hidden_states[SEMANTIC_LAYER]
