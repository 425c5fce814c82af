"""The project's exception tree. Every error names what happened, the value and the fix.

Every error raised on purpose derives from `ToolrecError` (the CLI turns one into a clean
message and exit code 1). The stages' own subclasses live next to their code:

ToolrecError
├── ConfigError            a setting is missing or out of range
├── InfraError             a local broker / object store failed to start or stop
├── LockBusyError          another process holds a file lock (toolrec.durable.FileLock)
├── ValidationError        an event or request is malformed (names the field; DLQ reason)
├── StreamError            the streaming stage cannot go on
├── LakeError              a Delta table is missing, unreadable or would be corrupted
├── RetrievalError         the tool catalog or index is invalid
├── GeneratorError         the generator cannot run
│   └── ModelFilesError        a model or adapter directory is missing or corrupt
│                              (generator.loading)
├── TrainerError           training, evaluation or the registry failed
│   ├── InsufficientDataError  too few samples to train or to gate (trainer.data)
│   ├── RefreshCancelled       a refresh was stopped on request (trainer.refresh)
│   ├── RegistryError          the registry is unreadable or refuses the change
│   ├── AdapterError           an adapter does not match its manifest
│   └── AnnounceError          the champion changed but was not announced
│                              (these three here: lakehouse.models and serving raise them too)
├── ServingError           the API cannot serve (no model, failed swap)
│   ├── Overloaded, NotReady   answered 503 with Retry-After (serving.engine)
│   ├── NothingToRollBack      (serving.hotswap)
│   ├── BodyTooLarge, Conflict, AdminDenied (serving.errors)
│   ├── SpoolError             the local event spool is unusable (serving.spool)
│   └── SendFailed             internal: the spool sender retries (serving.publisher)
└── LoopError              the simulation, demo or experiment cannot go on (loop.errors)
    └── ApiError               the recommendation API answered with an error

Only `lakehouse.writer._StaleSnapshot` is a plain `Exception`: private control flow (a
retried optimistic commit) that never leaves its module.
"""

from __future__ import annotations


class ToolrecError(Exception):
    """Root of every error raised on purpose by toolrec."""


class ConfigError(ToolrecError):
    pass


class InfraError(ToolrecError):
    pass


class LockBusyError(ToolrecError):
    """Another process holds the lock (the message names the lock, its holder and the fix)."""


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


class RegistryError(TrainerError):
    """The registry table is unreadable or an operation is not allowed in its state."""


class AdapterError(TrainerError):
    """A model's adapter directory is missing or does not match its manifest."""


class AnnounceError(TrainerError):
    """The registry changed but the announcement on toolrec.models failed."""


class ServingError(ToolrecError):
    pass
