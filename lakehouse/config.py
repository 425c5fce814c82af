"""Settings of the Delta lake: where tables live and how the sink batches."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LakeConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    root: str = Field(".toolrec/lake", description="Local directory or s3://bucket/prefix.")
    storage_options: dict[str, str] = Field(
        default_factory=dict, description="delta-rs storage options (AWS_* for s3://)."
    )
    batch_max_rows: int = Field(5000, ge=1, description="Flush a micro-batch at this size…")
    batch_max_seconds: float = Field(2.0, gt=0, description="…or after this long.")
