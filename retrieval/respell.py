"""Sound-alike respelling of misrecognised words against the catalog's own vocabulary.

Speech recognisers split and swap words by sound: "why fi" for "wifi", "flesh light" for
"flashlight", "equal eyes er" for "equalizer", "what thyme is it", "send a massage". The
encoder and BM25 both miss these, because the written forms share few characters. This
module maps words to a phonetic key (a simplified Metaphone: consonant skeleton, first
vowel kept, `th`/`sh`/`ph`/soft `c` folded) and rewrites a word, or two or three adjacent
words joined, to the most frequent catalog word with the same key:

- a word the catalog never uses is rewritten when some catalog word sounds the same;
- adjacent words are joined when their letters spell a catalog word ("blue tooth"), or
  when their joined key matches a catalog word of at least `MIN_JOIN_KEY` key letters and
  one of them is unknown, or the key is long enough to be distinctive ("on install" ->
  "uninstall", "what's up" -> "whatsapp").

The retriever scores the respelled text beside the original and keeps the better match
for each tool, so a wrong respelling costs little. Pure functions; imports nothing from
the project.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

_WORD = re.compile(r"[a-z0-9']+")
_VOWELS = frozenset("aeiouy")
MIN_JOIN_KEY = 5  # joined known words must match a key this long ("on blue" != "enable")
MIN_WORD_LEN = 3  # catalog words shorter than this are never respelling targets
_FOLDS = (("tch", "X"), ("sch", "SK"), ("ph", "F"), ("th", "0"), ("sh", "X"), ("ch", "X"),
          ("ck", "K"), ("gh", ""), ("dg", "J"), ("qu", "KW"), ("wh", "W"), ("wr", "R"),
          ("kn", "N"), ("x", "KS"), ("q", "K"), ("z", "S"))


def phonetic_key(word: str) -> str:
    """A coarse sound skeleton of one word: 'wifi' and 'whyfi' -> 'WF', 'flesh' and 'flash'
    -> 'FLX', 'equalizer' and 'equaleyeser' -> 'AKLSR'."""
    w = "".join(ch for ch in word.lower() if ch.isalpha())
    if not w:
        return ""
    first_vowel = w[0] in _VOWELS
    for src, dst in _FOLDS:
        w = w.replace(src, dst)
    w = re.sub(r"c(?=[eiy])", "S", w).replace("c", "K")
    out = ["A"] if first_vowel else []
    for ch in w[1:] if first_vowel else w:
        if ch in _VOWELS or ch == "h":
            continue
        ch = ch.upper()
        if not out or out[-1] != ch:
            out.append(ch)
    return "".join(out)


class Respeller:
    """Rewrites sound-alike words of a text to catalog words (see module docstring)."""

    def __init__(self, texts: Iterable[str]) -> None:
        counts = Counter(w for t in texts for w in _WORD.findall(t.lower()))
        self.known = frozenset(counts)
        by_key: dict[str, tuple[int, str]] = {}
        for word, n in counts.items():
            if len(word) < MIN_WORD_LEN or not word.isalpha():
                continue
            key = phonetic_key(word)
            if key and (key not in by_key or n > by_key[key][0]):
                by_key[key] = (n, word)
        self._by_key = {k: w for k, (_, w) in by_key.items()}

    def respell(self, text: str) -> str | None:
        """The respelled text, or None when nothing sounds like a different catalog word."""
        words = _WORD.findall(text.lower())
        out: list[str] = []
        i, changed = 0, False
        while i < len(words):
            spelled = self._spelled(words, i)
            joined = (spelled if spelled is None or spelled[1] > 0
                      else None)  # a spelled word starts at i + 1: leave word i whole
            if spelled is None:
                joined = self._join(words, i)
            if joined is not None:
                word, used = joined
                out.append(word)
                i += used
                changed = True
                continue
            single = self._single(words[i])
            out.append(single or words[i])
            changed = changed or single is not None
            i += 1
        return " ".join(out) if changed else None

    def _single(self, word: str) -> str | None:
        if word in self.known or not word.isalpha() or len(word) < MIN_WORD_LEN:
            return None
        target = self._by_key.get(phonetic_key(word))
        return target if target and target != word else None

    def _spelled(self, words: list[str], i: int) -> tuple[str, int] | None:
        """Two or three words from i whose letters spell a catalog word ("blue tooth");
        ("", 0) when such words start at i + 1, so "on blue tooth" joins the right pair."""
        for start in (i, i + 1):
            for n in (3, 2):
                parts = words[start:start + n]
                letters = "".join(parts)
                if (len(parts) == n and letters in self.known and letters.isalpha()
                        and len(letters) >= MIN_WORD_LEN + 2):
                    return (letters, n) if start == i else ("", 0)
        return None

    def _join(self, words: list[str], i: int) -> tuple[str, int] | None:
        """Two or three words starting at i that together sound like one catalog word
        (longest first)."""
        for n in (3, 2):
            parts = words[i:i + n]
            if len(parts) < n or not all(p.isalpha() for p in parts):
                continue
            key = phonetic_key("".join(parts))
            target = self._by_key.get(key)
            if target is None or target in parts:
                continue
            unknown = any(p not in self.known for p in parts)
            if (unknown and len(key) >= 2) or len(key) >= MIN_JOIN_KEY:
                return target, n
        return None
