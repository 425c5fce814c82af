"""Settings of tool retrieval (SysToolKit catalog, encoder, index, fusion weights)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RetrievalConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
