"""A narration project on disk: one folder the user picks, self-contained, never half-written.

Layout::

    project.json        format version, title, author, settings, chapters -> segments (text, pause,
                        take count, chosen take), the token budget the segments were planned for
    voice/              voice.json + reference.flac (the voice library's layout, read by VoiceLibrary)
    cast/<id>/          the other voices of the cast (engine.book.cast), same layout as voice/
    cover.<ext>         the book's cover, when it has one
    takes/<key>.flac    one rendered take (16 kHz mono); <key>.json beside it describes it (seed, finish
                        reason, duration, codes, scores). The .json is written last: it marks the take done.

A take's key is the sha256 of everything that shapes its audio: segment text, the segment's voice
(codes and transcript), model and sampling settings, seed and take number, and the runtime the takes are rendered
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

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from engine.audio.atomic import remove_temp_files, write_atomic
from engine.audio.clip import SAMPLE_RATE
from engine.book.cast import CAST_DIR, Cast, CastVoice
from engine.book.edits import ProjectEdits
from engine.book.plan import NARRATOR, NARRATOR_NAME, NarrationSettings, ProjectChapter, Segment  # noqa: F401 (re-exported)
from engine.book.project_schema import check_cover, check_project_meta
from engine.book.take_audio import take_audio_problem
from engine.errors import ProjectError, SettingsError
from engine.book.lock import exclusive
from engine.voices import AUDIO_NAME, META_NAME, SavedVoice, VoiceLibrary

FORMAT_VERSION = 1
PROJECT_FILE = "project.json"
RUNTIME_FILE = "runtime.json"  # {"device": "cpu", "precision": "fp32"}: what the takes are rendered on
VOICE_DIR = "voice"
TAKES_DIR = "takes"

PENDING, DONE, NEEDS_CHECK, FAILED = "pending", "done", "needs-check", "failed"
STATUSES = (PENDING, DONE, NEEDS_CHECK, FAILED)

log = logging.getLogger("llasa.engine")


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=1).encode("utf-8")


@dataclass(frozen=True)
class Runtime:
    """Where takes are rendered, as resolved when the models loaded (not the "auto" setting)."""

    device: str  # torch device type: "cpu" | "cuda" | "mps"
    precision: str  # LM weights: "4bit" | "8bit" | "bf16" | "fp32"


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


class NarrationProject(ProjectEdits):
    """An open project folder. Mutating methods (engine.book.edits) save project.json atomically before
    they return.

    Rendering into it holds its writer lock (engine.book.lock); reading needs none. Segments are addressed by id; chapters by index.
    """

    def __init__(self, folder: Path, meta: dict) -> None:
        self.folder = Path(folder)
        self.title: str = meta["title"]
        self.author: str = meta.get("author", "")
        self.fingerprint: str = meta.get("fingerprint", "")  # what it was created from (CLI resume check)
        self.cover: Path | None = check_cover(self.folder, meta.get("cover"))  # inside the folder, or None
        self.max_tokens: int = int(meta["max_tokens"])  # speech-token budget per segment
        self.tokens_per_char: float = float(meta["tokens_per_char"])  # the voice's speaking rate
        self.settings = NarrationSettings.from_json(meta["settings"])
        self.chapters: list[ProjectChapter] = [
            ProjectChapter(c["title"], c["source"], tuple(Segment.from_json(s) for s in c["segments"]),
                           c["selected"], c.get("voice", NARRATOR))
            for c in meta["chapters"]
        ]
        self.voice: SavedVoice = VoiceLibrary(self.folder).get(VOICE_DIR)  # the narrator
        narrator = CastVoice(NARRATOR, NARRATOR_NAME, self.voice, self.max_tokens, self.tokens_per_char)
        self.cast = Cast(self.folder, narrator, meta.get("cast", []))
        self._records: dict[str, TakeRecord] = {}
        self.notices: list[str] = []  # what opening found and repaired (damaged takes), for the user
        self.runtime: Runtime | None = self._read_runtime()  # None: a project from before runtime.json

    # ---------------------------------------------------------------- create / open / save

    @classmethod
    def create(
        cls, folder: Path, *, title: str, author: str, chapters: list[ProjectChapter], voice: SavedVoice,
        settings: NarrationSettings, max_tokens: int, tokens_per_char: float,
        cover: tuple[bytes, str] | None = None, fingerprint: str = "",
        cast: Sequence[tuple[SavedVoice, int, float]] = (), plan: bool = False,
    ) -> "NarrationProject":
        """Write a new project into `folder` (created; must be new, empty, or an unfinished creation).

        cast: the other voices, each (library voice, max tokens, tokens per char) as segment_budget
        measures them. plan: plan every chapter from its source (voice markup resolved against the
        cast) instead of keeping the chapters' segments as given. project.json is written last, so
        an interrupted creation is not a project and can be redone.
        """
        folder = Path(folder)
        if (folder / PROJECT_FILE).exists():
            raise ProjectError(f"{folder} already holds a narration project; open it or choose another folder.")
        ours = {PROJECT_FILE, VOICE_DIR, TAKES_DIR, CAST_DIR}
        if folder.is_dir() and any(p.name not in ours and not p.name.startswith((".", "cover."))
                                   for p in folder.iterdir()):
            raise ProjectError(f"{folder} is not empty; choose a new or empty folder for the project.")
        try:
            (folder / VOICE_DIR).mkdir(parents=True, exist_ok=True)
            (folder / TAKES_DIR).mkdir(exist_ok=True)
            shutil.rmtree(folder / CAST_DIR, ignore_errors=True)  # what an unfinished creation left
            for name in (META_NAME, AUDIO_NAME):
                write_atomic(folder / VOICE_DIR / name, (voice.folder / name).read_bytes())
            cover_name = None
            if cover:
                cover_name = "cover" + cover[1]
                write_atomic(folder / cover_name, cover[0])
            meta = {
                "format": "llasa-narration", "version": FORMAT_VERSION, "title": title, "author": author,
                "fingerprint": fingerprint, "cover": cover_name, "max_tokens": max_tokens,
                "tokens_per_char": tokens_per_char, "settings": settings.to_json(), "chapters": [],
            }
            project = cls(folder, meta)
            for saved, limit, rate in cast:
                project.cast.add(saved, max_tokens=limit, tokens_per_char=rate)
        except OSError as error:
            raise ProjectError(f"Cannot write the project in {folder}: {error.strerror or error}.") from None
        project.chapters = list(chapters)
        if settings.dialogue_voice is not None and plan:  # named at creation, stored by key
            from engine.text.cast_markup import resolve_voice

            key = resolve_voice(settings.dialogue_voice, project.cast.names())
            project.settings = dataclasses.replace(settings, dialogue_voice=key)
        if plan:
            project.chapters = [project.planned(i) for i in range(len(project.chapters))]
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
        check_project_meta(meta, path, FORMAT_VERSION)
        with exclusive(folder) as no_writer:  # a live writer's temporary files are its work in progress
            if no_writer:
                for sub in (folder, folder / TAKES_DIR, folder / VOICE_DIR, *(folder / CAST_DIR).glob("*")):
                    remove_temp_files(sub)
                with contextlib.suppress(OSError):  # a read-only project still opens
                    (folder / TAKES_DIR).mkdir(exist_ok=True)
            try:
                project = cls(folder, meta)
            except SettingsError as error:
                raise ProjectError(f"{path} is damaged: settings: {error} Repair that entry, or narrate the book "
                                   "into a new project folder.") from None
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
                self._forget_if_damaged(record)
        for audio in takes.glob("*.flac") if remove_unfinished else ():  # .json never written: killed in between
            if audio.stem not in self._records:
                with contextlib.suppress(OSError):
                    audio.unlink(missing_ok=True)

    def save(self) -> None:
        """Write project.json atomically."""
        meta = {
            "format": "llasa-narration", "version": FORMAT_VERSION, "title": self.title, "author": self.author,
            "fingerprint": self.fingerprint, "cover": self.cover.name if self.cover else None,
            "max_tokens": self.max_tokens, "tokens_per_char": self.tokens_per_char,
            "settings": self.settings.to_json(), "cast": self.cast.to_json(),
            "chapters": [{"title": c.title, "source": c.source, "selected": c.selected, "voice": c.voice,
                          "segments": [s.to_json() for s in c.segments]} for c in self.chapters],
        }
        self._write(self.folder / PROJECT_FILE, _json_bytes(meta))

    def _write(self, path: Path, data: bytes) -> None:
        """write_atomic, with a full disk or a read-only folder as ProjectError (the file stays as it was)."""
        try:
            write_atomic(path, data)
        except OSError as error:
            raise ProjectError(f"Cannot write {path.name} in the project {self.folder}: {error.strerror or error}. "
                               "Free some disk space or make the folder writable.") from None

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

    def voice_of(self, segment: Segment) -> CastVoice:
        """The cast voice that speaks a segment; ProjectError when it left the cast."""
        return self.cast.get(segment.voice)

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
            self._write(self.folder / RUNTIME_FILE, _json_bytes(dataclasses.asdict(runtime)))
            self.runtime = runtime

    def take_key(self, segment: Segment, take: int | None = None) -> str:
        """The key of a take: covers text, the segment's voice, audio settings, seed and take number.
        A locked segment's chosen take keeps the key it was locked with."""
        take = segment.chosen if take is None else take
        if segment.locked and take == segment.chosen:
            return segment.locked
        identity = {"text": segment.text, "voice": self.voice_of(segment).fingerprint,
                    "settings": self.settings.audio_fields(), "seed": self.take_seed(segment, take), "take": take}
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

    def _forget_if_damaged(self, record: TakeRecord) -> bool:
        """A done take whose audio is damaged becomes pending again: its files go, a notice says so."""
        if record.finish_reason == "failed":
            return False
        audio = self.folder / TAKES_DIR / f"{record.key}.flac"
        problem = take_audio_problem(audio, record.duration_s)
        if problem is None:
            return False
        self._records.pop(record.key, None)
        for path in (audio.with_suffix(".json"), audio):
            with contextlib.suppress(OSError):  # a read-only project: it stays pending in memory
                path.unlink(missing_ok=True)
        self.notices.append(f"A take ({audio.name}) was damaged ({problem}); it is pending and will be rendered again.")
        log.warning("Damaged take %s: %s", audio, problem)
        return True

    def verify_takes(self, segments: Iterable[Segment]) -> list[str]:
        """Re-check the chosen takes of `segments` on disk; ids of those found damaged (now pending)."""
        damaged = []
        for segment in segments:
            record = self.record(segment)
            if record is not None and self._forget_if_damaged(record):
                damaged.append(segment.id)
        return damaged

    def load_take(self, segment: Segment, take: int | None = None) -> np.ndarray:
        """The take's audio: float32 [n] at 16 kHz. ProjectError (the take becomes pending) when it is damaged."""
        try:
            wave, _ = sf.read(self.take_path(segment, take), dtype="float32")
        except (sf.LibsndfileError, RuntimeError, OSError) as error:
            record = self.record(segment, take)
            if record is not None:
                self._forget_if_damaged(record)
            raise ProjectError(f"The take of segment {segment.id} cannot be read ({error}); it is pending again: "
                               "narrate the project to render it, then export again.") from None
        return wave

    def write_take(self, segment: Segment, take: int, audio: np.ndarray | None, record: TakeRecord) -> None:
        """Store a take (audio None for a failed one): audio first, then the .json that marks it done."""
        takes = self.folder / TAKES_DIR
        if audio is not None:
            buffer = io.BytesIO()
            sf.write(buffer, np.clip(np.asarray(audio, np.float32), -1, 1), SAMPLE_RATE, format="FLAC",
                     subtype="PCM_16")
            self._write(takes / f"{record.key}.flac", buffer.getvalue())
        self._write(takes / f"{record.key}.json", _json_bytes(dataclasses.asdict(record) | {"scores": dict(record.scores)}))
        self._records[record.key] = record
