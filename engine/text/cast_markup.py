"""Voice markup for books read by several voices: which voice speaks which stretch of text.

Markup (case-insensitive tag, names matched ignoring case)::

    [voice: Alice]She spoke this passage, over as many lines and paragraphs as it needs.[/voice]

A passage has one voice; passages do not nest. With a dialogue voice, quoted speech outside a
passage ("…", “…”, „…“, «…») goes to that voice, the quote marks with it; a quote left open runs
to the end of its paragraph (the typographic habit for speech over several paragraphs). Text
outside both belongs to the default voice (the narrator, or a chapter's own voice).

``check_voice_markup`` reads a whole chapter and raises InputTextError with line and column and
the valid names; ``split_voices`` then cuts one paragraph into voiced runs, carrying the open
passage from one paragraph to the next. Pure functions: no project, no model.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from engine.errors import InputTextError

# [voice: Name], [voice:Name], [/voice]; an unclosed "[voice" is caught by _OPEN_TAG.
_TAG = re.compile(r"\[[ \t]*(/?)[ \t]*voice\b[ \t]*(?::([^\]\n]*))?\]", re.IGNORECASE)
_OPEN_TAG = re.compile(r"\[[ \t]*/?[ \t]*voice\b", re.IGNORECASE)
_QUOTES = {'"': "toggle", "\u201c": "open", "\u201e": "open", "\u00ab": "open", "\u201d": "close", "\u00bb": "close"}
_WORD = re.compile(r"\w")


@dataclass(frozen=True)
class VoicedText:
    """A run of text and the key of the voice that speaks it ("" = the default voice)."""

    voice: str
    text: str


def _where(text: str, start: int) -> str:
    line = text.count("\n", 0, start) + 1
    column = start - (text.rfind("\n", 0, start) + 1) + 1
    return f"Line {line}, column {column}"


def _valid(names: Mapping[str, str]) -> str:
    return ", ".join(sorted(names.values(), key=str.casefold)) or "none"


def resolve_voice(name: str, names: Mapping[str, str]) -> str:
    """The key of the cast member called `name` (case-insensitive); KeyError when there is none.

    `names` maps each member's display name to its key."""
    wanted = name.strip().casefold()
    for display, key in names.items():
        if display.casefold() == wanted:
            return key
    raise KeyError(name)


def check_voice_markup(text: str, names: Mapping[str, str]) -> None:
    """InputTextError, naming line and column and the valid names, for an unknown voice, a passage
    inside a passage, a [/voice] with no passage open, a passage never closed, or a broken tag."""
    tags = {m.start(): m for m in _TAG.finditer(text)}
    open_at: int | None = None
    for start in (m.start() for m in _OPEN_TAG.finditer(text)):
        tag = tags.get(start)
        if tag is None:
            snippet = text[start:start + 30].split("\n")[0]
            raise InputTextError(f"{_where(text, start)}: broken voice tag {snippet!r}; write [voice: Name] … [/voice].")
        if tag[1]:  # [/voice]
            if tag[2] is not None:
                raise InputTextError(f"{_where(text, start)}: [/voice] takes no name; write [/voice].")
            if open_at is None:
                raise InputTextError(f"{_where(text, start)}: [/voice] closes no passage; open one with [voice: Name].")
            open_at = None
            continue
        name = (tag[2] or "").strip()
        if not name:
            raise InputTextError(f"{_where(text, start)}: [voice] needs a name, e.g. [voice: {next(iter(names), 'Narrator')}]. "
                                 f"Valid names: {_valid({k: k for k in names})}.")
        try:
            resolve_voice(name, names)
        except KeyError:
            raise InputTextError(f"{_where(text, start)}: unknown voice {name!r} in {tag[0]!r}. "
                                 f"Valid names: {_valid({k: k for k in names})}.") from None
        if open_at is not None:
            raise InputTextError(f"{_where(text, start)}: {tag[0]!r} is inside the passage opened at "
                                 f"{_where(text, open_at).lower()}; close that one with [/voice] first (passages do not nest).")
        open_at = start
    if open_at is not None:
        raise InputTextError(f"{_where(text, open_at)}: {tags[open_at][0]!r} is never closed; end the passage with [/voice].")


def strip_voice_markup(text: str) -> str:
    """`text` without its voice tags (what a single-voice reader would read)."""
    return _TAG.sub("", text)


def split_voices(
    paragraph: str, names: Mapping[str, str], *, passage: str | None = None, dialogue: str | None = None,
) -> tuple[list[VoicedText], str | None]:
    """Cut one paragraph (checked by check_voice_markup) into runs of one voice each.

    passage: the key of the passage open when the paragraph starts (None: none). dialogue: the key
    that speaks quoted text outside passages (None: quotes are not special). Returns (runs, the
    passage still open at the end). Runs keep their text as written (quotes included); a piece
    with no letter or digit (a lone comma, a closing quote) joins the run before it (or after it,
    at the start), punctuation that touches the end of a run stays with it, and neighbouring runs of one voice are merged, so every run has a word.
    """
    pieces: list[tuple[str, str]] = []  # (voice, text) in order
    in_quote = False

    def voice_now() -> str:
        if passage is not None:
            return passage
        return dialogue if in_quote and dialogue is not None else ""

    position = 0
    marks = [(m.start(), m.end(), m) for m in _TAG.finditer(paragraph)]
    if dialogue is not None:
        marks += [(i, i + 1, None) for i, c in enumerate(paragraph) if c in _QUOTES]
    marks.sort(key=lambda m: m[0])
    for start, end, tag in marks:
        if start < position:
            continue  # a quote character inside a tag
        if tag is not None:
            pieces.append((voice_now(), paragraph[position:start]))
            passage = None if tag[1] else resolve_voice(tag[2] or "", names)
            position = end
            continue
        if passage is not None:
            continue  # quotes inside a passage stay with its voice
        kind = _QUOTES[paragraph[start]]
        opening = kind == "open" or (kind == "toggle" and not in_quote)
        if opening and not in_quote:
            pieces.append((voice_now(), paragraph[position:start]))
            in_quote, position = True, start
        elif not opening and in_quote:
            pieces.append((voice_now(), paragraph[position:end]))
            in_quote, position = False, end
    pieces.append((voice_now(), paragraph[position:]))
    return _merge(pieces), passage


def _merge(pieces: list[tuple[str, str]]) -> list[VoicedText]:
    runs: list[list[str]] = []
    pending = ""  # word-less text seen before the first run with a word
    for voice, text in pieces:
        lead = re.match(r"[^\w\s\"\u201c\u201e\u00ab]*", text)[0]  # punctuation touching the previous run ends it
        if runs and lead and runs[-1][0] != voice and not runs[-1][1][-1:].isspace():
            runs[-1][1] += lead
            text = text[len(lead):]
        if not _WORD.search(text):
            if runs:
                runs[-1][1] += text
            else:
                pending += text
            continue
        if runs and runs[-1][0] == voice:
            runs[-1][1] += text
        else:
            runs.append([voice, pending + text])
            pending = ""
    return [VoicedText(voice, text.strip()) for voice, text in runs if text.strip()]


def voice_names_used(text: str) -> set[str]:
    """The names (casefolded) that [voice: Name] tags in `text` use."""
    return {(m[2] or "").strip().casefold() for m in _TAG.finditer(text) if not m[1] and m[2]}


def rename_in_markup(text: str, old: str, new: str) -> str:
    """`text` with [voice: old] tags (any case) written as [voice: new]."""
    def swap(m: re.Match[str]) -> str:
        return f"[voice: {new}]" if not m[1] and (m[2] or "").strip().casefold() == old.casefold() else m[0]

    return _TAG.sub(swap, text)
