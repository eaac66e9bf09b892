"""Reference loading, resampling, trimming and atomic writing on real files (soundfile, espeak)."""
import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from deps import missing

from engine.audio.clip import (
    SAMPLE_RATE,
    ReferenceClip,
    check_output_path,
    load_audio,
    load_reference,
    read_audio,
    resample,
    trim_silence,
    write_audio,
)
from engine.errors import OutputFileError, ReferenceAudioError, UnsupportedAudioError

ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.usefixtures("espeak_installed")  # skips, or fails under CI, without espeak-ng



@pytest.fixture
def espeak_installed() -> None:
    if ESPEAK is None:
        missing("espeak-ng is not installed (apt-get install espeak-ng)")


SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "She sells sea shells by the sea shore every single summer morning.",
    "A journey of a thousand miles begins with one small step forward.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "The early bird catches the worm, but the second mouse gets the cheese.",
    "Reading books in the evening is a wonderful way to relax after work.",
    "We walked along the quiet beach while the sun slowly went down.",
    "Every good story needs a beginning, a middle and a satisfying end.",
    "The old clock on the wall struck twelve as the guests arrived.",
    "Fresh bread from the bakery smells better than almost anything else.",
    "Mountains covered in snow looked beautiful against the bright blue sky.",
    "Music has the power to bring people together from all over the world.",
]


def _espeak(text, path):
    subprocess.run([ESPEAK, "-w", str(path), text], check=True, capture_output=True)
    wave, rate = sf.read(path, dtype="float32")
    assert rate == 22_050
    return wave


def _sine(freq, rate, seconds, amp=1.0):
    n = int(round(seconds * rate))
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)


def _level_db(x):
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-20)


@pytest.fixture(scope="module")
def speech_16k(tmp_path_factory):
    """One espeak-ng sentence (~3 s) as float32 at 16 kHz, starting and ending in sound."""
    if ESPEAK is None:
        missing("espeak-ng is not installed (apt-get install espeak-ng)")
    wave = _espeak(SENTENCES[0], tmp_path_factory.mktemp("es") / "s.wav")
    wave = resample(wave, 22_050, SAMPLE_RATE)
    loud = np.flatnonzero(np.abs(wave) > 0.01)
    return wave[loud[0] : loud[-1] + 1]


@pytest.fixture(scope="module")
def long_speech_16k(tmp_path_factory):
    """~25+ s of speech at 16 kHz: sentences separated by 0.5 s pauses, under -60 dBFS noise."""
    if ESPEAK is None:
        missing("espeak-ng is not installed (apt-get install espeak-ng)")
    folder = tmp_path_factory.mktemp("long")
    parts, pos = [], 0
    for i, text in enumerate(SENTENCES):
        speech = resample(_espeak(text, folder / f"{i}.wav"), 22_050, SAMPLE_RATE)
        loud = np.flatnonzero(np.abs(speech) > 0.01)
        speech = speech[loud[0] : loud[-1] + 1]
        parts += [speech, np.zeros(SAMPLE_RATE // 2, np.float32)]
        pos += len(speech) + SAMPLE_RATE // 2
        if pos > 25.5 * SAMPLE_RATE:
            break
    wave = np.concatenate(parts[:-1])
    assert len(wave) > 25 * SAMPLE_RATE
    return wave + (1e-3 * np.random.default_rng(4).standard_normal(len(wave))).astype(np.float32)


# --- reading every format -------------------------------------------------------------------------

WRITABLE = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS")}
if sf.check_format("MP3", "MPEG_LAYER_III"):
    WRITABLE["mp3"] = ("MP3", "MPEG_LAYER_III")


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate", [8_000, 22_050, 44_100, 48_000])
@pytest.mark.parametrize("ext", sorted(WRITABLE))
def test_any_format_rate_and_channels_load_as_mono_16k(tmp_path, ext, rate, channels):
    seconds = 1.5
    left = _sine(440, rate, seconds, 0.5)
    data = np.stack([left, 0.5 * left], axis=1) if channels == 2 else left  # mono mix: 0.375 peak
    path = tmp_path / f"clip.{ext}"
    sf.write(path, data, rate, format=WRITABLE[ext][0], subtype=WRITABLE[ext][1])

    wave = load_audio(path)

    assert wave.dtype == np.float32 and wave.ndim == 1
    if ext in ("wav", "flac", "ogg"):
        assert len(wave) == round(len(left) * SAMPLE_RATE / rate)
    else:  # MP3 frames may pad the end slightly
        assert abs(len(wave) / SAMPLE_RATE - seconds) < 0.06
    amp = 0.375 if channels == 2 else 0.5
    middle = wave[int(0.2 * SAMPLE_RATE) : int(1.2 * SAMPLE_RATE)]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(amp / np.sqrt(2), rel=0.05)


def test_read_audio_averages_channels_at_native_rate(tmp_path):
    data = np.stack([_sine(300, 22_050, 0.5, 0.6), _sine(500, 22_050, 0.5, 0.2)], axis=1)
    sf.write(tmp_path / "s.wav", data, 22_050, subtype="FLOAT")
    wave, rate = read_audio(tmp_path / "s.wav")
    assert rate == 22_050 and wave.dtype == np.float32
    np.testing.assert_allclose(wave, data.mean(axis=1), atol=1e-7)
    head, _ = read_audio(tmp_path / "s.wav", max_seconds=0.1)
    np.testing.assert_array_equal(head, wave[:2205])


# --- resampler ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("from_rate", "freq"),
    [(r, f) for r in (44_100, 48_000, 22_050, 8_000) for f in (440, 3_000, 6_500) if f < r / 2],
)
def test_resampled_sine_matches_analytic_sine(from_rate, freq):
    x = _sine(freq, from_rate, 1.0)
    y = resample(x, from_rate, SAMPLE_RATE)
    assert y.dtype == np.float32 and len(y) == SAMPLE_RATE
    ref = _sine(freq, SAMPLE_RATE, 1.0)
    edge = SAMPLE_RATE // 20
    assert np.abs(y - ref)[edge:-edge].max() < 1e-3


@pytest.mark.parametrize(
    ("from_rate", "freq"),
    [(48_000, 8_300), (48_000, 10_000), (48_000, 20_000), (44_100, 9_000), (44_100, 15_000),
     (22_050, 10_500)],
)
def test_tones_above_new_nyquist_are_rejected_by_60_db(from_rate, freq):
    y = resample(_sine(freq, from_rate, 1.0), from_rate, SAMPLE_RATE)
    edge = SAMPLE_RATE // 20
    assert _level_db(y[edge:-edge]) - _level_db(_sine(freq, from_rate, 1.0)) < -60


def test_resample_identity_lengths_and_empty():
    x = np.random.default_rng(0).standard_normal(12_345).astype(np.float32)
    np.testing.assert_array_equal(resample(x, 16_000, 16_000), x)
    assert len(resample(x, 44_100, 16_000)) == round(12_345 * 16_000 / 44_100)
    assert len(resample(x, 16_000, 48_000)) == 3 * 12_345
    assert len(resample(np.zeros(0, np.float32), 44_100, 16_000)) == 0


# --- trimming -------------------------------------------------------------------------------------


@pytest.mark.parametrize("noise_db", [None, -60.0, -50.0])
def test_trim_silence_finds_speech_inside_noise_padding(speech_16k, noise_db):
    pad = 2 * SAMPLE_RATE
    padded = np.concatenate([np.zeros(pad, np.float32), speech_16k, np.zeros(pad, np.float32)])
    if noise_db is not None:  # steady background noise under everything
        noise = np.random.default_rng(1).standard_normal(len(padded)) * 10 ** (noise_db / 20)
        padded += noise.astype(np.float32)
    trimmed = trim_silence(padded)
    # locate the trimmed view in `padded` by its first sample above the noise
    above = 4 * 10 ** ((noise_db or -80) / 20) + 0.01
    offset = np.flatnonzero(np.abs(padded) > above)[0] - np.flatnonzero(np.abs(trimmed) > above)[0]
    start_err = (pad - offset) / SAMPLE_RATE  # how much silence was kept before the speech
    end_err = (offset + len(trimmed) - (pad + len(speech_16k))) / SAMPLE_RATE
    assert 0 <= start_err <= 0.1 and 0 <= end_err <= 0.1


def test_trim_silence_of_silence_is_empty():
    assert len(trim_silence(np.zeros(SAMPLE_RATE, np.float32))) == 0
    assert len(trim_silence(np.zeros(0, np.float32))) == 0


# --- load_reference -------------------------------------------------------------------------------


def test_reference_from_stereo_44k_file_is_trimmed_mono_16k(tmp_path, speech_16k):
    silence = np.zeros(SAMPLE_RATE, np.float32)
    mono_44k = resample(np.concatenate([silence, speech_16k, silence]), SAMPLE_RATE, 44_100)
    path = tmp_path / "ref.flac"
    sf.write(path, np.stack([mono_44k, 0.8 * mono_44k], axis=1), 44_100)

    clip = load_reference(path)

    assert isinstance(clip, ReferenceClip) and clip.source == path and clip.warnings == ()
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert clip.original_duration_s == pytest.approx(len(mono_44k) / 44_100)
    assert len(speech_16k) / SAMPLE_RATE <= clip.duration_s <= len(speech_16k) / SAMPLE_RATE + 0.2


def test_long_reference_is_cut_at_a_pause_with_a_warning(tmp_path, long_speech_16k):
    path = tmp_path / "long.wav"
    sf.write(path, long_speech_16k, SAMPLE_RATE, subtype="FLOAT")  # exact samples: cut is locatable

    clip = load_reference(path)

    assert 10.0 < clip.duration_s <= 15.0
    total_s = len(long_speech_16k) / SAMPLE_RATE
    assert clip.warnings == (
        f"Reference is {total_s:.1f} s long; cut to {clip.duration_s:.1f} s at a pause. "
        "8-15 s works best.",
    )
    # the clip is a prefix of the (already trimmed-at-start) speech; its end lies in a pause
    np.testing.assert_array_equal(clip.samples, long_speech_16k[: len(clip.samples)])
    end = len(clip.samples)
    assert np.abs(long_speech_16k[end - 320 : end + 320]).max() < 0.01
    assert _level_db(clip.samples[-160:]) < -55


# --- errors ---------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(UnsupportedAudioError, match="not found.*nope.wav"):
        load_reference(tmp_path / "nope.wav")


def test_directory(tmp_path):
    with pytest.raises(UnsupportedAudioError, match="is a folder"):
        load_reference(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(UnsupportedAudioError, match=r"empty \(0 bytes\)"):
        load_reference(tmp_path / "empty.wav")


@pytest.mark.parametrize("content", [np.random.default_rng(2).bytes(5000), b"I am text\n" * 20])
def test_corrupt_or_non_audio_file(tmp_path, content):
    (tmp_path / "bad.wav").write_bytes(content)
    with pytest.raises(UnsupportedAudioError, match=r"Cannot read .*bad\.wav.*formats: .*WAV"):
        load_reference(tmp_path / "bad.wav")


def test_file_without_samples(tmp_path):
    sf.write(tmp_path / "none.wav", np.zeros(0, np.float32), SAMPLE_RATE)
    with pytest.raises(UnsupportedAudioError, match="no audio samples"):
        load_reference(tmp_path / "none.wav")


def test_nan_samples(tmp_path):
    wave = _sine(440, SAMPLE_RATE, 2.0, 0.5)
    wave[100] = np.nan
    sf.write(tmp_path / "nan.wav", wave, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(UnsupportedAudioError, match="NaN"):
        load_reference(tmp_path / "nan.wav")


@pytest.mark.parametrize("level", [0.0, 3e-4])
def test_silent_reference(tmp_path, level):
    noise = level * np.random.default_rng(3).uniform(-1, 1, 3 * SAMPLE_RATE)
    sf.write(tmp_path / "quiet.wav", noise.astype(np.float32), SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(ReferenceAudioError, match="is silent"):
        load_reference(tmp_path / "quiet.wav")


def test_too_short_reference(tmp_path, speech_16k):
    silence = np.zeros(SAMPLE_RATE, np.float32)
    short = np.concatenate([silence, speech_16k[: SAMPLE_RATE // 2], silence])
    sf.write(tmp_path / "short.wav", short, SAMPLE_RATE)
    with pytest.raises(ReferenceAudioError, match=r"is only 0\.[56] s of sound; record at least 1"):
        load_reference(tmp_path / "short.wav")


# --- writing --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", sorted(WRITABLE))
def test_write_audio_round_trips(tmp_path, ext):
    wave = _sine(440, SAMPLE_RATE, 1.0, 0.5)
    path = tmp_path / f"out.{ext}"
    write_audio(path, wave)
    back, rate = read_audio(path)
    assert rate == SAMPLE_RATE and os.listdir(tmp_path) == [path.name]
    if os.name == "posix":
        assert os.stat(path).st_mode & 0o777 == 0o644  # not the temp file's private 0600
    if ext in ("wav", "flac"):
        assert sf.info(path).subtype == "PCM_16"
        np.testing.assert_allclose(back, wave, atol=1.0 / 32_768)
    else:
        n = min(len(back), len(wave))
        assert abs(len(back) - len(wave)) < 0.06 * SAMPLE_RATE
        assert np.corrcoef(back[:n], wave[:n])[0, 1] > 0.99
        assert _level_db(back) == pytest.approx(_level_db(wave), abs=1.0)


def test_write_audio_clips_out_of_range_samples(tmp_path):
    write_audio(tmp_path / "loud.wav", np.array([1.5, -2.0, 0.25], np.float32))
    back, _ = read_audio(tmp_path / "loud.wav")
    np.testing.assert_allclose(back, [32_767 / 32_768, -1.0, 0.25], atol=1e-6)


def test_write_audio_replaces_existing_file_atomically(tmp_path):
    path = tmp_path / "take.wav"
    write_audio(path, _sine(440, SAMPLE_RATE, 0.5, 0.5))
    os.chmod(path, 0o640)
    inode = os.stat(path).st_ino
    write_audio(path, _sine(880, SAMPLE_RATE, 0.25, 0.5))
    assert os.stat(path).st_ino != inode  # a new file renamed over the old, not rewritten in place
    if os.name == "posix":
        assert os.stat(path).st_mode & 0o777 == 0o640  # the old file's permissions are kept
    assert sf.info(path).frames == SAMPLE_RATE // 4 and os.listdir(tmp_path) == ["take.wav"]


def test_write_audio_unsupported_extension_leaves_nothing(tmp_path):
    with pytest.raises(UnsupportedAudioError, match=r"unsupported extension '\.xyz'.*\.wav"):
        write_audio(tmp_path / "out.xyz", _sine(440, SAMPLE_RATE, 0.1))
    assert os.listdir(tmp_path) == []


def test_write_audio_failure_after_encoding_removes_temp_file(tmp_path):
    target = tmp_path / "out.wav"
    target.mkdir()  # os.replace onto a folder fails after the temp file was fully written
    with pytest.raises(OutputFileError, match=r"Cannot write .*out\.wav"):
        write_audio(target, _sine(440, SAMPLE_RATE, 0.1))
    assert os.listdir(tmp_path) == ["out.wav"] and target.is_dir() and os.listdir(target) == []


def test_write_audio_into_missing_folder(tmp_path):
    with pytest.raises(OutputFileError, match=r"Cannot write .*out\.wav"):
        write_audio(tmp_path / "missing" / "out.wav", _sine(440, SAMPLE_RATE, 0.1))
    assert os.listdir(tmp_path) == []


def test_check_output_path_fails_fast_on_unusable_destinations(tmp_path):
    assert check_output_path(tmp_path / "ok.flac") == tmp_path / "ok.flac"
    with pytest.raises(UnsupportedAudioError, match=r"'\.xyz'"):
        check_output_path(tmp_path / "out.xyz")
    with pytest.raises(OutputFileError, match="does not exist"):
        check_output_path(tmp_path / "missing" / "out.wav")
    (tmp_path / "dir.wav").mkdir()
    with pytest.raises(OutputFileError, match="is a folder"):
        check_output_path(tmp_path / "dir.wav")
    assert os.listdir(tmp_path) == ["dir.wav"]
