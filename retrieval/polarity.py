"""Polarity contradiction: does the text ask for the opposite side of a toggle?

Embeddings put "turn the lights on" and "turn the lights off" almost on top of each other,
yet a catalog full of on/off, up/down, open/close pairs must tell them apart. A tool's side
comes from the last segment of its id (`home.lights.off` → the "off" side of on/off); the
text's side from phrase patterns. Only contradiction counts (−1): agreement adds nothing,
so a toggle never outranks a neutral tool just because the text says "on" somewhere.
Particles count next to a verb ("turn ... off") or in the "lights off" / "wifi on please"
shapes, but not in idioms: "the plane is taking off", "I'm off to bed" and "set up" point
nowhere. Complaints point to the remedy: "too bright" / "too loud" ask for down, "too
quiet" / "too dark" / "can't hear" for up; "stop ...ing" asks for off. Speech recognisers
often hear "turn off" as "turn of": "turn/switch of" counts as off. Items go on and off
lists, accounts and contacts (add / remove or delete: "cross bread off"), devices connect
and disconnect; "on"/"off" also mean start/stop for a tool with no on/off of its own.
"""

from __future__ import annotations

import re

_V_ONOFF = r"(?:turn|switch|put|flip|power|toggle|shut)"
_V_UPDOWN = r"(?:turn|crank|bump|pump|jack|volume|brightness|sound|music|heat)"
_GAP = r"\b[\w\s']{0,30}?\b"
# "taking off", "set off", "pay off": 'off' that is not a switch (one lookbehind per word)
_OFF_IDIOMS = "".join(
    f"(?<!{w} )" for w in ("taking", "take", "took", "takes", "set", "kick", "pay", "paid",
                           "show", "head", "heading", "dozed", "doze", "drop", "drops", "i'm")
)


_HIGH = r"(?:loud|bright|hot|warm|fast|strong|harsh)"
_LOW = r"(?:quiet|soft|dark|dim|cold|slow|faint|low)"


def _rx(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(patterns))


# pair -> (patterns for side 0, patterns for side 1)
PATTERNS: dict[str, tuple[re.Pattern[str], re.Pattern[str]]] = {
    "on/off": (
        _rx(rf"\b{_V_ONOFF}{_GAP}on\b", r"\bon\s*$",
            r"\bon(?=\s+(in|for|at|please|now|again|and|so)\b|\s*,)",
            r"\b(enable|activate|allow|unblock|unmute)\b"),
        _rx(rf"\b{_V_ONOFF}{_GAP}off\b", rf"{_OFF_IDIOMS}\boff\b(?!\s+to\b)",
            r"\b(disable|deactivate|kill|block)\b", r"\b(turn|switch)\s+of\b",
            r"\bstop\s+\w+ing\b", r"\bno\s+more\b"),
    ),
    "up/down": (
        _rx(rf"\b{_V_UPDOWN}{_GAP}up\b",
            r"\b(louder|raise|increase|higher|brighter|brighten|lighter|boost|max|maximum)\b",
            rf"\btoo\s+{_LOW}\b", r"\b(can't|cannot|can not|barely)\s+(hear|see)\b"),
        _rx(rf"\b{_V_UPDOWN}{_GAP}down\b",
            r"\b(quieter|lower|decrease|softer|dim|dimmer|darker|reduce|min|minimum)\b",
            rf"\btoo\s+{_HIGH}\b"),
    ),
    "open/close": (_rx(r"\b(open|raise)\b"), _rx(r"\b(close|shut|lower)\b")),
    "start/stop": (_rx(r"\b(start|begin|resume)\b"), _rx(r"\b(stop|end|finish)\b")),
    "lock/unlock": (_rx(r"\block\b"), _rx(r"\bunlock\b")),
    "arm/disarm": (_rx(r"\barm\b"), _rx(r"\bdisarm\b")),
    "add/remove": (
        _rx(r"\b(add|adds|adding|put|append|include|save)\b"),
        _rx(r"\b(remove|delete|erase|trash|drop|get\s+rid)\b",
            r"\b(take|cross|tick|strike|scratch)\b[\w\s']{0,30}?\boff\b"),
    ),
    "connect/disconnect": (
        _rx(r"\b(connect|join|pair|hook\s+up|link)\b"),
        _rx(r"\b(disconnect|unlink|unpair|unhook|leave)\b"),
    ),
}
# a pair the text does not name outright takes the side of a pair it does: "turn on the
# dryer" asks to start it, "turn off the dishwasher" to stop it
_IMPLIED = {"start/stop": "on/off"}
# id suffix -> (pair, side)
SUFFIX_SIDE: dict[str, tuple[str, int]] = {
    "on": ("on/off", 0), "auto_on": ("on/off", 0), "off": ("on/off", 1),
    "auto_off": ("on/off", 1), "up": ("up/down", 0), "max": ("up/down", 0),
    "brighten": ("up/down", 0), "down": ("up/down", 1), "min": ("up/down", 1),
    "dim": ("up/down", 1), "open": ("open/close", 0), "close": ("open/close", 1),
    "start": ("start/stop", 0), "stop": ("start/stop", 1), "lock": ("lock/unlock", 0),
    "unlock": ("lock/unlock", 1), "arm": ("arm/disarm", 0), "disarm": ("arm/disarm", 1),
    "add": ("add/remove", 0), "remove": ("add/remove", 1), "delete": ("add/remove", 1),
    "connect": ("connect/disconnect", 0), "disconnect": ("connect/disconnect", 1),
}


def tool_side(tool_id: str) -> tuple[str, int] | None:
    """The (pair, side) a tool stands for, from its id's last segment; None if neutral."""
    return SUFFIX_SIDE.get(tool_id.rsplit(".", 1)[-1])


def text_sides(text: str) -> dict[str, int]:
    """For each pair, the one side the text points to (pairs it points both ways drop)."""
    lowered = text.lower()
    out: dict[str, int] = {}
    for pair, (side0, side1) in PATTERNS.items():
        hits = (bool(side0.search(lowered)), bool(side1.search(lowered)))
        if hits[0] != hits[1]:
            out[pair] = 0 if hits[0] else 1
    for pair, source in _IMPLIED.items():
        if pair not in out and source in out:
            out[pair] = out[source]
    return out


def contradiction(sides: dict[str, int], side: tuple[str, int] | None) -> float:
    """1.0 if the text points to the other side of the tool's pair, else 0."""
    if side is None or side[0] not in sides:
        return 0.0
    return 1.0 if sides[side[0]] != side[1] else 0.0
