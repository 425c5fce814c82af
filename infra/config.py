"""Settings of the local infrastructure (`toolrec infra`): where state lives and how the
local tansu broker and SeaweedFS object store are started."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class InfraConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    state_dir: Path = Field(Path(".toolrec"), description="Pid files, logs, local data.")
    broker_port: int = Field(19092, ge=0, le=65535, description="0 picks a free port.")
    storage: Literal["memory", "s3"] = Field(
        "memory", description="'memory' is fast and volatile; 's3' is durable (SeaweedFS)."
    )
    s3_port: int = Field(18333, ge=0, le=65535, description="SeaweedFS S3 port; 0 = free port.")
    s3_bucket: str = "tansu"
    ready_timeout_s: float = Field(30.0, gt=0, le=600)
