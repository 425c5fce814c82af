"""The project's exception tree. Every error names what happened, the value and the fix.

ToolrecError
├── ConfigError            a setting is missing or out of range
├── InfraError             a local broker / object store failed to start or stop
├── ValidationError        an event or request is malformed (names the field)
├── StreamError            the streaming stage cannot go on
├── LakeError              a Delta table is missing, unreadable or would be corrupted
├── RetrievalError         the tool catalog or index is invalid
├── GeneratorError         the generator's model or adapter cannot be loaded
├── TrainerError           training, evaluation or the registry failed
└── ServingError           the API cannot serve (no model, failed swap)
"""

from __future__ import annotations


class ToolrecError(Exception):
    """Root of every error raised on purpose by toolrec."""


class ConfigError(ToolrecError):
    pass


class InfraError(ToolrecError):
    pass


class ValidationError(ToolrecError):
    """A malformed event or request. `field` names the offending field, `reason` is a
    machine-readable code (used as the DLQ reason)."""

    def __init__(self, field: str, reason: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = reason


class StreamError(ToolrecError):
    pass


class LakeError(ToolrecError):
    pass


class RetrievalError(ToolrecError):
    pass


class GeneratorError(ToolrecError):
    pass


class TrainerError(ToolrecError):
    pass


class ServingError(ToolrecError):
    pass
