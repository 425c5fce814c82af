"""Which tools a context hint is *most* about.

A hint shared by many tools (61 list `night`) would otherwise lift all of them equally.
For the hints below, the listed tools keep full weight and every other tool listing the
hint gets SECONDARY; `build()` writes the result into the data as `hint:weight`.
"""

from __future__ import annotations

SECONDARY = 0.5

PRIMARY: dict[str, tuple[str, ...]] = {
    "battery_low": ("battery.saver.on", "battery.extreme_saver", "battery.usage"),
    "charging": (
        "battery.charging_status",
        "battery.adaptive_charging",
        "display.screen_saver.start",
        "system.backup",
    ),
    "night": (
        "dnd.bedtime.on",
        "display.night_light.on",
        "dnd.on",
        "clock.alarm.set",
        "media.play.sleep_sounds",
        "home.scene.good_night",
        "health.sleep_tracking",
        "accessibility.extra_dim.on",
    ),
    "morning": (
        "clock.alarm.dismiss",
        "clock.alarm.snooze",
        "dnd.bedtime.off",
        "calendar.today",
        "apps.news.briefing",
        "navigation.work",
        "navigation.traffic",
    ),
    "evening": (
        "display.night_light.on",
        "dnd.bedtime.on",
        "clock.alarm.set",
        "calendar.tomorrow",
        "home.lights.on",
        "media.play.movie",
    ),
    "headset": (
        "media.play",
        "media.play.playlist",
        "sound.volume.media.up",
        "sound.volume.media.down",
        "media.play.podcast",
        "sound.output.switch",
    ),
    "driving": (
        "navigation.drive",
        "navigation.home",
        "driving.mode.on",
        "dnd.driving",
        "driving.read_messages",
        "media.play",
        "phone.speaker_call",
        "navigation.traffic",
    ),
    "wifi": (
        "system.backup",
        "apps.play_store.updates",
        "security.update",
        "gallery.backup",
        "media.cast",
    ),
    "app:media": (
        "media.pause",
        "media.next",
        "media.like",
        "sound.volume.media.up",
        "sound.volume.media.down",
        "media.now_playing",
    ),
    "app:video": (
        "media.pause",
        "media.subtitles",
        "media.pip",
        "media.cast",
        "display.rotation.auto_on",
    ),
    "app:fitness": (
        "health.workout.stop",
        "health.steps",
        "health.heart_rate",
        "media.play.playlist",
        "clock.stopwatch.lap",
    ),
}


def weigh(tool_id: str, hints: list[str]) -> list[str]:
    """The tool's hints with `:0.5` appended where it is not a primary tool of the hint."""
    out = []
    for hint in hints:
        primary = PRIMARY.get(hint.lstrip("!"))
        if primary is not None and not hint.startswith("!") and tool_id not in primary:
            out.append(f"{hint}:{SECONDARY}")
        else:
            out.append(hint)
    return out
