"""Which voice Generate will speak with: the one the user sees in the voice panel.

A library voice shown unchanged is used as saved; a clip that was recorded or imported (or a saved
voice whose trim or transcript was edited) is an unsaved clip, encoded when Generate is pressed; with
no clip on screen the model speaks in a random voice. Pure data: no Qt, no engine.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from engine.audio.clip import FRAME_RATE, SAMPLE_RATE
from engine.voices import SavedVoice


@dataclass(frozen=True, eq=False)
class VoiceChoice:
    """The voice shown in the panel. kind: "library" (saved), "clip" (unsaved) or "random"."""

    kind: str
    saved: SavedVoice | None = None  # kind "library"
    samples: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # kind "clip": float32 [n], 16 kHz
    transcript: str = ""  # kind "clip": what the clip says
    name: str = ""  # display name (library name, or the clip's name field)

    @property
    def label(self) -> str:
        """How the take history and the Generate hint name this voice."""
        if self.kind == "library" and self.saved is not None:
            return self.saved.name
        if self.kind == "clip":
            return f"{self.name or 'Unsaved clip'} (unsaved clip)"
        return "Random voice"

    @property
    def problem(self) -> str | None:
        """Why Generate cannot use this voice yet, or None."""
        if self.kind == "clip" and not self.transcript.strip():
            return "Type what the clip says (its transcript) to speak with it, or pick a saved voice"
        if self.kind == "clip" and len(self.samples) < SAMPLE_RATE:
            return "The clip is shorter than a second: record or import a longer one"
        return None

    @property
    def reference_seconds(self) -> float:
        """Seconds of reference speech this voice puts in the model's context."""
        if self.kind == "library" and self.saved is not None:
            return len(self.saved.codes) / FRAME_RATE
        return len(self.samples) / SAMPLE_RATE if self.kind == "clip" else 0.0

    def clip_key(self) -> str:
        """Identity of an unsaved clip (audio + transcript), to reuse its encoding between takes."""
        digest = hashlib.sha256(np.ascontiguousarray(self.samples, dtype=np.float32).tobytes())
        digest.update(self.transcript.strip().encode())
        return digest.hexdigest()
