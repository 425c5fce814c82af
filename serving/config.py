"""Settings of the recommendation API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ServingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
