"""Llasa's special tokens and the speech-code <-> token-id mapping, derived from (and checked against) a tokenizer.

Llasa extends the Llama-3 tokenizer with 8 tags and then ``<|s_0|>`` .. ``<|s_65535|>`` as one
contiguous block, so speech code ``c`` is token ``first_speech_id + c``. The ids are read from the
tokenizer at load time, never hard-coded, and the block is verified to be contiguous.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from engine.errors import ModelFormatError

NUM_SPEECH_CODES = 65536  # X-Codec2's single FSQ codebook: 4**8 codes

TEXT_GENERATION_START = "<|TEXT_GENERATION_START|>"
TEXT_GENERATION_END = "<|TEXT_GENERATION_END|>"
TEXT_UNDERSTANDING_START = "<|TEXT_UNDERSTANDING_START|>"
TEXT_UNDERSTANDING_END = "<|TEXT_UNDERSTANDING_END|>"
SPEECH_GENERATION_START = "<|SPEECH_GENERATION_START|>"
SPEECH_GENERATION_END = "<|SPEECH_GENERATION_END|>"
SPEECH_UNDERSTANDING_START = "<|SPEECH_UNDERSTANDING_START|>"
SPEECH_UNDERSTANDING_END = "<|SPEECH_UNDERSTANDING_END|>"
# In the order Llasa added them to the Llama-3 vocabulary.
LLASA_TAGS = (
    TEXT_GENERATION_START,
    TEXT_GENERATION_END,
    TEXT_UNDERSTANDING_START,
    TEXT_UNDERSTANDING_END,
    SPEECH_GENERATION_START,
    SPEECH_GENERATION_END,
    SPEECH_UNDERSTANDING_START,
    SPEECH_UNDERSTANDING_END,
)
LLAMA_EOT = "<|eot_id|>"

if TYPE_CHECKING:
    import torch


def speech_token(code: int) -> str:
    """The token string of speech code ``code``: ``<|s_{code}|>``."""
    return f"<|s_{code}|>"


def _token_id(tokenizer: Any, token: str) -> int | None:
    """The id of ``token`` if the tokenizer has it as one whole token, else None."""
    tid = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(tid, int) or tid < 0 or tokenizer.convert_ids_to_tokens(tid) != token:
        return None  # unknown tokens map to None or to the unk id, which round-trips to another string
    return tid


@dataclass(frozen=True)
class SpeechTokens:
    """Token ids Llasa prompting and decoding need, for one tokenizer."""

    text_understanding_start_id: int  # <|TEXT_UNDERSTANDING_START|>
    text_understanding_end_id: int  # <|TEXT_UNDERSTANDING_END|>
    speech_start_id: int  # <|SPEECH_GENERATION_START|>
    end_id: int  # <|SPEECH_GENERATION_END|>: the model's stop token
    first_speech_id: int  # id of <|s_0|>; code c has id first_speech_id + c
    eot_id: int | None = None  # Llama's <|eot_id|>, also treated as a stop; None if absent
    num_codes: int = NUM_SPEECH_CODES  # size of the contiguous speech block

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> "SpeechTokens":
        """Read the ids from a Hugging Face tokenizer; ModelFormatError unless it is a Llasa tokenizer."""
        missing = [tag for tag in LLASA_TAGS if _token_id(tokenizer, tag) is None]
        if missing:
            raise ModelFormatError(
                f"The tokenizer lacks Llasa's special token(s) {', '.join(missing)}: "
                "this folder is not a Llasa LM (choose HKUSTAudio/Llasa-1B, -3B or -8B)."
            )
        first = _token_id(tokenizer, speech_token(0))
        if first is None:
            raise ModelFormatError("The tokenizer has no speech tokens <|s_N|>: this folder is not a Llasa LM.")
        # Every code must be exactly first + c: checked for all 65,536 (a few ms) and, for a sample,
        # that the text "<|s_N|>" tokenizes to that single id.
        names = [speech_token(c) for c in range(NUM_SPEECH_CODES)]
        ids = tokenizer.convert_tokens_to_ids(names)
        bad = next((c for c, tid in enumerate(ids) if tid != first + c), None)
        if bad is None:
            for c in (0, 1, NUM_SPEECH_CODES // 2 - 1, NUM_SPEECH_CODES - 1):
                if tokenizer.encode(names[c], add_special_tokens=False) != [first + c]:
                    bad = c
                    break
        if bad is not None:
            raise ModelFormatError(
                f"The tokenizer's speech token {names[bad]} is not id {first + bad} "
                f"(<|s_0|> + {bad}): the speech tokens must be one contiguous block; the tokenizer files are damaged."
            )
        return cls(
            text_understanding_start_id=_token_id(tokenizer, TEXT_UNDERSTANDING_START),
            text_understanding_end_id=_token_id(tokenizer, TEXT_UNDERSTANDING_END),
            speech_start_id=_token_id(tokenizer, SPEECH_GENERATION_START),
            end_id=_token_id(tokenizer, SPEECH_GENERATION_END),
            first_speech_id=first,
            eot_id=_token_id(tokenizer, LLAMA_EOT),
        )

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Ids that end a generation: <|SPEECH_GENERATION_END|> and, when present, <|eot_id|>."""
        return (self.end_id,) if self.eot_id is None else (self.end_id, self.eot_id)

    @property
    def vocab_end(self) -> int:
        """One past the last speech token id: the model vocabulary must be at least this large."""
        return self.first_speech_id + self.num_codes

    def is_speech(self, token_id: int) -> bool:
        """True if ``token_id`` is one of the speech tokens <|s_N|>."""
        return self.first_speech_id <= token_id < self.vocab_end

    def codes_to_ids(self, codes: Sequence[int]) -> list[int]:
        """Speech codes (0..65535) -> token ids; ValueError for a code out of range."""
        bad = [c for c in codes if not 0 <= c < self.num_codes]
        if bad:
            raise ValueError(f"Speech code {bad[0]} is outside 0..{self.num_codes - 1}.")
        return [self.first_speech_id + int(c) for c in codes]

    def ids_to_codes(self, ids: Sequence[int]) -> list[int]:
        """Speech token ids -> codes (0..65535); ValueError for an id that is not a speech token."""
        bad = [i for i in ids if not self.is_speech(i)]
        if bad:
            raise ValueError(f"Token id {bad[0]} is not a speech token.")
        return [int(i) - self.first_speech_id for i in ids]

    def allowed_mask(self, vocab_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Additive logits mask [vocab_size] float32: 0 for speech tokens and stop ids, -inf elsewhere."""
        import torch

        mask = torch.full((vocab_size,), float("-inf"), device=device)
        mask[self.first_speech_id : self.vocab_end] = 0.0
        mask[list(self.stop_ids)] = 0.0
        return mask
