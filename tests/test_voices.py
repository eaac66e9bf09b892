"""The voice library on real files: save, list, rename, delete, export/import, damaged input."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.errors import InputTextError, ModelFormatError, OutputFileError, UnsupportedAudioError
from engine.voices import AUDIO_NAME, META_NAME, VoiceLibrary

CODEC = "HKUSTAudio/xcodec2"


def _clip(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@pytest.fixture
def library(tmp_path) -> VoiceLibrary:
    return VoiceLibrary(tmp_path / "voices")


def test_add_then_list_and_get_round_trip(library):
    clip = _clip()
    saved = library.add("  Ana — narrator  ", clip, " Hello there. ", [1, 2, 65535], CODEC)
    assert saved.name == "Ana — narrator" and saved.transcript == "Hello there."
    assert saved.codes == (1, 2, 65535) and saved.codec == CODEC
    assert saved.id.startswith("ana-narrator-") and saved.id.isascii()
    audio, rate = sf.read(saved.audio_path, dtype="float32")
    assert rate == 16000 and len(audio) == len(clip)
    assert np.abs(audio - clip).max() < 1e-4  # 16-bit FLAC
    assert library.list() == [saved]
    assert library.get(saved.id) == saved
    assert [p.name for p in library.root.iterdir()] == [saved.id]  # no temporary leftovers


def test_to_voice_gives_the_engine_voice(library):
    voice = library.add("A", _clip(), "Words.", [5, 6], CODEC).to_voice()
    assert voice.codes == (5, 6) and voice.transcript == "Words."


def test_names_are_made_unique_and_ids_differ(library):
    first = library.add("Bob", _clip(), "x", [1], CODEC)
    second = library.add("bob", _clip(), "x", [1], CODEC)
    third = library.add("Bob", _clip(), "x", [1], CODEC)
    assert (second.name, third.name) == ("bob (2)", "Bob (3)")
    assert len({first.id, second.id, third.id}) == 3


def test_find_by_name_or_id_and_unknown_names_are_listed(library):
    with pytest.raises(InputTextError, match=r"Unknown voice 'Ann'; the voices are: none yet in "):
        library.find("Ann")
    ann = library.add("Ann", _clip(), "x", [1], CODEC)
    bob = library.add("Bob", _clip(), "x", [1], CODEC)
    assert library.find("ann") == ann and library.find(" BOB ") == bob and library.find(bob.id) == bob
    with pytest.raises(InputTextError, match=r"^Unknown voice 'Cy'; the voices are: 'Ann', 'Bob'\.$"):
        library.find("Cy")


def test_unicode_only_name_gets_a_safe_id(library):
    saved = library.add("声音", _clip(), "你好", [1], CODEC)
    assert saved.id.startswith("voice-") and saved.name == "声音"


def test_rename_keeps_id_and_delete_removes(library):
    a = library.add("A", _clip(), "x", [1], CODEC)
    library.add("B", _clip(), "x", [1], CODEC)
    renamed = library.rename(a.id, "B")
    assert renamed.id == a.id and renamed.name == "B (2)" and renamed.codes == a.codes
    assert library.rename(a.id, "B (2)").name == "B (2)"  # its own name is not a clash
    library.delete(a.id)
    assert [v.name for v in library.list()] == ["B"]
    assert len(list(library.root.iterdir())) == 1
    with pytest.raises(ModelFormatError, match="not in the library"):
        library.get(a.id)


def test_bad_input_is_refused_with_messages(library):
    with pytest.raises(InputTextError, match="name"):
        library.add("  ", _clip(), "x", [1], CODEC)
    with pytest.raises(InputTextError, match="transcript"):
        library.add("A", _clip(), " ", [1], CODEC)
    with pytest.raises(UnsupportedAudioError, match="empty"):
        library.add("A", np.zeros(0, np.float32), "x", [1], CODEC)
    with pytest.raises(ValueError):
        library.add("A", _clip(), "x", [70000], CODEC)
    with pytest.raises(ModelFormatError):
        library.get("../etc")
    assert library.list() == []


def test_damaged_folders_are_skipped_and_reported(library):
    good = library.add("Good", _clip(), "x", [1], CODEC)
    broken = library.root / "broken-123456"
    broken.mkdir()
    (broken / META_NAME).write_text("{not json", encoding="utf-8")
    no_audio = library.root / "noaudio-123456"
    no_audio.mkdir()
    (no_audio / META_NAME).write_bytes((good.folder / META_NAME).read_bytes())
    (library.root / ".new-abc").mkdir()  # an interrupted write: ignored silently
    assert library.list() == [good]
    assert len(library.problems) == 2
    assert any("not JSON" in p for p in library.problems)
    assert any("reference.flac is missing" in p for p in library.problems)


def test_export_import_round_trip(library, tmp_path):
    saved = library.add("Ana", _clip(), "Hello.", [3, 4, 5], CODEC)
    dest = library.export(saved.id, tmp_path / "ana.llasavoice")
    with zipfile.ZipFile(dest) as archive:
        assert sorted(archive.namelist()) == [AUDIO_NAME, META_NAME]
    other = VoiceLibrary(tmp_path / "other")
    imported = other.import_file(dest)
    assert (imported.name, imported.transcript, imported.codes, imported.codec, imported.created) == (
        "Ana", "Hello.", (3, 4, 5), CODEC, saved.created
    )
    again = library.import_file(dest)
    assert again.name == "Ana (2)" and again.id != saved.id
    assert len(library.list()) == 2


def test_export_to_missing_folder_fails_cleanly(library, tmp_path):
    saved = library.add("Ana", _clip(), "Hello.", [3], CODEC)
    with pytest.raises(OutputFileError, match="does not exist"):
        library.export(saved.id, tmp_path / "nope" / "a.llasavoice")


def _voice_file(path: Path, meta: object | None, audio: bytes | None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        if meta is not None:
            archive.writestr(META_NAME, meta if isinstance(meta, str) else json.dumps(meta))
        if audio is not None:
            archive.writestr(AUDIO_NAME, audio)
    return path


def _flac(rate: int = 16000) -> bytes:
    import io

    buffer = io.BytesIO()
    sf.write(buffer, _clip(0.5), rate, format="FLAC")
    return buffer.getvalue()


GOOD_META = {
    "version": 1, "name": "V", "transcript": "t", "codec": CODEC, "created": "2026-01-02T03:04:05+00:00", "codes": [1, 2]
}


@pytest.mark.parametrize(
    "meta, audio, error, message",
    [
        (None, _flac(), ModelFormatError, "no voice.json"),
        (GOOD_META, None, ModelFormatError, "no reference.flac"),
        ("{", _flac(), ModelFormatError, "not JSON"),
        ([1, 2], _flac(), ModelFormatError, "not a JSON object"),
        ({**GOOD_META, "version": 99}, _flac(), ModelFormatError, "newer Llasa Studio"),
        ({**GOOD_META, "transcript": ""}, _flac(), ModelFormatError, "'transcript'"),
        ({**GOOD_META, "codes": [1, 65536]}, _flac(), ModelFormatError, "0 to 65535"),
        ({**GOOD_META, "codes": [1, -1]}, _flac(), ModelFormatError, "0 to 65535"),
        ({**GOOD_META, "codes": [1.5]}, _flac(), ModelFormatError, "whole numbers"),
        ({**GOOD_META, "codes": []}, _flac(), ModelFormatError, "no speech codes"),
        ({**GOOD_META, "created": "yesterday"}, _flac(), ModelFormatError, "ISO date"),
        (GOOD_META, b"not audio at all", UnsupportedAudioError, "not readable audio"),
        (GOOD_META, _flac(44100), UnsupportedAudioError, "16000 Hz"),
    ],
)
def test_import_refuses_bad_files(library, tmp_path, meta, audio, error, message):
    path = _voice_file(tmp_path / "bad.llasavoice", meta, audio)
    with pytest.raises(error, match=message):
        library.import_file(path)
    assert not library.root.exists() or not any(library.root.iterdir())  # nothing half-written


def test_import_refuses_non_zip_and_missing(library, tmp_path):
    junk = tmp_path / "junk.llasavoice"
    junk.write_bytes(b"hello")
    with pytest.raises(ModelFormatError, match="not a valid zip"):
        library.import_file(junk)
    with pytest.raises(ModelFormatError, match="does not exist"):
        library.import_file(tmp_path / "missing.llasavoice")


def test_import_of_a_good_handmade_file(library, tmp_path):
    saved = library.import_file(_voice_file(tmp_path / "v.llasavoice", GOOD_META, _flac()))
    assert saved.codes == (1, 2) and saved.created == GOOD_META["created"]


def test_voices_module_does_not_import_torch():
    code = "import sys, engine.voices; print('torch' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
