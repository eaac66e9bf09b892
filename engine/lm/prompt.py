"""Llasa prompts: (tokenizer, reference voice, text) -> input ids, exactly as the model card builds them.

The recipe (HKUSTAudio/Llasa-* model cards, LLaSA_training/train_tts.py)::

    user:      "Convert the text to speech:<|TEXT_UNDERSTANDING_START|>{text}<|TEXT_UNDERSTANDING_END|>"
    assistant: "<|SPEECH_GENERATION_START|>" + "".join(f"<|s_{c}|>" for c in reference_codes)
    apply_chat_template(chat, continue_final_message=True)

and the model continues the assistant message with the speech of ``text``.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

from engine.errors import InputTextError, ModelFormatError
from engine.lm.tokens import (
    SPEECH_GENERATION_START,
    TEXT_UNDERSTANDING_END,
    TEXT_UNDERSTANDING_START,
    SpeechTokens,
)

INSTRUCTION = "Convert the text to speech:"

# The "Today Date" the Llama-3 chat template writes into the system header. Pinned because the
# template otherwise writes the current date (strftime_now): the same voice and text would give a
# different prompt, and different audio for the same seed, each day, and cached prompt prefixes
# (KV caches) would go stale at midnight. "26 Jul 2024" is the template's own fallback and the
# fixed value of the Llama-3.1 template (Llasa-8B); Llasa was trained on Llama's template, and
# the date carries no information about speech.
PROMPT_DATE = "26 Jul 2024"

_MARKER = re.compile(r"<\|[^<>|\s]{1,64}\|>")


def join_texts(reference_text: str, text: str) -> str:
    """The text the model reads: reference transcript, one space, target text (outer whitespace dropped).

    The model card writes ``prompt_text + target_text``, relying on its example transcript's own
    punctuation; the official demo Space and most servers insert a space, which keeps the last word
    of the transcript and the first word of the text from fusing into one BPE word. We do the same.
    """
    return " ".join(part.strip() for part in (reference_text, text) if part.strip())


def _reject_control_tokens(tokenizer: Any, text: str) -> None:
    """InputTextError if ``text`` spells a token of the tokenizer's added vocabulary, like ``<|s_5|>``.

    The recipe tokenizes the rendered chat as one string, so such a marker typed in the text would
    become a real control or speech token (an injected stop or speech token). We refuse instead of
    silently rewriting the user's text; any other ``<|...|>`` text is ordinary text.
    """
    for marker in set(_MARKER.findall(text)):
        tid = tokenizer.convert_tokens_to_ids(marker)
        if isinstance(tid, int) and tid >= 0 and tokenizer.convert_ids_to_tokens(tid) == marker:
            raise InputTextError(f"The text contains the reserved model token {marker}; remove it.")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else "no details"


def build_prompt(
    tokenizer: Any,
    tokens: SpeechTokens,
    text: str,
    *,
    reference_codes: Sequence[int] | None = None,
    reference_text: str = "",
) -> list[int]:
    """Token ids of the Llasa prompt that makes the model speak ``text`` (list of int, batch of one).

    ``reference_codes`` (X-Codec2 codes 0..65535, 50 per second) and ``reference_text`` (their
    transcript) clone a voice; without them the model picks a random voice. Equal, id for id, to
    ``apply_chat_template`` on the recipe's chat with ``<|s_N|>`` strings: the template is rendered
    with the assistant message ``<|SPEECH_GENERATION_START|>`` only and the speech ids are appended,
    which tokenizes the same (special tokens split the text) without parsing ~750 marker strings.
    The date in the system header is pinned to ``PROMPT_DATE`` (see there).
    Raises InputTextError for empty text or text spelling a model token.
    """
    if reference_codes is None and reference_text.strip():
        raise ValueError("reference_text needs reference_codes (the transcript's audio).")
    input_text = join_texts(reference_text, text)
    if not text.strip():
        raise InputTextError("The text to speak is empty; give some text.")
    _reject_control_tokens(tokenizer, input_text)
    chat = [
        {"role": "user", "content": f"{INSTRUCTION}{TEXT_UNDERSTANDING_START}{input_text}{TEXT_UNDERSTANDING_END}"},
        {"role": "assistant", "content": SPEECH_GENERATION_START},
    ]
    try:
        ids = tokenizer.apply_chat_template(
            chat, tokenize=True, continue_final_message=True, date_string=PROMPT_DATE
        )
    except Exception as error:  # jinja2 TemplateSyntaxError / SecurityError / UndefinedError, transformers' ValueError
        if isinstance(error, InputTextError):
            raise
        raise ModelFormatError(
            f"The LM's chat template cannot be used ({type(error).__name__}: {_first_line(error)}); "
            "its tokenizer files are damaged or not Llasa's: download the model again."
        ) from None
    if not isinstance(ids, list):  # transformers 5 returns a BatchEncoding by default
        ids = ids["input_ids"]
    ids = [int(i) for i in ids]
    if not ids or ids[-1] != tokens.speech_start_id:
        raise ModelFormatError(
            "The tokenizer's chat template does not end a continued message with <|SPEECH_GENERATION_START|>: "
            "this folder is not a Llasa LM."
        )
    return ids + tokens.codes_to_ids(reference_codes or ())
