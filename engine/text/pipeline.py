"""Text pipeline for long-form narration: pause markup, English normalization, budgeted splitting.

Order for a book: ``parse_markup`` (pauses, paragraphs, chapters) -> for each TextPiece
``apply_pronunciations`` (engine.text.pronunciation) -> ``normalize`` -> ``split_text`` with the budget of
``budget_for_voice``. All functions are pure.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from engine.audio.clip import FRAME_RATE
from engine.config import CONTEXT_WINDOW
from engine.errors import InputTextError, TextTooLongError
from engine.text.pronunciation import PronunciationRule, apply_pronunciations  # noqa: F401  (re-exported)

# ---------------------------------------------------------------- numbers to English words

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ("", " thousand", " million", " billion", " trillion", " quadrillion")
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}


def _under_thousand(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    words = [f"{_ONES[hundreds]} hundred"] if hundreds else []
    if rest >= 20:
        words.append(_TENS[rest // 10] + (f"-{_ONES[rest % 10]}" if rest % 10 else ""))
    elif rest or not hundreds:
        words.append(_ONES[rest])
    return " ".join(words)


def cardinal(n: int) -> str:
    """English words for an integer: -1234 -> "minus one thousand two hundred thirty-four".

    Beyond the quadrillions the digits are read one by one.
    """
    if n < 0:
        return "minus " + cardinal(-n)
    if n >= 1000 ** len(_SCALES):
        return digits(str(n))
    groups = []
    for scale in _SCALES:
        n, group = divmod(n, 1000)
        if group:
            groups.append(_under_thousand(group) + scale)
        if not n:
            break
    return " ".join(reversed(groups)) or "zero"


def ordinal(n: int) -> str:
    """English ordinal words: 21 -> "twenty-first", 100 -> "one hundredth"."""
    words = cardinal(n)
    cut = max(words.rfind(" "), words.rfind("-")) + 1
    head, last = words[:cut], words[cut:]
    if last in _ORDINAL_WORDS:
        return head + _ORDINAL_WORDS[last]
    return head + (last[:-1] + "ieth" if last.endswith("y") else last + "th")


def digits(text: str) -> str:
    """Digits read one by one: "007" -> "zero zero seven"."""
    return " ".join(_ONES[int(d)] for d in text)


def year(n: int) -> str:
    """A year as spoken: 1999 -> "nineteen ninety-nine", 2005 -> "two thousand five", 1905 -> "nineteen oh five"."""
    century, rest = divmod(n, 100)
    if not 1000 <= n <= 9999 or (century % 10 == 0 and rest < 10):
        return cardinal(n)
    if rest == 0:
        return f"{cardinal(century)} hundred"
    return f"{cardinal(century)} {'oh ' + _ONES[rest] if rest < 10 else cardinal(rest)}"


def _decimal(whole: str, fraction: str | None) -> str:
    words = cardinal(int(whole.replace(",", "")))
    return f"{words} point {digits(fraction)}" if fraction else words


# ---------------------------------------------------------------- normalization

_UNICODE = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2013": "\u2014", "\u2015": "\u2014", "\u2212": "-", "\u2010": "-", "\u2011": "-",
    "\u00a0": " ", "\u2002": " ", "\u2003": " ", "\u2009": " ", "\u202f": " ", "\u2007": " ",
    "\u200b": None, "\u200c": None, "\u200d": None, "\u2060": None, "\ufeff": None, "\u00ad": None,
    "\u2026": "...",
})
_MONTHS = ("January February March April May June July August September October November "
           "December").split()
_MONTH = "(" + "|".join(_MONTHS) + ")"
_YEAR_CONTEXT = r"\b((?i:in|since|by|from|of|until|till|to|through|year|around|circa|before|after|during|early|late))"
_NUM = r"(?<![\w.,])"  # a number starts here: not inside a word or another number
_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "€": ("euro", "euros", "cent", "cents"),
               "£": ("pound", "pounds", "penny", "pence"), "¥": ("yen", "yen", "sen", "sen")}
_SCALE_SUFFIX = {"k": "thousand", "m": "million", "b": "billion", "bn": "billion"}
# (pattern, words, whether the period may also end the sentence)
_ABBREVIATIONS = [
    (r"\bMrs\.", "Missus", False), (r"\bMr\.", "Mister", False), (r"\bMs\.", "Miz", False),
    (r"\bDr\.", "Doctor", False), (r"\bProf\.", "Professor", False), (r"\bvs\.", "versus", False),
    (r"\bNo\.(?=\s*[0-9])", "Number", False), (r"\bno\.(?=\s*[0-9])", "number", False),
    (r"\be\.g\.", "for example", False), (r"\bi\.e\.", "that is", False),
    (r"\bJr\.", "Junior", True), (r"\bSr\.", "Senior", True),
    (r"\betc\.", "et cetera", True),
]


def _keep_period(match: re.Match[str]) -> str:
    """"." when the abbreviation's period also ended the sentence (end of text or a capital follows)."""
    return "." if re.match(r"\s*(?:$|\n|[A-Z\"'(])", match.string[match.end():]) else ""


def _saint_or_street(m: re.Match[str]) -> str:
    """"St." before a name is Saint ("St. Louis") unless a mid-sentence name precedes it ("on Main St. He ...")."""
    before, after = m.string[:m.start()], m.string[m.end():]
    if re.match(r"\s+[A-Z]", after) and not re.search(r"[\w,;] +[A-Z][a-z]+ $", before):
        return "Saint"
    return "Street" + _keep_period(m)


def _month_day(month: str, day: str, year_text: str | None, day_first: bool) -> str | None:
    if not 1 <= int(day) <= 31:
        return None
    spoken = f"the {ordinal(int(day))} of {month}" if day_first else f"{month} {ordinal(int(day))}"
    if year_text:
        spoken += (" " if day_first else ", ") + year(int(year_text))
    return spoken


def _iso_date(m: re.Match[str]) -> str:
    month, day = int(m[2]), int(m[3])
    if not 1 <= month <= 12:
        return m[0]
    return _month_day(_MONTHS[month - 1], m[3], m[1], False) or m[0]


def _clock(hour: str, minute: str | None, meridiem: str | None) -> str:
    words = cardinal(int(hour))
    if minute and int(minute):
        words += " " + (f"oh {_ONES[int(minute)]}" if int(minute) < 10 else cardinal(int(minute)))
    elif not meridiem:
        words += " o'clock"
    return words + (f" {meridiem.upper()}M" if meridiem else "")


def _time(m: re.Match[str]) -> str:
    if int(m[1]) > 24 or (m[2] and int(m[2]) > 59):
        return m[0]
    return _clock(m[1], m[2], m[3]) + (_keep_period(m) if m[0].endswith(".") else "")


def _money(m: re.Match[str]) -> str:
    sign, symbol, whole, fraction = m["sign"], m["cur"], m["whole"], m["frac"]
    scale = m["scale"] or m["scale2"]
    one, many, sub_one, sub_many = _CURRENCIES[symbol]
    minus = "minus " if sign else ""
    if scale:
        scale = _SCALE_SUFFIX.get(scale.lower(), scale.lower())
        return f"{minus}{_decimal(whole, fraction)} {scale} {many}"
    units = int(whole.replace(",", ""))
    if fraction and len(fraction) == 2:
        cents = int(fraction)
        main = f"{cardinal(units)} {one if units == 1 else many}"
        sub = f"{cardinal(cents)} {sub_one if cents == 1 else sub_many}"
        return minus + (main if not cents else sub if not units else f"{main} and {sub}")
    unit = one if units == 1 and not fraction else many
    return f"{minus}{_decimal(whole, fraction)} {unit}"


def _number_pair(m: re.Match[str]) -> str:
    """"10-20" -> "ten to twenty", "1990-1995" -> years; longer groups ("555-1234") are read digit by digit."""
    a, b = m[1], m[2]
    if all(len(x) == 4 and 1100 <= int(x) <= 2099 for x in (a, b)):
        return f"{year(int(a))} to {year(int(b))}"
    if len(a) < 3 and len(b) < 3:
        return f"{cardinal(int(a))} to {cardinal(int(b))}"
    return f"{digits(a)}, {digits(b)}"


def _number(m: re.Match[str]) -> str:
    """-3.5 -> "minus three point five", 007 -> digits, "5kg" -> "five kg", "80s" -> "eighties"."""
    sign, whole, fraction, letters = m.groups()
    words = digits(whole) if len(whole) > 1 and whole[0] == "0" and not fraction else _decimal(whole, fraction)
    if letters == "s" and not fraction:
        return ("minus " if sign else "") + (words[:-1] + "ies" if words.endswith("y") else words + "s")
    return ("minus " if sign else "") + words + (f" {letters}" if letters else "")


def _decade(m: re.Match[str]) -> str:
    words = year(int(m[1]))
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(r"\b([0-9]{4})-([0-9]{2})-([0-9]{2})\b"), _iso_date),
    (re.compile(rf"\b{_MONTH}\s+([0-9]{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+([0-9]{{4}})\b)?"),
     lambda m: _month_day(m[1], m[2], m[3], False) or m[0]),
    (re.compile(rf"\b([0-9]{{1,2}})(?:st|nd|rd|th)?\s+{_MONTH}\b(?:,?\s+([0-9]{{4}})\b)?"),
     lambda m: _month_day(m[2], m[1], m[3], True) or m[0]),
    (re.compile(r"\b([0-9]{1,2})(?::([0-9]{2}))?\s*([AaPp])\.?\s?[Mm]\b\.?"), _time),
    (re.compile(r"\b([0-9]{1,2}):([0-9]{2})\b(?!:[0-9])()"), _time),
    (re.compile(r"(?P<sign>-)?(?P<cur>[$€£¥])\s?(?P<whole>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.(?P<frac>[0-9]+))?"
                r"(?:\s?(?P<scale>thousand|million|billion|trillion)\b|(?P<scale2>bn|[kmb])\b)?"),
     _money),
    (re.compile(rf"{_NUM}([0-9]+)-([0-9]+)(?![\w-]|[.,][0-9])"), _number_pair),
    (re.compile(rf"{_NUM}(-)?([0-9]{{1,3}}(?:,[0-9]{{3}})+|[0-9]+)(?:\.([0-9]+))?\s?%"),
     lambda m: ("minus " if m[1] else "") + _decimal(m[2], m[3]) + " percent"),
    (re.compile(rf"{_YEAR_CONTEXT}\s+([12][0-9]{{3}})\b(?![.,][0-9])"), lambda m: f"{m[1]} {year(int(m[2]))}"),
    (re.compile(r"\b([12][0-9]{3})\s?(BC|BCE|AD|CE)\b"), lambda m: f"{year(int(m[1]))} {m[2]}"),
    (re.compile(r"\b([12][0-9]{3})s\b"), _decade),
    (re.compile(rf"{_NUM}([0-9]+)(?:st|nd|rd|th)\b"), lambda m: ordinal(int(m[1]))),
    (re.compile(rf"{_NUM}(-)?([0-9]{{1,3}}(?:,[0-9]{{3}})+|[0-9]+)(?:\.([0-9]+))?(?![.,][0-9])([A-Za-z]*)(?!\w)"),
     _number),
]


def normalize(text: str, *, language: str = "en") -> str:
    """Text as a narrator would read it, for the TTS model.

    Every language: typographic quotes -> ASCII quotes, en dashes/bars -> em dash, "…" -> "...",
    odd spaces -> space, invisible characters removed, runs of spaces/tabs -> one space, lines
    stripped, blank lines -> one blank line ("\\n\\n"), outer whitespace removed. For "en" also:
    numbers, ordinals, years, dates, times, money, percentages and common abbreviations become
    words. Non-Latin scripts are left as they are; digits inside Chinese/Japanese text are kept.
    """
    text = text.translate(_UNICODE)
    if language.lower().startswith("en"):
        for pattern, words, may_end in _ABBREVIATIONS:
            text = re.sub(pattern, lambda m, w=words, e=may_end: w + (_keep_period(m) if e else ""), text)
        text = re.sub(r"\bSt\.", _saint_or_street, text)
        text = re.sub(r"(?<=\s)&(?=\s)", "and", text)
        for compiled, function in _RULES:
            text = compiled.sub(function, text)
    text = re.sub(r"[ \t\f\v]+", " ", text)
    text = re.sub(r" ?\n ?", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# ---------------------------------------------------------------- pause markup

@dataclass(frozen=True)
class TextPiece:
    """Text to speak (outer whitespace stripped, never empty)."""

    text: str


@dataclass(frozen=True)
class Pause:
    """Silence between pieces of speech, in seconds."""

    seconds: float
    kind: Literal["explicit", "paragraph", "chapter"]


MAX_PAUSE_SECONDS = 60.0
_MARKUP = re.compile(r"\[[ \t]*(pause|chapter)\b([^\]\n]*)(\]?)|\n[ \t]*(?:\n[ \t]*)+", re.IGNORECASE)
_DURATION = re.compile(r"\s+([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|s|sec|secs|seconds?)\s*", re.IGNORECASE)


def _markup_error(text: str, start: int, what: str) -> InputTextError:
    line = text.count("\n", 0, start) + 1
    column = start - (text.rfind("\n", 0, start) + 1) + 1
    snippet = text[start:start + 30].split("\n")[0]
    return InputTextError(
        f"Line {line}, column {column}: {what} in {snippet!r}. Write e.g. [pause 1.5s] or [pause 500ms]."
    )


def parse_markup(
    text: str, *, paragraph_pause: float = 0.6, chapter_pause: float = 2.0
) -> list[TextPiece | Pause]:
    """Split text into TextPiece and Pause items, in order.

    Markup: ``[pause 1.5s]`` / ``[pause 500ms]`` (explicit, 0 < s <= 60), ``[chapter]`` (chapter
    gap) and blank lines (paragraph gap). A paragraph gap next to another pause, or at the start or
    end, is dropped (a ``[pause 3s]`` on its own line between paragraphs gives exactly 3 s).
    Raises InputTextError with line and column for malformed ``[pause ...]``/``[chapter ...]``.
    """
    items: list[TextPiece | Pause] = []
    position = 0
    for m in _MARKUP.finditer(text):
        if piece := text[position:m.start()].strip():
            items.append(TextPiece(piece))
        position = m.end()
        if not m[1]:
            items.append(Pause(paragraph_pause, "paragraph"))
        elif not m[3]:
            raise _markup_error(text, m.start(), f"[{m[1]} is not closed with ]")
        elif m[1].lower() == "chapter":
            if m[2].strip():
                raise _markup_error(text, m.start(), "[chapter] takes no argument")
            items.append(Pause(chapter_pause, "chapter"))
        else:
            duration = _DURATION.fullmatch(m[2])
            if not duration:
                raise _markup_error(text, m.start(), "a pause needs a number and a unit (s or ms)")
            seconds = float(duration[1]) / (1000 if duration[2].lower() == "ms" else 1)
            if not 0 < seconds <= MAX_PAUSE_SECONDS:
                limit = f"a pause must be longer than 0 s and at most {MAX_PAUSE_SECONDS:g} s"
                raise _markup_error(text, m.start(), limit)
            items.append(Pause(seconds, "explicit"))
    if piece := text[position:].strip():
        items.append(TextPiece(piece))

    def keep(i: int) -> bool:
        item = items[i]
        if not isinstance(item, Pause) or item.kind != "paragraph":
            return True
        neighbours = items[i - 1:i] + items[i + 1:i + 2]
        return len(neighbours) == 2 and all(isinstance(n, TextPiece) for n in neighbours)

    return [item for i, item in enumerate(items) if keep(i)]


# ---------------------------------------------------------------- splitting to a token budget

# Chinese/Japanese characters and their punctuation: text without spaces, splittable between characters.
_CJK = "\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_CLOSERS = "\"')\\]}\u201d\u2019\u300d\u300f\u3011\uff09"
# Each level cuts a piece into units; a cut is made *after* each match (trailing whitespace included).
# After CJK punctuation a closing quote/bracket stays with it unless Latin text follows directly.
_CJK_CLOSE = rf"(?:[{_CLOSERS}]*+(?![A-Za-z0-9]))?\s*"
_SENTENCE_END = re.compile(
    rf"(?:[.!?]+[{_CLOSERS}]*\s+(?![a-z])|(?:[。！？]|(?<=[{_CJK}])[!?])+{_CJK_CLOSE}|\n\s*)"
)
_CLAUSE_END = re.compile(rf"(?:[,;:]+[{_CLOSERS}]*\s+|\s*\u2014\s*|\s\u2013\s+|[、，；：]+{_CJK_CLOSE})")
_WORD_END = re.compile(rf"(?:\s+|(?<=[{_CJK}])|(?=[{_CJK}]))")


def estimate_tokens(chunk: str, tokens_per_char: float) -> int:
    """Speech tokens a chunk needs: ceil(len(chunk.strip()) * tokens_per_char), as speech_budget estimates."""
    return math.ceil(len(chunk.strip()) * tokens_per_char)


def _cut(text: str, level: re.Pattern[str]) -> list[str]:
    """`text` cut after each match of `level`; leading whitespace joins the first unit; no whitespace-only units."""
    units, start = [], 0
    for m in level.finditer(text):
        if m.end() > start and text[start:m.end()].strip():
            units.append(text[start:m.end()])
            start = m.end()
    if start < len(text):
        if text[start:].strip() or not units:
            units.append(text[start:])
        else:
            units[-1] += text[start:]
    return units


def _pack(text: str, levels: tuple[re.Pattern[str], ...], max_tokens: int, rate: float) -> list[str]:
    chunks: list[str] = []
    current = ""
    for unit in _cut(text, levels[0]):
        if estimate_tokens(current + unit, rate) <= max_tokens:
            current += unit
            continue
        if current:
            chunks.append(current)
        if estimate_tokens(unit, rate) <= max_tokens or len(levels) == 1:
            current = unit  # over budget only when it is a single word: it stays whole
        else:
            *done, current = _pack(unit, levels[1:], max_tokens, rate)
            chunks.extend(done)
    if current:
        chunks.append(current)
    return chunks


def split_text(text: str, *, max_tokens: int, tokens_per_char: float) -> list[str]:
    """Cut text into chunks of whole sentences, each needing at most `max_tokens` speech tokens.

    Guarantees, for any text with a non-whitespace character (otherwise the result is []):
    ``"".join(chunks) == text`` exactly (each chunk keeps the whitespace after it; leading
    whitespace stays on the first chunk), every chunk has a non-whitespace character, and
    ``estimate_tokens(chunk) <= max_tokens`` except for a chunk that is one uncuttable unit over
    the budget by itself: a word (no whitespace inside, no Chinese/Japanese character) or a single
    Chinese/Japanese character, alone in its chunk (plus surrounding whitespace).
    Sentences are packed greedily; a sentence over the budget is cut at clause punctuation
    (, ; : — – 、 ， ； ：), then between words, and Chinese/Japanese runs between characters.
    A cut is never made inside a space-separated word.
    """
    if max_tokens < 1 or tokens_per_char <= 0:
        raise ValueError("max_tokens must be >= 1 and tokens_per_char > 0")
    if not text.strip():
        return []
    return _pack(text, (_SENTENCE_END, _CLAUSE_END, _WORD_END), max_tokens, tokens_per_char)


# Speaking rate assumed when there is no reference to measure it from: about 15 characters per
# second of English speech, i.e. 50 / 15 speech tokens per character.
DEFAULT_TOKENS_PER_CHAR = FRAME_RATE / 15
# Never fewer speech tokens than this are left for the answer (one second of audio).
MIN_SPEECH_TOKENS = FRAME_RATE


def speaking_rate(reference_codes: int, transcript: str) -> float:
    """Speech tokens per character of text: the reference's own rate, or the default without one."""
    if reference_codes:
        return reference_codes / max(len(transcript.strip()), 1)
    return DEFAULT_TOKENS_PER_CHAR


def budget_for_voice(reference_codes: int, reference_text: str, prompt_overhead: int) -> tuple[int, float]:
    """(max speech tokens per segment, speech tokens per character) for a voice.

    reference_codes: number of X-Codec2 codes of the reference (50 per second); 0 for no voice.
    prompt_overhead: prompt tokens besides the reference codes and the segment's own text (chat
    template, instruction, reference transcript). The rate is the reference's own speaking rate,
    as engine.speech.render.speech_budget measures it. The segment's text also sits in the prompt; this
    reserves up to one text token per character for it, so a segment of at most
    max_tokens / rate characters always passes speech_budget. Raises TextTooLongError when the
    reference leaves less than one second of speech.
    """
    rate = speaking_rate(reference_codes, reference_text)
    available = CONTEXT_WINDOW - prompt_overhead - reference_codes
    max_tokens = math.floor(available * rate / (rate + 1))  # speech + text tokens (<= 1 per char) fit
    if max_tokens < MIN_SPEECH_TOKENS:
        raise TextTooLongError(
            f"The reference takes {reference_codes + prompt_overhead} of Llasa's {CONTEXT_WINDOW} tokens and "
            "leaves less than a second of speech per segment: use a shorter reference clip."
        )
    return max_tokens, rate
