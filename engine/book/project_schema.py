"""Validate a project.json before a project is built from it: every field's type and range, named by JSON path.

project.json is a file users can edit, sync, or restore half-way; a wrong type deep inside it used to
surface as an AttributeError far from the cause. ``check_project_meta`` walks the whole document once
and raises ProjectError naming the file, the place (``chapters[2].segments[5].text``) and what is
wrong, so the message says exactly what to repair. It also keeps the cover inside the project folder.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from engine.book.plan import Segment
from engine.errors import ProjectError

_STR_SETTINGS = ("lm", "codec", "language")
_OPTIONAL_STR_SETTINGS = ("quantization", "asr", "speaker", "dialogue_voice")
SEGMENT_FIELDS = {f.name for f in dataclasses.fields(Segment)}
_NUMBER_SETTINGS = ("temperature", "top_p", "repetition_penalty", "paragraph_pause", "chapter_pause", "max_error_rate")
_WHOLE_SETTINGS = ("top_k", "base_seed", "candidates")


class _Damaged(Exception):
    def __init__(self, where: str, problem: str) -> None:
        super().__init__(where, problem)
        self.where, self.problem = where, problem


def _kind(value: Any) -> str:
    return {type(None): "null", bool: "true/false", int: "a number", float: "a number", str: "text",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _expect(value: Any, where: str, kind: str) -> Any:
    """`value` if it is of `kind` (text, whole, number, bool, list, object), else _Damaged."""
    ok = {
        "text": isinstance(value, str),
        "whole number": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
        "true/false": isinstance(value, bool),
        "list": isinstance(value, list),
        "object": isinstance(value, dict),
    }[kind]
    if not ok:
        article = "" if kind in ("text", "true/false") else "an " if kind == "object" else "a "
        shown = "" if value is None or isinstance(value, (dict, list)) else f" ({str(value)[:40]!r})"
        raise _Damaged(where, f"must be {article}{kind}, not {_kind(value)}{shown}")
    return value


def _field(obj: dict, key: str, where: str, kind: str, *, optional: bool = False, default: Any = None) -> Any:
    if key not in obj:
        if optional:
            return default
        raise _Damaged(f"{where}{key}", "is missing")
    if optional and obj[key] is None:
        return None
    return _expect(obj[key], f"{where}{key}", kind)


def check_cover(folder: Path, cover: Any) -> Path | None:
    """The cover file's path, which must be a plain file name inside the project folder (or None).

    ProjectError for a path, a '..' or a symbolic link leading out of the folder: covers stay inside it.
    """
    try:
        return _check_cover(folder, cover)
    except _Damaged as damage:
        raise ProjectError(f"{folder / 'project.json'}: {damage.where} {damage.problem}.") from None


def _check_cover(folder: Path, cover: Any) -> Path | None:
    if cover is None or cover == "":
        return None
    _expect(cover, "cover", "text")
    if cover in (".", "..") or Path(cover).name != cover or "\\" in cover:
        raise _Damaged("cover", f"must be a file name inside the project folder, not {cover!r}")
    path = folder / cover
    try:
        inside = path.resolve().is_relative_to(folder.resolve())
    except OSError:
        inside = False
    if not inside:  # a symbolic link out of the project
        raise _Damaged("cover", f"{cover!r} points outside the project folder")
    return path


def _check_settings(settings: Any) -> None:
    _expect(settings, "settings", "object")
    for key in _STR_SETTINGS:
        _field(settings, key, "settings.", "text", optional=True)
    for key in _OPTIONAL_STR_SETTINGS:
        _field(settings, key, "settings.", "text", optional=True)
    for key in _NUMBER_SETTINGS:
        _field(settings, key, "settings.", "number", optional=True)
    for key in _WHOLE_SETTINGS:
        _field(settings, key, "settings.", "whole number", optional=True)
    rules = _field(settings, "pronunciations", "settings.", "list", optional=True, default=[])
    for i, rule in enumerate(rules):
        where = f"settings.pronunciations[{i}]."
        _expect(rule, where[:-1], "object")
        _field(rule, "pattern", where, "text")
        _field(rule, "replacement", where, "text")
        _field(rule, "regex", where, "true/false", optional=True)
        _field(rule, "case_sensitive", where, "true/false", optional=True)


def _check_chapters(chapters: Any) -> None:
    _expect(chapters, "chapters", "list")
    ids: set[str] = set()
    for c, chapter in enumerate(chapters):
        where = f"chapters[{c}]"
        _expect(chapter, where, "object")
        _field(chapter, "title", where + ".", "text")
        _field(chapter, "source", where + ".", "text")
        _field(chapter, "selected", where + ".", "true/false")
        _field(chapter, "voice", where + ".", "text", optional=True)
        for s, segment in enumerate(_field(chapter, "segments", where + ".", "list")):
            at = f"{where}.segments[{s}]"
            _expect(segment, at, "object")
            unknown = sorted(set(segment) - SEGMENT_FIELDS)
            if unknown:
                raise _Damaged(f"{at}.{unknown[0]}", "is not a segment field")
            segment_id = _field(segment, "id", at + ".", "text")
            if not segment_id or segment_id in ids:
                raise _Damaged(f"{at}.id", f"must be a unique non-empty id, got {segment_id!r}")
            ids.add(segment_id)
            if not _field(segment, "text", at + ".", "text").strip():
                raise _Damaged(f"{at}.text", "is empty")
            if _field(segment, "pause_after", at + ".", "number") < 0:
                raise _Damaged(f"{at}.pause_after", "must be >= 0 seconds")
            takes = _field(segment, "takes", at + ".", "whole number", optional=True, default=1)
            chosen = _field(segment, "chosen", at + ".", "whole number", optional=True, default=0)
            if takes < 1 or not 0 <= chosen < takes:
                raise _Damaged(f"{at}.chosen", f"must be a take from 0 to {takes - 1} (takes {takes}), got {chosen}")
            for key in ("voice", "locked", "planned"):  # a cast voice, a locked take's key, the planner's text
                _field(segment, key, at + ".", "text", optional=True)
            if _field(segment, "pause_before", at + ".", "number", optional=True, default=0.0) < 0:
                raise _Damaged(f"{at}.pause_before", "must be >= 0 seconds")
            for i, name in enumerate(_field(segment, "user", at + ".", "list", optional=True, default=[])):
                _expect(name, f"{at}.user[{i}]", "text")


def check_project_meta(meta: Any, path: Path, format_version: int) -> None:
    """ProjectError unless `meta` (project.json's parsed content) is a complete, well-typed project of a known version."""
    folder = path.parent
    if not isinstance(meta, dict) or meta.get("format") != "llasa-narration":
        raise ProjectError(f"{path} is not a Llasa Studio narration project.")
    try:
        version = _field(meta, "version", "", "whole number")
        if version < 1:
            raise _Damaged("version", f"must be 1 or more, got {version}")
        if version > format_version:
            raise ProjectError(f"{folder} was made by a newer Llasa Studio (format {version}); update the app.")
        _field(meta, "title", "", "text")
        _field(meta, "author", "", "text", optional=True)
        _field(meta, "fingerprint", "", "text", optional=True)
        _check_cover(folder, meta.get("cover"))
        if _field(meta, "max_tokens", "", "whole number") < 1:
            raise _Damaged("max_tokens", "must be 1 or more")
        if _field(meta, "tokens_per_char", "", "number") <= 0:
            raise _Damaged("tokens_per_char", "must be more than 0")
        _check_settings(_field(meta, "settings", "", "object"))
        _check_chapters(_field(meta, "chapters", "", "list"))
        for i, voice in enumerate(_field(meta, "cast", "", "list", optional=True, default=[])):
            _expect(voice, f"cast[{i}]", "object")
    except _Damaged as damage:
        raise ProjectError(f"{path} is damaged: {damage.where} {damage.problem}. Repair that entry, "
                           "or narrate the book into a new project folder.") from None
