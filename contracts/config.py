"""Settings of the privacy policy every stage applies (`[privacy]` in the TOML file).

The pseudonymization key itself stays where the producers read it
(`streams.telemetry.user_id_key`); this section holds what is redacted from free text and
how long each store keeps rows about a person.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from contracts.privacy import PiiPolicy

__all__ = ["PrivacyConfig", "RetentionConfig"]


class RetentionConfig(BaseModel):
    """How long each store keeps rows, in days (0: keep until forgotten). Applied by
    `toolrec privacy retention` (delete older rows, then vacuum)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    events_days: int = Field(30, ge=0, le=3650, description="Raw impressions and feedback.")
    samples_days: int = Field(365, ge=0, le=3650, description="Training samples.")
    privacy_audit_days: int = Field(
        0, ge=0, le=3650, description="Forget-audit rows (pseudonym + time only)."
    )


class PrivacyConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pii: PiiPolicy = Field(default_factory=PiiPolicy, description="Free-text redaction.")
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
