"""Which model serves: the base-version name, version naming and the champion announcement.

The registry (`trainer.registry`) names model versions `version_name(seq)` ("v1", "v2",
...) and `BASE_VERSION` ("base") means the base model without an adapter. A champion change
is announced on `toolrec.models` (key `champion`) as a `ModelAnnouncement`; serving treats
it as a hint and re-reads the registry (`serving.hotswap`).
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

__all__ = [
    "ANNOUNCEMENT_SCHEMA",
    "BASE_VERSION",
    "ModelAnnouncement",
    "parse_announcement",
    "version_name",
]

BASE_VERSION = "base"
ANNOUNCEMENT_SCHEMA = "model-announcement/1"
AnnouncedAction = Literal["promote", "rollback"]


def version_name(seq: int) -> str:
    """The registry's name of its `seq`-th model version (1 → "v1")."""
    if seq < 1:
        raise ValueError(f"model version numbers start at 1, got {seq}")
    return f"v{seq}"


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


def parse_announcement(value: bytes | None) -> ModelAnnouncement | None:
    """The announcement in a `toolrec.models` message, or None when it is not one (serving
    then simply re-reads the registry)."""
    try:
        body = json.loads(value or b"")
        return ModelAnnouncement.model_validate(body)
    except (ValueError, PydanticValidationError):
        return None
