"""Timings and subtitles: where the assembly puts each take, SRT/WebVTT/JSON sidecars, M4B chapters."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import srt  # test dependencies (pyproject's test extra): the standard parsers read our sidecars
import webvtt

from engine.speech.assemble import MARGIN_S, join_segments, join_segments_timed
from engine.book.subtitles import Cue, format_srt, format_vtt, tile_cues, write_sidecars, write_take_subtitles
from engine.errors import OutputFileError, SettingsError


RATE = 16000


def tone_take(sound_s: float, silence_s: float, seed: int) -> np.ndarray:
    """silence, a tone of sound_s seconds, silence: float32 at 16 kHz."""
    t = np.arange(int(sound_s * RATE)) / RATE
    tone = (0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t)).astype(np.float32)
    pad = np.zeros(int(silence_s * RATE), np.float32)
    return np.concatenate([pad, tone, pad])


def test_the_join_reports_where_each_take_landed_pauses_and_crossfades_included():
    takes = [tone_take(0.5, 0.3, 0), tone_take(0.4, 0.3, 1), np.zeros(800, np.float32), tone_take(0.3, 0.3, 2)]
    pauses = [0.0, 1.0, 0.5, 2.0]
    wave, spans = join_segments_timed(takes, pauses, lead_s=0.25)
    assert np.array_equal(wave, join_segments(takes, pauses, lead_s=0.25))
    margin, cross = int(MARGIN_S * RATE), int(0.010 * RATE)
    kept = [int(d * RATE) + 2 * margin for d in (0.5, 0.4)] + [0, int(0.3 * RATE) + 2 * margin]
    assert [e - s for s, e in spans] == kept
    assert spans[0][0] == int(0.25 * RATE) - margin  # the lead counts to the first sound
    assert spans[1][0] == spans[0][1] - cross  # pause 0: the takes overlap by the crossfade
    assert spans[2] == (spans[1][1], spans[1][1])  # a silent take lands, empty, after the one before
    # sound to sound = the pause after take 1 plus the silent take's pause
    assert (spans[3][0] + margin) - (spans[1][1] - margin) == int(1.5 * RATE)
    assert len(wave) == spans[3][1] + int(2.0 * RATE) - margin
    # each take's sound is where its span says (fades touch only the edges)
    start = spans[3][0] + margin + 200
    assert np.allclose(wave[start:start + 1000], takes[3][int(0.3 * RATE) + 200:int(0.3 * RATE) + 1200])


def test_cues_tile_the_audio_and_parse_with_the_standard_parsers(tmp_path):
    spans = [(100, 9000), (8840, 20000), (20000, 20000), (36000, 50001)]
    cues = tile_cues(spans, 70000, ["One.", "Two <b> & -->", "(silent)", "Three."], ids=["1.1", "1.2", "1.3", "1.4"],
                     voices=["Narrator", "Alice", "Alice", "Bob"], offset=16000)
    assert [(c.start, c.end) for c in cues] == [(16000, 24920), (24920, 52000), (52000, 86000)]
    assert [c.speech for c in cues] == [(16100, 25000), (24840, 36000), (52000, 66001)]
    parsed = list(srt.parse(format_srt(cues)))
    assert [(p.start.total_seconds(), p.end.total_seconds()) for p in parsed] == [(1.0, 1.558), (1.558, 3.25), (3.25, 5.375)]
    assert parsed[1].content == "Two <b> & ->"
    path = tmp_path / "a.vtt"
    path.write_text(format_vtt(cues))
    captions = webvtt.read(str(path))
    assert [(c.start, c.end) for c in captions] == [("00:00:01.000", "00:00:01.558"), ("00:00:01.558", "00:00:03.250"),
                                                    ("00:00:03.250", "00:00:05.375")]
    assert [c.identifier for c in captions] == ["1.1", "1.2", "1.4"]
    assert "<v Alice>" in captions[1].raw_text and "&amp;" in captions[1].raw_text

    # one rendered text (synth --subtitles): here one segment, one cue over the whole file; bad formats and
    # read-only folders fail cleanly
    paths = write_take_subtitles(tmp_path / "take.wav", ("srt", "json"), ["Hello there."], [(0, 24000)], 24000)
    assert [p.name for p in paths] == ["take.srt", "take.timings.json"]
    (only,) = srt.parse(paths[0].read_text())
    assert (only.start.total_seconds(), only.end.total_seconds(), only.content) == (0, 1.5, "Hello there.")
    assert json.loads(paths[1].read_text())["cues"][0]["end"] == 24000
    with pytest.raises(SettingsError, match="use srt, vtt, json"):
        write_sidecars(tmp_path / "x.wav", ("ass",), [Cue(0, 1, "a")], 1)
    blocked = tmp_path / "blocked"  # x.srt is a folder there: the rename fails (works as root too)
    (blocked / "x.srt").mkdir(parents=True)
    with pytest.raises(OutputFileError, match="Cannot write .*blocked/x.srt"):
        write_sidecars(blocked / "x.wav", ("srt",), [Cue(0, 1, "a")], 1)
    assert [p.name for p in blocked.iterdir()] == ["x.srt"]  # no temporary file left


def test_the_cli_rejects_bad_subtitle_options_before_loading_models(tmp_path):
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for args, message in [
        (["synth", "--text", "Hi.", "--out", tmp_path / "a.wav", "--subtitles", "srt,sub"],
         "error: Unknown subtitle format 'sub'; use srt, vtt, json."),
        (["narrate", tmp_path / "p", "--subtitles", "srt"], "error: --subtitles goes with --export FORMAT --out PATH."),
        (["narrate", tmp_path / "p", "--export", "wav", "--out", tmp_path / "b.wav", "--subtitles", "ass"],
         "error: Unknown subtitle format 'ass'; use srt, vtt, json."),
    ]:
        result = subprocess.run([sys.executable, str(root / "main.py"), *map(str, args)], capture_output=True, text=True)
        assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == message, result.stderr
    assert not (tmp_path / "a.wav").exists() and not (tmp_path / "p").exists()


@pytest.mark.slow
def test_synth_writes_sidecars_that_cover_its_take(tmp_path, tiny_models):
    import sys
    from pathlib import Path

    import soundfile as sf

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "take.wav"
    result = subprocess.run([sys.executable, str(root / "main.py"), "synth", "--text", "Hello there.", "--out", str(out),
                             "--lm", str(tiny_models["lm"]), "--codec", str(tiny_models["codec"]), "--device", "cpu",
                             "--seed", "3", "--subtitles", "srt,vtt"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    frames = sf.info(out).frames
    (cue,) = srt.parse((tmp_path / "take.srt").read_text())
    assert (cue.start.total_seconds(), round(cue.end.total_seconds() * 1000), cue.content) == \
        (0, round(frames / 16), "Hello there.")
    assert [c.text for c in webvtt.read(str(tmp_path / "take.vtt"))] == ["Hello there."]
