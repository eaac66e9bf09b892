"""The edits a user makes to a narration project; each saves project.json before it returns.

Mixed into engine.book.project.NarrationProject (which owns the folder, the cast and the takes).
Nothing here deletes a take: an edit changes a segment's take key (text, voice, settings) or not,
and the take keys decide what is rendered again. Segments addressed by id, chapters by index.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from engine.book.plan import NARRATOR, NarrationSettings, ProjectChapter, Segment, carry_over, plan_chapter
from engine.errors import InputTextError, ProjectError, SettingsError, TextTooLongError
from engine.text.pipeline import MAX_PAUSE_SECONDS, estimate_tokens, normalize
from engine.text.pronunciation import apply_pronunciations
from engine.voices import SavedVoice

if TYPE_CHECKING:
    from engine.book.cast import Cast, CastVoice


class ProjectEdits:
    """Edits of segments, cast, chapters and settings (a mixin of NarrationProject)."""

    chapters: list[ProjectChapter]
    settings: NarrationSettings
    cast: "Cast"

    # ---------------------------------------------------------------- segments

    def _replace(self, segment_id: str, **changes) -> Segment:
        ci, si = self.segment(segment_id)
        chapter = self.chapters[ci]
        new = dataclasses.replace(chapter.segments[si], **changes)
        segments = chapter.segments[:si] + (new,) + chapter.segments[si + 1:]
        self.chapters[ci] = dataclasses.replace(chapter, segments=segments)
        self.save()
        return new

    def _unlocked(self, segment_id: str) -> Segment:
        segment = self.find(segment_id)
        if segment.locked:
            raise SettingsError(f"Segment {segment_id} is locked (its take is kept); unlock it first.")
        return segment

    def _check_fits(self, text: str, voice: "CastVoice") -> None:
        if estimate_tokens(text, voice.tokens_per_char) > voice.max_tokens:
            limit = int(voice.max_tokens / voice.tokens_per_char)
            raise TextTooLongError(f"The text is too long for one segment of {voice.name}; keep it under about "
                                   f"{limit} characters.")

    def edit_segment(self, segment_id: str, text: str) -> Segment:
        """Replace a segment's text as the user typed it (pronunciations and normalization are applied);
        its takes start again from take 0, so only this segment is rendered again.

        TextTooLongError when the text needs more speech tokens than its voice's segment budget.
        """
        segment = self._unlocked(segment_id)
        text = normalize(apply_pronunciations(text, self.settings.pronunciations), language=self.settings.language)
        if not text:
            raise TextTooLongError("A segment cannot be empty; delete its text in the chapter source instead.")
        self._check_fits(text, self.voice_of(segment))
        user = tuple(dict.fromkeys(segment.user + ("text",)))
        return self._replace(segment_id, text=text, takes=1, chosen=0, planned=segment.planned or segment.text, user=user)

    def new_take(self, segment_id: str) -> Segment:
        """Ask for one more take of a segment (a new seed) and choose it; it is pending until rendered."""
        segment = self._unlocked(segment_id)
        return self._replace(segment_id, takes=segment.takes + 1, chosen=segment.takes)

    def choose_take(self, segment_id: str, take: int) -> Segment:
        if not 0 <= take < self._unlocked(segment_id).takes:
            raise SettingsError(f"Segment {segment_id} has no take {take + 1}.")
        return self._replace(segment_id, chosen=take)

    def set_voice(self, segment_ids: Iterable[str], key: str) -> list[Segment]:
        """Give these segments to the cast voice `key`: only they change take keys (rendered again).
        Checked first (unknown voice, locked segment, text over that voice's budget); nothing changes on error."""
        voice = self.cast.get(key)
        segments = [self._unlocked(i) for i in dict.fromkeys(segment_ids)]
        for segment in segments:
            self._check_fits(segment.text, voice)
        return self._update(segments, lambda s: dataclasses.replace(
            s, voice=key, takes=1 if s.voice != key else s.takes, chosen=0 if s.voice != key else s.chosen,
            user=tuple(dict.fromkeys(s.user + ("voice",)))))

    def set_pauses(self, segment_ids: Iterable[str], *, before: float | None = None,
                   after: float | None = None) -> list[Segment]:
        """Set the silence before and/or after these segments (s, 0..60); takes are kept (pauses are not in them)."""
        for value in (before, after):
            if value is not None and not 0 <= value <= MAX_PAUSE_SECONDS:
                raise SettingsError(f"A pause must be 0 to {MAX_PAUSE_SECONDS:g} seconds, got {value:g}.")
        segments = [self.find(i) for i in dict.fromkeys(segment_ids)]
        return self._update(segments, lambda s: dataclasses.replace(
            s, pause_before=s.pause_before if before is None else float(before),
            pause_after=s.pause_after if after is None else float(after),
            user=tuple(dict.fromkeys(s.user + ("pauses",)))))

    def lock(self, segment_ids: Iterable[str], locked: bool = True) -> list[Segment]:
        """Keep (locked) or release the chosen take of these segments. A locked segment keeps that take
        through settings changes and re-planning, and refuses edits, new takes and voice changes."""
        segments = [self.find(i) for i in dict.fromkeys(segment_ids)]
        if locked:
            unrendered = [s.id for s in segments if self.record(s) is None]
            if unrendered:
                raise SettingsError(f"Segment {unrendered[0]} has no take yet; render it before locking it.")
        return self._update(segments, lambda s: dataclasses.replace(
            s, locked=(s.locked or self.take_key(s)) if locked else ""))

    def _update(self, segments: Sequence[Segment], change) -> list[Segment]:
        wanted = {s.id for s in segments}
        changed: list[Segment] = []
        for ci, chapter in enumerate(self.chapters):
            new = tuple(change(s) if s.id in wanted else s for s in chapter.segments)
            changed += [s for s in new if s.id in wanted]
            self.chapters[ci] = dataclasses.replace(chapter, segments=new)
        self.save()
        return changed

    # ---------------------------------------------------------------- cast

    def add_voice(self, saved: SavedVoice, *, max_tokens: int, tokens_per_char: float, name: str | None = None) -> "CastVoice":
        """Copy a library voice into the cast (budget from engine.book.narration.segment_budget)."""
        member = self.cast.add(saved, max_tokens=max_tokens, tokens_per_char=tokens_per_char, name=name)
        self.save()
        return member

    def rename_voice(self, key: str, name: str) -> "CastVoice":
        """Rename a cast voice; the chapters whose markup used the old name are changed to the new one."""
        from engine.text.cast_markup import rename_in_markup

        old = self.cast.get(key).name
        member = self.cast.rename(key, name)
        self.chapters = [dataclasses.replace(c, source=rename_in_markup(c.source, old, member.name))
                         for c in self.chapters]
        self.save()
        return member

    def voice_users(self, key: str) -> list[str]:
        """What uses a cast voice: segment ids, "chapter N" (its voice) and "dialogue" (the dialogue rule)."""
        users = [s.id for _, s in self.segments(list(range(len(self.chapters)))) if s.voice == key]
        users += [f"chapter {i + 1}" for i, c in enumerate(self.chapters) if c.voice == key]
        return users + (["dialogue"] if self.settings.dialogue_voice == key else [])

    def remove_voice(self, key: str) -> None:
        """Remove a cast voice; ProjectError naming what still uses it (nothing is removed then)."""
        from engine.text.cast_markup import voice_names_used

        name = self.cast.get(key).name
        users = self.voice_users(key)
        markup = [i + 1 for i, c in enumerate(self.chapters) if name.casefold() in voice_names_used(c.source)]
        if users or markup:
            where = ", ".join(users[:5] + [f"markup in chapter {n}" for n in markup[:3]])
            raise ProjectError(f"{name} is still used ({where}{' …' if len(users) > 5 else ''}); give those segments "
                               "another voice first.")
        self.cast.remove(key)
        self.save()

    # ---------------------------------------------------------------- chapters and re-planning

    def planned(self, index: int) -> ProjectChapter:
        """Chapter `index` planned again from its source with the current settings and cast, carrying over
        what the user made of its segments (engine.book.plan.carry_over). Not saved."""
        chapter = self.chapters[index]
        prefix = f"{index + 1}."
        fresh = plan_chapter(chapter.title, index, chapter.source, self.settings, self.max_tokens, self.tokens_per_char,
                             names=self.cast.names(), budgets=self.cast.budgets(), default_voice=chapter.voice)
        return dataclasses.replace(chapter, segments=carry_over(chapter.segments, fresh, prefix))

    def replan(self, chapters: Iterable[int] | None = None) -> list[str]:
        """Plan these chapters (default all) again; returns the ids of the segments whose chosen take
        changed (they are pending unless an old take matches). InputTextError leaves the plan as it was."""
        indices = list(range(len(self.chapters))) if chapters is None else list(chapters)
        return self._replan(indices, {s.id: self.take_key(s) for i in indices for s in self.chapters[i].segments})

    def _replan(self, indices: list[int], before: dict[str, str]) -> list[str]:
        new = {i: self.planned(i) for i in indices}
        for i, chapter in new.items():
            self.chapters[i] = chapter
        self.save()
        return [s.id for i in indices for s in self.chapters[i].segments if before.get(s.id) != self.take_key(s)]

    def changes_with(self, settings: NarrationSettings) -> list[tuple[str, str, str]]:
        """What update_settings(settings) would re-render, without changing anything: (segment id, its
        text now, its text then) for each segment whose chosen take would change (new segments: "" now).
        InputTextError when the settings cannot plan the book (e.g. a broken rule)."""
        kept_settings, kept_chapters = self.settings, list(self.chapters)
        everything = list(range(len(self.chapters)))
        before = {s.id: (self.take_key(s), s.text) for _, s in self.segments(everything)}
        try:
            self.settings = settings
            if settings.plan_fields() != kept_settings.plan_fields():
                self.chapters = [self.planned(i) for i in everything]
            return [(s.id, before.get(s.id, ("", ""))[1], s.text) for _, s in self.segments(everything)
                    if before.get(s.id, ("", ""))[0] != self.take_key(s)]
        finally:
            self.settings, self.chapters = kept_settings, kept_chapters

    def set_chapter_voice(self, index: int, key: str) -> list[str]:
        """The voice of a chapter's unmarked text; re-plans it (see replan)."""
        self.cast.get(key)
        old = self.chapters[index]
        self.chapters[index] = dataclasses.replace(old, voice=key)
        try:
            return self.replan([index])
        except InputTextError:
            self.chapters[index] = old
            raise

    def update_settings(self, settings: NarrationSettings) -> list[str]:
        """Change the project's settings. When a planning field (pronunciations, pauses, language,
        dialogue voice) changed, every chapter is planned again; returns the segments whose chosen
        take changed (see replan). Nothing is changed when the new plan fails (InputTextError)."""
        if settings.dialogue_voice is not None:
            self.cast.get(settings.dialogue_voice)
        old, everything = self.settings, list(range(len(self.chapters)))
        before = {s.id: self.take_key(s) for _, s in self.segments(everything)}
        self.settings = settings
        try:
            if settings.plan_fields() != old.plan_fields():
                return self._replan(everything, before)
            self.save()
            return [s.id for _, s in self.segments(everything) if before[s.id] != self.take_key(s)]
        except InputTextError:
            self.settings = old
            raise

    def select_chapters(self, indices: list[int]) -> None:
        """Narrate and export exactly these chapters (0-based)."""
        wanted = set(indices)
        if not wanted <= set(range(len(self.chapters))):
            raise SettingsError(f"Chapters must be 1 to {len(self.chapters)}.")
        self.chapters = [dataclasses.replace(c, selected=i in wanted) for i, c in enumerate(self.chapters)]
        self.save()


__all__ = ["NARRATOR", "ProjectEdits"]
