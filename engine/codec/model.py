"""The X-Codec2 speech codec: 16 kHz waveform <-> one 65,536-code token per 320 samples (50 Hz).

``XCodec2`` is responsible for building the official architecture under the official state-dict
names, loading ``model.safetensors`` strictly (optionally the decoder alone, which skips the 580 M
w2v-bert encoder) and the two codec operations, ``encode`` and ``decode``. Two constructors:
``from_checkpoint`` for real weights and ``from_config`` for random weights in tests.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from engine.audio.clip import HOP_LENGTH
from engine.codec.decoder import CodecDecoder
from engine.codec.fsq import CODEBOOK_SIZE
from engine.codec.encoder import AcousticEncoder, SemanticEncoder
from engine.codec.semantic import (
    SEMANTIC_LAYER,
    W2V_BERT_CONFIG,
    build_semantic_model,
    semantic_features,
    semantic_hidden_states,
    truncate_to_semantic_layer,
)
from engine.errors import ModelFormatError, ModelNotFoundError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MODEL_TYPE = "xcodec2"
_MODEL_TYPES = ("xcodec2", "xcodec")  # the official config class calls itself "xcodec"
DECODER_PREFIXES = ("generator.", "fc_post_a.")  # all that decode() needs
_SEMANTIC_PAD = HOP_LENGTH // 2  # samples added on each side before the w2v-bert features


@dataclass(frozen=True)
class CodecConfig:
    """Architecture hyper-parameters; the defaults are the official HKUSTAudio/xcodec2 model."""

    semantic_hidden_size: int = 1024  # channels of w2v-bert's hidden states and the semantic encoder
    codec_encoder_hidden_size: int = 1024  # channels of the acoustic encoder's output
    codec_decoder_hidden_size: int = 1024  # width of the Vocos backbone (multiple of 32: GroupNorm)
    decoder_depth: int = 12  # transformer blocks in the backbone
    decoder_heads: int = 16  # attention heads per block
    n_fft: int = 4 * HOP_LENGTH  # ISTFT window length in samples (hop is HOP_LENGTH)
    encoder_ngf: int = 48  # channels of the acoustic encoder's first conv (doubled per block)
    encoder_strides: tuple[int, ...] = (2, 2, 4, 4, 5)  # acoustic encoder downsampling; product = hop
    semantic_model: dict[str, Any] | None = None  # Wav2Vec2BertConfig overrides (tiny test models)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # every size is a positive whole number (0 heads divided by zero)
            value = getattr(self, f.name)
            if f.type in ("int", int) and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ModelFormatError(f"codec {f.name} must be a whole number >= 1, got {value!r}")
        if not isinstance(self.encoder_strides, (list, tuple)) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in self.encoder_strides):
            raise ModelFormatError(f"codec encoder_strides must be whole numbers >= 1, got {self.encoder_strides!r}")
        object.__setattr__(self, "encoder_strides", tuple(self.encoder_strides))
        if math.prod(self.encoder_strides) != HOP_LENGTH:
            raise ModelFormatError(f"codec encoder strides {self.encoder_strides} must multiply to {HOP_LENGTH}")
        if self.codec_decoder_hidden_size % 32 or self.codec_decoder_hidden_size % self.decoder_heads:
            raise ModelFormatError("codec decoder hidden size must be a multiple of 32 and of its head count")
        semantic_width = {**W2V_BERT_CONFIG, **(self.semantic_model or {})}["hidden_size"]
        if semantic_width != self.semantic_hidden_size:
            raise ModelFormatError(
                f"codec semantic_hidden_size {self.semantic_hidden_size} != w2v-bert width {semantic_width}"
            )
        if self.n_fft <= HOP_LENGTH or (self.n_fft - HOP_LENGTH) % 2:
            raise ModelFormatError(f"codec n_fft {self.n_fft} must exceed {HOP_LENGTH} by an even number")

    @property
    def vq_dim(self) -> int:
        """Width of the quantized embedding: semantic and acoustic features side by side."""
        return self.semantic_hidden_size + self.codec_encoder_hidden_size

    @classmethod
    def tiny(cls) -> CodecConfig:
        """A random-weight codec of a few MB with every official module, for tests and `dev tiny-models`."""
        return cls(
            semantic_hidden_size=32,
            codec_encoder_hidden_size=32,
            codec_decoder_hidden_size=64,
            decoder_depth=2,
            decoder_heads=2,
            encoder_ngf=4,
            semantic_model={
                "hidden_size": 32,
                "output_hidden_size": 32,
                "intermediate_size": 64,
                "num_attention_heads": 2,
                "num_hidden_layers": SEMANTIC_LAYER,  # the codec reads layer 16
                "conv_depthwise_kernel_size": 3,
            },
        )

    def to_json(self) -> dict[str, Any]:
        """The official config.json fields, plus ours where they differ from the official model."""
        official = {
            "model_type": MODEL_TYPE,
            "semantic_hidden_size": self.semantic_hidden_size,
            "codec_encoder_hidden_size": self.codec_encoder_hidden_size,
            "codec_decoder_hidden_size": self.codec_decoder_hidden_size,
            "use_vocos": True,
        }
        default = CodecConfig()
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name not in official and value != getattr(default, field.name):
                official[field.name] = list(value) if isinstance(value, tuple) else value
        return official

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = CONFIG_FILE) -> CodecConfig:
        """Read a config.json dict (official or ours); unknown keys such as `architectures` are ignored."""
        model_type = data.get("model_type", MODEL_TYPE)
        if model_type not in _MODEL_TYPES or data.get("use_vocos", True) is not True:
            raise ModelFormatError(
                f"{source} is not an X-Codec2 config (model_type {model_type!r}); choose the codec folder"
            )
        names = {field.name for field in dataclasses.fields(cls)}
        try:
            return cls(**{key: value for key, value in data.items() if key in names})
        except TypeError as error:
            raise ModelFormatError(f"{source} has an invalid X-Codec2 setting: {error}") from None


class XCodec2(nn.Module):
    """X-Codec2 under the official state-dict names; ``decode_only`` builds the decode path alone."""

    def __init__(self, config: CodecConfig, decode_only: bool = False) -> None:
        super().__init__()
        self.config = config
        self.decode_only = decode_only
        if not decode_only:
            self.semantic_model = build_semantic_model(config.semantic_model)
            self.SemanticEncoder_module = SemanticEncoder(config.semantic_hidden_size)
            self.CodecEnc = AcousticEncoder(
                ngf=config.encoder_ngf, strides=config.encoder_strides, out_channels=config.codec_encoder_hidden_size
            )
            self.fc_prior = nn.Linear(config.vq_dim, config.vq_dim)
        self.generator = CodecDecoder(
            config.vq_dim,
            config.codec_decoder_hidden_size,
            config.decoder_depth,
            config.decoder_heads,
            config.n_fft,
            HOP_LENGTH,
        )
        self.fc_post_a = nn.Linear(config.vq_dim, config.codec_decoder_hidden_size)

    @property
    def num_codes(self) -> int:
        """Size of the codebook: speech codes are 0 .. num_codes - 1."""
        return CODEBOOK_SIZE

    @classmethod
    def from_config(cls, config: CodecConfig, decode_only: bool = False) -> XCodec2:
        """Random weights (for tests and tiny models), in eval mode on the CPU."""
        return cls(config, decode_only).eval()

    @classmethod
    def from_checkpoint(
        cls,
        folder: Path,
        *,
        decode_only: bool = False,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> XCodec2:
        """Load config.json + model.safetensors from a local folder, checking keys strictly.

        With ``decode_only`` only the ``generator.*`` and ``fc_post_a.*`` tensors are read. Otherwise
        w2v-bert keeps only the layers the codec uses (the later ones are checked, never read), so
        ``save_checkpoint`` is for models made by ``from_config``.
        Raises ModelNotFoundError / ModelFormatError for a missing, incomplete or foreign folder.
        """
        folder = Path(folder)
        config = _read_config(folder)
        weights = folder / WEIGHTS_FILE
        if not weights.is_file():
            raise ModelFormatError(f"{folder} has no {WEIGHTS_FILE} (only safetensors weights are loaded)")
        with torch.device("meta"):
            model = cls(config, decode_only)
        state = _read_state(weights, model, torch.device(device), dtype)
        model.load_state_dict(state, strict=True, assign=True)
        window = model.generator.head.istft.window
        model.generator.head.istft.window = window.float()  # the ISTFT always runs in float32
        return model.eval()

    def save_checkpoint(self, folder: Path) -> None:
        """Write config.json + model.safetensors in the official layout (float32 on disk).

        Only for models made by ``from_config``: loaded ones lack tensors they never read.
        """
        layers = {**W2V_BERT_CONFIG, **(self.config.semantic_model or {})}["num_hidden_layers"]
        if self.decode_only or len(self.semantic_model.encoder.layers) != layers:
            raise ValueError("only an XCodec2 made by from_config holds every tensor of a checkpoint")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {key: value.detach().float().cpu().contiguous() for key, value in self.state_dict().items()}
        save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
        (folder / CONFIG_FILE).write_text(json.dumps(self.config.to_json(), indent=2) + "\n")

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Speech codes int [frames] or [batch, frames] in [0, 65536) -> waveform float32
        [batch, frames*320] at 16 kHz, on the model's device. Codes are not range-checked."""
        if codes.dim() == 1:
            codes = codes.unsqueeze(0)
        device = self.fc_post_a.weight.device
        vectors = self.generator.quantizer.codes_to_vectors(codes.to(device))
        return self.generator(self.fc_post_a(vectors))

    @torch.inference_mode()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Waveform float32 [samples] at 16 kHz -> int64 codes [samples // 320 + 1].

        Like the reference, the wave is always right-padded (by a full hop when already aligned).
        """
        if self.decode_only:
            raise ValueError("this XCodec2 was loaded decode-only; load it with decode_only=False to encode")
        if audio.dim() != 1:
            raise ValueError(f"encode takes one mono waveform [samples], got shape {tuple(audio.shape)}")
        device, dtype = self.fc_prior.weight.device, self.fc_prior.weight.dtype
        wave = F.pad(audio.float().cpu(), (0, HOP_LENGTH - audio.shape[-1] % HOP_LENGTH))
        features = semantic_features(F.pad(wave, (_SEMANTIC_PAD, _SEMANTIC_PAD)))
        hidden = semantic_hidden_states(self.semantic_model, features.to(device, dtype))
        semantic = self.SemanticEncoder_module(hidden.transpose(1, 2)).transpose(1, 2)
        acoustic = self.CodecEnc(wave.to(device, dtype)[None, None])
        embedding = self.fc_prior(torch.cat([semantic, acoustic], dim=-1))
        return self.generator.quantizer.vectors_to_codes(embedding)[0]


def _read_config(folder: Path) -> CodecConfig:
    if not folder.is_dir():
        raise ModelNotFoundError(f"codec folder {folder} does not exist; download HKUSTAudio/xcodec2 first")
    path = folder / CONFIG_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelFormatError(f"{folder} has no {CONFIG_FILE}; is it an X-Codec2 folder?") from None
    except (OSError, ValueError) as error:
        raise ModelFormatError(f"{path} is not readable JSON ({error}); download the codec again") from None
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path} is not an X-Codec2 config; download the codec again")
    return CodecConfig.from_json(data, str(path))


def _our_key(key: str, expected: dict[str, torch.Tensor]) -> str:
    """Map either weight-norm spelling (legacy weight_g/weight_v, parametrizations) onto ours."""
    if key in expected:
        return key
    spellings = {
        ".weight_g": ".parametrizations.weight.original0",
        ".weight_v": ".parametrizations.weight.original1",
    }
    for legacy, modern in spellings.items():
        for old, new in ((legacy, modern), (modern, legacy)):
            if key.endswith(old) and key[: -len(old)] + new in expected:
                return key[: -len(old)] + new
    return key


def _read_state(
    weights: Path, model: XCodec2, device: torch.device, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Check the file's keys strictly against `model` (built on meta) and read the tensors it needs."""
    expected = model.state_dict()
    try:
        handle = safe_open(str(weights), framework="pt")
    except Exception as error:  # safetensors raises its own error types for corrupt headers
        raise ModelFormatError(f"{weights} is not a readable safetensors file ({error}); download it again") from None
    with handle:
        names = {_our_key(key, expected): key for key in handle.keys()}
        if model.decode_only:
            names = {ours: key for ours, key in names.items() if ours.startswith(DECODER_PREFIXES)}
        missing = sorted(set(expected) - set(names))
        unexpected = sorted(set(names) - set(expected))
        if missing or unexpected:
            problems = [
                f"{label} {len(keys)} tensor(s) such as {', '.join(keys[:3])}"
                for label, keys in (("missing", missing), ("unexpected", unexpected))
                if keys
            ]
            raise ModelFormatError(
                f"{weights.parent} is not an X-Codec2 checkpoint of this config: {'; '.join(problems)}"
            )
        if not model.decode_only:
            truncate_to_semantic_layer(model.semantic_model)
        state = {}
        for ours in model.state_dict():
            tensor = handle.get_tensor(names[ours])
            if tensor.shape != expected[ours].shape:
                raise ModelFormatError(
                    f"{weights.parent}: tensor {names[ours]} has shape {tuple(tensor.shape)}, "
                    f"expected {tuple(expected[ours].shape)} for its config.json"
                )
            state[ours] = tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else tensor.dtype)
    return state
