"""Word timings mapped back to the original text (engine.verify.word_alignment): pure, no model."""
from __future__ import annotations

import pytest

from engine.verify.word_alignment import TimedWord, align_words, heard_from_pieces, word_key, word_spans


def words_of(text: str) -> list[str]:
    return [text[a:b] for a, b in word_spans(text)]


def heard(*items: tuple[str, float, float]) -> list[TimedWord]:
    return [TimedWord(text, start, end) for text, start, end in items]


def spans_of(words: list[TimedWord]) -> list[tuple[str, float, float]]:
    return [(w.text, round(w.start, 6), round(w.end, 6)) for w in words]


@pytest.mark.parametrize("text, expected", [
    ("Hello, world!", ["Hello,", "world!"]),
    ("“Quoted” text — and more...", ["“Quoted”", "text —", "and", "more..."]),
    ("Don't stop: 3.5 e-mails, 1,000 times.", ["Don't", "stop:", "3.5", "e-mails,", "1,000", "times."]),
    ("well—I (think) so", ["well—", "I", "(think)", "so"]),
    ("你好，世界。", ["你", "好，", "世", "界。"]),
    ("「你好」他說。", ["「你", "好」", "他", "說。"]),
    ("我用iPhone拍照", ["我", "用", "iPhone", "拍", "照"]),
    ("こんにちは、世界", ["こ", "ん", "に", "ち", "は、", "世", "界"]),
    ("— Hi", ["— Hi"]),
    ("  ... !", []),
    ("", []),
])
def test_words_of_a_text(text, expected):
    assert words_of(text) == expected


@pytest.mark.parametrize("text", ["“Quoted” text — and more...", "「你好」他說。 ok", "a , b ,, c", "x\n\n(y) z!?"])
def test_every_character_but_spaces_is_in_exactly_one_word_in_order(text):
    spans = word_spans(text)
    assert all(a < b <= c for (a, b), (c, _) in zip(spans, spans[1:]))
    assert "".join(text[a:b] for a, b in spans).replace(" ", "").replace("\n", "") == "".join(text.split())


def test_word_keys_ignore_case_punctuation_apostrophes_and_chinese_script():
    assert word_key("Don't,") == word_key("dont") == "dont"
    assert word_key("“Hello!”") == "hello"
    assert word_key("頭髮") == word_key("头发")
    assert word_key("ＡＢＣ１") == "abc1"  # full-width forms (NFKC)
    assert word_key("—") == ""


def test_exact_match_takes_the_heard_times():
    text = "The quick brown fox."
    out = align_words(text, heard(("the", 0.1, 0.3), ("quick", 0.3, 0.7), ("brown", 0.8, 1.1), ("fox", 1.1, 1.5)), 2.0)
    assert spans_of(out) == [("The", 0.1, 0.3), ("quick", 0.3, 0.7), ("brown", 0.8, 1.1), ("fox.", 1.1, 1.5)]
    assert [w.offset for w in out] == [0, 4, 10, 16]


def test_words_whisper_added_are_dropped():
    out = align_words("Hello world", heard(("Um,", 0.0, 0.4), ("hello", 0.5, 0.9), ("uh", 0.9, 1.0),
                                           ("world.", 1.0, 1.4), ("Thanks", 1.5, 2.0)), 2.5)
    assert spans_of(out) == [("Hello", 0.5, 0.9), ("world", 1.0, 1.4)]


def test_words_whisper_missed_are_interpolated_between_their_neighbours_by_length():
    out = align_words("one two three four", heard(("one", 0.0, 0.5), ("four", 2.0, 2.5)), 3.0)
    # "two" (3 letters) and "three" (5 letters) share 0.5..2.0 s: 3/8 and 5/8 of it
    assert spans_of(out) == [("one", 0.0, 0.5), ("two", 0.5, 1.0625), ("three", 1.0625, 2.0), ("four", 2.0, 2.5)]
    start = align_words("alpha beta", heard(("beta", 1.0, 1.5)), 2.0)
    assert spans_of(start) == [("alpha", 0.0, 1.0), ("beta", 1.0, 1.5)]
    end = align_words("alpha beta", heard(("alpha", 0.2, 0.6)), 2.0)
    assert spans_of(end) == [("alpha", 0.2, 0.6), ("beta", 0.6, 2.0)]


def test_a_misheard_word_keeps_the_time_it_was_said():
    out = align_words("I read the book", heard(("I", 0.0, 0.2), ("red", 0.2, 0.5), ("the", 0.5, 0.6), ("book", 0.6, 1.0)), 1.0)
    assert spans_of(out)[1] == ("read", 0.2, 0.5)


def test_case_and_punctuation_do_not_stop_a_match():
    out = align_words("“Hello,” she said — DON'T!", heard(("hello", 0.0, 0.4), ("She", 0.4, 0.6),
                                                         ("said", 0.6, 0.9), ("dont", 1.0, 1.3)), 1.5)
    assert spans_of(out) == [("“Hello,”", 0.0, 0.4), ("she", 0.4, 0.6), ("said —", 0.6, 0.9), ("DON'T!", 1.0, 1.3)]


def test_chinese_characters_are_words_and_either_script_matches():
    text = "這是一個測試。"
    said = heard(*[(c, 0.2 * k, 0.2 * k + 0.2) for k, c in enumerate("这是一个测试")])
    out = align_words(text, said, 1.5)
    assert [w.text for w in out] == ["這", "是", "一", "個", "測", "試。"]
    assert [(round(w.start, 6), round(w.end, 6)) for w in out] == [(round(0.2 * k, 6), round(0.2 * k + 0.2, 6)) for k in range(6)]


def test_nothing_heard_spreads_the_words_over_the_clip():
    out = align_words("ab abcd ab", [], 4.0)
    assert spans_of(out) == [("ab", 0.0, 1.0), ("abcd", 1.0, 3.0), ("ab", 3.0, 4.0)]
    assert align_words("...", heard(("x", 0, 1)), 1.0) == []


def test_times_are_clamped_into_the_clip_and_never_go_back():
    said = heard(("a", -0.5, 0.4), ("b", 0.3, 0.2), ("c", 0.9, 7.0), ("d", 0.5, 0.6))
    out = align_words("a b c d e", said, 2.0)
    assert [w.text for w in out] == ["a", "b", "c", "d", "e"]
    times = [t for w in out for t in (w.start, w.end)]
    assert times == sorted(times) and 0.0 <= times[0] and times[-1] <= 2.0
    assert spans_of(out)[0] == ("a", 0.0, 0.4) and spans_of(out)[2] == ("c", 0.9, 2.0)


def test_words_from_decoded_pieces_span_their_first_to_last_piece():
    pieces = [(" Hel", 0.0, 0.2), ("lo", 0.2, 0.4), (",", 0.4, 0.5), (" wor", 0.6, 0.8), ("ld", 0.8, 1.0),
              ("你", 1.0, 1.2), ("好", 1.2, 1.5)]
    out = heard_from_pieces(pieces)
    assert spans_of(out) == [("Hello,", 0.0, 0.5), ("world", 0.6, 1.0), ("你", 1.0, 1.2), ("好", 1.2, 1.5)]
    assert [w.offset for w in out] == [1, 8, 13, 14]
    assert heard_from_pieces([]) == [] and heard_from_pieces([(" ", 0.0, 0.1)]) == []
