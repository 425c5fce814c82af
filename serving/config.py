"""Settings of the recommendation API (`toolrec serve`).

Limits here are the API's contract: the OpenAPI schema is generated from them, so a
request that breaks one gets a 422 naming the field, the limit and the value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from generator.config import DecodingConfig


class ServingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- network
    host: str = Field("127.0.0.1", min_length=1, description="Bind address of the API.")
    port: int = Field(8080, ge=1, le=65535, description="TCP port of the API.")

    # --- request limits (the OpenAPI schema shows them)
    n_default: int | None = Field(
        None, ge=1, le=10,
        description="Suggestions when a request omits n; None: trainer.generator.n_suggestions.",
    )
    n_max: int = Field(8, ge=1, le=10, description="Largest n a request may ask for.")
    max_id_chars: int = Field(
        128, ge=8, le=200, description="Longest user_id / session_id / request_id accepted."
    )
    max_query_chars: int = Field(500, ge=16, le=8000, description="Longest query accepted.")
    max_response_chars: int = Field(
        2000, ge=0, le=20000, description="Longest assistant response accepted."
    )
    max_recent: int = Field(10, ge=0, le=100, description="Most recent_queries accepted.")
    max_body_bytes: int = Field(
        65536, ge=1024, le=16 * 1024 * 1024,
        description="Larger request bodies are refused with 413 before parsing.",
    )

    max_admin_body_bytes: int = Field(
        4096, ge=256, le=1024 * 1024,
        description="Larger bodies on /v1/admin/* are refused with 413 before parsing.",
    )
    max_json_depth: int = Field(
        32, ge=4, le=512,
        description="JSON nested deeper than this is refused with 400 before it is parsed.",
    )
    feedback_max_skew_s: float = Field(
        300.0, ge=0, le=86400,
        description="Feedback whose ts is further ahead of the server clock is refused (422 "
        "ts_out_of_range): one skewed clock must not move the stream's event time.",
    )
    feedback_max_age_s: float = Field(
        7 * 86400.0, ge=60, le=365 * 86400.0,
        description="Feedback whose ts is older than this is refused (422 ts_out_of_range).",
    )
    feedback_rate_per_s: float = Field(
        20.0, ge=0, le=100_000,
        description="Sustained feedback requests per second per client address (token "
        "bucket); beyond it 429 with Retry-After. 0: no limit.",
    )
    feedback_burst: int = Field(
        40, ge=1, le=1_000_000, description="Feedback requests a client may send at once."
    )
    rate_limit_clients: int = Field(
        10_000, ge=1, le=10_000_000,
        description="Client buckets kept in memory (least recently seen dropped first): the "
        "limiter's own memory is bounded whatever the number of addresses.",
    )
    replicas: int = Field(
        1, ge=1, le=10_000,
        description="Serving replicas behind one address. More than 1 (or a non-local broker, "
        "lake or bind address) requires a shared streams.telemetry.user_id_key.",
    )

    # --- generation: queue, batching, threads
    max_pending: int = Field(
        16, ge=1, le=10_000,
        description="Requests admitted to generation (queued + running); more get 503 with "
        "Retry-After instead of waiting without bound.",
    )
    max_batch: int | None = Field(
        None, ge=1, le=32,
        description="Queued requests with the same n and decoding arm generated as one padded "
        "batch; each waits for the slowest. Unset: 4 with the ctranslate2 engine, 1 with "
        "torch (`batch_limit`). Measured on this 2-core CPU: PyTorch fp32 batches cost more "
        "per request; CTranslate2 int8 at concurrency 8 with 4 against 1 in the same run gave "
        "1.37-1.40x the requests/s and 0.64-0.69x the CPU per request on a quiet machine (two "
        "bench.serving runs, 2026-12-02), 0.65-1.24x the requests/s under load 8-12.",
    )
    workers: int | None = Field(
        None, ge=1, le=16,
        description="Worker threads that each take a batch from the one queue and generate "
        "it, so that many batches are in flight. The ctranslate2 engine loads that many "
        "replicas sharing one copy of the weights (`inter_threads`; each replica runs "
        "`engine_threads` intra-op threads; +≈45 MB for the second replica of SmolLM2); a "
        "PyTorch generator runs one generation at a time whatever the count. Unset: 2 with "
        "the ctranslate2 engine (one generation per core), 1 with torch (`worker_count`). "
        "Measured with bench.serving's workers probe on a quiet 2-core machine (load 1.5, "
        "2026-12-02): 2 against 1 at concurrency 8 gave 1.68x the requests/s (3.36 against "
        "2.00) at 1.08x the CPU per request; with no idle core (load 3-7) 0.77-1.09x.",
    )
    queue_timeout_s: float = Field(
        30.0, gt=0, le=600,
        description="A request still queued after this long is answered 503 (Retry-After) "
        "instead of being generated for a client that has likely given up.",
    )
    request_timeout_s: float = Field(
        60.0, gt=0, le=3600,
        description="Longest a recommend request waits for its answer (queue + generation); "
        "beyond it the client gets 503 with Retry-After and nothing is logged for it.",
    )
    torch_threads: int = Field(
        0, ge=0, le=256, description="torch intra-op threads for generation; 0 = leave as is."
    )
    engine: Literal["ctranslate2", "torch"] = Field(
        "ctranslate2",
        description="Inference engine of the served model. ctranslate2: the champion's int8 "
        "conversion made at promotion (≈3× faster per request than PyTorch fp32 here, "
        "bench.serving); torch: the PyTorch path (also used for a version without a "
        "conversion, with a warning).",
    )
    engine_compute_type: Literal["int8", "int8_float32", "float32"] = Field(
        "int8", description="CTranslate2 compute type the converted model runs in."
    )
    engine_threads: int = Field(
        1, ge=0, le=256,
        description="CTranslate2 intra-op threads per generation; 0 = torch_threads, else "
        "CTranslate2's default. 1: on this 2-core CPU one thread was as fast as two for one "
        "SmolLM2 request (0.38-0.45 s) at 15-25% less CPU (load ≈4).",
    )
    engine_cache_dir: Path = Field(
        Path(".toolrec/serving/engines"),
        description="Where static mode converts model_dir + adapter_dir for the ctranslate2 "
        "engine (once per model; the registry mode uses the conversion made at promotion).",
    )

    # --- decoding and exploration
    decoding: DecodingConfig | None = Field(
        None,
        description="Online decoding; None: trainer.generator.decoding. Its explore_rate is "
        "ignored here: explore_share decides which requests explore.",
    )
    explore_share: float = Field(
        0.1, ge=0.0, le=1.0,
        description="Share of requests decoded with the exploring arm (explore_temperature, "
        "explore_candidates); the impression records the arm and this share (propensity).",
    )

    # --- models and hot-swap
    follow: Literal["registry", "static"] = Field(
        "registry",
        description="registry: serve the registry champion and follow toolrec.models; "
        "static: serve model_dir (+ adapter_dir) only.",
    )
    model_dir: Path | None = Field(
        None, description="Base model directory; None: trainer.generator.model_dir."
    )
    adapter_dir: Path | None = Field(
        None, description="LoRA adapter served in static mode (None: the base model)."
    )
    model_version: str | None = Field(
        None, min_length=1, max_length=200,
        description="Version tag in static mode; None: the adapter directory name or 'base'.",
    )
    follow_announcements: bool = Field(
        True, description="Reconcile with the registry on every toolrec.models message."
    )
    registry_poll_s: float = Field(
        30.0, ge=0.0, le=86400.0,
        description="Also re-read the registry champion this often (0: never); catches "
        "announcements lost while the broker was down.",
    )
    warmup_tokens: int = Field(
        8, ge=0, le=256,
        description="New tokens generated by the warm-up call of a freshly loaded model before "
        "it takes traffic (0: no warm-up).",
    )
    load_timeout_s: float = Field(
        600.0, gt=0, le=3600, description="How long an admin reload / rollback waits."
    )

    # --- admin
    admin_api_key: SecretStr | None = Field(
        None,
        description="Key expected in the X-API-Key header of /v1/admin/*; None: admin "
        "endpoints refuse every request.",
    )

    # --- impression spool and publishing
    spool_dir: Path = Field(
        Path(".toolrec/serving/spool"),
        description="Append-only on-disk log of outgoing events and its durable cursor.",
    )
    spool_segment_bytes: int = Field(
        16 * 1024 * 1024, ge=4096, le=1024**3,
        description="A spool segment is closed at this size; fully sent segments are deleted.",
    )
    spool_fsync: bool = Field(
        True, description="fsync every append before the response (off: OS page cache only)."
    )
    send_batch: int = Field(
        256, ge=1, le=100_000, description="Spooled events sent per producer flush."
    )
    send_timeout_s: float = Field(
        10.0, gt=0, le=600, description="A batch not acknowledged within this is retried."
    )
    retry_backoff_s: float = Field(
        0.5, gt=0, le=60, description="First wait after a failed send (doubles, capped)."
    )
    retry_backoff_max_s: float = Field(
        5.0, gt=0, le=600, description="Longest wait between send attempts."
    )
    drain_timeout_s: float = Field(
        10.0, ge=0, le=600,
        description="At shutdown, how long to keep sending; the rest stays spooled.",
    )

    @property
    def batch_limit(self) -> int:
        """`max_batch`, or the measured default of the engine (its description)."""
        if self.max_batch is not None:
            return self.max_batch
        return 4 if self.engine == "ctranslate2" else 1

    @property
    def worker_count(self) -> int:
        """`workers`, or the measured default of the engine (its description)."""
        if self.workers is not None:
            return self.workers
        return 2 if self.engine == "ctranslate2" else 1

    @model_validator(mode="after")
    def _consistent(self) -> ServingConfig:
        if self.n_default is not None and self.n_default > self.n_max:
            raise ValueError(f"n_default ({self.n_default}) must be <= n_max ({self.n_max})")
        if self.retry_backoff_s > self.retry_backoff_max_s:
            raise ValueError(
                f"retry_backoff_s ({self.retry_backoff_s}) must be <= retry_backoff_max_s "
                f"({self.retry_backoff_max_s})"
            )
        if self.adapter_dir is not None and self.follow != "static":
            raise ValueError("adapter_dir is only used with follow='static'; set follow='static'")
        return self
