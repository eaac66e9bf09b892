"""The voice library: voices encoded once, saved on disk, reused, shared as single files.

A voice is a folder ``<root>/<id>/`` holding ``voice.json`` (name, transcript, codes, the codec they
were made with, creation time, format version) and ``reference.flac`` (the 16 kHz clip). Every write is
atomic: files are written under a temporary name and renamed, a new folder is built under a hidden
temporary name and renamed into place, so a crash never leaves a half-written voice. A ``.llasavoice``
file is a zip of those two files. No torch here: the GUI lists voices before the engine is loaded.
"""
from __future__ import annotations

import io
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from engine.audio.atomic import write_atomic
from engine.audio.clip import SAMPLE_RATE
from engine.errors import InputTextError, ModelFormatError, OutputFileError, UnsupportedAudioError

if TYPE_CHECKING:
    from engine.speech.synth import Voice

FORMAT_VERSION = 1
EXTENSION = ".llasavoice"
META_NAME = "voice.json"
AUDIO_NAME = "reference.flac"
NUM_CODES = 65536  # X-Codec2 codes are 0..65535
_MAX_META_BYTES = 1 << 20  # a voice.json of 15 s of codes is ~10 kB; refuse absurd members
_MAX_AUDIO_BYTES = 64 << 20
_TEMP_PREFIX = "."  # folders starting with this are in-progress writes or deletions, never voices

log = logging.getLogger("llasa.engine")


@dataclass(frozen=True)
class SavedVoice:
    """A voice in the library."""

    id: str  # folder name: short slug, unique in the library, safe on every OS
    name: str  # display name, unique in the library
    transcript: str  # exactly what the reference clip says
    codes: tuple[int, ...]  # X-Codec2 codes of the clip (50 per second), 0..65535
    codec: str  # repo id or folder name of the codec that made `codes`: codes are only valid for it
    created: str  # ISO 8601 time the voice was first saved (UTC)
    folder: Path

    @property
    def audio_path(self) -> Path:
        """The reference clip: 16 kHz mono FLAC."""
        return self.folder / AUDIO_NAME

    def to_voice(self) -> "Voice":
        """The engine's Voice (imports the engine, hence torch, only when called)."""
        from engine.speech.synth import Voice

        return Voice(codes=self.codes, transcript=self.transcript)


def _slug(name: str) -> str:
    """A folder-name-safe id: ascii letters, digits and dashes, plus a random suffix."""
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:24].strip("-") or "voice"
    return f"{base}-{secrets.token_hex(3)}"


def _parse_meta(data: bytes, where: str) -> dict:
    """Validate voice.json bytes; ModelFormatError naming `where` and the problem."""
    bad = f"{where} is not a valid Llasa voice"
    try:
        meta = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFormatError(f"{bad}: {META_NAME} is not JSON ({error}).") from None
    if not isinstance(meta, dict):
        raise ModelFormatError(f"{bad}: {META_NAME} is not a JSON object.")
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFormatError(f"{bad}: {META_NAME} has no format version.")
    if version > FORMAT_VERSION:
        raise ModelFormatError(f"{where} was made by a newer Llasa Studio (voice format {version}); update the app.")
    for key in ("name", "transcript", "codec", "created"):
        if not isinstance(meta.get(key), str) or not meta[key].strip():
            raise ModelFormatError(f"{bad}: {META_NAME} has no {key!r}.")
    try:
        datetime.fromisoformat(meta["created"])
    except ValueError:
        raise ModelFormatError(f"{bad}: 'created' is not an ISO date ({meta['created']!r}).") from None
    codes = meta.get("codes")
    if not isinstance(codes, list) or not codes:
        raise ModelFormatError(f"{bad}: {META_NAME} has no speech codes.")
    if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < NUM_CODES for c in codes):
        raise ModelFormatError(f"{bad}: its speech codes must be whole numbers from 0 to {NUM_CODES - 1}.")
    return meta


def _check_audio(data: bytes, where: str) -> None:
    """UnsupportedAudioError unless `data` is a readable, non-empty 16 kHz clip."""
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        raise UnsupportedAudioError(f"{where}: the reference clip is not readable audio ({error}).") from None
    if info.frames <= 0 or info.samplerate != SAMPLE_RATE:
        raise UnsupportedAudioError(
            f"{where}: the reference clip must be non-empty {SAMPLE_RATE} Hz audio "
            f"(got {info.frames} samples at {info.samplerate} Hz)."
        )


def _meta_bytes(name: str, transcript: str, codes: tuple[int, ...], codec: str, created: str) -> bytes:
    meta = {
        "format": "llasa-voice",
        "version": FORMAT_VERSION,
        "name": name,
        "transcript": transcript,
        "codec": codec,
        "created": created,
        "codes": list(codes),
    }
    return json.dumps(meta, ensure_ascii=False, indent=1).encode("utf-8")


def _flac_bytes(samples: np.ndarray) -> bytes:
    wave = np.asarray(samples, dtype=np.float32)
    if wave.ndim != 1 or len(wave) == 0 or not np.isfinite(wave).all():
        raise UnsupportedAudioError("The reference clip is empty or holds invalid samples; record it again.")
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(wave, -1.0, 1.0), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


class VoiceLibrary:
    """Voices saved under `root` (created when missing). Not safe for two processes at once."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.problems: tuple[str, ...] = ()  # damaged voice folders skipped by the last list()

    def list(self) -> list[SavedVoice]:
        """All readable voices, sorted by name; damaged folders are skipped, logged and put in `problems`."""
        voices, problems = [], []
        if self.root.is_dir():
            for folder in sorted(self.root.iterdir()):
                if folder.name.startswith(_TEMP_PREFIX) or not folder.is_dir():
                    continue
                try:
                    voices.append(self._read(folder))
                except ModelFormatError as error:
                    problems.append(str(error))
                    log.warning("Skipped damaged voice: %s", error)
        self.problems = tuple(problems)
        return sorted(voices, key=lambda v: (v.name.casefold(), v.created))

    def get(self, voice_id: str) -> SavedVoice:
        """The voice with this id; ModelFormatError when it is gone or damaged."""
        folder = self.root / voice_id
        if voice_id.startswith(_TEMP_PREFIX) or "/" in voice_id or "\\" in voice_id or not folder.is_dir():
            raise ModelFormatError(f"Voice {voice_id!r} is not in the library {self.root} (was it deleted?).")
        return self._read(folder)

    def find(self, name: str) -> SavedVoice:
        """The voice called `name` (case-insensitive) or with the id `name`; InputTextError listing the
        library's names when there is none."""
        voices = self.list()
        for voice in voices:
            if voice.name.casefold() == name.strip().casefold() or voice.id == name:
                return voice
        names = ", ".join(repr(v.name) for v in voices) or f"none yet in {self.root}"
        raise InputTextError(f"Unknown voice {name!r}; the voices are: {names}.")

    def add(
        self, name: str, samples: np.ndarray, transcript: str, codes: tuple[int, ...] | list[int], codec: str
    ) -> SavedVoice:
        """Save a new voice: samples are the 16 kHz float32 [n] clip the codes were encoded from.

        A name already in the library gets " (2)", " (3)"... InputTextError for an empty name or
        transcript; UnsupportedAudioError for an empty clip.
        """
        name, transcript = name.strip(), transcript.strip()
        if not name:
            raise InputTextError("Give the voice a name.")
        if not transcript:
            raise InputTextError("The transcript is empty: type exactly what the reference clip says.")
        codes = tuple(int(c) for c in codes)
        if not codes or not all(0 <= c < NUM_CODES for c in codes):
            raise ValueError(f"codes must be a non-empty sequence of 0..{NUM_CODES - 1}")
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return self._create(self._unique_name(name), transcript, codes, codec, created, _flac_bytes(samples))

    def rename(self, voice_id: str, name: str) -> SavedVoice:
        """Give a voice a new display name (made unique like add's); its id and folder stay."""
        voice = self.get(voice_id)
        name = name.strip()
        if not name:
            raise InputTextError("Give the voice a name.")
        if name == voice.name:
            return voice
        name = self._unique_name(name, ignore=voice_id)
        meta = _meta_bytes(name, voice.transcript, voice.codes, voice.codec, voice.created)
        write_atomic(voice.folder / META_NAME, meta)
        return self._read(voice.folder)

    def delete(self, voice_id: str) -> None:
        """Remove a voice; it disappears from list() at once (renamed away, then removed)."""
        folder = self.get(voice_id).folder
        trash = self.root / f"{_TEMP_PREFIX}deleted-{voice_id}-{secrets.token_hex(3)}"
        os.replace(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def export(self, voice_id: str, dest: Path) -> Path:
        """Write the voice as one ``.llasavoice`` file (zip of voice.json + reference.flac), atomically.

        OutputFileError when `dest` cannot be written.
        """
        voice = self.get(voice_id)
        dest = Path(dest)
        if not dest.parent.is_dir():
            raise OutputFileError(f"Cannot write {dest}: folder {dest.parent} does not exist; create it first.")
        try:
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                archive.write(voice.folder / META_NAME, META_NAME)
                archive.write(voice.audio_path, AUDIO_NAME)
            write_atomic(dest, buffer.getvalue())
        except OSError as error:
            raise OutputFileError(f"Cannot write {dest}: {error.strerror or error}; choose another folder.") from None
        return dest

    def import_file(self, path: Path) -> SavedVoice:
        """Add the voice in a ``.llasavoice`` file; a name already in the library gets " (2)".

        ModelFormatError when the file is not a valid voice file, UnsupportedAudioError when its clip
        cannot be read.
        """
        path = Path(path)
        where = f"Voice file {path}"
        if not path.is_file():
            raise ModelFormatError(f"{where} does not exist or is not a file.")
        try:
            with zipfile.ZipFile(path) as archive:
                sizes = {info.filename: info.file_size for info in archive.infolist()}
                for member, limit in ((META_NAME, _MAX_META_BYTES), (AUDIO_NAME, _MAX_AUDIO_BYTES)):
                    if member not in sizes:
                        raise ModelFormatError(f"{where} is not a Llasa voice: it has no {member}.")
                    if sizes[member] > limit:
                        raise ModelFormatError(f"{where} is not a Llasa voice: {member} is too large.")
                meta_data, audio = archive.read(META_NAME), archive.read(AUDIO_NAME)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as error:
            raise ModelFormatError(f"{where} is not a Llasa voice file (not a valid zip: {error}).") from None
        except OSError as error:
            raise ModelFormatError(f"{where} cannot be read ({error.strerror or error}).") from None
        meta = _parse_meta(meta_data, where)
        _check_audio(audio, where)
        return self._create(
            self._unique_name(meta["name"].strip()), meta["transcript"].strip(), tuple(meta["codes"]),
            meta["codec"], meta["created"], audio,
        )

    def _read(self, folder: Path) -> SavedVoice:
        where = f"Voice folder {folder}"
        try:
            meta = _parse_meta((folder / META_NAME).read_bytes(), where)
        except OSError as error:
            reason = error.strerror or error
            raise ModelFormatError(f"{where} is damaged: cannot read {META_NAME} ({reason}).") from None
        if not (folder / AUDIO_NAME).is_file():
            raise ModelFormatError(f"{where} is damaged: {AUDIO_NAME} is missing.")
        return SavedVoice(
            id=folder.name, name=meta["name"], transcript=meta["transcript"], codes=tuple(meta["codes"]),
            codec=meta["codec"], created=meta["created"], folder=folder,
        )

    def _unique_name(self, name: str, ignore: str | None = None) -> str:
        taken = {v.name.casefold() for v in self.list() if v.id != ignore}
        candidate, n = name, 1
        while candidate.casefold() in taken:
            n += 1
            candidate = f"{name} ({n})"
        return candidate

    def _create(
        self, name: str, transcript: str, codes: tuple[int, ...], codec: str, created: str, flac: bytes
    ) -> SavedVoice:
        """Build the folder under a temporary name, then rename it into place."""
        self.root.mkdir(parents=True, exist_ok=True)
        voice_id = _slug(name)
        while (self.root / voice_id).exists():
            voice_id = _slug(name)
        tmp = Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}new-", dir=self.root))
        try:
            write_atomic(tmp / META_NAME, _meta_bytes(name, transcript, codes, codec, created))
            write_atomic(tmp / AUDIO_NAME, flac)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private
            os.rename(tmp, self.root / voice_id)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self._read(self.root / voice_id)
