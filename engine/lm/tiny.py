"""A tiny random Llasa LM on disk, in the official layout, for tests and `main.py dev tiny-models`.

Same shape of files as HKUSTAudio/Llasa-*: config.json + model.safetensors (LlamaForCausalLM, tied
embeddings) and a Llama-3-style byte-level BPE tokenizer with Llasa's real id layout: the BPE's ids
0..127,999 (a tiny trained BPE, padded with entries no text produces), Llama-3.2's 256 special tokens
at 128,000..128,255 (<|begin_of_text|> 128000, <|eot_id|> 128009, the rest reserved), the 8 Llasa tags
at 128,256..128,263 and the 65,536 speech tokens ``<|s_N|>`` at 128,264..193,799 (vocabulary 193,800),
plus a Llama-3.2-Instruct-style chat template (checked against the published one in
tests/test_tokens_prompt.py). Only the layer sizes are tiny.
"""
from __future__ import annotations

from pathlib import Path

from engine.lm.tokens import LLASA_TAGS, NUM_SPEECH_CODES, speech_token

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
EOT = "<|eot_id|>"
LLAMA_SPECIALS = (BOS, EOS, "<|start_header_id|>", "<|end_header_id|>", EOT)
LLAMA3_BPE_SIZE = 128_000  # ids of Llama-3's byte-level BPE; its special tokens follow
# Llama-3.2's 256 special tokens (ids 128,000..128,255) in order; the unnamed ones are reserved.
_NAMED = {0: BOS, 1: EOS, 4: "<|finetune_right_pad_id|>", 6: "<|start_header_id|>", 7: "<|end_header_id|>",
          8: "<|eom_id|>", 9: EOT, 10: "<|python_tag|>"}
LLAMA3_SPECIAL_TOKENS = tuple(
    _NAMED.get(i) or f"<|reserved_special_token_{i - 2 - sum(k < i for k in _NAMED if k > 1)}|>" for i in range(256)
)

# The pre-tokenizer split of Llama 3 (tiktoken's cl100k pattern).
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The logic of the Llama-3.2 Instruct template without tool calling: the system header always carries
# the knowledge date and "Today Date" (today via strftime_now unless date_string is given).
LLAMA3_CHAT_TEMPLATE = """{{- bos_token }}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

_CORPUS = """\
The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore.
A chance to leave him alone, but no. She just wanted to see him again.
Dealing with family secrets is never easy. Yet, sometimes, omission is a form of protection,
intending to shield loved ones from the painful truths. One day, I hope you understand the reasons
behind my actions. Until then, please, bear with me. Convert the text to speech:
It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of
foolishness. Call me Ishmael. In the beginning the Universe was created. This has made a lot of
people very angry and been widely regarded as a bad move. 1, 2, 3, 42, 1984, 2048 tokens!
Cutting Knowledge Date: December 2023. Today Date: 26 Jul 2024. system user assistant
Hello world, how are you today? I'm fine, thanks; and you're reading this, aren't you?
"""

TINY_LM_SHAPES = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    max_position_embeddings=2048,
)


def _build_tokenizer():
    """A byte-level BPE (Llama-3 style) + Llama-3 control tokens + Llasa tags + speech tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=640, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    # Llama-3's id layout: the BPE fills ids 0..127,999 (here a tiny BPE, its unused ids padded with
    # entries no text ever produces), Llama-3's 256 special tokens are 128,000..128,255, then Llasa's
    # 8 tags (128,256..128,263) and the 65,536 speech tokens (128,264..193,799): vocabulary 193,800.
    import json

    model = json.loads(tok.to_str())["model"]
    vocab = dict(model["vocab"])
    vocab.update({f"<|unused_bpe_{i}|>": i for i in range(len(vocab), LLAMA3_BPE_SIZE)})
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    padded = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    padded.pre_tokenizer, padded.decoder = tok.pre_tokenizer, tok.decoder
    tok = padded
    tok.add_special_tokens(list(LLAMA3_SPECIAL_TOKENS))
    tok.add_special_tokens(list(LLASA_TAGS))
    tok.add_special_tokens([speech_token(c) for c in range(NUM_SPEECH_CODES)])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    return tok


def write_tiny_lm(folder: Path, seed: int = 0) -> None:
    """Write a tiny random Llasa LM (about 64 MB, fp32: 193,800 x 64 tied embeddings) to ``folder``.

    Loads offline with ``AutoTokenizer``/``AutoModelForCausalLM.from_pretrained(folder)``.
    The same ``seed`` gives the same weights.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_build_tokenizer(),
        bos_token=BOS,
        eos_token=EOT,
        chat_template=LLAMA3_CHAT_TEMPLATE,
        model_max_length=TINY_LM_SHAPES["max_position_embeddings"],
    )
    tokenizer.save_pretrained(folder)

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
        rope_parameters=dict(rope_type="default", rope_theta=500000.0),  # Llama-3's base, no long-context scaling
        bos_token_id=tokenizer.convert_tokens_to_ids(BOS),
        eos_token_id=tokenizer.convert_tokens_to_ids(EOT),
        **TINY_LM_SHAPES,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LlamaForCausalLM(config).eval()
    finally:
        torch.random.set_rng_state(generator_state)
    model.save_pretrained(folder)
