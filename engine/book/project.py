"""A narration project on disk: one folder the user picks, self-contained, never half-written.

Layout::

    project.json        format version, title, author, settings, chapters -> segments (text, pause,
                        take count, chosen take), the token budget the segments were planned for
    voice/              voice.json + reference.flac (the voice library's layout, read by VoiceLibrary)
    cover.<ext>         the book's cover, when it has one
    takes/<key>.flac    one rendered take (16 kHz mono); <key>.json beside it describes it (seed, finish
                        reason, duration, codes, scores). The .json is written last: it marks the take done.

A take's key is the sha256 of everything that shapes its audio: segment text, voice (codes and
transcript), model and sampling settings, seed and take number, and the runtime the takes are rendered
on: the resolved device type and LM precision ("cpu"/"fp32", "cuda"/"4bit"; the setting "auto" could be
either). The writer records the runtime in runtime.json before it renders; a project narrated on another
device or precision sees its earlier takes as pending and renders them again, so a book never mixes
takes of two runtimes. Projects from before runtime.json have none recorded: their keys are the old
ones (their takes show as finished) until the next narration records its runtime; from then on those
old takes are pending, because on which runtime they were made cannot be known (re-rendering is safe;
mixing is what the key exists to prevent). Editing a segment changes its key, so exactly that segment
is rendered again; setting it back finds the old take. Every file is written to a
temporary name and renamed; opening a project removes temporary files and takes whose .json is missing
(a kill -9 between the two renames), unless another writer holds the project's lock (engine.book.lock):
then those files may be its work in progress and are left alone. No torch here: the GUI opens projects before the engine loads.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from engine.audio.clip import SAMPLE_RATE
from engine.book.lock import exclusive
from engine.config import DEFAULT_CODEC, DEFAULT_LM, ModelChoice, SamplingParams
from engine.errors import ProjectError, SettingsError, TextTooLongError
from engine.text.pronunciation import PronunciationRule, apply_pronunciations
from engine.text.pipeline import estimate_tokens, normalize
from engine.voices import AUDIO_NAME, META_NAME, SavedVoice, VoiceLibrary

FORMAT_VERSION = 1
PROJECT_FILE = "project.json"
RUNTIME_FILE = "runtime.json"  # {"device": "cpu", "precision": "fp32"}: what the takes are rendered on
VOICE_DIR = "voice"
TAKES_DIR = "takes"
TEMP_SUFFIX = ".tmp"

PENDING, DONE, NEEDS_CHECK, FAILED = "pending", "done", "needs-check", "failed"
STATUSES = (PENDING, DONE, NEEDS_CHECK, FAILED)

log = logging.getLogger("llasa.engine")


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a synced temporary file in the same folder and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=1).encode("utf-8")


@dataclass(frozen=True)
class NarrationSettings:
    """How a project is narrated. Model and sampling fields shape the audio (they are in take keys)."""

    lm: str = DEFAULT_LM  # Llasa LM: Hugging Face id or local folder
    codec: str = DEFAULT_CODEC  # X-Codec2: Hugging Face id or local folder
    quantization: str | None = None  # as ModelChoice.quantization
    temperature: float = 0.8  # as SamplingParams
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    base_seed: int = 0  # every take's seed derives from it, the segment's text and the take number
    paragraph_pause: float = 0.6  # s of silence at a blank line
    chapter_pause: float = 2.0  # s of silence at [chapter]
    language: str = "en"  # normalization language (engine.text.pipeline.normalize)
    pronunciations: tuple[PronunciationRule, ...] = ()  # applied before normalization, in order
    # Quality mode (engine.book.quality): candidates per segment, 1 = off, 2..8 = best-of-N picked by the verifiers
    # (engine.verify.scoring.rank). A segment whose best take's error rate (WER; CER for Chinese/Japanese) is
    # above max_error_rate is flagged needs-check. asr / speaker: verifier models (hub id or folder),
    # None = not used; quality mode needs at least one.
    candidates: int = 1
    max_error_rate: float = 0.15  # 0.15 = 15 % of the words (characters) wrong
    asr: str | None = None  # Whisper ASR
    speaker: str | None = None  # WavLM x-vector speaker model

    def __post_init__(self) -> None:
        self.sampling(0)  # validates the sampling fields
        self.model_choice()
        if self.paragraph_pause < 0 or self.chapter_pause < 0:
            raise SettingsError("Pauses must be >= 0 seconds.")
        if not 1 <= self.candidates <= 8 or (self.candidates > 1 and not (self.asr or self.speaker)):
            raise SettingsError("Quality mode needs 2 to 8 candidates and a Whisper or speaker model.")

    def sampling(self, seed: int) -> SamplingParams:
        return SamplingParams(self.temperature, self.top_p, self.top_k, self.repetition_penalty, seed)

    def model_choice(self, device: str = "auto") -> ModelChoice:
        return ModelChoice(self.lm, self.codec, self.quantization, device)

    def audio_fields(self) -> dict:
        """The settings that change a take's audio; quality mode's only when on (older keys stay valid)."""
        quality = ("candidates", "asr", "speaker") if self.candidates > 1 else ()
        return {k: getattr(self, k) for k in ("lm", "codec", "quantization", "temperature", "top_p", "top_k",
                                              "repetition_penalty") + quality}

    def flags(self, scores: Mapping[str, float]) -> bool:
        """True when a take's error rate is above max_error_rate (it needs a listen)."""
        return scores.get("error_rate", 0.0) > self.max_error_rate

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["pronunciations"] = [dataclasses.asdict(rule) for rule in self.pronunciations]
        return data

    @classmethod
    def from_json(cls, data: dict) -> "NarrationSettings":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["pronunciations"] = tuple(PronunciationRule(**r) for r in data.get("pronunciations", ()))
        return cls(**values)


@dataclass(frozen=True)
class Runtime:
    """Where takes are rendered, as resolved when the models loaded (not the "auto" setting)."""

    device: str  # torch device type: "cpu" | "cuda" | "mps"
    precision: str  # LM weights: "4bit" | "8bit" | "bf16" | "fp32"


@dataclass(frozen=True)
class Segment:
    """One model call's worth of text and what to do after it."""

    id: str  # unique in the project, stable across edits
    text: str  # what the model speaks (pronunciations applied, normalized)
    pause_after: float  # s of silence after it; 0 = joined to the next with a short crossfade
    takes: int = 1  # take numbers 0..takes-1 belong to this segment
    chosen: int = 0  # the take that is played and exported


@dataclass(frozen=True)
class ProjectChapter:
    title: str
    source: str  # the imported chapter text, markup kept (segments are planned from it)
    segments: tuple[Segment, ...]
    selected: bool = True  # narrated and exported


@dataclass(frozen=True)
class TakeRecord:
    """What <key>.json says about a rendered (or failed) take."""

    key: str
    take: int  # take number of its segment
    seed: int
    finish_reason: str  # "end" (model stopped), "length" (hit the cap: check it) or "failed"
    duration_s: float  # seconds of audio
    codes: int  # speech codes generated
    scores: Mapping[str, float] = field(default_factory=dict)  # quality mode: engine.book.quality.flatten_scores
    error: str = ""  # the message when finish_reason is "failed"
    transcript: str = ""  # quality mode: what the ASR heard in this take
    flagged: bool = False  # quality mode: error rate above the project's max_error_rate when rendered

    @property
    def status(self) -> str:
        if self.finish_reason == "failed":
            return FAILED
        return NEEDS_CHECK if self.finish_reason == "length" or self.flagged else DONE


_RECORD_FIELDS = {f.name for f in dataclasses.fields(TakeRecord)}


def take_seed(base_seed: int, text: str, take: int) -> int:
    """The seed of take `take` of a segment with this text (0 <= seed < 2**31)."""
    digest = hashlib.sha256(f"{base_seed}\0{text}\0{take}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class NarrationProject:
    """An open project folder. Mutating methods save project.json atomically before they return.

    Rendering into it holds its writer lock (engine.book.lock); reading needs none. Segments are addressed by id; chapters by index.
    """

    def __init__(self, folder: Path, meta: dict) -> None:
        self.folder = Path(folder)
        self.title: str = meta["title"]
        self.author: str = meta.get("author", "")
        self.fingerprint: str = meta.get("fingerprint", "")  # what it was created from (CLI resume check)
        self.cover: Path | None = self.folder / meta["cover"] if meta.get("cover") else None
        self.max_tokens: int = int(meta["max_tokens"])  # speech-token budget per segment
        self.tokens_per_char: float = float(meta["tokens_per_char"])  # the voice's speaking rate
        self.settings = NarrationSettings.from_json(meta["settings"])
        self.chapters: list[ProjectChapter] = [
            ProjectChapter(c["title"], c["source"], tuple(Segment(**s) for s in c["segments"]), c["selected"])
            for c in meta["chapters"]
        ]
        self.voice: SavedVoice = VoiceLibrary(self.folder).get(VOICE_DIR)
        self._records: dict[str, TakeRecord] = {}
        self.runtime: Runtime | None = self._read_runtime()  # None: a project from before runtime.json
        self._voice_hash = hashlib.sha256(
            json.dumps([list(self.voice.codes), self.voice.transcript]).encode()).hexdigest()

    # ---------------------------------------------------------------- create / open / save

    @classmethod
    def create(
        cls, folder: Path, *, title: str, author: str, chapters: list[ProjectChapter], voice: SavedVoice,
        settings: NarrationSettings, max_tokens: int, tokens_per_char: float,
        cover: tuple[bytes, str] | None = None, fingerprint: str = "",
    ) -> "NarrationProject":
        """Write a new project into `folder` (created; must be new, empty, or an unfinished creation).

        project.json is written last, so an interrupted creation is not a project and can be redone.
        """
        folder = Path(folder)
        if (folder / PROJECT_FILE).exists():
            raise ProjectError(f"{folder} already holds a narration project; open it or choose another folder.")
        ours = {PROJECT_FILE, VOICE_DIR, TAKES_DIR}
        if folder.is_dir() and any(p.name not in ours and not p.name.startswith((".", "cover."))
                                   for p in folder.iterdir()):
            raise ProjectError(f"{folder} is not empty; choose a new or empty folder for the project.")
        try:
            (folder / VOICE_DIR).mkdir(parents=True, exist_ok=True)
            (folder / TAKES_DIR).mkdir(exist_ok=True)
            for name in (META_NAME, AUDIO_NAME):
                atomic_write(folder / VOICE_DIR / name, (voice.folder / name).read_bytes())
            cover_name = None
            if cover:
                cover_name = "cover" + cover[1]
                atomic_write(folder / cover_name, cover[0])
            meta = {
                "format": "llasa-narration", "version": FORMAT_VERSION, "title": title, "author": author,
                "fingerprint": fingerprint, "cover": cover_name, "max_tokens": max_tokens,
                "tokens_per_char": tokens_per_char, "settings": settings.to_json(), "chapters": [],
            }
            project = cls(folder, meta)
        except OSError as error:
            raise ProjectError(f"Cannot write the project in {folder}: {error.strerror or error}.") from None
        project.chapters = list(chapters)
        project.save()
        return project

    @classmethod
    def open(cls, folder: Path) -> "NarrationProject":
        """Open a project; removes what an interrupted write left behind and reads the finished takes."""
        folder = Path(folder)
        path = folder / PROJECT_FILE
        if not path.is_file():
            raise ProjectError(f"{folder} is not a narration project (no {PROJECT_FILE}).")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ProjectError(f"{path} is damaged and cannot be read ({error}).") from None
        if not isinstance(meta, dict) or meta.get("format") != "llasa-narration":
            raise ProjectError(f"{path} is not a Llasa Studio narration project.")
        if not isinstance(meta.get("version"), int) or meta["version"] > FORMAT_VERSION:
            raise ProjectError(f"{folder} was made by a newer Llasa Studio (format {meta.get('version')}); update the app.")
        with exclusive(folder) as no_writer:  # a live writer's temporary files are its work in progress
            if no_writer:
                for sub in (folder, folder / TAKES_DIR, folder / VOICE_DIR):
                    for stray in sub.glob(f".*{TEMP_SUFFIX}"):
                        stray.unlink(missing_ok=True)
                (folder / TAKES_DIR).mkdir(exist_ok=True)
            try:
                project = cls(folder, meta)
            except (KeyError, TypeError, ValueError) as error:
                raise ProjectError(f"{path} is damaged ({type(error).__name__}: {error}).") from None
            project._scan_takes(remove_unfinished=no_writer)
        return project

    def _scan_takes(self, remove_unfinished: bool = True) -> None:
        takes = self.folder / TAKES_DIR
        if not takes.is_dir():
            return
        for path in takes.glob("*.json"):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                record = TakeRecord(**{k: v for k, v in data.items() if k in _RECORD_FIELDS})
            except (OSError, ValueError, TypeError) as error:
                log.warning("Ignored damaged take %s: %s", path, error)
                continue
            if record.finish_reason == "failed" or (takes / f"{record.key}.flac").is_file():
                self._records[record.key] = record
        for audio in takes.glob("*.flac") if remove_unfinished else ():  # .json never written: killed in between
            if audio.stem not in self._records:
                audio.unlink(missing_ok=True)

    def save(self) -> None:
        """Write project.json atomically."""
        meta = {
            "format": "llasa-narration", "version": FORMAT_VERSION, "title": self.title, "author": self.author,
            "fingerprint": self.fingerprint, "cover": self.cover.name if self.cover else None,
            "max_tokens": self.max_tokens, "tokens_per_char": self.tokens_per_char,
            "settings": self.settings.to_json(),
            "chapters": [{"title": c.title, "source": c.source, "selected": c.selected,
                          "segments": [dataclasses.asdict(s) for s in c.segments]} for c in self.chapters],
        }
        atomic_write(self.folder / PROJECT_FILE, _json_bytes(meta))

    # ---------------------------------------------------------------- segments and takes

    def segments(self, chapters: list[int] | None = None) -> Iterator[tuple[int, Segment]]:
        """(chapter index, segment) in reading order, of `chapters` (default: the selected ones)."""
        indices = chapters if chapters is not None else [i for i, c in enumerate(self.chapters) if c.selected]
        for i in indices:
            for segment in self.chapters[i].segments:
                yield i, segment

    def segment(self, segment_id: str) -> tuple[int, int]:
        """(chapter index, segment index) of a segment id; KeyError when there is none."""
        for ci, chapter in enumerate(self.chapters):
            for si, segment in enumerate(chapter.segments):
                if segment.id == segment_id:
                    return ci, si
        raise KeyError(segment_id)

    def find(self, segment_id: str) -> Segment:
        """The segment with this id; KeyError when there is none."""
        ci, si = self.segment(segment_id)
        return self.chapters[ci].segments[si]

    def _read_runtime(self) -> Runtime | None:
        try:
            data = json.loads((self.folder / RUNTIME_FILE).read_text(encoding="utf-8"))
            return Runtime(str(data["device"]), str(data["precision"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ProjectError(f"{self.folder / RUNTIME_FILE} is damaged ({error}); delete it and narrate again "
                               "(finished takes are rendered again).") from None

    def use_runtime(self, runtime: Runtime) -> None:
        """Render on `runtime` from now on (the writer calls this before rendering; saved in runtime.json)."""
        if runtime != self.runtime:
            atomic_write(self.folder / RUNTIME_FILE, _json_bytes(dataclasses.asdict(runtime)))
            self.runtime = runtime

    def take_key(self, segment: Segment, take: int | None = None) -> str:
        take = segment.chosen if take is None else take
        identity = {"text": segment.text, "voice": self._voice_hash, "settings": self.settings.audio_fields(),
                    "seed": self.take_seed(segment, take), "take": take}
        if self.runtime is not None:
            identity["runtime"] = dataclasses.asdict(self.runtime)
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def take_seed(self, segment: Segment, take: int | None = None) -> int:
        return take_seed(self.settings.base_seed, segment.text, segment.chosen if take is None else take)

    def record(self, segment: Segment, take: int | None = None) -> TakeRecord | None:
        """The finished (or failed) take, or None while it is pending."""
        return self._records.get(self.take_key(segment, take))

    def reload_record(self, segment: Segment, take: int | None = None) -> TakeRecord | None:
        """record(), re-read from disk: for a take another NarrationProject (the engine's) has written."""
        self.runtime = self._read_runtime()  # the writer may have rendered on another runtime
        key = self.take_key(segment, take)
        takes = self.folder / TAKES_DIR
        try:
            data = json.loads((takes / f"{key}.json").read_text(encoding="utf-8"))
            record = TakeRecord(**{k: v for k, v in data.items() if k in _RECORD_FIELDS})
        except (OSError, ValueError, TypeError, AttributeError):
            return self._records.get(key)
        if record.finish_reason == "failed" or (takes / f"{key}.flac").is_file():
            self._records[key] = record
        return self._records.get(key)

    def status(self, segment: Segment) -> str:
        """pending / done / needs-check (length cap, or flagged by quality mode) / failed, of the chosen take."""
        record = self.record(segment)
        return record.status if record else PENDING

    def take_path(self, segment: Segment, take: int | None = None) -> Path:
        return self.folder / TAKES_DIR / f"{self.take_key(segment, take)}.flac"

    def load_take(self, segment: Segment, take: int | None = None) -> np.ndarray:
        """The take's audio: float32 [n] at 16 kHz."""
        wave, _ = sf.read(self.take_path(segment, take), dtype="float32")
        return wave

    def write_take(self, segment: Segment, take: int, audio: np.ndarray | None, record: TakeRecord) -> None:
        """Store a take (audio None for a failed one): audio first, then the .json that marks it done."""
        takes = self.folder / TAKES_DIR
        if audio is not None:
            buffer = io.BytesIO()
            sf.write(buffer, np.clip(np.asarray(audio, np.float32), -1, 1), SAMPLE_RATE, format="FLAC",
                     subtype="PCM_16")
            atomic_write(takes / f"{record.key}.flac", buffer.getvalue())
        atomic_write(takes / f"{record.key}.json", _json_bytes(dataclasses.asdict(record) | {"scores": dict(record.scores)}))
        self._records[record.key] = record

    # ---------------------------------------------------------------- edits (each saves)

    def _replace(self, segment_id: str, **changes) -> Segment:
        ci, si = self.segment(segment_id)
        chapter = self.chapters[ci]
        new = dataclasses.replace(chapter.segments[si], **changes)
        segments = chapter.segments[:si] + (new,) + chapter.segments[si + 1:]
        self.chapters[ci] = dataclasses.replace(chapter, segments=segments)
        self.save()
        return new

    def edit_segment(self, segment_id: str, text: str) -> Segment:
        """Replace a segment's text as the user typed it (pronunciations and normalization are applied);
        its takes start again from take 0, so only this segment is rendered again.

        TextTooLongError when the text needs more speech tokens than the project's segment budget.
        """
        text = normalize(apply_pronunciations(text, self.settings.pronunciations), language=self.settings.language)
        if not text:
            raise TextTooLongError("A segment cannot be empty; delete its text in the chapter source instead.")
        if estimate_tokens(text, self.tokens_per_char) > self.max_tokens:
            limit = int(self.max_tokens / self.tokens_per_char)
            raise TextTooLongError(f"The text is too long for one segment; keep it under about {limit} characters.")
        return self._replace(segment_id, text=text, takes=1, chosen=0)

    def new_take(self, segment_id: str) -> Segment:
        """Ask for one more take of a segment (a new seed) and choose it; it is pending until rendered."""
        segment = self.find(segment_id)
        return self._replace(segment_id, takes=segment.takes + 1, chosen=segment.takes)

    def choose_take(self, segment_id: str, take: int) -> Segment:
        if not 0 <= take < self.find(segment_id).takes:
            raise SettingsError(f"Segment {segment_id} has no take {take + 1}.")
        return self._replace(segment_id, chosen=take)

    def select_chapters(self, indices: list[int]) -> None:
        """Narrate and export exactly these chapters (0-based)."""
        wanted = set(indices)
        if not wanted <= set(range(len(self.chapters))):
            raise SettingsError(f"Chapters must be 1 to {len(self.chapters)}.")
        self.chapters = [dataclasses.replace(c, selected=i in wanted) for i, c in enumerate(self.chapters)]
        self.save()
