"""Parity of our X-Codec2 encode path with the reference (xcodec2==0.1.5) on the same random weights."""
from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F
from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig

from engine.audio.clip import HOP_LENGTH, SAMPLE_RATE
from engine.codec.encoder import AcousticEncoder, SemanticEncoder
from engine.codec.semantic import (
    SEMANTIC_LAYER,
    W2V_BERT_CONFIG,
    build_semantic_model,
    semantic_features,
    semantic_hidden_states,
    truncate_to_semantic_layer,
)
from tests.xcodec2_reference import reference_package

SMALL_W2V_BERT = {"hidden_size": 64, "output_hidden_size": 64, "num_hidden_layers": 18,
                  "num_attention_heads": 4, "intermediate_size": 128}


def _official_feature_extractor() -> SeamlessM4TFeatureExtractor:
    """Stand-in for AutoFeatureExtractor.from_pretrained("facebook/w2v-bert-2.0") (no network here):
    the class and values of that repo's preprocessor_config.json."""
    return SeamlessM4TFeatureExtractor(feature_size=80, num_mel_bins=80, sampling_rate=16000, stride=2,
                                       padding_value=1.0, padding_side="right", return_attention_mask=True)


def _randomize(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A state dict with every parameter perturbed (buffers such as the anti-alias filters kept)."""
    generator = torch.Generator().manual_seed(seed)
    params = dict(module.named_parameters())
    state = {}
    for name, value in module.state_dict().items():
        if name in params:
            noise = torch.randn(value.shape, generator=generator)
            scale = 0.3 if name.endswith(("act.alpha", "act.bias")) else 0.2 * float(value.std()) + 0.01
            value = value + scale * noise
        state[name] = value.clone()
    return state


def _speech_second(speech_clip_16k) -> torch.Tensor:
    samples, _ = speech_clip_16k
    start = len(samples) // 2 - SAMPLE_RATE // 2
    return torch.from_numpy(samples[start : start + SAMPLE_RATE].copy())


def _assert_close(ours: torch.Tensor, theirs: torch.Tensor, atol: float) -> None:
    diff = (ours - theirs).abs().max().item()
    relative = diff / theirs.abs().max().item()
    print(f"max abs diff {diff:.3g}, relative to max |ref| {relative:.3g}")
    assert diff <= atol, (diff, relative)


def test_acoustic_encoder_matches_reference(speech_clip_16k):
    ref = reference_package()
    torch.manual_seed(0)
    theirs, ours = ref.encoder.CodecEncoder_Transformer().eval(), AcousticEncoder().eval()
    their_state, our_state = theirs.state_dict(), ours.state_dict()
    assert list(our_state) == list(their_state)
    assert {k: v.shape for k, v in our_state.items()} == {k: v.shape for k, v in their_state.items()}
    filters = [k for k in our_state if k.endswith("filter")]
    assert filters and all(torch.equal(our_state[k], their_state[k]) for k in filters)  # computed by our code

    state = _randomize(theirs, seed=1)
    theirs.load_state_dict(state)
    ours.load_state_dict(state, strict=True)
    wave = _speech_second(speech_clip_16k)[None, None]
    with torch.no_grad():
        expected, got = theirs(wave), ours(wave)
    assert got.shape == expected.shape == (1, SAMPLE_RATE // HOP_LENGTH, 1024)
    assert expected.std() > 0.01
    _assert_close(got, expected, atol=1e-4)


def test_semantic_encoder_matches_reference_inplace_relu_included():
    ref = reference_package()
    torch.manual_seed(0)
    theirs, ours = ref.module.SemanticEncoder(1024, 1024, 1024).eval(), SemanticEncoder(1024).eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    state = _randomize(theirs, seed=2)
    theirs.load_state_dict(state)
    ours.load_state_dict(state, strict=True)
    x = torch.randn(1, 1024, 50)
    with torch.no_grad():
        expected, got = theirs(x.clone()), ours(x)
    _assert_close(got, expected, atol=1e-5)


@pytest.mark.parametrize("samples", [SAMPLE_RATE, SAMPLE_RATE + 1, SAMPLE_RATE - 1, 3 * HOP_LENGTH])
def test_semantic_features_match_official_extractor(samples):
    """The hub's AutoFeatureExtractor for facebook/w2v-bert-2.0 cannot be downloaded here; the stand-in is
    the SeamlessM4TFeatureExtractor its preprocessor_config.json names, with that file's values."""
    wave = torch.sin(torch.arange(samples) * 0.05) * 0.3 + 0.01 * torch.randn(samples)
    wave = F.pad(wave, (0, HOP_LENGTH - samples % HOP_LENGTH))  # the reference's always-pad quirk
    padded = F.pad(wave, (HOP_LENGTH // 2, HOP_LENGTH // 2))
    expected = _official_feature_extractor()(padded, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
    got = semantic_features(padded)
    assert got.dtype == torch.float32 and got.shape == (1, len(wave) // HOP_LENGTH, 160)
    assert torch.equal(got, expected)


def test_embedded_w2v_bert_config_is_the_official_one():
    defaults = Wav2Vec2BertConfig()  # transformers' defaults mirror facebook/w2v-bert-2.0
    assert {k: getattr(defaults, k) for k in W2V_BERT_CONFIG} == W2V_BERT_CONFIG
    with torch.device("meta"):
        model = build_semantic_model()
    keys = model.state_dict().keys()
    assert "masked_spec_embed" in keys and "encoder.layers.23.ffn2.output_dense.weight" in keys
    assert not model.training
    assert 575e6 < sum(p.numel() for p in model.parameters()) < 585e6


def test_semantic_hidden_states_equal_full_forward_layer_16(speech_clip_16k):
    torch.manual_seed(0)
    model = build_semantic_model(SMALL_W2V_BERT)
    wave = F.pad(_speech_second(speech_clip_16k), (HOP_LENGTH // 2, HOP_LENGTH // 2))
    features = semantic_features(wave)
    with torch.no_grad():
        expected = model(features, output_hidden_states=True).hidden_states[SEMANTIC_LAYER]
    full = semantic_hidden_states(model, features)
    truncated = semantic_hidden_states(truncate_to_semantic_layer(model), features)
    assert len(model.encoder.layers) == SEMANTIC_LAYER
    assert full.shape == (1, features.shape[1], 64)
    _assert_close(full, expected, atol=1e-5)
    _assert_close(truncated, expected, atol=1e-5)


@pytest.mark.slow
def test_encode_codes_match_reference(speech_clip_16k, monkeypatch):
    ref = reference_package()
    from engine.codec.model import CodecConfig, XCodec2
    # Full-size acoustic encoder, semantic encoder, fc_prior and FSQ. w2v-bert keeps the official width
    # (the semantic encoder needs 1024) but is thin and 17 deep; the decoder (unused here) has 1 block.
    small = {"num_hidden_layers": SEMANTIC_LAYER + 1, "intermediate_size": 64, "conv_depthwise_kernel_size": 5}
    monkeypatch.setattr(ref.modeling, "CodecDecoderVocos", lambda: ref.decoder.CodecDecoderVocos(depth=1))
    monkeypatch.setattr(ref.modeling, "Wav2Vec2BertModel", types.SimpleNamespace(
        from_pretrained=lambda *a, **k: build_semantic_model({**small, "output_hidden_states": True})))
    monkeypatch.setattr(ref.modeling, "AutoFeatureExtractor", types.SimpleNamespace(
        from_pretrained=lambda *a, **k: _official_feature_extractor()))
    torch.manual_seed(0)
    theirs = ref.modeling.XCodec2Model(ref.modeling.BigCodecConfig()).eval()
    state = _randomize(theirs, seed=3)
    # Louder acoustic features and a wider FSQ input than random init gives, so that both encoder
    # halves move the codes and many frames sit near a rounding boundary (a strict test).
    state["CodecEnc.conv_final_block.1.parametrizations.weight.original0"] *= 30
    state["generator.quantizer.project_in.weight"] *= 3
    theirs.load_state_dict(state)
    ours = XCodec2.from_config(CodecConfig(decoder_depth=1, semantic_model=small))
    ours.load_state_dict(state, strict=True)
    truncate_to_semantic_layer(ours.semantic_model)

    samples, _ = speech_clip_16k
    wave = torch.from_numpy(samples)
    expected = theirs.encode_code(wave[None]).flatten()
    got = ours.encode(wave)
    assert got.shape == expected.shape == (len(samples) // HOP_LENGTH + 1,)
    print(f"{len(torch.unique(expected))} distinct codes in {len(expected)} frames")
    assert len(torch.unique(expected)) > len(expected) // 5  # the codes vary: the test can fail
    agreement = (got.cpu() == expected).float().mean().item()
    print(f"identical codes on {agreement:.2%} of {len(expected)} frames")
    assert agreement >= 0.99
