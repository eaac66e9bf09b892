"""A user pronunciation dictionary: plain whole-word rules and regex rules, applied in order.

Apply it to the user's raw text *before* ``engine.text.pipeline.normalize`` so that a rule written for what the
user sees ("Dr." -> "Drive", "GUI" -> "gooey") wins over the automatic normalization.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from engine.errors import InputTextError

# Scripts written without spaces: a plain rule for such a word matches inside a run of them.
_NO_SPACE_SCRIPT = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]")


@dataclass(frozen=True)
class PronunciationRule:
    """Replace `pattern` by `replacement`.

    Plain rules (regex=False) match `pattern` literally as a whole word (not inside a longer word; a
    Chinese/Japanese edge needs no boundary) and insert `replacement` literally. Regex rules use
    Python `re` syntax; `replacement` may refer to groups (\\1, \\g<name>). Matching ignores case
    unless case_sensitive.
    """

    pattern: str
    replacement: str
    regex: bool = False
    case_sensitive: bool = False

    def __post_init__(self) -> None:
        if not self.pattern:
            raise InputTextError("A pronunciation rule has an empty pattern: type the word to replace.")

    def compiled(self) -> re.Pattern[str]:
        """The rule as a compiled regex; InputTextError naming the rule when it is not valid."""
        flags = 0 if self.case_sensitive else re.IGNORECASE
        if self.regex:
            source = self.pattern
        else:
            start = "" if _NO_SPACE_SCRIPT.match(self.pattern[0]) else r"(?<!\w)"
            end = "" if _NO_SPACE_SCRIPT.match(self.pattern[-1]) else r"(?!\w)"
            source = start + re.escape(self.pattern) + end
        try:
            return re.compile(source, flags)
        except re.error as error:
            raise InputTextError(
                f"Pronunciation rule {self.pattern!r} is not a valid regular expression ({error}); fix or delete it."
            ) from None


def apply_pronunciations(text: str, rules: Iterable[PronunciationRule]) -> str:
    """`text` with every rule applied, in order (a later rule sees the earlier rules' output)."""
    for rule in rules:
        compiled = rule.compiled()
        if rule.regex:
            try:
                text = compiled.sub(rule.replacement, text)
            except (re.error, IndexError) as error:
                raise InputTextError(
                    f"Pronunciation rule {rule.pattern!r} has an invalid replacement {rule.replacement!r} "
                    f"({error}); fix or delete it."
                ) from None
        else:
            text = compiled.sub(lambda _match, new=rule.replacement: new, text)
    return text
