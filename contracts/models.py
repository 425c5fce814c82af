"""Which model serves: the base-version name, version naming, the registry's typed record,
the adapter artifact's manifest and the champion announcement.

The registry (`trainer.registry`, its table read through `lakehouse.models`) names model
versions `version_name(seq)` ("v1", "v2", ...) and `BASE_VERSION` ("base") means the base
model without an adapter. One registry row is a `ModelRecord`. A published adapter
directory holds `manifest.json` (size and SHA-256 of every file; written by
`trainer.registry.publish_artifact`, checked by `verify_artifact` before anything serves
it). A champion change is announced on `toolrec.models` (key `champion`) as a
`ModelAnnouncement`; serving treats it as a hint and re-reads the registry
(`serving.hotswap`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from toolrec.errors import AdapterError

__all__ = [
    "ANNOUNCEMENT_SCHEMA",
    "BASE_VERSION",
    "MANIFEST",
    "ModelAnnouncement",
    "ModelRecord",
    "Status",
    "file_sha256",
    "manifest_sha256",
    "parse_announcement",
    "verify_artifact",
    "version_name",
]

BASE_VERSION = "base"
ANNOUNCEMENT_SCHEMA = "model-announcement/1"
MANIFEST = "manifest.json"
AnnouncedAction = Literal["promote", "rollback"]
Status = Literal["candidate", "champion", "rejected", "retired", "rolled_back"]


def version_name(seq: int) -> str:
    """The registry's name of its `seq`-th model version (1 → "v1")."""
    if seq < 1:
        raise ValueError(f"model version numbers start at 1, got {seq}")
    return f"v{seq}"


@dataclass(frozen=True)
class ModelRecord:
    """One registry row (metrics and decision decoded from JSON; the row's Arrow schema is
    `lakehouse.tables.MODELS_SCHEMA`, the statuses are described in `trainer.registry`)."""

    version: str
    seq: int
    parent: str | None
    base_model: str
    adapter_path: str
    data_version_from: int | None
    data_version_to: int | None
    n_train: int = 0
    n_new: int = 0
    n_replay: int = 0
    n_holdout: int = 0
    n_desirable: int = 0
    n_undesirable: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)
    status: Status = "candidate"
    created_ts: int = 0
    promoted_ts: int | None = None
    updated_ts: int = 0
    note: str | None = None
    # Checksums serving verifies before it loads anything (SHA-256 of the manifest.json of
    # the adapter directory and of the serving-engine conversion made at promotion).
    artifact_sha256: str | None = None
    engine_path: str | None = None
    engine_sha256: str | None = None

    @property
    def adapter_dir(self) -> Path:
        return Path(self.adapter_path)

    @property
    def imported(self) -> bool:
        """Registered from an adapter trained elsewhere (`Registry.import_adapter`)."""
        return "imported_from" in self.metrics

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["metrics"] = json.dumps(self.metrics, sort_keys=True, default=float)
        row["decision"] = json.dumps(self.decision, sort_keys=True, default=str)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ModelRecord:
        values = dict(row)
        values["metrics"] = json.loads(values.get("metrics") or "{}")
        values["decision"] = json.loads(values.get("decision") or "{}")
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a file, read in 1 MiB chunks (the manifest's checksum)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_sha256(artifact_dir: Path) -> str:
    """The SHA-256 of an artifact's `manifest.json` (which holds every file's SHA-256): the
    one checksum the registry row keeps for the whole directory."""
    return file_sha256(Path(artifact_dir) / MANIFEST)


def verify_artifact(adapter_dir: Path, *, version: str = "?") -> Path:
    """Check that `adapter_dir` exists and matches its manifest. Raises AdapterError."""
    adapter_dir = Path(adapter_dir)
    fix = "roll back (`toolrec models rollback`) or promote another version; retrain if needed"
    manifest_path = adapter_dir / MANIFEST
    if not manifest_path.is_file():
        raise AdapterError(
            f"the adapter of {version} is missing: {manifest_path} does not exist; {fix}"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError) as exc:
        raise AdapterError(
            f"the manifest {manifest_path} of {version} is corrupt ({exc}); {fix}"
        ) from exc
    for name, expected in files.items():
        path = adapter_dir / name
        if not path.is_file():
            raise AdapterError(f"the adapter of {version} lacks {path}; {fix}")
        if path.stat().st_size != expected["bytes"] or file_sha256(path) != expected["sha256"]:
            raise AdapterError(
                f"the adapter file {path} of {version} is corrupt (size or SHA-256 differs from "
                f"its manifest); {fix}"
            )
    return adapter_dir


class ModelAnnouncement(BaseModel):
    """A champion change on `toolrec.models`. `version` BASE_VERSION with no adapter means:
    serve the base model. Unknown extra keys are ignored (a newer trainer may add some)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    schema_: Literal["model-announcement/1"] = Field("model-announcement/1", alias="schema")
    version: str = Field(min_length=1)
    adapter_path: str | None = None
    base_model: str | None = None
    action: AnnouncedAction = "promote"
    previous: str | None = None
    ts: int | None = None

    @classmethod
    def of(cls, record: ModelRecord | None, action: AnnouncedAction, *, previous: str | None,
           ts: int) -> ModelAnnouncement:
        """The announcement that `record` (None: the base model) is now the champion."""
        return cls(
            version=record.version if record else BASE_VERSION,
            adapter_path=record.adapter_path if record else None,
            base_model=record.base_model if record else None,
            action=action, previous=previous, ts=ts,
        )

    def to_bytes(self) -> bytes:
        """The JSON message value (`schema` under its wire name)."""
        return self.model_dump_json(by_alias=True).encode()


def parse_announcement(value: bytes | None) -> ModelAnnouncement | None:
    """The announcement in a `toolrec.models` message, or None when it is not one (serving
    then simply re-reads the registry)."""
    try:
        body = json.loads(value or b"")
        return ModelAnnouncement.model_validate(body)
    except (ValueError, PydanticValidationError):
        return None
