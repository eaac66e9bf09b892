"""Word timings mapped back to the original text: the words Whisper heard, with their times, aligned
to the words of the text that was meant to be spoken. Pure functions, no model.

Words (``word_spans``) are runs of non-space characters, each Chinese or Japanese character a word of
its own (those scripts put no spaces between words); punctuation stays with the word it touches.
Heard and written words are compared by a key (``word_key``: NFKC, case-folded, punctuation and
apostrophes dropped, Chinese folded to one script) and aligned by a minimal edit script (match or
substitute 0/1, skip 1, ties to the diagonal). A written word aligned to a heard word takes its times
(a substitution too: a misheard word was still said there); a written word Whisper did not hear gets
times interpolated between its timed neighbours, in proportion to its length. Every written word is
in the result, in order, with times that never go back and stay inside [0, duration].
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from engine.verify.chinese_script import fold_script

_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
                       r"\U00020000-\U0002ffff]")
_JOINERS = "'’.,-‐"  # between two letters or digits they keep one word: don't, 3.5, 1,000, e-mail


@dataclass(frozen=True)
class TimedWord:
    """A word and when it is spoken."""

    text: str  # as written (the original text's characters, punctuation included)
    start: float  # s from the start of the clip
    end: float  # s, >= start
    offset: int = 0  # index of the word's first character in the text it comes from


def _is_word_char(c: str) -> bool:
    return not c.isspace() and unicodedata.category(c)[0] not in "PSZC"


def word_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) character ranges of the words of `text`, in order (see the module docstring).

    Opening brackets and quotes (and any punctuation starting a space-separated chunk) go with the word
    after them, other punctuation with the word before; a chunk of punctuation only joins the word
    before it (the next one when it comes first). Every non-space character is in exactly one word,
    unless the text has no letter, digit or ideograph at all (then there is no word).
    """
    spans: list[list[int]] = []
    lead: int | None = None  # start of punctuation waiting for the next word
    for chunk in re.finditer(r"\S+", text):
        a, b = chunk.span()
        first_in_chunk = len(spans)
        i = a
        while i < b:
            c = text[i]
            if _CJK_CHAR.match(c):
                spans.append([i if lead is None else lead, i + 1])
                lead, i = None, i + 1
            elif _is_word_char(c):
                j = i + 1
                while j < b:
                    if _is_word_char(text[j]) and not _CJK_CHAR.match(text[j]):
                        j += 1
                    elif (text[j] in _JOINERS and j + 1 < b and _is_word_char(text[j + 1])
                          and not _CJK_CHAR.match(text[j + 1])):
                        j += 2
                    else:
                        break
                spans.append([i if lead is None else lead, j])
                lead, i = None, j
            else:
                opening = unicodedata.category(c) in ("Ps", "Pi")
                if lead is None and (opening or len(spans) == first_in_chunk):
                    lead = i
                elif lead is None:
                    spans[-1][1] = i + 1
                i += 1
        if lead is not None and spans:  # the chunk ended in punctuation waiting for a word: it joins the one before
            spans[-1][1] = b
            lead = None
    return [(s, e) for s, e in spans]


def word_key(word: str) -> str:
    """What two spellings of one word share: NFKC, case-folded, punctuation, symbols and apostrophes
    dropped, Chinese in one script ("Don't," -> "dont", "頭髮" -> "头发")."""
    word = unicodedata.normalize("NFKC", word).casefold()
    return fold_script("".join(c for c in word if _is_word_char(c)))


def heard_from_pieces(pieces: Sequence[tuple[str, float, float]]) -> list[TimedWord]:
    """The words of a transcript given as decoded pieces (text, start s, end s) in order (Whisper's tokens,
    joined where one character spans several): each word from the start of its first piece to the end
    of its last. offset: where the word starts in the joined transcript."""
    text, owner = "", []
    for k, (piece, _, _) in enumerate(pieces):
        text += piece
        owner += [k] * len(piece)
    return [TimedWord(text[a:b], pieces[owner[a]][1], max(pieces[owner[b - 1]][2], pieces[owner[a]][1]), a)
            for a, b in word_spans(text)]


def _edit_script(reference: Sequence[str], hypothesis: Sequence[str]) -> list[int | None]:
    """For each reference item, the hypothesis index it is aligned with (match or substitution) or None,
    from a minimal edit script (costs: substitution 1, insertion 1, deletion 1); ties go diagonal."""
    n, m = len(reference), len(hypothesis)
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        cost[i][0] = i
    for j in range(m + 1):
        cost[0][j] = j
    for i in range(1, n + 1):
        row, previous, ref = cost[i], cost[i - 1], reference[i - 1]
        for j in range(1, m + 1):
            diagonal = previous[j - 1] + (0 if ref and ref == hypothesis[j - 1] else 1)
            row[j] = min(diagonal, previous[j] + 1, row[j - 1] + 1)
    aligned: list[int | None] = [None] * n
    i, j = n, m
    while i > 0 and j > 0:
        same = reference[i - 1] and reference[i - 1] == hypothesis[j - 1]
        if cost[i][j] == cost[i - 1][j - 1] + (0 if same else 1):
            aligned[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif cost[i][j] == cost[i - 1][j] + 1:
            i -= 1
        else:
            j -= 1
    return aligned


def align_words(text: str, heard: Sequence[TimedWord], duration: float) -> list[TimedWord]:
    """The words of `text` (word_spans), each with a time in [0, duration] s: from the heard word it is
    aligned with, or interpolated between its timed neighbours; starts and ends never go back."""
    spans = word_spans(text)
    words = [text[a:b] for a, b in spans]
    keys = [word_key(w) for w in words]
    aligned = _edit_script(keys, [word_key(h.text) for h in heard])
    times: list[tuple[float, float] | None] = [None] * len(words)
    floor = 0.0  # times never go back
    for i, j in enumerate(aligned):
        if j is not None and keys[i]:
            start = min(max(heard[j].start, floor), duration)
            end = min(max(heard[j].end, start), duration)
            times[i], floor = (start, end), end
    i = 0
    while i < len(words):  # runs of untimed words share the time between their neighbours
        if times[i] is not None:
            i += 1
            continue
        k = i
        while k < len(words) and times[k] is None:
            k += 1
        low = times[i - 1][1] if i > 0 else 0.0
        high = max(times[k][0] if k < len(words) else duration, low)
        weights = [max(len(keys[r]), 1) for r in range(i, k)]
        total, done = sum(weights), 0
        for r, weight in zip(range(i, k), weights):
            start = low + (high - low) * done / total
            done += weight
            times[r] = (start, low + (high - low) * done / total)
        i = k
    return [TimedWord(word, start, end, a) for word, (start, end), (a, _) in zip(words, times, spans)]
