"""Our X-Codec2 against the reference package (xcodec2 0.1.5): decoder and FSQ parity, strict
checkpoint loading, and the official state-dict layout at full size.

The reference is imported only through tests/xcodec2_reference.py. Its w2v-bert download is
replaced (monkeypatch of the reference module's `from_pretrained`) by our embedded-config build,
because nothing here can reach the hub.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import SeamlessM4TFeatureExtractor

from engine.audio.clip import HOP_LENGTH
from engine.codec import CodecConfig, XCodec2
from engine.codec.fsq import CODEBOOK_SIZE, FiniteScalarQuantizer
from engine.codec.model import DECODER_PREFIXES
from engine.codec.semantic import FEATURE_EXTRACTOR_SETTINGS, build_semantic_model
from engine.errors import ModelFormatError, ModelNotFoundError
from xcodec2_reference import reference_package

OFFICIAL_CONFIG = {  # HKUSTAudio/xcodec2 config.json fields (plus keys transformers writes)
    "architectures": ["XCodec2Model"],
    "model_type": "xcodec2",
    "semantic_hidden_size": 1024,
    "codec_encoder_hidden_size": 1024,
    "codec_decoder_hidden_size": 1024,
    "use_vocos": True,
    "torch_dtype": "float32",
}


def randomize_(module: torch.nn.Module, seed: int) -> None:
    """Give every parameter a non-trivial random value (the reference init leaves norms at 1/0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if parameter.dim() == 1:  # norm gains and biases: perturb around their init
                parameter.add_(0.1 * noise)
            else:
                parameter.copy_(noise / parameter[0].numel() ** 0.5)


def write_checkpoint(folder: Path, tensors: dict[str, torch.Tensor], config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    return folder


# --- parity with the reference -------------------------------------------------------------


def test_full_size_decoder_matches_reference():
    ref = reference_package()
    torch.manual_seed(0)
    generator, fc_post_a = ref.decoder.CodecDecoderVocos().eval(), torch.nn.Linear(2048, 1024)
    randomize_(generator, seed=1)
    randomize_(fc_post_a, seed=2)
    state = {f"generator.{k}": v for k, v in generator.state_dict().items()}
    state |= {f"fc_post_a.{k}": v for k, v in fc_post_a.state_dict().items()}
    with torch.device("meta"):
        ours = XCodec2(CodecConfig(), decode_only=True)
    ours.load_state_dict(state, strict=True, assign=True)
    codes = torch.randint(0, CODEBOOK_SIZE, (2, 75), generator=torch.Generator().manual_seed(3))

    with torch.no_grad():  # the reference's decode_code, without its PreTrainedModel wrapper
        vectors = generator.quantizer.get_output_from_indices(codes.unsqueeze(-1))
        expected = generator(fc_post_a(vectors), vq=False)[0].squeeze(1)
    audio = ours.eval().decode(codes)

    assert audio.dtype == torch.float32 and audio.shape == (2, 75 * HOP_LENGTH) == expected.shape
    rms = expected.pow(2).mean().sqrt().item()
    max_diff = (audio - expected).abs().max().item()
    print(f"decoder parity: max abs diff {max_diff:.3g}, reference RMS {rms:.3g}")
    assert rms > 1e-2, "degenerate test: the reference output is near silent"
    assert max_diff <= 1e-4


def test_fsq_matches_reference_residual_fsq():
    ref = reference_package()
    torch.manual_seed(0)
    reference = ref.decoder.ResidualFSQ(dim=2048, levels=[4] * 8, num_quantizers=1).eval()
    ours = FiniteScalarQuantizer(2048)
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = 3 * torch.randn(4, 500, 2048, generator=torch.Generator().manual_seed(1))

    with torch.no_grad():
        ref_vectors, ref_codes = reference(x)
        codes = ours.vectors_to_codes(x)
        all_codes = torch.arange(CODEBOOK_SIZE)
        ref_table = reference.get_output_from_indices(all_codes.view(1, -1, 1))[0]
        table = ours.codes_to_vectors(all_codes)

    agreement = (codes == ref_codes[..., 0]).float().mean().item()
    print(f"FSQ code agreement {agreement:.5f}; {codes.unique().numel()} distinct codes")
    assert agreement >= 0.999
    assert codes.unique().numel() > 1000  # the inputs exercise every digit value
    same = codes == ref_codes[..., 0]
    assert (ours.codes_to_vectors(codes)[same] - ref_vectors[same]).abs().max() < 1e-5
    assert (table - ref_table).abs().max() < 1e-5
    assert list(ours.state_dict()) == ["project_in.weight", "project_in.bias", "project_out.weight", "project_out.bias"]


def meta_semantic_model(*args, **kwargs):
    with torch.device("meta"):  # layout only: 580 M parameters need not exist
        return build_semantic_model()


def reference_xcodec2(monkeypatch):
    """The reference XCodec2Model at full size, its w2v-bert built on the meta device, not downloaded.

    The rest is built for real (~235 M parameters): the reference FSQ cannot be built on meta.
    """
    ref = reference_package()
    monkeypatch.setattr(ref.modeling.Wav2Vec2BertModel, "from_pretrained", meta_semantic_model)
    monkeypatch.setattr(
        ref.modeling.AutoFeatureExtractor,
        "from_pretrained",
        lambda *a, **k: SeamlessM4TFeatureExtractor(**FEATURE_EXTRACTOR_SETTINGS),
    )
    return ref.modeling.XCodec2Model(ref.modeling.BigCodecConfig())


def test_full_size_state_dict_layout_equals_reference(monkeypatch):
    reference = reference_xcodec2(monkeypatch).state_dict()
    with torch.device("meta"):
        ours = XCodec2(CodecConfig()).state_dict()
    assert set(ours) == set(reference)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in reference.items()}
    prefixes = {key.split(".")[0] for key in ours}
    assert prefixes == {"semantic_model", "SemanticEncoder_module", "CodecEnc", "fc_prior", "generator", "fc_post_a"}


@pytest.mark.slow
def test_full_size_official_checkpoint_loads_strictly(monkeypatch, tmp_path):
    shapes = {k: (v.shape, v.dtype) for k, v in reference_xcodec2(monkeypatch).state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    tensors = {
        k: torch.empty(shape, dtype=dtype).normal_(std=0.02, generator=generator) for k, (shape, dtype) in shapes.items()
    }
    probed = ("generator.head.out.weight", "semantic_model.encoder.layers.15.ffn1.intermediate_dense.weight")
    probe = {k: tensors[k][:2].clone() for k in probed}
    folder = write_checkpoint(tmp_path / "xcodec2", tensors, OFFICIAL_CONFIG)
    del tensors

    full = XCodec2.from_checkpoint(folder)
    assert len(full.semantic_model.encoder.layers) == 16  # layers 17-24 are checked, never read
    for key, value in probe.items():
        assert torch.equal(full.state_dict()[key][:2], value)
    del full
    decoder = XCodec2.from_checkpoint(folder, decode_only=True)
    assert all(key.startswith(DECODER_PREFIXES) for key in decoder.state_dict())
    assert decoder.decode(torch.tensor([0, 1, CODEBOOK_SIZE - 1])).shape == (1, 3 * HOP_LENGTH)


# --- our checkpoints: round trip and strict loading -------------------------------------------


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = XCodec2.from_config(CodecConfig.tiny())
    randomize_(model, seed=4)
    folder = tmp_path_factory.mktemp("tiny") / "codec"
    model.save_checkpoint(folder)
    return folder


CODES = torch.randint(0, CODEBOOK_SIZE, (2, 20), generator=torch.Generator().manual_seed(5))
AUDIO = 0.1 * torch.randn(5 * HOP_LENGTH + 17, generator=torch.Generator().manual_seed(6))


def test_tiny_checkpoint_round_trips(tiny_folder):
    config = json.loads((tiny_folder / "config.json").read_text())
    official = {k: v for k, v in OFFICIAL_CONFIG.items() if k not in ("architectures", "torch_dtype")}
    assert set(official) <= set(config)
    assert "encoder_strides" not in config  # ours appear only where they differ from the official model
    assert CodecConfig.from_json(config) == CodecConfig.tiny()
    assert (tiny_folder / "model.safetensors").stat().st_size < 8_000_000

    model = XCodec2.from_checkpoint(tiny_folder)
    again = XCodec2.from_checkpoint(tiny_folder)
    codes = model.encode(AUDIO)
    assert codes.dtype == torch.int64 and codes.shape == (AUDIO.numel() // HOP_LENGTH + 1,)
    assert torch.equal(codes, again.encode(AUDIO))
    assert model.encode(AUDIO[: 5 * HOP_LENGTH]).shape == (6,)  # a full hop of padding when aligned
    assert model.decode(CODES).shape == (2, 20 * HOP_LENGTH)
    decoder = XCodec2.from_checkpoint(tiny_folder, decode_only=True)
    assert torch.equal(decoder.decode(CODES), model.decode(CODES))
    assert torch.equal(model.decode(CODES[0]), model.decode(CODES[:1]))


def test_official_config_reads_as_the_default_config():
    assert CodecConfig.from_json(OFFICIAL_CONFIG) == CodecConfig()
    assert CodecConfig().to_json() == {k: v for k, v in OFFICIAL_CONFIG.items() if k not in ("architectures", "torch_dtype")}


def test_decode_only_load_skips_the_encoder(tiny_folder, tmp_path):
    tensors = load_file(tiny_folder / "model.safetensors")
    # Encoder tensors of the wrong shape: a full load reads them and refuses, a decode-only load never looks.
    tensors["CodecEnc.conv_final_block.1.bias"] = torch.zeros(3)
    folder = write_checkpoint(tmp_path / "codec", tensors, json.loads((tiny_folder / "config.json").read_text()))
    with pytest.raises(ModelFormatError, match="CodecEnc.conv_final_block.1.bias has shape"):
        XCodec2.from_checkpoint(folder)
    decoder = XCodec2.from_checkpoint(folder, decode_only=True)
    children = {name for name, _ in decoder.named_children()}
    assert children == {"generator", "fc_post_a"}
    with pytest.raises(ValueError, match="decode-only"):
        decoder.encode(AUDIO)


@pytest.mark.parametrize("decode_only", [False, True])
@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.pop("generator.backbone.transformers.1.att.c_proj.weight"), "missing 1 tensor.*transformers.1.att.c_proj"),
        (lambda t: t.update({"generator.backbone.extra.weight": torch.zeros(1)}), "unexpected 1 tensor.*backbone.extra"),
    ],
)
def test_strict_loading_names_bad_keys(tiny_folder, tmp_path, edit, message, decode_only):
    tensors = load_file(tiny_folder / "model.safetensors")
    edit(tensors)
    folder = write_checkpoint(tmp_path / "codec", tensors, json.loads((tiny_folder / "config.json").read_text()))
    with pytest.raises(ModelFormatError, match=message) as error:
        XCodec2.from_checkpoint(folder, decode_only=decode_only)
    assert str(folder) in str(error.value)


def test_legacy_weight_norm_spelling_loads(tiny_folder, tmp_path):
    tensors = load_file(tiny_folder / "model.safetensors")
    spelling = {".parametrizations.weight.original0": ".weight_g", ".parametrizations.weight.original1": ".weight_v"}
    legacy = {}
    for key, value in tensors.items():
        for modern, old in spelling.items():
            key = key.replace(modern, old)
        legacy[key] = value
    assert sum(k.endswith(".weight_g") for k in legacy) > 10
    folder = write_checkpoint(tmp_path / "codec", legacy, json.loads((tiny_folder / "config.json").read_text()))
    model, original = XCodec2.from_checkpoint(folder), XCodec2.from_checkpoint(tiny_folder)
    assert torch.equal(model.encode(AUDIO), original.encode(AUDIO))


def test_wrong_folders_are_refused(tiny_folder, tmp_path):
    with pytest.raises(ModelNotFoundError):
        XCodec2.from_checkpoint(tmp_path / "absent")
    with pytest.raises(ModelFormatError, match="no config.json"):
        XCodec2.from_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ModelFormatError, match="not an X-Codec2 config"):
        XCodec2.from_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text((tiny_folder / "config.json").read_text())
    with pytest.raises(ModelFormatError, match="no model.safetensors"):
        XCodec2.from_checkpoint(tmp_path)


def test_half_precision_decode_runs_the_head_in_float32(tiny_folder):
    full = XCodec2.from_checkpoint(tiny_folder, decode_only=True)
    half = XCodec2.from_checkpoint(tiny_folder, decode_only=True, dtype=torch.bfloat16)
    assert half.generator.backbone.embed.weight.dtype == torch.bfloat16
    assert half.generator.head.istft.window.dtype == torch.float32
    audio, reference = half.decode(CODES), full.decode(CODES)
    assert audio.dtype == torch.float32
    assert (audio - reference).pow(2).mean() < 0.05 * reference.pow(2).mean()
