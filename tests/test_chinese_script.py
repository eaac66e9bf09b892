"""Quality mode compares Chinese in the script the text uses (engine.verify.chinese_script, OpenCC)."""
from __future__ import annotations

import pytest

from engine.verify.chinese_script import chinese_script, fold_script, is_chinese, match_script, to_script
from engine.verify.scoring import char_errors, transcript_scores

TRADITIONAL = "這是一個測試，我的頭髮很長。"
SIMPLIFIED = "这是一个测试，我的头发很长。"


def test_the_script_of_a_text_is_the_one_with_more_of_its_own_characters():
    assert chinese_script(TRADITIONAL) == "traditional"
    assert chinese_script(SIMPLIFIED) == "simplified"
    assert chinese_script("皇后的頭髮") == "traditional"  # 后 is also traditional; 頭 and 髮 decide
    assert chinese_script("中文") is None  # both scripts write these the same
    assert chinese_script("Hello, world") is None and chinese_script("") is None


def test_conversion_is_phrase_aware_both_ways():
    assert to_script(SIMPLIFIED, "traditional") == TRADITIONAL
    assert to_script(TRADITIONAL, "simplified") == SIMPLIFIED
    assert to_script(SIMPLIFIED, None) == SIMPLIFIED
    assert fold_script(TRADITIONAL) == fold_script(SIMPLIFIED) == SIMPLIFIED
    with pytest.raises(ValueError, match="unknown script"):
        to_script(SIMPLIFIED, "cyrillic")


def test_a_transcript_comes_back_in_the_script_of_the_text():
    assert match_script("这是一个测试", "這是一個測試") == "這是一個測試"
    assert match_script("這是一個測試", "这是一个测试", "zh") == "这是一个测试"
    assert match_script("这是一个测试", "這是一個測試", "en") == "这是一个测试"  # heard as English: left alone
    assert match_script("中文", "中文") == "中文"
    assert match_script("Hello world", "Hello world") == "Hello world"


def test_japanese_is_never_converted():
    text, heard = "日本語のテキストです", "日本語のテキストです"
    assert not is_chinese(text) and not is_chinese("日本語", "ja") and is_chinese("日本語")
    assert match_script(heard, text) == heard  # kana: Japanese (t2s would write 语)
    assert match_script("日本語", "日本語", "ja") == "日本語"
    assert transcript_scores(text, heard, "ja")["cer"] == 0.0


def test_a_take_is_not_charged_for_the_script_whisper_writes_in():
    assert char_errors("這是一個測試", "这是一个测试").rate == pytest.approx(4 / 6)  # what it was before
    scores = transcript_scores("這是一個測試", "这是一个测试", "zh")
    assert scores == {"transcript": "這是一個測試", "wer": 0.0, "cer": 0.0, "metric": "cer"}
    assert transcript_scores(SIMPLIFIED, TRADITIONAL, None)["cer"] == 0.0
    assert transcript_scores(TRADITIONAL, SIMPLIFIED)["transcript"] == TRADITIONAL


def test_real_mistakes_still_count_after_conversion():
    scores = transcript_scores("這是一個測試", "这是两个测试", "zh")  # 一 heard as 两: one wrong character
    assert scores["cer"] == pytest.approx(1 / 6) and scores["transcript"] == "這是兩個測試"
    english = transcript_scores("Hello big world", "hello world", "en")
    assert english["wer"] == pytest.approx(1 / 3) and english["transcript"] == "hello world"
