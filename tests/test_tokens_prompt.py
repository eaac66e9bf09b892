"""Speech-token ids and prompt building, on the tiny Llasa tokenizer written to disk.

Prompt parity: ``build_prompt`` must equal the model card's recipe (apply_chat_template on the full
chat, with "<|s_N|>" strings, ``continue_final_message=True``) id for id.
"""
from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from engine.errors import InputTextError, ModelFormatError
from engine.lm.prompt import PROMPT_DATE, build_prompt, join_texts
from engine.lm.tiny import write_tiny_lm
from engine.lm.tokens import LLASA_TAGS, NUM_SPEECH_CODES, SpeechTokens, speech_token


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_lm")
    write_tiny_lm(folder)
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


@pytest.fixture(scope="module")
def tokens(tokenizer):
    return SpeechTokens.from_tokenizer(tokenizer)


def recipe(tokenizer, input_text: str, prompt_codes) -> list[int]:
    """The model card's code, verbatim in substance (date pinned as build_prompt does)."""
    formatted_text = f"<|TEXT_UNDERSTANDING_START|>{input_text}<|TEXT_UNDERSTANDING_END|>"
    chat = [
        {"role": "user", "content": "Convert the text to speech:" + formatted_text},
        {"role": "assistant", "content": "<|SPEECH_GENERATION_START|>" + "".join(f"<|s_{c}|>" for c in prompt_codes)},
    ]
    input_ids = tokenizer.apply_chat_template(
        chat, tokenize=True, return_tensors="pt", continue_final_message=True, date_string=PROMPT_DATE
    )
    if not isinstance(input_ids, torch.Tensor):
        input_ids = input_ids["input_ids"]
    return input_ids[0].tolist()


def test_speech_tokens_come_from_the_tokenizer(tokenizer, tokens):
    assert tokens.first_speech_id == tokenizer.convert_tokens_to_ids("<|s_0|>")
    assert tokens.end_id == tokenizer.convert_tokens_to_ids("<|SPEECH_GENERATION_END|>")
    assert tokens.eot_id == tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert tokens.speech_start_id == tokenizer.convert_tokens_to_ids("<|SPEECH_GENERATION_START|>")
    assert tokens.stop_ids == (tokens.end_id, tokens.eot_id)
    assert tokens.vocab_end == len(tokenizer)
    ids = tokens.codes_to_ids([0, 1, 65535])
    assert tokenizer.convert_ids_to_tokens(ids) == ["<|s_0|>", "<|s_1|>", "<|s_65535|>"]
    assert tokens.ids_to_codes(ids) == [0, 1, 65535]
    assert tokens.is_speech(ids[0]) and tokens.is_speech(ids[-1])
    assert not tokens.is_speech(tokens.end_id) and not tokens.is_speech(tokens.vocab_end)
    with pytest.raises(ValueError):
        tokens.codes_to_ids([65536])
    with pytest.raises(ValueError):
        tokens.ids_to_codes([tokens.end_id])
    mask = tokens.allowed_mask(len(tokenizer))
    assert torch.isfinite(mask).sum() == NUM_SPEECH_CODES + 2
    assert mask[tokens.end_id] == 0 and mask[tokens.eot_id] == 0 and mask[tokens.speech_start_id] == -float("inf")


def _plain_tokenizer(added: list[str]) -> PreTrainedTokenizerFast:
    """A real (word-level, with an unk token) tokenizer holding exactly ``added`` as extra tokens."""
    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(added)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def test_speech_tokens_refuse_tokenizers_that_are_not_llasa():
    with pytest.raises(ModelFormatError, match="SPEECH_GENERATION_END"):
        SpeechTokens.from_tokenizer(_plain_tokenizer([t for t in LLASA_TAGS if t != "<|SPEECH_GENERATION_END|>"]))
    with pytest.raises(ModelFormatError, match="no speech tokens"):
        SpeechTokens.from_tokenizer(_plain_tokenizer(list(LLASA_TAGS)))
    speech = [speech_token(c) for c in range(NUM_SPEECH_CODES)]
    gap = list(LLASA_TAGS) + speech[:1000] + ["<|oops|>"] + speech[1000:]
    with pytest.raises(ModelFormatError, match=r"<\|s_1000\|> is not id"):
        SpeechTokens.from_tokenizer(_plain_tokenizer(gap))
    tokens = SpeechTokens.from_tokenizer(_plain_tokenizer(list(LLASA_TAGS) + speech))
    assert tokens.eot_id is None and tokens.stop_ids == (tokens.end_id,)


def test_join_texts():
    assert join_texts("", "Hello.") == "Hello."
    assert join_texts("I said this. ", " Now that.") == "I said this. Now that."
    assert join_texts("  ", "x") == "x"


def test_prompt_with_reference_matches_recipe(tokenizer, tokens):
    rng = random.Random(0)
    codes = [0, 65535] + [rng.randrange(NUM_SPEECH_CODES) for _ in range(298)]
    ref_text, text = "A chance to leave him alone, but no.", "Dealing with family secrets is never easy."
    ours = build_prompt(tokenizer, tokens, text, reference_codes=codes, reference_text=ref_text)
    assert ours == recipe(tokenizer, ref_text + " " + text, codes)
    assert ours[-300:] == tokens.codes_to_ids(codes)
    assert "Today Date: 26 Jul 2024\n" in tokenizer.decode(ours)


@pytest.mark.parametrize(
    "text",
    [
        "Hello world.",
        "你好，世界。今天天气很好。",
        "Café naïve — déjà vu, Zürich; ½ “quotes” 🙂",
        "Line one.\nLine two,\tand   spaces.",
        "Angle <|hello|> text that is not a model token.",
    ],
)
def test_prompt_without_reference_matches_recipe(tokenizer, tokens, text):
    assert build_prompt(tokenizer, tokens, text) == recipe(tokenizer, text, [])


def test_prompt_with_unicode_reference_and_no_transcript(tokenizer, tokens):
    codes = list(range(0, 65536, 4099))
    ours = build_prompt(tokenizer, tokens, "Ça va?", reference_codes=codes, reference_text="你好。")
    assert ours == recipe(tokenizer, "你好。 Ça va?", codes)
    # A reference without transcript is allowed (the caller decides whether to warn).
    assert build_prompt(tokenizer, tokens, "Hi.", reference_codes=codes) == recipe(tokenizer, "Hi.", codes)


@pytest.mark.parametrize("marker", ["<|s_5|>", "<|SPEECH_GENERATION_END|>", "<|eot_id|>", "<|begin_of_text|>"])
def test_text_spelling_a_model_token_is_refused(tokenizer, tokens, marker):
    # The recipe would turn the marker into the real token (here a speech or control token) ...
    injected = tokenizer.convert_tokens_to_ids(marker)
    text = f"Say {marker} now."
    plain = recipe(tokenizer, "Say now.", []).count(injected)
    assert recipe(tokenizer, text, []).count(injected) == plain + 1
    # ... so we refuse such text, with a message naming it; in the transcript too.
    with pytest.raises(InputTextError, match=marker.replace("|", r"\|")):
        build_prompt(tokenizer, tokens, text)
    with pytest.raises(InputTextError):
        build_prompt(tokenizer, tokens, "Fine.", reference_codes=[1], reference_text=text)


def test_prompt_argument_errors(tokenizer, tokens):
    with pytest.raises(InputTextError):
        build_prompt(tokenizer, tokens, "  \n")
    with pytest.raises(InputTextError):
        build_prompt(tokenizer, tokens, "", reference_codes=[1, 2], reference_text="Only the transcript.")
    with pytest.raises(ValueError):
        build_prompt(tokenizer, tokens, "Hi.", reference_text="Transcript without audio.")
    with pytest.raises(ValueError):
        build_prompt(tokenizer, tokens, "Hi.", reference_codes=[-1])


PUBLISHED_TEMPLATE = Path(__file__).parent / "fixtures" / "meta-llama-Llama-3.2-3B-Instruct.jinja"  # see SOURCE.md
PUBLISHED_SHA256 = "5816fce10444e03c2e9ee1ef8a4a1ea61ae7e69e438613f3b17b69d0426223a4"


def test_prompt_matches_the_published_llama_3_2_chat_template(tokenizer, tokens):
    """The prompt equals the model card's recipe rendered with meta-llama's own Llama-3.2 Instruct template
    (tests/fixtures, with its source), not only with the template the tiny model carries."""
    published = PUBLISHED_TEMPLATE.read_text(encoding="utf-8")
    assert hashlib.sha256(published.encode()).hexdigest() == PUBLISHED_SHA256  # the stored text is unchanged
    rng = random.Random(1)
    codes = [rng.randrange(NUM_SPEECH_CODES) for _ in range(50)]
    for ref_text, text in (("A chance to leave him alone, but no.", "Hello world."), ("", "你好，世界。")):
        input_text = f"{ref_text} {text}".strip()
        chat = [
            {"role": "user", "content": "Convert the text to speech:<|TEXT_UNDERSTANDING_START|>" + input_text
             + "<|TEXT_UNDERSTANDING_END|>"},
            {"role": "assistant", "content": "<|SPEECH_GENERATION_START|>" + "".join(f"<|s_{c}|>" for c in codes)},
        ]
        rendered = tokenizer.apply_chat_template(chat, chat_template=published, tokenize=False,
                                                 continue_final_message=True, date_string=PROMPT_DATE)
        assert rendered.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                                   "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>")
        ours = build_prompt(tokenizer, tokens, text, reference_codes=codes, reference_text=ref_text)
        assert tokenizer.decode(ours) == rendered
        assert ours == tokenizer(rendered, add_special_tokens=False)["input_ids"]


def test_the_tiny_tokenizer_has_llasas_real_id_layout(tokenizer, tokens):
    """Llasa-1B's ids (Llama-3 tokenizer + 8 tags + 65,536 speech tokens), as the model card lists them."""
    ids = tokenizer.convert_tokens_to_ids
    assert len(tokenizer) == 193_800
    assert (ids("<|begin_of_text|>"), ids("<|start_header_id|>"), ids("<|end_header_id|>"), ids("<|eot_id|>")) == (
        128_000, 128_006, 128_007, 128_009)
    assert ids("<|reserved_special_token_247|>") == 128_255
    assert [ids(tag) for tag in LLASA_TAGS] == list(range(128_256, 128_264))
    assert (ids("<|s_0|>"), ids("<|s_65535|>")) == (128_264, 193_799)
    assert (tokens.speech_start_id, tokens.end_id, tokens.first_speech_id, tokens.eot_id) == (
        128_260, 128_261, 128_264, 128_009)
    assert max(tokenizer("Hello world, 1984!", add_special_tokens=False)["input_ids"]) < 128_000  # text: BPE ids
