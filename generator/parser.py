"""Robust parsing of generated text into the suggestions that are shown.

The model is asked for lines `- <query>` (see `generator.prompt`), but a small model also
writes numbered lists, bare lines, echoes of the user's query, repeats, run-on sentences,
pieces of the template, and is sometimes cut off by the token cap. `parse_candidates`
keeps what is usable and records why everything else was dropped:

1. cut at the first chat marker (`<|…`): the turn is over;
2. split on the delimiter, trim, strip a bullet / number / wrapping quotes; a line without
   the `- ` bullet is kept but counted as `malformed`;
3. drop, in this order: `template` (a line that restates an input section),
   `truncated` (last line of an unfinished generation), `empty` (no letter at all),
   `too_long` (characters or words over the limit), `echo` (same words as the query or a
   recent query), `duplicate` (same words as a kept suggestion), `surplus` (beyond n);
4. tag each kept suggestion with its linked tool through `linker.link_many` (one batched
   call per request; retrieval's tool linking).

Several candidate generations (diverse sampling) are merged round-robin before step 3, so
each candidate contributes its best lines first. `ParseResult.format_valid` is the
evaluation gate's format check: at least one suggestion, no malformed line, nothing that
leaked the template, and generations that ended their turn (did not hit the token cap).
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any, Literal, Protocol

from generator.prompt import END_OF_TURN, SUGGESTION_PREFIX, SUGGESTION_SEP, clean_text
from toolrec.errors import RetrievalError

__all__ = [
    "DropReason",
    "Dropped",
    "ParseResult",
    "Suggestion",
    "ToolLinker",
    "normalize",
    "parse_candidates",
    "parse_suggestions",
    "words_key",
]

DropReason = Literal[
    "template", "truncated", "empty", "too_long", "echo", "duplicate", "surplus"
]
FORMAT_BREAKING: frozenset[str] = frozenset({"template", "truncated"})

_BULLET = re.compile(r"^\s*(?:[-*•·]+\s*|\(?\d{1,2}[.)](?:\s+|$))")
_QUOTES = "\"'“”‘’`"
_TEMPLATE_LINE = re.compile(
    r"^\s*(?:query|response|recent queries|context|tools|user|assistant|system)\s*:", re.I
)
_PUNCT = str.maketrans({c: " " for c in string.punctuation + "“”‘’…"})


class ToolLinker(Protocol):
    """Retrieval's tool linking: one result (with `.tool_id` or None, `.score`) per text."""

    def link_many(self, texts: list[str]) -> Sequence[Any]: ...


@dataclass(frozen=True)
class Suggestion:
    """A suggestion to show, with the tool it would invoke (None: a plain query)."""

    text: str
    tool_id: str | None = None
    link_score: float | None = None


@dataclass(frozen=True)
class Dropped:
    text: str
    reason: DropReason


@dataclass(frozen=True)
class ParseResult:
    suggestions: tuple[Suggestion, ...]
    dropped: tuple[Dropped, ...]
    malformed: int  # kept or not, lines that lacked the `- ` bullet
    ended: bool = True  # every generation ended its turn (did not hit the token cap)

    @property
    def format_valid(self) -> bool:
        return (
            bool(self.suggestions)
            and self.ended
            and self.malformed == 0
            and not any(d.reason in FORMAT_BREAKING for d in self.dropped)
        )


@dataclass(frozen=True)
class _Line:
    text: str
    malformed: bool
    truncated: bool
    template: bool


def normalize(text: str) -> str:
    """Comparison key: lower case, punctuation and extra whitespace removed."""
    return " ".join(text.lower().translate(_PUNCT).split())


def words_key(text: str) -> frozenset[str]:
    """What makes two suggestions duplicates here: the same words, in any order."""
    return frozenset(normalize(text).split())


def _strip_line(line: str) -> tuple[str, bool]:
    """(text without bullet / quotes / final period, whether the `- ` bullet was missing)."""
    malformed = not line.startswith(SUGGESTION_PREFIX)
    text = _BULLET.sub("", line, count=1).strip()
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    return clean_text(text.rstrip(".").strip()), malformed


def _ended(raw: str, complete: bool | None) -> bool:
    return complete if complete is not None else END_OF_TURN in raw


def _split(raw: str, complete: bool | None) -> list[_Line]:
    """The candidate lines of one generation (step 1 and 2 of the module docstring)."""
    body = raw.split("<|", 1)[0]
    complete = _ended(raw, complete) or body.endswith(SUGGESTION_SEP)
    pieces = body.replace("\r\n", SUGGESTION_SEP).split(SUGGESTION_SEP)
    lines = []
    for index, piece in enumerate(pieces):
        if not piece.strip():
            continue
        text, malformed = _strip_line(piece.strip())
        is_last = index == len(pieces) - 1
        lines.append(
            _Line(text, malformed, truncated=is_last and not complete,
                  template=bool(_TEMPLATE_LINE.match(piece)))
        )
    return lines


def _reason(
    line: _Line, seen: set[frozenset[str]], avoid: set[frozenset[str]], max_chars: int,
    max_words: int,
) -> DropReason | None:
    if line.template:
        return "template"
    if line.truncated:
        return "truncated"
    key = words_key(line.text)
    if not any(ch.isalpha() for ch in line.text):
        return "empty"
    if len(line.text) > max_chars or len(line.text.split()) > max_words:
        return "too_long"
    if key in avoid:
        return "echo"
    if key in seen:
        return "duplicate"
    return None


def parse_candidates(
    raws: Sequence[str],
    *,
    query: str,
    n: int,
    linker: ToolLinker | None = None,
    avoid: Sequence[str] = (),
    max_chars: int = 64,
    max_words: int = 12,
    complete: Sequence[bool | None] | None = None,
) -> ParseResult:
    """Merge one or more generations into at most `n` clean, tool-tagged suggestions.

    `avoid` are further texts that count as echoes (e.g. the recent session queries);
    `complete[i]` says whether generation i ended on its own (None: inferred from the text).
    """
    flags = list(complete) if complete is not None else [None] * len(raws)
    per_candidate = [_split(raw, flag) for raw, flag in zip(raws, flags, strict=True)]
    merged = [ln for group in zip_longest(*per_candidate) for ln in group if ln is not None]
    avoid_keys = {words_key(t) for t in (query, *avoid)} - {frozenset()}
    seen: set[frozenset[str]] = set()
    kept: list[str] = []
    dropped: list[Dropped] = []
    for line in merged:
        reason = _reason(line, seen, avoid_keys, max_chars, max_words)
        if reason is None and len(kept) >= n:
            reason = "surplus"
        if reason is not None:
            dropped.append(Dropped(line.text, reason))
            continue
        seen.add(words_key(line.text))
        kept.append(line.text)
    return ParseResult(
        suggestions=_link(kept, linker),
        dropped=tuple(dropped),
        malformed=sum(line.malformed for line in merged),
        ended=all(_ended(raw, flag) for raw, flag in zip(raws, flags, strict=True)),
    )


def parse_suggestions(raw: str, *, query: str, n: int, **kwargs: Any) -> ParseResult:
    """`parse_candidates` for a single generation (same keyword arguments)."""
    complete = kwargs.pop("complete", None)
    return parse_candidates([raw], query=query, n=n, complete=[complete], **kwargs)


def _link(texts: list[str], linker: ToolLinker | None) -> tuple[Suggestion, ...]:
    if linker is None or not texts:
        return tuple(Suggestion(text) for text in texts)
    links = linker.link_many(texts)
    if len(links) != len(texts):
        raise RetrievalError(
            f"tool linking returned {len(links)} results for {len(texts)} texts; "
            "link_many must return one LinkResult per text"
        )
    return tuple(
        Suggestion(text, link.tool_id, float(link.score))
        for text, link in zip(texts, links, strict=True)
    )
