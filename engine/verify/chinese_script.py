"""Traditional and simplified Chinese: which script a text uses, and a transcript in that script.

Whisper often writes simplified characters for traditional text (and the reverse): 這是一個測試 read
perfectly comes back as 这是一个测试, which is a 100% character error rate unless the two are brought
into one script. Conversions use OpenCC (the `opencc` package: the official binding, its dictionaries
convert phrase by phrase). A text's script is the one with more characters of their own: characters
that t2s changes are traditional-only, characters that s2t changes are simplified-only. Japanese
(kana in the text, or the language "ja") is never converted: its kanji are neither script.
"""
from __future__ import annotations

import functools
import re

SCRIPTS = ("traditional", "simplified")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
CHINESE_LANGUAGES = (None, "zh", "yue")  # Whisper language codes whose transcripts are Chinese (None: detected)


@functools.lru_cache(maxsize=4)
def _converter(config: str):
    import opencc

    return opencc.OpenCC(f"{config}.json")  # "t2s.json": the name every opencc release accepts


def convert(text: str, config: str) -> str:
    """OpenCC conversion: config "t2s" (traditional to simplified) or "s2t" (the reverse)."""
    return _converter(config).convert(text) if text else text


def is_chinese(text: str, language: str | None = None) -> bool:
    """True when `text` has a Han character, no kana, and `language` (Whisper code) is Chinese or unknown."""
    return language in CHINESE_LANGUAGES and bool(_HAN.search(text)) and not _KANA.search(text)


def chinese_script(text: str) -> str | None:
    """"traditional" or "simplified": the script with more of its own characters in `text`; None when
    the text has neither (no Han characters, or only characters both scripts share) or as many of each."""
    chars = sorted(set(_HAN.findall(text)))
    if not chars:
        return None
    traditional = sum(convert(c, "t2s") != c for c in chars)
    simplified = sum(convert(c, "s2t") != c for c in chars)
    if traditional == simplified:
        return None
    return "traditional" if traditional > simplified else "simplified"


def to_script(text: str, script: str | None) -> str:
    """`text` written in `script` ("traditional", "simplified"; None leaves it as it is)."""
    if script is None:
        return text
    if script not in SCRIPTS:
        raise ValueError(f"unknown script {script!r}; use one of {SCRIPTS}")
    return convert(text, "s2t" if script == "traditional" else "t2s")


def match_script(transcript: str, text: str, language: str | None = None) -> str:
    """The transcript of `text` written in the script `text` uses (unchanged when the text is not Chinese,
    see is_chinese, or its script cannot be told)."""
    if not transcript or not is_chinese(text, language):
        return transcript
    return to_script(transcript, chinese_script(text))


def fold_script(text: str) -> str:
    """Both scripts folded into one (simplified) for comparing: t2s maps many characters to one, so two
    spellings of the same word become equal, while s2t would have to guess (发 is 發 or 髮)."""
    return convert(text, "t2s")
