"""Settings of the streaming stage: the Faust worker, the attribution window, event limits
and the calibration constants of DESIGN.md §4."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class CalibrationConfig(BaseModel):
    """Constants of the calibration. `form` picks the weighting: "ours" (DESIGN.md §4, this
    project's own constants) or "toolrec" (§4b, the form reported for ToolRec; its
    `toolrec_*` constants are the reported ones where reported, ours where not).
    `activity_enabled` / `tool_enabled` / `position_enabled` switch the user-level,
    tool-level and position terms in both forms (`streams.calibration`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    form: Literal["ours", "toolrec"] = Field(
        "ours", description="ours: DESIGN.md §4 (product of clipped terms); toolrec: §4b "
        "(tanh user weight, frequency-aware tool weight, max/min combination)."
    )
    half_life_days: float = Field(14.0, gt=0, description="Half-life of decayed user counts.")
    kappa: float = Field(20.0, ge=0, description="Prior strength pulling p_u toward p̄.")
    prior_ctr: float = Field(0.1, gt=0, lt=1, description="p̄ before any traffic is seen.")
    global_prior_strength: float = Field(
        100.0, ge=0, description="Pseudo-impressions of prior_ctr in the estimate of p̄."
    )
    gamma: float = Field(0.5, ge=0, le=4, description="Exponent of the activity ratio ρ_u.")
    a_min: float = Field(0.25, gt=0, description="Lower clip of w_activity.")
    a_max: float = Field(4.0, gt=0, description="Upper clip of w_activity.")
    activity_enabled: bool = Field(True, description="Off: w_activity = 1.")
    tool_enabled: bool = Field(True, description="Off: w_tool = 1.")
    lambda_tool: float = Field(2.0, gt=0, description="w_tool of a click on a tool query.")
    lambda_exec: float = Field(1.5, gt=0, description="Extra factor when the tool executed.")
    position_enabled: bool = Field(False, description="On: the examination-propensity term.")
    theta_min: float = Field(0.1, gt=0, le=1, description="Lower clip of propensity θ_k.")
    w_min: float = Field(0.05, gt=0, description="Lower clip of the final weight.")
    w_max: float = Field(10.0, gt=0, description="Upper clip of the final weight.")
    toolrec_alpha: float = Field(
        0.25, ge=0, lt=1, description="ToolRec α: w_u = 1 ∓ α·tanh((uctr − μ)/s) (reported)."
    )
    toolrec_quantile: float = Field(
        0.75, gt=0.5, lt=1, description="μ = this quantile of per-user CTR (reported: the "
        "upper quartile); s uses the spread between it and its mirror (1 − q)."
    )
    toolrec_scale: float | None = Field(
        None, gt=0, description="ToolRec s (not reported). None: the online interquartile "
        "range of per-user CTR, floored at toolrec_scale_min."
    )
    toolrec_scale_min: float = Field(
        0.005, gt=0, le=1, description="Lower bound of s (a sketch with all users in one bin "
        "has a zero interquartile range)."
    )
    toolrec_min_users: int = Field(
        10, ge=1, description="Users in the partition's CTR sketch before μ and s are read "
        "from it; before that μ = p̄ and s = p̄/2."
    )
    toolrec_sketch_bins: int = Field(
        1000, ge=10, le=100_000, description="Equal bins over [0, 1] of the per-user CTR sketch."
    )
    toolrec_gamma: float = Field(
        1.25, ge=0, description="ToolRec γ: w_s = (1 + γ)^(p^k) for a clicked tool query "
        "(reported)."
    )
    toolrec_k: float = Field(3.0, gt=0, description="ToolRec k of p^k (reported).")

    @model_validator(mode="after")
    def _ranges(self) -> CalibrationConfig:
        if self.a_min > self.a_max:
            raise ValueError(f"a_min ({self.a_min}) must be <= a_max ({self.a_max})")
        if self.w_min > self.w_max:
            raise ValueError(f"w_min ({self.w_min}) must be <= w_max ({self.w_max})")
        return self


class TelemetryConfig(BaseModel):
    """The client-side telemetry producer (also used by serving for impressions)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id_key: SecretStr | None = Field(
        None,
        description="HMAC key that pseudonymizes raw user ids. Unset: a random key is made "
        "once in <state_dir>/secrets/user_id_key (fine for one machine, not for a fleet).",
    )
    linger_ms: int = Field(10, ge=0, le=1000, description="Batching delay of the producer.")
    batch_size: int = Field(65536, ge=1024, description="Producer batch size in bytes.")
    retries: int = Field(10, ge=0, le=1000)
    request_timeout_ms: int = Field(30000, ge=1000)


class StreamsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    app_id: str = Field("toolrec-streams", description="Faust app id = consumer group.")
    data_dir: Path = Field(Path(".toolrec/streams"), description="Faust's working directory.")
    attribution_window_s: float = Field(600.0, gt=0, description="Clicks count this long.")
    allowed_lateness_s: float = Field(60.0, ge=0, description="Grace after the window.")
    tick_interval_s: float = Field(
        1.0, gt=0, le=60, description="How often an idle partition's clock advances."
    )
    producer_linger_ms: float = Field(
        5.0, ge=0, le=1000, description="Batching delay of the worker's writes."
    )
    close_interval_s: float = Field(
        0.0, ge=0, le=60, description="At most one batch of window closes per this interval "
        "and partition. 0: what is due closes in every batch (the batch cadence, "
        "batch_within_s, bounds how often; measured no dearer per event, issue 12); a value "
        "adds up to itself to click → Delta."
    )
    stats_interval_s: float = Field(10.0, gt=0, description="Progress log line interval.")
    max_event_bytes: int = Field(65536, ge=1024, description="Larger events go to the DLQ.")
    max_suggestions: int = Field(10, ge=1, le=50)
    protect_events: bool = Field(
        True, description="Pseudonymize every identifier and redact an impression's text "
        "(the [privacy.pii] policy) of events whose ids are not verified pseudonyms, i.e. "
        "from producers that write straight to Kafka, before any state or sample holds "
        "them. Off only for tests of the window logic that assert on literal ids."
    )
    max_text_chars: int = Field(2000, ge=16)
    commit_interval_s: float = Field(1.0, gt=0, le=60)
    batch_max_events: int = Field(
        2000, ge=1, le=100_000, description="Events per worker batch (Faust take_events): "
        "each changed state key is written once per batch."
    )
    batch_within_s: float = Field(
        0.2, gt=0, le=10, description="A batch is handled after this long even if not full."
    )
    engine: Literal["inline", "process"] = Field(
        "process", description="Where the worker's windows, state and outputs are computed: "
        "'process' in a child process with its own producer, so Faust's per-message "
        "delivery of the next batch overlaps the work on the last (streams.engine; a worker "
        "then uses up to ~1.5 cores, 1.2-1.7x the events/s of 'inline' on 2 cores); "
        "'inline' in Faust's event loop, one core per worker: the better use of a fixed "
        "core budget shared by several workers (issue 12, README sizing)."
    )
    engine_inflight_batches: int = Field(
        2, ge=1, le=16, description="With engine='process': batches handed to the child "
        "and not yet done before the agent waits (each is at most batch_max_events)."
    )
    session_timeout_s: float = Field(6.0, gt=0, description="tansu joins take ~half of it.")
    # -- hostile input (streams.window / streams.app docstrings: the rules) --------------
    max_future_skew_s: float = Field(
        300.0, ge=0, le=86_400, description="An event whose ts is more than this ahead of "
        "its arrival at the broker goes to the DLQ (future_timestamp). 5 min tolerates phone "
        "clocks; the watermark never runs ahead of arrival times anyway."
    )
    event_horizon_s: float = Field(
        7 * 86_400.0, gt=0, description="An event whose ts is more than this behind its "
        "arrival goes to the DLQ (stale_timestamp). 7 days: far beyond any window, spool or "
        "outage this project plans for."
    )
    spool_grace_s: float = Field(
        3600.0, ge=0, description="An event that reached the broker up to this long after "
        "its ts (held in serving's spool through an outage) has its window anchored at its "
        "arrival, so it is not dead-lettered as late; 1 h covers the broker outages the "
        "fault drills take. Older events are judged by their own ts."
    )
    max_orphans_per_user: int = Field(
        32, ge=1, le=10_000, description="Feedback held per user for impressions not seen "
        "yet; more is orphan_overflow (DLQ). A click overtakes its impression by a few events "
        "at most, so 32 is ample for real users and cheap under a flood."
    )
    max_orphan_bytes_per_user: int = Field(
        16_384, ge=1024, description="Bytes of held feedback per user (≈ 64 feedback events "
        "of ≈ 250 B); more is orphan_overflow (DLQ)."
    )
    max_closed_per_user: int = Field(
        256, ge=1, description="Recently closed request ids remembered per user (to name a "
        "late click expired_impression); older ones are forgotten (then unknown_impression)."
    )
    max_user_state_bytes: int = Field(
        262_144, ge=4096, description="A user's state record is kept under this (an "
        "impression that would pass it is user_state_full, DLQ). A quarter of Kafka's default "
        "1 MB message limit, so a changelog record can never be refused by the broker."
    )
    calibration: CalibrationConfig = CalibrationConfig()
    telemetry: TelemetryConfig = TelemetryConfig()

    @model_validator(mode="after")
    def _bounds(self) -> StreamsConfig:
        if self.max_user_state_bytes < 2 * self.max_event_bytes:
            raise ValueError(
                f"max_user_state_bytes ({self.max_user_state_bytes}) must be at least twice "
                f"max_event_bytes ({self.max_event_bytes}): a user must fit two impressions"
            )
        if self.spool_grace_s > self.event_horizon_s:
            raise ValueError(
                f"spool_grace_s ({self.spool_grace_s}) must be <= event_horizon_s "
                f"({self.event_horizon_s})"
            )
        return self
