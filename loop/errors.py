"""Errors of the loop stage (subclasses of the project's root `ToolrecError`)."""

from __future__ import annotations

from toolrec.errors import ToolrecError


class LoopError(ToolrecError):
    """The simulation, demo or experiment cannot go on (names what failed and the fix)."""


class ApiError(LoopError):
    """The recommendation API answered with an error or not at all."""
