"""A compact vocabulary for writing SysToolKit records by hand.

Each helper returns a plain dict in the catalog's JSON shape, so the spec modules read as
one call per tool. Categories come from the id's first segment; `{param}` placeholders
in an action refer to the tool's declared params (the validator checks both).
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]


def tool(
    tool_id: str,
    name: str,
    description: str,
    examples: list[str],
    action: Json,
    *,
    params: tuple[Json, ...] | list[Json] = (),
    context: tuple[str, ...] | list[str] = (),
    confirm: bool = False,
) -> Json:
    """One catalog record; the category is the first segment of the id."""
    return {
        "id": tool_id,
        "name": name,
        "category": tool_id.split(".", 1)[0],
        "description": description,
        "examples": list(examples),
        "params": list(params),
        "action": action,
        "context": list(context),
        "confirm": confirm,
    }


def p(
    name: str,
    type_: str,
    doc: str,
    *,
    required: bool = False,
    values: list[str] | None = None,
    lo: float | None = None,
    hi: float | None = None,
    unit: str | None = None,
) -> Json:
    """One parameter: type, whether required, allowed values or range."""
    out: Json = {"name": name, "type": type_, "required": required, "description": doc}
    if values is not None:
        out["values"] = values
    if lo is not None:
        out["min"] = lo
    if hi is not None:
        out["max"] = hi
    if unit is not None:
        out["unit"] = unit
    return out


def _clean(d: Json) -> Json:
    return {k: v for k, v in d.items() if v not in (None, {}, [])}


def settings(
    name: str, /, *, uri: str | None = None, extras: Json | None = None, **more: Any
) -> Json:
    """A `Settings.ACTION_<name>` screen (its string value is `android.settings.<name>`);
    extras whose keys are not identifiers go in `extras`, simple ones as keywords."""
    return _clean(
        {
            "kind": "settings",
            "target": f"android.settings.{name}",
            "constant": f"Settings.ACTION_{name}",
            "uri": uri,
            "extras": {**(extras or {}), **more},
        }
    )


def settings_raw(target: str, constant: str, *, uri: str | None = None, **extras: Any) -> Json:
    """A settings screen whose action string does not follow the `android.settings.` rule."""
    return _clean(
        {"kind": "settings", "target": target, "constant": constant, "uri": uri, "extras": extras}
    )


def panel(name: str) -> Json:
    """A `Settings.Panel` bottom sheet (Android 10+)."""
    return {
        "kind": "panel",
        "target": f"android.settings.panel.action.{name}",
        "constant": f"Settings.Panel.ACTION_{name}",
    }


def intent(
    action: str,
    *,
    uri: str | None = None,
    mime: str | None = None,
    package: str | None = None,
    extras: Json | None = None,
) -> Json:
    """An explicit platform or app intent (AlarmClock, MediaStore, CalendarContract, ...)."""
    return _clean(
        {
            "kind": "intent",
            "target": action,
            "uri": uri,
            "mime": mime,
            "package": package,
            "extras": extras or {},
        }
    )


def deeplink(uri: str, package: str | None = None) -> Json:
    """An ACTION_VIEW of a URI handled by an app (`geo:`, `spotify:`, `https://wa.me/`)."""
    return _clean(
        {"kind": "deeplink", "target": "android.intent.action.VIEW", "uri": uri, "package": package}
    )


def launch(package: str) -> Json:
    """The launcher intent of an installed app."""
    return {"kind": "launch", "target": "android.intent.action.MAIN", "package": package}


def api(target: str, /, **args: Any) -> Json:
    """A call into a platform service available to the privileged system assistant."""
    return _clean({"kind": "api", "target": target, "args": args})


def setting(key: str, value: Any) -> Json:
    """A write to a `Settings.System/Secure/Global` key (system toggle)."""
    return {"kind": "setting", "target": key, "args": {"value": value}}


def key(keycode: str) -> Json:
    """A media key dispatched through `AudioManager.dispatchMediaKeyEvent`."""
    return {"kind": "media_key", "target": f"KeyEvent.{keycode}"}


def global_action(name: str) -> Json:
    """An `AccessibilityService.performGlobalAction` system action."""
    return {"kind": "global_action", "target": f"AccessibilityService.GLOBAL_ACTION_{name}"}


def matter(command: str, **args: Any) -> Json:
    """A Matter cluster command sent through the Home APIs to a device or room."""
    return _clean({"kind": "matter", "target": command, "args": args})


def capability(name: str, /, **args: Any) -> Json:
    """A provider-neutral capability (`retrieval/data/actions.json`), resolved at run time
    to an installed app that provides it, never one hard-wired brand."""
    return _clean({"kind": "capability", "target": name, "args": args})
