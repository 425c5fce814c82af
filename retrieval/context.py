"""Device context: the validated snapshot of the phone's state, and the context hints it
activates.

`DeviceContext` is a frozen pydantic model (serving reuses it to validate requests), every
field optional: unknown state simply activates no hint. `active_hints` turns a context into
`{hint: strength in [0, 1]}`; a tool's `context` list names the hints that make it more
relevant (`battery_low`) or, with a leading `!`, less relevant (`!charging`).

A hint may carry a weight, `hint:0.5` (default 1): how much the hint is about this tool.
`parse_hint` reads the three forms (`night`, `night:0.5`, `!charging`).

Hint vocabulary (this project's definition):

| hint | active when | strength |
|---|---|---|
| `battery_low` | battery ≤ threshold (20) and not charging | 0.5 at the threshold → 1.0 at 0 % |
| `charging` | charging is true | 1 |
| `night` / `morning` / `evening` | hour in [22, 6) / [6, 10) / [18, 22) | 1 |
| `headset` | headphones or a Bluetooth audio device connected | 1 |
| `driving` | driving is true | 1 |
| `wifi` / `cellular` / `offline` | network equals it | 1 |
| `non_english` | locale language is not English | 1 |
| `app:<category>` | the foreground app belongs to the category | 1 |
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from toolrec.errors import ValidationError

TimeOfDay = Literal["morning", "afternoon", "evening", "night"]
Network = Literal["wifi", "cellular", "offline"]

APP_CATEGORIES = (
    "media", "video", "navigation", "messaging", "browser", "camera", "phone", "fitness",
    "reading", "game", "social", "shopping",
)
BASE_HINTS = (
    "battery_low", "charging", "night", "morning", "evening", "headset", "driving",
    "wifi", "cellular", "offline", "non_english",
)
HINTS = frozenset(BASE_HINTS) | {f"app:{c}" for c in APP_CATEGORIES}

# Known foreground packages -> app category. Unknown packages fall back to keyword rules.
_PACKAGE_CATEGORY = {
    "com.spotify.music": "media", "com.google.android.apps.youtube.music": "media",
    "com.audible.application": "media", "au.com.shiftyjelly.pocketcasts": "media",
    "com.google.android.youtube": "video", "com.netflix.mediaclient": "video",
    "com.amazon.avod.thirdpartyclient": "video", "com.disney.disneyplus": "video",
    "tv.twitch.android.app": "video", "com.zhiliaoapp.musically": "video",
    "com.google.android.apps.maps": "navigation", "com.waze": "navigation",
    "com.ubercab": "navigation", "me.lyft.android": "navigation",
    "com.whatsapp": "messaging", "org.telegram.messenger": "messaging",
    "org.thoughtcrime.securesms": "messaging", "com.google.android.apps.messaging": "messaging",
    "com.facebook.orca": "messaging", "com.tencent.mm": "messaging", "com.Slack": "messaging",
    "com.android.chrome": "browser", "org.mozilla.firefox": "browser",
    "com.google.android.GoogleCamera": "camera", "com.android.camera": "camera",
    "com.google.android.dialer": "phone", "com.android.dialer": "phone",
    "com.google.android.apps.fitness": "fitness", "com.strava": "fitness",
    "com.amazon.kindle": "reading", "com.google.android.apps.magazines": "reading",
    "com.instagram.android": "social", "com.facebook.katana": "social",
    "com.twitter.android": "social", "com.reddit.frontpage": "social",
    "com.snapchat.android": "social", "com.amazon.mShop.android.shopping": "shopping",
    "com.ebay.mobile": "shopping", "com.king.candycrushsaga": "game",
}
_KEYWORDS = (
    ("music", "media"), ("podcast", "media"), ("radio", "media"), ("video", "video"),
    ("tv", "video"), ("maps", "navigation"), ("nav", "navigation"), ("messag", "messaging"),
    ("chat", "messaging"), ("browser", "browser"), ("camera", "camera"),
    ("dialer", "phone"), ("fit", "fitness"), ("run", "fitness"), ("book", "reading"),
    ("reader", "reading"), ("news", "reading"), ("game", "game"), ("shop", "shopping"),
)
_PACKAGE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+$")
_WEIGHT_RE = re.compile(r"^-?[0-9.]+$")
_LOCALE_RE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


def period_of(hour: int) -> TimeOfDay:
    """The time-of-day bucket of an hour (this project's buckets)."""
    if 6 <= hour < 10:
        return "morning"
    if 10 <= hour < 18:
        return "afternoon"
    if 18 <= hour < 22:
        return "evening"
    return "night"


def app_category(package: str) -> str | None:
    """The category of a foreground app, from the known table or keywords in its name."""
    if package in _PACKAGE_CATEGORY:
        return _PACKAGE_CATEGORY[package]
    lowered = package.lower()
    return next((cat for word, cat in _KEYWORDS if word in lowered), None)


class DeviceContext(BaseModel):
    """The phone's state at request time. Every field is optional (unknown = no hint)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hour: int | None = Field(None, ge=0, le=23, description="local hour of day, 0-23")
    time_of_day: TimeOfDay | None = Field(
        None, description="morning / afternoon / evening / night; derived from hour if omitted"
    )
    battery: int | None = Field(None, ge=0, le=100, description="battery level in percent")
    charging: bool | None = Field(None, description="plugged in and charging")
    network: Network | None = Field(None, description="wifi, cellular or offline")
    headset: bool | None = Field(None, description="headphones / Bluetooth audio connected")
    foreground_app: str | None = Field(
        None, max_length=200, description="Android package name of the app on screen"
    )
    locale: str | None = Field(None, max_length=35, description="BCP-47 tag, e.g. en-US")
    driving: bool | None = Field(None, description="the user is driving (car / Auto)")

    @field_validator("foreground_app")
    @classmethod
    def _package(cls, value: str | None) -> str | None:
        if value is not None and not _PACKAGE_RE.match(value):
            raise ValueError(
                f"must be an Android package name like com.spotify.music, got {value!r}"
            )
        return value

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        if value is not None and not _LOCALE_RE.match(value):
            raise ValueError(f"must be a BCP-47 locale like en-US, got {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent_time(self) -> DeviceContext:
        if self.hour is not None and self.time_of_day is not None:
            derived = period_of(self.hour)
            if derived != self.time_of_day:
                raise ValueError(
                    f"time_of_day {self.time_of_day!r} contradicts hour {self.hour} "
                    f"(which is {derived!r}); send one of them or make them agree"
                )
        return self

    @property
    def period(self) -> TimeOfDay | None:
        """The time-of-day bucket, from `time_of_day` or derived from `hour`."""
        if self.time_of_day is not None:
            return self.time_of_day
        return period_of(self.hour) if self.hour is not None else None

    @classmethod
    def parse(cls, value: DeviceContext | Mapping[str, Any] | None) -> DeviceContext:
        """Coerce a mapping into a context; toolrec ValidationError names the bad field."""
        if value is None:
            return cls()
        if isinstance(value, DeviceContext):
            return value
        try:
            return cls.model_validate(dict(value))
        except PydanticValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise ValidationError(
                f"context.{loc}" if loc else "context", "invalid_context",
                f"{err['msg']} (got {err.get('input')!r})",
            ) from exc


def active_hints(ctx: DeviceContext, *, battery_low_threshold: int = 20) -> dict[str, float]:
    """The hints this context activates, each with a strength in (0, 1]."""
    hints: dict[str, float] = {}
    if ctx.battery is not None and not ctx.charging and ctx.battery <= battery_low_threshold:
        hints["battery_low"] = 0.5 + 0.5 * (1 - ctx.battery / max(battery_low_threshold, 1))
    flags = {"charging": ctx.charging, "headset": ctx.headset, "driving": ctx.driving}
    hints.update({name: 1.0 for name, on in flags.items() if on})
    if ctx.period in ("night", "morning", "evening"):
        hints[str(ctx.period)] = 1.0
    if ctx.network is not None:
        hints[ctx.network] = 1.0
    if ctx.locale is not None and not ctx.locale.lower().startswith("en"):
        hints["non_english"] = 1.0
    if ctx.foreground_app is not None:
        category = app_category(ctx.foreground_app)
        if category is not None:
            hints[f"app:{category}"] = 1.0
    return hints


def parse_hint(text: str) -> tuple[str, float, bool]:
    """`(name, weight, negative)` of a catalog hint like `night`, `night:0.5`, `!charging`.

    Raises ValueError naming the hint when the name is unknown or the weight not in (0, 1]."""
    negative = text.startswith("!")
    body = text[1:] if negative else text
    head, _, tail = body.rpartition(":")
    name, weight_text = (head, tail) if head and _WEIGHT_RE.match(tail) else (body, "")
    if name not in HINTS:
        raise ValueError(f"unknown context hint {name!r}; known: {sorted(HINTS)}")
    try:
        weight = float(weight_text) if weight_text else 1.0
    except ValueError:
        raise ValueError(f"hint {text!r}: weight {weight_text!r} is not a number") from None
    if not 0 < weight <= 1:
        raise ValueError(f"hint {text!r}: weight must be in (0, 1], got {weight}")
    return name, weight, negative
