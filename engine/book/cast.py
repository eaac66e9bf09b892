"""A project's cast: the narrator and the named voices that read passages and dialogue.

Each cast voice is a copy of a library voice kept inside the project (``cast/<id>/``, the voice
library's layout), so a project stays self-contained when the library changes. Every voice has its
own segment budget (max speech tokens, tokens per character), measured on the model when it joins
(engine.book.narration.segment_budget): its reference's length and speaking rate set how much text
one segment may hold. Segments name their voice by key: "" for the narrator, the folder id for a
cast voice, so renaming a voice changes no segment and no take key. No torch here.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from engine.book.plan import NARRATOR, NARRATOR_NAME
from engine.errors import InputTextError, ProjectError
from engine.voices import SavedVoice, VoiceLibrary

CAST_DIR = "cast"


@dataclass(frozen=True)
class CastVoice:
    """A voice of the cast and the budget its segments are planned for."""

    key: str  # NARRATOR ("") or the cast folder id
    name: str  # display name, unique in the cast (case-insensitive); used in [voice: Name]
    voice: SavedVoice
    max_tokens: int  # speech tokens per segment for this voice
    tokens_per_char: float  # this voice's speaking rate

    @property
    def fingerprint(self) -> str:
        """sha256 of what shapes this voice's audio (codes and transcript): part of every take key."""
        return hashlib.sha256(json.dumps([list(self.voice.codes), self.voice.transcript]).encode()).hexdigest()


def check_name(name: str, taken: list[str]) -> str:
    """`name` stripped; InputTextError when empty, unusable in markup, or already in the cast."""
    name = name.strip()
    if not name:
        raise InputTextError("Give the voice a name.")
    if re.search(r"[\[\]\n]", name):
        raise InputTextError(f"A voice name cannot contain [ ] or a line break (got {name!r}).")
    if name.casefold() in {t.casefold() for t in taken}:
        raise InputTextError(f"The cast already has a voice called {name!r}; choose another name.")
    return name


class Cast:
    """The narrator plus the cast voices of a project folder, in the order they joined."""

    def __init__(self, folder: Path, narrator: CastVoice, entries: list[dict]) -> None:
        self.folder = Path(folder)
        self.narrator = narrator
        self._library = VoiceLibrary(self.folder / CAST_DIR)
        self._members: dict[str, CastVoice] = {}
        for entry in entries:
            saved = self._library.get(entry["id"])
            self._members[saved.id] = CastVoice(saved.id, saved.name, saved, int(entry["max_tokens"]),
                                                float(entry["tokens_per_char"]))

    def members(self) -> list[CastVoice]:
        """The narrator first, then the cast voices."""
        return [self.narrator, *self._members.values()]

    def get(self, key: str) -> CastVoice:
        """The voice with this key; ProjectError naming the cast when there is none."""
        if key == NARRATOR:
            return self.narrator
        if key not in self._members:
            raise ProjectError(f"The cast has no voice {key!r} (valid: {', '.join(self.names())}).")
        return self._members[key]

    def names(self) -> dict[str, str]:
        """Display name -> key, for the markup."""
        return {m.name: m.key for m in self.members()}

    def budgets(self) -> dict[str, tuple[int, float]]:
        return {m.key: (m.max_tokens, m.tokens_per_char) for m in self.members()}

    def add(self, saved: SavedVoice, *, max_tokens: int, tokens_per_char: float, name: str | None = None) -> CastVoice:
        """Copy a library voice into the cast (the caller saves project.json); InputTextError for a taken name."""
        name = check_name(name if name is not None else saved.name, list(self.names()))
        samples, _ = sf.read(saved.audio_path, dtype="float32")
        copy = self._library.add(name, samples, saved.transcript, saved.codes, saved.codec)
        member = CastVoice(copy.id, copy.name, copy, int(max_tokens), float(tokens_per_char))
        self._members[copy.id] = member
        return member

    def rename(self, key: str, name: str) -> CastVoice:
        """A new display name for a cast voice (not the narrator's): its key, segments and takes stay."""
        if key == NARRATOR:
            raise InputTextError(f"The narrator is always called {NARRATOR_NAME!r} in the markup.")
        member = self.get(key)
        name = check_name(name, [n for n in self.names() if n != member.name])
        saved = self._library.rename(key, name)
        self._members[key] = CastVoice(key, saved.name, saved, member.max_tokens, member.tokens_per_char)
        return self._members[key]

    def remove(self, key: str) -> None:
        """Delete a cast voice's copy (the caller checks that no segment uses it)."""
        if key == NARRATOR:
            raise InputTextError("The narrator cannot be removed from the cast.")
        self.get(key)
        self._library.delete(key)
        del self._members[key]

    def to_json(self) -> list[dict]:
        return [{"id": m.key, "max_tokens": m.max_tokens, "tokens_per_char": m.tokens_per_char}
                for m in self._members.values()]
