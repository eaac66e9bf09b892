"""Tiny random verifiers on disk in the official layouts, for tests and benchmarks.

``write_tiny_whisper`` writes what openai/whisper-* repos hold (config.json, model.safetensors,
generation_config.json with alignment_heads (word timestamps), preprocessor_config.json, tokenizer.json
+ tokenizer_config.json + vocab/special-token files) for a WhisperForConditionalGeneration with
Whisper's special tokens in their real order (<|endoftext|>, <|startoftranscript|>, languages,
<|translate|>, <|transcribe|>, <|startoflm|>, <|startofprev|>, <|nospeech|>, <|notimestamps|>).
``write_tiny_wavlm_sv`` writes what microsoft/wavlm-base-plus-sv holds (config.json,
preprocessor_config.json) plus model.safetensors for a WavLMForXVector. Random weights: transcripts
are gibberish and similarities meaningless by design; they exercise every real loading and scoring
path in seconds on a CPU.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The first eight of Whisper's 99 language tokens, in Whisper's order.
WHISPER_LANGUAGES = ("en", "zh", "de", "es", "ru", "ko", "fr", "ja")
_CORPUS = """\
The quick brown fox jumps over the lazy dog, near the quiet river bank.
She sells sea shells by the sea shore. Hello world, how are you today?
It was the best of times, it was the worst of times. One two three four five.
"""


def _seeded(seed: int, build):
    import torch

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return build()
    finally:
        torch.random.set_rng_state(state)


WHISPER_SMALL_SHAPES = dict(d_model=768, encoder_layers=12, decoder_layers=12, encoder_attention_heads=12,
                            decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072)
WAVLM_BASE_SHAPES = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                         conv_dim=(512,) * 7, num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16,
                         tdnn_dim=(512, 512, 512, 512, 1500), xvector_output_dim=512, num_buckets=320,
                         max_bucket_distance=800)


def write_tiny_whisper(folder: str | Path, seed: int = 0, **shapes: Any) -> Path:
    """A tiny random multilingual Whisper (about 0.5 MB) in openai/whisper-small's file layout.

    ``shapes`` override the model sizes (WHISPER_SMALL_SHAPES: whisper-small's, for benchmarks; the
    vocabulary stays the tiny tokenizer's).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperTokenizer)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bpe.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    model_json = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_json["merges"]]
    tokenizer = WhisperTokenizer(vocab=model_json["vocab"], merges=merges)
    specials = (["<|endoftext|>", "<|startoftranscript|>"] + [f"<|{code}|>" for code in WHISPER_LANGUAGES]
                + ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
                   "<|notimestamps|>"])
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in specials}
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)  # preprocessor_config.json
    tokenizer.save_pretrained(folder)
    sizes = dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                 decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64) | shapes
    config = WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=80, **sizes, max_source_positions=1500, max_target_positions=448, pad_token_id=eot, bos_token_id=eot,
        eos_token_id=eot, decoder_start_token_id=sot, begin_suppress_tokens=[eot], suppress_tokens=[],
    )
    model = _seeded(seed, lambda: WhisperForConditionalGeneration(config).eval())
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        max_length=448, begin_suppress_tokens=[eot], suppress_tokens=[], is_multilingual=True,
        lang_to_id={f"<|{c}|>": ids[f"<|{c}|>"] for c in WHISPER_LANGUAGES},
        task_to_id={"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"], prev_sot_token_id=ids["<|startofprev|>"],
        forced_decoder_ids=None,
        # [layer, head] pairs whose cross-attention follows the audio (word timestamps); the real repos
        # list chosen ones, here every head of the last half of the decoder layers (openai's default)
        alignment_heads=[[layer, head] for layer in range(sizes["decoder_layers"] // 2, sizes["decoder_layers"])
                         for head in range(sizes["decoder_attention_heads"])],
    )
    model.save_pretrained(folder)
    return folder


def write_tiny_wavlm_sv(folder: str | Path, seed: int = 0, **shapes: Any) -> Path:
    """A tiny random WavLMForXVector (about 0.3 MB) in microsoft/wavlm-base-plus-sv's layout, safetensors.

    ``shapes`` override the model sizes (WAVLM_BASE_SHAPES: wavlm-base-plus-sv's, for benchmarks).
    """
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    Wav2Vec2FeatureExtractor(  # the repo's preprocessor_config.json
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=False, return_attention_mask=True
    ).save_pretrained(folder)
    sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                 tdnn_dim=(32, 32, 32, 32, 64), xvector_output_dim=16, num_buckets=32, max_bucket_distance=80) | shapes
    config = WavLMConfig(**sizes, architectures=["WavLMForXVector"])
    _seeded(seed, lambda: WavLMForXVector(config).eval()).save_pretrained(folder)
    return folder
