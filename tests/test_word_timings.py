"""Word-level timings: Whisper's word timestamps on the tiny random Whisper (real loading, generation
and DTW; its words are gibberish by design, so what is checked is the plumbing: every written word is
there in order, with times that never go back and stay inside their clip or cue), the sidecars that
carry them (WebVTT timestamp tags, JSON words), and the CLI options. The alignment itself is tested
on constructed inputs in tests/test_word_alignment.py."""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import webvtt

from engine.book.subtitles import Cue, add_word_timings, format_json, format_vtt, tile_cues
from engine.errors import SettingsError
from engine.models.tiny_verifiers import write_tiny_whisper
from engine.verify.word_alignment import align_words, word_spans

RATE = 16000
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def whisper(tmp_path_factory) -> Path:
    return write_tiny_whisper(tmp_path_factory.mktemp("whisper") / "whisper")


@pytest.fixture(scope="module")
def asr(whisper):
    from engine.verify.scoring import WhisperASR

    return WhisperASR(whisper, device="cpu")


def noise(seconds: float, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)


def assert_in_order_inside(words, low, high) -> None:
    times = [t for w in words for t in (w.start, w.end)]
    assert times == sorted(times) and low <= times[0] and times[-1] <= high, times


def test_whisper_times_every_written_word_in_order_inside_its_clip(asr):
    from engine.verify.word_timestamps import word_timings

    texts = ["Hello there, world!", "這是一個測試。我們走吧", "“Quoted” words — and 3.5 more..."]
    waves = [noise(1.0, 0), noise(2.5, 1), noise(0.05, 2)]  # the last shorter than Whisper's 0.1 s minimum
    timed = word_timings(asr, waves, texts, language="en")
    for text, wave, words in zip(texts, waves, timed):
        assert [(w.text, w.offset) for w in words] == [(text[a:b], a) for a, b in word_spans(text)]
        assert_in_order_inside(words, 0.0, len(wave) / RATE)
    assert [w.text for w in timed[1]] == ["這", "是", "一", "個", "測", "試。", "我", "們", "走", "吧"]
    with pytest.raises(ValueError, match="one text per clip"):
        word_timings(asr, waves, texts[:2])
    with pytest.raises(SettingsError, match="Whisper does not know the language 'xx'; use a code such as en or zh."):
        word_timings(asr, waves[:1], texts[:1], language="xx")


def test_a_clip_over_30_s_is_heard_in_pieces_and_their_times_shifted(asr):
    from engine.verify.scoring import split_for_whisper
    from engine.verify.word_timestamps import heard_words

    long = noise(34.0, 3)
    pieces = split_for_whisper(long)
    assert len(pieces) == 2
    batch, asr.batch_size = asr.batch_size, 1  # each piece alone, as below: the same rows, the same tokens
    try:
        (whole,) = heard_words(asr, [long], "en")
        first, second = heard_words(asr, pieces, "en")
    finally:
        asr.batch_size = batch
    shift = len(pieces[0]) / RATE
    assert second, "the tiny Whisper says something in every piece"
    assert [(w.text, w.start, w.end) for w in whole] == \
        [(w.text, w.start, w.end) for w in first] + [(w.text, w.start + shift, w.end + shift) for w in second]
    assert all(w.start >= shift for w in whole[len(first):]) and whole[-1].end <= 34.0


def test_a_whisper_without_alignment_heads_uses_the_openai_default(asr, whisper, tmp_path):
    from engine.verify.scoring import WhisperASR
    from engine.verify.word_timestamps import default_alignment_heads, heard_words

    assert default_alignment_heads(12, 12)[0] == [6, 0] and len(default_alignment_heads(12, 12)) == 72
    assert asr.model.generation_config.alignment_heads == default_alignment_heads(1, 2) == [[0, 0], [0, 1]]
    bare = shutil.copytree(whisper, tmp_path / "bare")
    config = json.loads((bare / "generation_config.json").read_text())
    del config["alignment_heads"]  # as in many fine-tuned copies
    (bare / "generation_config.json").write_text(json.dumps(config))
    other = WhisperASR(bare, device="cpu")
    assert getattr(other.model.generation_config, "alignment_heads", None) is None
    clip = noise(1.5, 4)
    heard = heard_words(other, [clip], "en")
    assert other.model.generation_config.alignment_heads == [[0, 0], [0, 1]]
    assert heard == heard_words(asr, [clip], "en")


def spread(waves, texts):
    """A real WordTimer without a model: each text's words spread over its clip by length."""
    return [align_words(text, [], len(wave) / RATE) for wave, text in zip(waves, texts)]


def test_words_are_placed_where_the_take_is_in_the_file_and_written_to_vtt_and_json(tmp_path):
    spans = [(1600, 17600), (17440, 33600)]  # the second take overlaps the first by a 10 ms crossfade
    cues = tile_cues(spans, 40000, ["One two, three.", "你好 <world> & -->"], ids=["1.1", "1.2"],
                     voices=["Narrator", "Bob"], offset=8000)
    audio = noise(40000 / RATE, 5)
    heard_clips = []

    def timer(waves, texts):
        heard_clips.extend(waves)
        return spread(waves, texts)

    timed = add_word_timings(cues, audio, timer, offset=8000)
    assert [len(c) for c in heard_clips] == [16000, 16160]  # each take's own audio, from the file
    assert np.array_equal(heard_clips[1], audio[17440:33600])
    assert [[w.text for w in c.words] for c in timed] == [["One", "two,", "three."], ["你", "好", "<world> & -->"]]
    for cue in timed:
        assert_in_order_inside(cue.words, cue.start, cue.end)
        assert [cue.text[w.offset:w.offset + len(w.text)] for w in cue.words] == [w.text for w in cue.words]
    assert timed[0].words[0].start == 9600  # speech start + 0 s
    assert timed[1].words[0].start == timed[1].start  # clamped: the take starts mid-crossfade, before its cue

    path = tmp_path / "words.vtt"
    path.write_text(format_vtt(timed))
    captions = webvtt.read(str(path))
    # webvtt-py drops the tags (timestamps and voice) like a player without karaoke: the sentence is whole
    assert [html.unescape(c.text) for c in captions] == ["One two, three.", "你好 <world> & ->"]
    for caption, cue in zip(captions, timed):
        stamps = [sum(float(x) * f for x, f in zip(s.split(":"), (3600, 60, 1)))
                  for s in re.findall(r"<(\d\d:\d\d:\d\d\.\d{3})>", caption.raw_text)]
        assert stamps == sorted(set(stamps)) and len(stamps) >= 2
        assert all(cue.start / RATE < s < cue.end / RATE for s in stamps)
    assert "<v Bob>你<" in captions[1].raw_text  # the first word starts with its cue: no tag before it

    data = json.loads(format_json(timed, 48000))
    for cue, entry in zip(timed, data["cues"]):
        assert entry["words"] == [{"text": w.text, "start": w.start, "end": w.end, "start_s": round(w.start / RATE, 6),
                                   "end_s": round(w.end / RATE, 6)} for w in cue.words]
    assert "words" not in json.loads(format_json(cues, 48000))["cues"][0]  # no word timings asked for
    (untimed,) = add_word_timings([Cue(0, 16000, "...")], audio, timer)  # asked for, but no word in the text
    assert json.loads(format_json([untimed], 16000))["cues"][0]["words"] == []
    assert format_vtt([Cue(0, 16000, "a b")]) == "WEBVTT\n\n1\n00:00:00.000 --> 00:00:01.000\na b\n"


def main(*args, **env) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=os.environ | env)


@pytest.mark.slow  # six runs of main.py
def test_the_cli_refuses_word_timings_it_cannot_write_before_loading_models(tmp_path, whisper):
    text = ["synth", "--text", "Hi.", "--out", tmp_path / "a.wav"]
    for args, message in [
        ([*text, "--subtitles", "srt", "--word-timings"],
         "error: --word-timings writes the words into the vtt and json sidecars: add --subtitles vtt and/or json "
         "(e.g. --subtitles srt,vtt,json)."),
        ([*text, "--word-timings", whisper], "error: --word-timings writes the words into the vtt and json sidecars"),
        ([*text, "--subtitles", "json", "--word-timings", tmp_path / "nowhere"],
         f"error: --word-timings needs a Whisper model on this computer. Whisper ASR folder {tmp_path / 'nowhere'}"),
        ([*text, "--subtitles", "vtt", "--word-timings", "--asr", "openai/whisper-nope"],
         "error: --word-timings needs a Whisper model on this computer. The Whisper model openai/whisper-nope is not "
         "on this computer: download it (hf download openai/whisper-nope) or use a local Whisper model folder."),
        ([*text, "--subtitles", "vtt", "--word-timings", "--asr", "none"],
         "error: --word-timings needs a Whisper model on this computer. The Whisper model openai/whisper-small"),
        (["narrate", tmp_path / "p", "--export", "wav", "--out", tmp_path / "b.wav", "--subtitles", "srt",
          "--word-timings"], "error: --word-timings writes the words into the vtt and json sidecars"),
    ]:
        result = main(*args, HF_HOME=str(tmp_path / "hf"))
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 2 and last.startswith(message), result.stderr
    assert not (tmp_path / "a.wav").exists() and not (tmp_path / "p").exists()


def check_sidecars(audio: Path, texts: list[str], vtt: bool = True) -> dict:
    """The JSON and WebVTT sidecars of `audio` carry every word of each cue's text in order, inside the cue."""
    data = json.loads(audio.with_suffix(".timings.json").read_text())
    assert [c["text"] for c in data["cues"]] == texts
    for cue in data["cues"]:
        words = cue["words"]
        assert [w["text"] for w in words] == [cue["text"][a:b] for a, b in word_spans(cue["text"])]
        times = [t for w in words for t in (w["start"], w["end"])]
        assert times == sorted(times) and cue["start"] <= times[0] and times[-1] <= cue["end"]
    if vtt:
        captions = webvtt.read(str(audio.with_suffix(".vtt")))
        assert [html.unescape(c.text) for c in captions] == texts
    return data


@pytest.mark.slow
def test_narrate_and_synth_write_word_timings_with_the_tiny_models(tmp_path, tiny_models, whisper):
    """narrate --export ... --word-timings on a narrated project (English and Chinese chapters; the
    project's language goes to Whisper), then synth --word-timings: the sidecars hold every word."""
    from engine.book.importer import Book, Chapter
    from engine.book.narration import create_project, narrate, segment_budget
    from engine.book.project_export import export_project
    from engine.book.plan import NarrationSettings
    from engine.config import ModelChoice
    from engine.speech.synth import Synthesizer
    from engine.voices import VoiceLibrary

    synth = Synthesizer.load(ModelChoice(str(tiny_models["lm"]), str(tiny_models["codec"]), device="cpu"))
    rng = np.random.default_rng(0)
    narrator = VoiceLibrary(tmp_path / "library").add(
        "Narrator", noise(1.0, 6), "The quick brown fox jumps over the lazy dog. " * 20,
        tuple(int(c) for c in rng.integers(0, 65536, 50)), "tiny")
    book = Book("Words", "A. Author", (Chapter("One", "The train stopped. “Is this the place?” she asked."),
                                       Chapter("二", "這是一個測試。")))
    budget = segment_budget(synth, narrator.codes, narrator.transcript)
    project = create_project(tmp_path / "p", book, narrator, NarrationSettings(lm=str(tiny_models["lm"]),
                             codec=str(tiny_models["codec"]), base_seed=3), max_tokens=budget[0], tokens_per_char=budget[1])
    assert narrate(project, synth).rendered >= 2
    texts = [s.text for _, s in project.segments()]

    with pytest.raises(SettingsError, match="Word timings go into the vtt and json subtitles"):
        export_project(project, tmp_path / "x.wav", "wav", subtitles=("srt",), word_timer=spread)
    assert not (tmp_path / "x.wav").exists()
    chapters = export_project(project, tmp_path / "chapters", "wav", per_chapter=True, subtitles=("json",),
                              word_timer=spread)  # each chapter's file from 0, its words inside its cues
    assert [p.suffix for p in chapters] == [".wav", ".wav", ".json", ".json"]
    for wav, chapter in zip(chapters[:2], project.chapters):
        check_sidecars(wav, [s.text for s in chapter.segments], vtt=False)

    out = tmp_path / "book.flac"
    result = main("narrate", project.folder, "--device", "cpu", "--export", "flac", "--out", out, "--subtitles", "vtt,json", "--word-timings", whisper)
    assert result.returncode == 0, result.stderr
    data = check_sidecars(out, texts)
    assert [w["text"] for w in data["cues"][-1]["words"]] == ["這", "是", "一", "個", "測", "試。"]

    take = tmp_path / "take.wav"
    result = main("synth", "--text", "Hello there. 你好，世界。", "--out", take, "--lm", tiny_models["lm"],
                  "--codec", tiny_models["codec"], "--device", "cpu", "--seed", "3", "--subtitles", "srt,vtt,json",
                  "--word-timings", "--asr", whisper)
    assert result.returncode == 0, result.stderr
    check_sidecars(take, [c["text"] for c in json.loads(take.with_suffix(".timings.json").read_text())["cues"]])
    assert take.with_suffix(".srt").exists()
