"""Request and response bodies of the API.

Scalars are strict (a number sent as a string is a 422, not silently converted); unknown
fields are refused. The recommend request's limits come from `ServingConfig`, so the
request model is built per configuration (`recommend_request_model`) and the OpenAPI
schema shows the limits actually enforced.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    create_model,
)

from contracts.events import Id, TimestampMs
from retrieval import DeviceContext
from serving.config import ServingConfig

__all__ = [
    "ErrorBody",
    "FeedbackAccepted",
    "FeedbackRequest",
    "FieldProblem",
    "Health",
    "Readiness",
    "RecommendRequest",
    "RecommendResponse",
    "ReloadRequest",
    "RollbackRequest",
    "SuggestionOut",
    "SwapResult",
    "Timing",
    "recommend_request_model",
]


def _text(max_chars: int, *, required: bool) -> Any:
    """A strict string type with a length cap (and at least one visible char if required)."""
    if required:
        return Annotated[str, StringConstraints(strict=True, min_length=1, max_length=max_chars,
                                                pattern=r"\S")]
    return Annotated[str, StringConstraints(strict=True, max_length=max_chars)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecommendRequest(_Body):
    """A recommend call (field limits: see `recommend_request_model`)."""

    user_id: str = Field(description="The user's raw id; pseudonymized before it is logged.")
    session_id: str = Field(description="The assistant session.")
    query: str = Field(description="What the user just asked.")
    response: str = Field("", description="The assistant's answer to it.")
    recent_queries: list[str] = Field(
        default_factory=list, description="The session's earlier queries, oldest first."
    )
    context: DeviceContext = Field(
        default_factory=DeviceContext, description="The phone's state (all fields optional)."
    )
    n: int | None = Field(None, description="How many suggestions (default: server setting).")


def recommend_request_model(config: ServingConfig, n_default: int) -> type[RecommendRequest]:
    """`RecommendRequest` with this configuration's limits (shown in the OpenAPI schema)."""
    ident = _text(config.max_id_chars, required=True)
    query = _text(config.max_query_chars, required=True)
    item = _text(config.max_query_chars, required=True)
    recent = Annotated[list[item], Field(max_length=config.max_recent)]  # type: ignore[valid-type]
    fields: dict[str, Any] = {
        "user_id": (ident, Field(description="The user's raw id; pseudonymized before logging.")),
        "session_id": (ident, Field(description="The assistant session.")),
        "query": (query, Field(description="What the user just asked.")),
        "response": (_text(config.max_response_chars, required=False),
                     Field("", description="The assistant's answer to the query.")),
        "recent_queries": (recent, Field(default_factory=list, description="The session's "
                                         "earlier queries, oldest first.")),
        "n": (Annotated[StrictInt, Field(ge=1, le=config.n_max)],
              Field(n_default, description="How many suggestions to return.")),
    }
    model: type[RecommendRequest] = create_model(
        "RecommendRequest", __base__=RecommendRequest, __doc__=RecommendRequest.__doc__,
        **fields,
    )
    return model


class SuggestionOut(BaseModel):
    position: int = Field(description="1-based position in the list shown.")
    text: str = Field(description="The suggested follow-up query.")
    tool_id: str | None = Field(description="The SysToolKit tool it invokes, or null.")


class Timing(BaseModel):
    """Where the time of this request went, in milliseconds."""

    total_ms: float
    queue_ms: float = Field(description="Waiting for the generation worker.")
    retrieval_ms: float = Field(description="Tool retrieval of the request's batch.")
    generate_ms: float = Field(description="Model generation of the request's batch.")
    parse_ms: float = Field(description="Parsing and tool linking.")
    spool_ms: float = Field(description="Writing the impression durably to the spool.")


class RecommendResponse(BaseModel):
    request_id: str = Field(description="Quote it in feedback for these suggestions.")
    model_version: str = Field(description="The model version that generated the answer.")
    suggestions: list[SuggestionOut]
    timing: Timing


class FeedbackRequest(_Body):
    """A user's reaction to one suggestion (validated like the telemetry library)."""

    user_id: Id = Field(description="The user's raw id; pseudonymized like impressions.")
    request_id: Id = Field(description="The request_id of the recommend answer.")
    type: Literal["click", "execute", "dismiss"]
    position: Annotated[StrictInt, Field(ge=1, le=50)] = Field(
        description="1-based position of the suggestion."
    )
    success: StrictBool | None = Field(None, description="For execute: did the tool succeed.")
    ts: Annotated[StrictInt, TimestampMs] | None = Field(
        None, description="Event time in ms since the epoch (default: now)."
    )


class FeedbackAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    event_id: str = Field(description="Id of the feedback event spooled for toolrec.feedback.")


class FieldProblem(BaseModel):
    field: str = Field(description="Dotted path of the offending field in the body.")
    message: str
    type: str = Field(description="Machine-readable kind, e.g. string_too_long, missing.")


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer of this API."""

    error: str = Field(description="Machine-readable code, e.g. invalid_request, overloaded.")
    message: str
    fields: list[FieldProblem] = Field(default_factory=list)


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    ready: bool
    model_version: str | None
    retrieval_ready: bool
    queue_depth: int
    spool_depth: int = Field(description="Events spooled and not yet in Kafka.")
    broker_connected: bool
    swaps: int
    last_error: str | None = Field(description="Last failed model load, if any.")


class ReloadRequest(_Body):
    force: StrictBool = Field(False, description="Reload even if the champion is unchanged.")


class RollbackRequest(_Body):
    to: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        None, description="Version to reinstate, 'base', or null for the previous champion."
    )


class SwapResult(BaseModel):
    action: Literal["swapped", "unchanged", "failed"]
    version: str | None = Field(description="Serving after the call.")
    previous: str | None = Field(description="Serving before the call.")
    target: str | None
    load_s: float | None = None
    error: str | None = None
