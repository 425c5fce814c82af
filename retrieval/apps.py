"""App names in queries, and the query made generic ("install instagram" → "install this
app").

Tools that take an app as a parameter (uninstall, notifications of an app, app timer ...)
are described generically, while an app's own launch tool is all about its name; so a
query naming an app is pulled towards launching it. Retrieval therefore also encodes the
query with the app name replaced by "this app" and lets app-parameter tools match that
version (slot abstraction). Names come from the catalog's `apps.open.*` tools; names that
are everyday words ("signal", "zoom", "keep") count only in their full form ("google keep").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from retrieval.catalog import Catalog

GENERIC = "this app"
# names that are ordinary words: only their multi-word form is taken as an app name
COMMON_WORDS = frozenset(
    [
        "signal", "zoom", "keep", "outlook", "teams", "meet", "news", "fit", "maps", "docs",
        "booking", "x", "messenger", "bank", "banking", "translate", "calculator", "photos",
        "files", "home", "recorder", "settings", "amazon", "shopping"
    ]
)
ALIASES = {"apps.open.x": ("twitter",), "apps.open.candy_crush": ("candy crush",),
           "apps.open.booking": ("booking.com",), "apps.open.amazon": ("amazon app",)}
_PREFIXES = ("google ", "microsoft ", "amazon ")


@dataclass(frozen=True)
class AppNames:
    """A compiled pattern of app names, longest first."""

    pattern: re.Pattern[str] | None

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> AppNames:
        names: set[str] = set()
        for tool in catalog.tools:
            if not tool.id.startswith("apps.open.") or tool.action.kind != "launch":
                continue
            full = re.sub(r"\s*\(.*\)", "", tool.name.removeprefix("Open ")).lower()
            names.update(_forms(full))
            names.update(ALIASES.get(tool.id, ()))
        names = {n for n in names if len(n) > 2}
        if not names:
            return cls(None)
        alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        return cls(re.compile(rf"(?<![\w.])(?:{alternatives})(?![\w])(?:\s+app\b)?",
                              re.IGNORECASE))

    def find(self, text: str) -> str | None:
        """The first app name mentioned in the text, if any."""
        match = self.pattern.search(text) if self.pattern else None
        return match.group(0) if match else None

    def generic(self, text: str) -> str | None:
        """The text with app names replaced by "this app"; None when it names no app."""
        if self.pattern is None or not self.pattern.search(text):
            return None
        return self.pattern.sub(GENERIC, text)


def _forms(full: str) -> set[str]:
    forms = set()
    if full not in COMMON_WORDS:
        forms.add(full)
    for prefix in _PREFIXES:
        if full.startswith(prefix):
            rest = full.removeprefix(prefix)
            if rest not in COMMON_WORDS:
                forms.add(rest)
            forms.add(full)
    return forms
