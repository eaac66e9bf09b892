"""Text pipeline: normalization, pronunciation rules, pause markup, budgeted splitting."""
from __future__ import annotations

import random
import re

import pytest

from engine.config import CONTEXT_WINDOW
from engine.errors import InputTextError, TextTooLongError
from engine.text.pipeline import (
    Pause,
    PronunciationRule,
    TextPiece,
    apply_pronunciations,
    budget_for_voice,
    cardinal,
    estimate_tokens,
    normalize,
    ordinal,
    parse_markup,
    split_text,
    year,
)

# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    "n, words",
    [
        (0, "zero"), (7, "seven"), (13, "thirteen"), (20, "twenty"), (21, "twenty-one"), (100, "one hundred"),
        (101, "one hundred one"), (999, "nine hundred ninety-nine"), (1000, "one thousand"),
        (1234, "one thousand two hundred thirty-four"), (1_000_001, "one million one"),
        (2_500_000_000, "two billion five hundred million"), (-42, "minus forty-two"),
    ],
)
def test_cardinal(n, words):
    assert cardinal(n) == words


@pytest.mark.parametrize(
    "n, words",
    [(1, "first"), (2, "second"), (3, "third"), (5, "fifth"), (12, "twelfth"), (20, "twentieth"),
     (21, "twenty-first"), (100, "one hundredth"), (1003, "one thousand third")],
)
def test_ordinal(n, words):
    assert ordinal(n) == words


@pytest.mark.parametrize(
    "n, words",
    [(1999, "nineteen ninety-nine"), (2000, "two thousand"), (2005, "two thousand five"), (2010, "twenty ten"),
     (2024, "twenty twenty-four"), (1905, "nineteen oh five"), (1900, "nineteen hundred"), (1066, "ten sixty-six")],
)
def test_year(n, words):
    assert year(n) == words


# ---------------------------------------------------------------- normalization


@pytest.mark.parametrize(
    "text, expected",
    [
        ("I have 1,234 apples.", "I have one thousand two hundred thirty-four apples."),
        ("It was -5 degrees, pi is 3.14.", "It was minus five degrees, pi is three point one four."),
        ("Agent 007 and 0.5 of it.", "Agent zero zero seven and zero point five of it."),
        ("The 21st and the 2nd.", "The twenty-first and the second."),
        ("In 1999 we met, since 2010.", "In nineteen ninety-nine we met, since twenty ten."),
        ("It was the 1990s.", "It was the nineteen nineties."),
        ("Due 2024-03-05.", "Due March fifth, twenty twenty-four."),
        ("On March 5, 2024 we left.", "On March fifth, twenty twenty-four we left."),
        ("On 5 March 2024 we left.", "On the fifth of March twenty twenty-four we left."),
        ("At 3:30 pm we ate.", "At three thirty PM we ate."),
        ("Come at 3 p.m. Then leave.", "Come at three PM. Then leave."),
        ("At 15:45 or 9:05 or 3:00.", "At fifteen forty-five or nine oh five or three o'clock."),
        ("It costs $5.", "It costs five dollars."),
        ("It costs $1 or $3.50 or $0.01.", "It costs one dollar or three dollars and fifty cents or one cent."),
        ("Pay €20 or £1.5m or $5k.", "Pay twenty euros or one point five million pounds or five thousand dollars."),
        ("A $2 million deal.", "A two million dollars deal."),
        ("Up 50% or 3.5%.", "Up fifty percent or three point five percent."),
        ("Pages 10-20, years 1990-1995.", "Pages ten to twenty, years nineteen ninety to nineteen ninety-five."),
        ("Call 555-1234.", "Call five five five, one two three four."),
        ("Mr. and Mrs. Smith met Dr. Jones.", "Mister and Missus Smith met Doctor Jones."),
        ("Visit St. Louis on Main St. Then rest.", "Visit Saint Louis on Main Street. Then rest."),
        ("Cats vs. dogs, etc. and more.", "Cats versus dogs, et cetera and more."),
        ("Apples, pears, etc. Then tea.", "Apples, pears, et cetera. Then tea."),
        ("Fruit, e.g. apples, i.e. food.", "Fruit, for example apples, that is food."),
        ("No. 5 won. no. 6 lost.", "Number five won. number six lost."),
        ("Salt & pepper.", "Salt and pepper."),
        ("\u201cHi,\u201d she said \u2014 \u2018well\u2019\u2026", "\"Hi,\" she said \u2014 'well'..."),
        ("a\u2013b  c\t\td\u00a0e\u200bf", "a\u2014b c d ef"),
        ("  one\n\n\n\n two  \nthree  ", "one\n\ntwo\nthree"),
        ("version 2.0.1 and mp3 and COVID19", "version 2.0.1 and mp3 and COVID19"),
        ("Run 5km in the 80s with 4K video.", "Run five km in the eighties with four K video."),
    ],
)
def test_normalize_english(text, expected):
    assert normalize(text) == expected


def test_normalize_leaves_other_scripts_intact():
    assert normalize("我有3个苹果。你好，世界！") == "我有3个苹果。你好，世界！"
    assert normalize("東京は「晴れ」です。") == "東京は「晴れ」です。"
    assert normalize("Привет, мир!  Как дела?") == "Привет, мир! Как дела?"
    # Other languages: only the language-neutral cleanup, no English words for numbers.
    assert normalize("Es kostet 5 \u20ac.\u2026", language="de") == "Es kostet 5 \u20ac...."


def test_normalize_is_idempotent_on_examples():
    text = "Mr. Smith paid $3.50 on March 5, 2024 at 3:30 pm; 21st of 1,234 (50%)."
    once = normalize(text)
    assert normalize(once) == once
    assert not re.search(r"[0-9$%]", once)


# ---------------------------------------------------------------- pronunciation dictionary


def test_plain_rules_match_whole_words_ignoring_case():
    rules = [PronunciationRule("GUI", "gooey"), PronunciationRule("C++", "C plus plus")]
    assert apply_pronunciations("A gui in C++, not GUIDE or guis.", rules) == "A gooey in C plus plus, not GUIDE or guis."


def test_plain_rule_case_sensitive_and_literal_replacement():
    rules = [PronunciationRule("US", "United States", case_sensitive=True), PronunciationRule("x", r"\1 $&")]
    assert apply_pronunciations("US and us x.", rules) == r"United States and us \1 $&."


def test_plain_rule_matches_inside_chinese_text():
    assert apply_pronunciations("我在北京工作", [PronunciationRule("北京", "Beijing")]) == "我在Beijing工作"


def test_regex_rules_with_groups_apply_in_order():
    rules = [
        PronunciationRule(r"(\d+)\s?km\b", r"\1 kilometres", regex=True),
        PronunciationRule("kilometres", "clicks"),
    ]
    assert apply_pronunciations("Run 5km or 10 km.", rules) == "Run 5 clicks or 10 clicks."


def test_bad_rules_raise_input_text_error_naming_the_rule():
    with pytest.raises(InputTextError, match=r"'\(unclosed'"):
        apply_pronunciations("text", [PronunciationRule("(unclosed", "x", regex=True)])
    with pytest.raises(InputTextError, match=r"'word'"):
        apply_pronunciations("a word", [PronunciationRule("word", r"\2", regex=True)])
    with pytest.raises(InputTextError):
        PronunciationRule("", "x")


# ---------------------------------------------------------------- pause markup


def test_parse_markup_pauses_paragraphs_and_chapters():
    text = "Hello there.\n\n[pause 1.5s]\n\nWorld [PAUSE 500ms] again.\n\n[chapter]\n\nNext.\n \nLast one."
    assert parse_markup(text, paragraph_pause=0.7, chapter_pause=3.0) == [
        TextPiece("Hello there."),
        Pause(1.5, "explicit"),
        TextPiece("World"),
        Pause(0.5, "explicit"),
        TextPiece("again."),
        Pause(3.0, "chapter"),
        TextPiece("Next."),
        Pause(0.7, "paragraph"),
        TextPiece("Last one."),
    ]


def test_parse_markup_drops_outer_paragraph_gaps_and_keeps_single_newlines():
    assert parse_markup("\n\n  One\ntwo.\n\n\n") == [TextPiece("One\ntwo.")]
    assert parse_markup("[pause 2 s] Hi [pause .25sec]") == [Pause(2.0, "explicit"), TextPiece("Hi"), Pause(0.25, "explicit")]
    assert parse_markup("   ") == []


@pytest.mark.parametrize(
    "text, where",
    [
        ("Hello.\nSay [pause abc] now.", "Line 2, column 5"),
        ("[pause 1.5]", "Line 1, column 1"),
        ("ok [pause]", "Line 1, column 4"),
        ("ok [pause 0s]", "Line 1, column 4"),
        ("ok [pause 61s]", "Line 1, column 4"),
        ("ok [pause 1s", "Line 1, column 4"),
        ("ok\n\n[chapter two]", "Line 3, column 1"),
    ],
)
def test_bad_markup_raises_with_position(text, where):
    with pytest.raises(InputTextError, match=re.escape(where)):
        parse_markup(text)


# ---------------------------------------------------------------- splitting

_CJK = re.compile(r"[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
_WORDS = ("the a narrator voice chapter long sentence and of it was said quietly 1,234 3.14 e.g. "
          "Dr. U.S.A. don't well-known “quoted” (aside) Привет мир").split()
_SUPERCALI = "supercalifragilisticexpialidocious-antidisestablishmentarianism"
_CJK_TEXT = "这是一个很长的句子没有空格但是有标点东京は晴れですカタカナ"
_PUNCT = [". ", "! ", "? ", ", ", "; ", ": ", " — ", "—", " – ", "... ", ".\n\n", "\n", "。", "！", "？", "；", "、", "，", "」", "\t", "  "]


def _random_text(rng: random.Random) -> str:
    parts = [rng.choice(["", " ", "\n", "  "])]
    for _ in range(rng.randint(1, 60)):
        roll = rng.random()
        if roll < 0.55:
            parts.append(rng.choice(_WORDS) + " ")
        elif roll < 0.7:
            start = rng.randrange(len(_CJK_TEXT))
            parts.append(_CJK_TEXT[start:start + rng.randint(1, 25)])
        elif roll < 0.75:
            parts.append(_SUPERCALI[: rng.randint(5, len(_SUPERCALI))] + rng.choice([" ", ""]))
        else:
            parts.append(rng.choice(_PUNCT))
    return "".join(parts) + rng.choice(["", ".", " ", "\n"])


def _boundary_ok(text: str, i: int) -> bool:
    """A cut at i is not inside a space-separated word."""
    before, after = text[i - 1], text[i]
    if before in "\"')]}" and not after.isalnum():  # after a closing quote/bracket that ends a CJK sentence
        return True
    return before.isspace() or before == "\u2014" or bool(_CJK.match(before) or _CJK.match(after))


def _check_split(text: str, max_tokens: int, rate: float) -> list[str]:
    chunks = split_text(text, max_tokens=max_tokens, tokens_per_char=rate)
    if not text.strip():
        assert chunks == []
        return chunks
    assert "".join(chunks) == text  # nothing lost, added or reordered
    position = 0
    for chunk in chunks:
        assert chunk.strip(), "no empty or whitespace-only chunk"
        if estimate_tokens(chunk, rate) > max_tokens:  # only one uncuttable unit may exceed
            core = chunk.strip()
            assert (not re.search(r"\s", core) and not _CJK.search(core)) or len(core) == 1, (chunk, max_tokens)
        if position:
            assert _boundary_ok(text, position), (text[max(position - 10, 0):position + 10], chunks)
        position += len(chunk)
    return chunks


def test_split_invariants_over_many_random_texts():
    rng = random.Random(1234)
    for _ in range(3000):
        text = _random_text(rng)
        _check_split(text, rng.randint(1, 80), rng.choice([0.3, 0.5, 1.0, 3.3, rng.uniform(0.1, 5.0)]))


def test_split_invariants_on_normalized_text():
    rng = random.Random(99)
    for _ in range(300):
        text = normalize(_random_text(rng) + " Mr. Smith paid $3.50 on 2024-03-05 at 3:30 pm.")
        _check_split(text, rng.randint(5, 120), rng.uniform(0.5, 4.0))


def test_split_packs_whole_sentences_when_they_fit():
    sentences = [f"Sentence number {cardinal(i)} is here{'!' if i % 3 else '.'} " for i in range(40)]
    text = "".join(sentences).rstrip()
    chunks = _check_split(text, max_tokens=200, rate=1.0)
    assert len(chunks) < len(sentences)
    for chunk in chunks:
        assert chunk.rstrip()[-1] in ".!"
        assert chunk.startswith("Sentence")


def test_split_long_sentence_at_clauses_then_words():
    text = "First part of it, second part here; third: and the last words of the sentence."
    assert split_text(text, max_tokens=20, tokens_per_char=1.0) == [
        "First part of it, ", "second part here; ", "third: ", "and the last words ", "of the sentence.",
    ]
    assert split_text("aaaa bbbbbbbbbbbbbbbbbbbbbbbbb cc.", max_tokens=10, tokens_per_char=1.0) == [
        "aaaa ", "bbbbbbbbbbbbbbbbbbbbbbbbb ", "cc.",
    ]


def test_split_chinese_and_japanese_punctuation():
    text = "今天天气很好。我们去公园吧！你觉得呢？東京は晴れです。"
    assert split_text(text, max_tokens=8, tokens_per_char=1.0) == ["今天天气很好。", "我们去公园吧！", "你觉得呢？", "東京は晴れです。"]
    long = "这是第一部分，这是第二部分、这是第三部分。"
    assert split_text(long, max_tokens=7, tokens_per_char=1.0) == ["这是第一部分，", "这是第二部分、", "这是第三部分。"]
    assert split_text("一二三四五六七八九十", max_tokens=4, tokens_per_char=1.0) == ["一二三四", "五六七八", "九十"]


def test_split_keeps_abbreviation_with_lowercase_continuation_and_edge_cases():
    assert split_text("It is e.g. fine. Next one.", max_tokens=20, tokens_per_char=1.0) == ["It is e.g. fine. ", "Next one."]
    assert split_text("", max_tokens=5, tokens_per_char=1.0) == []
    assert split_text(" \n ", max_tokens=5, tokens_per_char=1.0) == []
    with pytest.raises(ValueError):
        split_text("x", max_tokens=0, tokens_per_char=1.0)


# ---------------------------------------------------------------- budget


def test_budget_for_voice_matches_speech_budget():
    from engine.speech.render import speech_budget
    from engine.speech.synth import Voice
    from engine.text.pipeline import DEFAULT_TOKENS_PER_CHAR

    transcript = "This reference clip says a fairly ordinary sentence for about fifteen seconds. " * 3
    voice = Voice(codes=(1,) * 750, transcript=transcript)
    overhead = 90
    max_tokens, rate = budget_for_voice(750, transcript, overhead)
    assert rate == pytest.approx(750 / len(transcript.strip()))
    assert 0 < max_tokens < CONTEXT_WINDOW - overhead - 750
    # The longest segment split_text can return fits speech_budget even at one text token per character.
    text = "a" * int(max_tokens / rate)
    assert estimate_tokens(text, rate) <= max_tokens
    speech_budget(overhead + 750 + len(text), text, voice)  # does not raise
    assert budget_for_voice(0, "", overhead)[1] == DEFAULT_TOKENS_PER_CHAR


def test_budget_for_voice_refuses_a_reference_that_fills_the_window():
    with pytest.raises(TextTooLongError, match="shorter reference"):
        budget_for_voice(1950, "word " * 300, 60)
