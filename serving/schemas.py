"""Request and response bodies of the API.

Scalars are strict at every depth (a number sent as a string is a 422, not silently
converted, in the nested `context` too); unknown fields are refused. The recommend
request's limits come from `ServingConfig`, so the request model is built per configuration
(`recommend_request_model`) and the OpenAPI schema shows the limits actually enforced.

Text rules, each stated in the schema:
- identifiers (`user_id`, `session_id`, `request_id`): printable ASCII without spaces,
  `^[!-~]+$` (so no zero-width or look-alike characters can make two ids of one user);
- required text (`query`, each recent query): at least one *visible* character, judged on
  Unicode categories (a letter, number, punctuation or symbol: L*, N*, P*, S*). The schema's
  `pattern` is the same rule spelled as a portable regex over the invisible code points
  (separators, controls, format characters such as U+200B); the category check is the
  authority.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    create_model,
)

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
    "ForgetRequest",
    "ForgetResult",
    "StrictDeviceContext",
    "SwapResult",
    "Timing",
    "has_visible_char",
    "recommend_request_model",
]

ID_PATTERN = r"^[!-~]+$"
# Portable (Python and ECMA-262) spelling of "a character that is not a separator, control
# or format character"; `has_visible_char` decides on Unicode categories.
VISIBLE_PATTERN = (r"[^\s\x00-\x1f\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5"
                   r"\u180b-\u180f\u200b-\u200f\u2028-\u202f\u205f-\u206f\u3000\u3164"
                   r"\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb]")
_VISIBLE_CATEGORIES = ("L", "N", "P", "S")
# An identifier a client sends where no configured limit applies (feedback, forget).
ClientId = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200,
                                            pattern=ID_PATTERN)]


def has_visible_char(text: str) -> bool:
    """True when `text` has a letter, number, punctuation or symbol (Unicode categories
    L*, N*, P*, S*); zero-width spaces, joiners, controls or marks alone are not visible."""
    return any(unicodedata.category(ch)[0] in _VISIBLE_CATEGORIES
               and ch not in "\u3164\uffa0\u115f\u1160" for ch in text)


def _visible(text: str) -> str:
    if not has_visible_char(text):
        raise ValueError("must contain at least one visible character (a letter, number, "
                         "punctuation or symbol); whitespace and invisible format characters "
                         "such as U+200B do not count")
    return text


def _text(max_chars: int, *, required: bool) -> Any:
    """A strict string type with a length cap (and at least one visible char if required)."""
    if required:
        return Annotated[str, StringConstraints(strict=True, min_length=1, max_length=max_chars,
                                                pattern=VISIBLE_PATTERN),
                         AfterValidator(_visible)]
    return Annotated[str, StringConstraints(strict=True, max_length=max_chars)]


def _ident(max_chars: int) -> Any:
    """An identifier: 1..max_chars printable ASCII characters, no spaces."""
    return Annotated[str, StringConstraints(strict=True, min_length=1, max_length=max_chars,
                                            pattern=ID_PATTERN)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StrictDeviceContext(DeviceContext):
    """`retrieval.DeviceContext` validated strictly: `"battery": "50"` is refused, not
    converted (the parent model is lax for its in-process callers)."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid",
                              title="DeviceContext")

    # The parent validates these two with its own regexes; restated here as `pattern` so
    # the OpenAPI schema states the rule (tests/serving/test_api.py checks they agree).
    foreground_app: Annotated[str, StringConstraints(
        max_length=200, pattern=r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+$")] | None = Field(
        None, description="Android package name of the app on screen, e.g. com.spotify.music")
    locale: Annotated[str, StringConstraints(
        max_length=35, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")] | None = Field(
        None, description="BCP-47 tag, e.g. en-US")


class RecommendRequest(_Body):
    """A recommend call (field limits: see `recommend_request_model`)."""

    user_id: str = Field(description="The user's raw id; pseudonymized before it is logged.")
    session_id: str = Field(description="The assistant session.")
    query: str = Field(description="What the user just asked.")
    response: str = Field("", description="The assistant's answer to it.")
    recent_queries: list[str] = Field(
        default_factory=list, description="The session's earlier queries, oldest first."
    )
    context: StrictDeviceContext = Field(
        default_factory=StrictDeviceContext,
        description="The phone's state (all fields optional).",
    )
    n: int | None = Field(None, description="How many suggestions (default: server setting).")


def recommend_request_model(config: ServingConfig, n_default: int) -> type[RecommendRequest]:
    """`RecommendRequest` with this configuration's limits (shown in the OpenAPI schema)."""
    ident = _ident(config.max_id_chars)
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

    user_id: ClientId = Field(description="The user's raw id; pseudonymized like impressions.")
    request_id: ClientId = Field(description="The request_id of the recommend answer.")
    type: Literal["click", "execute", "dismiss"]
    position: Annotated[StrictInt, Field(ge=1, le=50)] = Field(
        description="1-based position of the suggestion."
    )
    success: StrictBool | None = Field(None, description="For execute: did the tool succeed.")
    ts: Annotated[StrictInt, Field(ge=TS_MIN_MS, lt=TS_MAX_MS)] | None = Field(
        None, description="Event time in ms since the epoch (default: now). Besides these "
        "static bounds it must lie within serving.feedback_max_age_s before and "
        "serving.feedback_max_skew_s after the server's clock (else 422, type "
        "ts_out_of_range).",
    )


TS_MIN_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z: no event of this system is older
TS_MAX_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z


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


class ForgetRequest(_Body):
    user_id: ClientId = Field(description="The raw user id (or its pseudonym) to erase.")


class ForgetResult(BaseModel):
    pseudonym: str = Field(description="The pseudonym whose rows were erased.")
    removed: dict[str, int] = Field(description="Rows / records removed per store.")
    not_erased: list[str] = Field(description="What cannot be erased by this call.")


class SwapResult(BaseModel):
    action: Literal["swapped", "unchanged", "failed"]
    version: str | None = Field(description="Serving after the call.")
    previous: str | None = Field(description="Serving before the call.")
    target: str | None
    load_s: float | None = None
    error: str | None = None
