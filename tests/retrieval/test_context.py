"""DeviceContext validation and the hints it activates."""

from __future__ import annotations

import pytest

from retrieval.context import DeviceContext, active_hints, app_category, parse_hint, period_of
from toolrec.errors import ValidationError


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"battery": 140}, "context.battery"),
        ({"battery": -1}, "context.battery"),
        ({"hour": 24}, "context.hour"),
        ({"network": "5g"}, "context.network"),
        ({"foreground_app": "not a package"}, "context.foreground_app"),
        ({"locale": "english please"}, "context.locale"),
        ({"colour": "red"}, "context.colour"),
        ({"hour": 23, "time_of_day": "morning"}, "context"),
    ],
)
def test_bad_values_are_rejected_with_the_field(raw: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        DeviceContext.parse(raw)
    assert err.value.field == field
    assert err.value.reason == "invalid_context"


def test_context_is_frozen() -> None:
    ctx = DeviceContext(battery=50)
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error
        ctx.battery = 10  # type: ignore[misc]


def test_hints_from_state() -> None:
    ctx = DeviceContext(battery=8, hour=23, network="offline", headset=True, driving=True,
                        foreground_app="com.spotify.music", locale="de-DE")
    hints = active_hints(ctx)
    assert hints["battery_low"] == pytest.approx(0.5 + 0.5 * (1 - 8 / 20))
    assert {"night", "offline", "headset", "driving", "app:media", "non_english"} <= set(hints)


def test_no_battery_low_while_charging_or_high() -> None:
    assert "battery_low" not in active_hints(DeviceContext(battery=8, charging=True))
    assert "battery_low" not in active_hints(DeviceContext(battery=60))
    assert active_hints(DeviceContext()) == {}


def test_periods_and_app_categories() -> None:
    assert [period_of(h) for h in (7, 12, 19, 2)] == ["morning", "afternoon", "evening", "night"]
    assert DeviceContext(hour=7).period == "morning"
    assert app_category("com.google.android.apps.maps") == "navigation"
    assert app_category("org.example.musicplayer") == "media"
    assert app_category("org.example.unknown") is None


def test_parse_hint_forms() -> None:
    assert parse_hint("night") == ("night", 1.0, False)
    assert parse_hint("app:media:0.5") == ("app:media", 0.5, False)
    assert parse_hint("!charging") == ("charging", 1.0, True)
    with pytest.raises(ValueError, match="unknown context hint"):
        parse_hint("sunny")
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        parse_hint("night:2")
