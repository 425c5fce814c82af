"""The attribution window as pure state transitions over JSON-able dicts.

The Faust worker keeps two kinds of keys in one store (`streams.state`; one store, so that
one changelog partition orders all writes of a partition — see `streams.app`):

- ``u:<user_id>`` → `UserState`: decayed counts of *closed* impressions (shown suggestions
  and clicks), the open impressions of the user with their outcomes so far *and the
  impression itself* (`Pending.impression`), feedback held for impressions not seen yet,
  recently closed request ids (to tell an expired click from an unknown one) and the last
  applied source offsets (replays after a crash are recognised and skipped);
- ``g:<partition>`` → `GlobalState`: the partition's decayed click rate p̄ and per-position
  click rates (for the examination propensity θ_k), the last closed impression and the
  partition's watermark (persisted, so a restart does not reset it).

A request is identified by (user, request_id) everywhere: its impression lives in its
user's entry, never under a key of its own, so two users' equal request ids cannot touch
each other's state (the worker dead-letters the second one: `streams.app`).

Bounded state (hostile input must not grow one record toward the broker's message limit):
held orphan feedback is bounded per user in count (`max_orphans_per_user`) and bytes
(`max_orphan_bytes_per_user`) — more is `orphan_overflow` — and in time by its deadline;
recently closed request ids are capped at `max_closed_per_user` (the oldest are forgotten:
a click on one of them is then `unknown_impression` instead of `expired_impression`, both
dead-lettered); the worker refuses an impression that would take the user's record past
`max_user_state_bytes` (`user_state_full`, `state_bytes` estimates the record's size).

Deadlines and the spool rule (`deadline_of`): a window closes at its impression's time +
window + lateness. An event that reached the broker late — held in serving's spool through
an outage — but by at most `spool_grace_s` is anchored at its arrival instead (the window
runs until `arrival + allowed_lateness`, at least until the usual deadline), so it is not
judged late for the outage; beyond the grace it is judged by its own time (late → DLQ).

An impression's outcome is counted into the user's and the partition's state when its
window closes, in deadline order. The state used for its samples is the state just before
that, so a click never calibrates itself, and the result does not depend on when the
close happens to run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, NotRequired, TypedDict, TypeVar

from contracts.events import (
    SAMPLE_SCHEMA,
    Feedback,
    Impression,
    Sample,
    json_names,
    sample_json_of,
)
from generator.prompt import format_completion
from streams.calibration import (
    MS_PER_DAY,
    Calibrator,
    CtrSketch,
    ToolRecState,
    clip,
    decay_factor,
    decayed_add,
    decayed_at,
    smoothed_user_ctr,
    toolrec_user_scale,
    usage_quantile,
)
from streams.config import StreamsConfig


class Pending(TypedDict):
    ts: int
    deadline: int
    n: int
    clicks: list[int]
    executed: list[int]
    # the impression's JSON, kept in its user's entry (the worker always stores it; pure
    # replays such as the tests' and the experiment's pass the impression to `close`)
    impression: NotRequired[str]
    offset: NotRequired[int]  # the impression's source offset (for a DLQ record)


class Orphan(TypedDict):
    """Feedback that arrived before its impression (the two topics are not read in step)."""

    request_id: str
    deadline: int
    offset: int
    raw: str


class UserState(TypedDict):
    partition: int
    shown: list[float]  # Decayed(value, ts) as [value, ts]
    clicks: list[float]
    impression_offset: int
    feedback_offset: int
    pending: dict[str, Pending]
    orphans: list[Orphan]
    closed: dict[str, int]  # request_id -> closed at (event time, ms)
    # form "toolrec" only: the user's bin in the partition's CTR sketch (absent: not in it)
    ctr_bin: NotRequired[int]


class GlobalState(TypedDict):
    shown: list[float]
    clicks: list[float]
    position_shown: dict[str, list[float]]
    position_clicks: dict[str, list[float]]
    last_closed: list[Any]  # [deadline, request_id]: closes run in this order
    watermark: NotRequired[int]  # the partition's watermark when last written (ms)
    # form "toolrec" only (streams.calibration): per-user CTR sketch, decayed tool usage
    ctr_sketch: NotRequired[dict[str, int]]
    tool_uses: NotRequired[dict[str, list[float]]]


ImpressionOutcome = Literal["accepted", "replayed", "duplicate_impression", "late_impression"]
FeedbackOutcome = Literal[
    "counted",
    "duplicate",
    "replayed",
    "held",
    "unknown_impression",
    "expired_impression",
    "position_not_shown",
    "orphan_overflow",
]
TimeVerdict = Literal["future_timestamp", "stale_timestamp"]
T = TypeVar("T")  # what `close_as` makes of each sample row
# Per-entry overhead of the JSON record beyond the strings `state_bytes` counts.
ENTRY_OVERHEAD_BYTES = 96


def new_user_state(partition: int) -> UserState:
    return UserState(
        partition=partition,
        shown=[0.0, 0],
        clicks=[0.0, 0],
        impression_offset=-1,
        feedback_offset=-1,
        pending={},
        orphans=[],
        closed={},
    )


def new_global_state() -> GlobalState:
    return GlobalState(
        shown=[0.0, 0], clicks=[0.0, 0], position_shown={}, position_clicks={}, last_closed=[0, ""]
    )


def deadline_of(ts: int, cfg: StreamsConfig, arrival: int | None = None) -> int:
    """When the window of an event at `ts` closes: ts + window + lateness; for an event
    that arrived (`arrival`, the broker's time) later than `ts` by at most `spool_grace_s`,
    no earlier than arrival + lateness (the spool rule, module docstring)."""
    lateness = int(cfg.allowed_lateness_s * 1000)
    anchor = ts + int(cfg.attribution_window_s * 1000)
    if arrival is not None and 0 < arrival - ts <= cfg.spool_grace_s * 1000:
        anchor = max(anchor, arrival)
    return anchor + lateness


def implausible_time(ts: int, arrival: int, cfg: StreamsConfig) -> TimeVerdict | None:
    """Why an event time cannot be trusted against its arrival time, or None.

    More than `max_future_skew_s` ahead of arrival: a skewed or forged clock (one such event
    would otherwise drag the watermark ahead and close every open window). More than
    `event_horizon_s` behind: too old to join anything, and it would read as a replay of
    long-closed state.
    """
    if ts > arrival + cfg.max_future_skew_s * 1000:
        return "future_timestamp"
    if ts < arrival - cfg.event_horizon_s * 1000:
        return "stale_timestamp"
    return None


def state_bytes(user: UserState) -> int:
    """An upper estimate of the user's record size as JSON (the strings it holds plus a
    fixed overhead per entry); the worker keeps it under `max_user_state_bytes`."""
    pending = sum(len(p.get("impression", "")) for p in user["pending"].values())
    orphans = sum(len(o["raw"]) for o in user["orphans"])
    entries = len(user["pending"]) + len(user["orphans"]) + len(user["closed"])
    return 512 + pending + orphans + ENTRY_OVERHEAD_BYTES * entries


def on_impression(
    user: UserState,
    impression: Impression,
    offset: int,
    watermark: int,
    cfg: StreamsConfig,
    *,
    raw: str | None = None,
    arrival: int | None = None,
) -> ImpressionOutcome:
    """Open the attribution window of `impression` (mutates `user` when accepted).

    `raw` (the impression's JSON) is kept in the pending entry; `arrival` anchors the
    deadline (`deadline_of`). A rejected impression leaves the state untouched, so the
    worker need not write it (a replay judges it again the same way).
    """
    if offset <= user["impression_offset"]:
        return "replayed"
    rid = impression.request_id
    if rid in user["pending"] or rid in user["closed"]:
        return "duplicate_impression"
    deadline = deadline_of(impression.ts, cfg, arrival)
    if deadline <= watermark:
        return "late_impression"
    user["impression_offset"] = offset
    user["pending"][rid] = Pending(
        ts=impression.ts, deadline=deadline, n=len(impression.suggestions), clicks=[], executed=[]
    )
    if raw is not None:
        user["pending"][rid]["impression"] = raw
        user["pending"][rid]["offset"] = offset
    return "accepted"


def on_feedback(
    user: UserState,
    feedback: Feedback,
    offset: int,
    raw: str,
    cfg: StreamsConfig,
    *,
    arrival: int | None = None,
) -> FeedbackOutcome:
    """Attribute a click / execute / dismiss to its open impression (mutates `user` when
    the outcome is "counted" or "held"; every other outcome leaves it untouched).

    Feedback for an impression not seen yet is held: the two topics are consumed
    independently, so a click can overtake its impression. It is applied when the
    impression arrives (`release_orphans`) or dead-lettered when its window has passed
    (`expire_orphans`); past the per-user bounds it is `orphan_overflow` right away.
    """
    if offset <= user["feedback_offset"]:
        return "replayed"
    pending = user["pending"].get(feedback.request_id)
    if pending is not None:
        # copy-on-write: `copy_user` shares the pending entries with the stored state
        pending = user["pending"][feedback.request_id] = _copy_pending(pending)
        outcome = attribute(pending, feedback)
        if outcome == "counted":
            user["feedback_offset"] = offset
        return outcome
    if feedback.request_id in user["closed"]:
        return "expired_impression"
    held = user["orphans"]
    if len(held) >= cfg.max_orphans_per_user or (
        sum(len(o["raw"]) for o in held) + len(raw) > cfg.max_orphan_bytes_per_user
    ):
        return "orphan_overflow"
    user["feedback_offset"] = offset
    held.append(Orphan(request_id=feedback.request_id, offset=offset, raw=raw,
                       deadline=deadline_of(feedback.ts, cfg, arrival)))
    return "held"


def attribute(pending: Pending, feedback: Feedback) -> FeedbackOutcome:
    """Record one feedback event on its open impression."""
    if feedback.position > pending["n"]:
        return "position_not_shown"
    if feedback.type == "dismiss":
        return "counted"
    # An execution implies the click that triggered it.
    new_click = feedback.position not in pending["clicks"]
    if new_click:
        pending["clicks"].append(feedback.position)
    executed = feedback.type == "execute" and bool(feedback.success)
    if executed and feedback.position not in pending["executed"]:
        pending["executed"].append(feedback.position)
        return "counted"
    return "counted" if new_click else "duplicate"


def release_orphans(user: UserState, request_id: str) -> list[tuple[FeedbackOutcome, Orphan]]:
    """Apply the held feedback of an impression that just arrived."""
    if not user["orphans"]:  # the usual case: nothing held, nothing to rebuild
        return []
    pending = user["pending"][request_id]
    mine = [o for o in user["orphans"] if o["request_id"] == request_id]
    user["orphans"] = [o for o in user["orphans"] if o["request_id"] != request_id]
    return [(attribute(pending, Feedback.model_validate_json(o["raw"])), o) for o in mine]


def expire_orphans(user: UserState, watermark: int) -> list[Orphan]:
    """Held feedback whose impression did not come in time (for the DLQ)."""
    if not user["orphans"]:  # the usual case: nothing held, nothing to rebuild
        return []
    expired = [o for o in user["orphans"] if o["deadline"] <= watermark]
    user["orphans"] = [o for o in user["orphans"] if o["deadline"] > watermark]
    return expired


def copy_user(user: UserState) -> UserState:
    """A copy that the transitions can mutate without touching `user` (they replace the
    lists and dicts they change, and `on_feedback` copies a pending entry before it records
    an outcome in it), so a failure half-way leaves the stored state as it was. O(1) Python
    work per open window: a heavy user's copy costs a dict copy, not one per entry."""
    copied = user.copy()
    copied["pending"] = dict(user["pending"])
    copied["orphans"] = list(user["orphans"])
    copied["closed"] = dict(user["closed"])
    return copied


def _copy_pending(pending: Pending) -> Pending:
    copied = pending.copy()
    copied["clicks"] = list(pending["clicks"])
    copied["executed"] = list(pending["executed"])
    return copied


def deadlines(user: UserState) -> list[tuple[int, str]]:
    """(deadline, request_id) of all the user waits for: open windows and held feedback."""
    return [(p["deadline"], rid) for rid, p in user["pending"].items()] + [
        (o["deadline"], o["request_id"]) for o in user["orphans"]
    ]


def due(user: UserState, watermark: int) -> list[tuple[int, str]]:
    """(deadline, request_id) of the user's windows that closed by `watermark`."""
    return sorted(
        (p["deadline"], rid) for rid, p in user["pending"].items() if p["deadline"] <= watermark
    )


_NOTHING = (0.0, 0)  # a count never added to, as a [value, ts] pair (read, never stored)


def _added(pair: Sequence[float], amount: float, ts: int, half_life_ms: float) -> list[float]:
    """The [value, ts] pair with `amount` added at `ts` (`decayed_add`)."""
    return list(decayed_add(float(pair[0]), int(pair[1]), amount, ts, half_life_ms))


def _at(pair: list[float], ts: int, half_life_ms: float) -> float:
    """`_decayed(pair).at(ts, half_life_ms)`, without the object."""
    return decayed_at(float(pair[0]), int(pair[1]), ts, half_life_ms)


class _Decay:
    """`_at` and `_added` at one event time `ts` (a window's close) with one `exp` per
    distinct last-update time — a user's counts share one, the partition's another —
    instead of one per pair (issue 12); the same floats, by the same expressions."""

    __slots__ = ("ts", "half_life_ms", "factors")

    def __init__(self, ts: int, half_life_ms: float) -> None:
        self.ts, self.half_life_ms = ts, half_life_ms
        self.factors: dict[int, float] = {}  # last-update time → its decay factor to ts

    def _factor(self, since: int) -> float:
        """The factor of `since`, computed (callers look in `factors` first: a hit costs
        no call; a factor of 0.0 is computed again, to the same 0.0)."""
        factor = self.factors[since] = decay_factor(since, self.ts, self.half_life_ms)
        return factor

    def at(self, pair: Sequence[float]) -> float:
        """`_at(pair, ts, half_life_ms)`."""
        value, since = float(pair[0]), int(pair[1])
        if self.ts <= since:
            return value
        return value * (self.factors.get(since) or self._factor(since))

    def added(self, pair: Sequence[float], amount: float) -> list[float]:
        """`_added(pair, amount, ts, half_life_ms)`."""
        value, since = float(pair[0]), int(pair[1])
        ts = self.ts
        if ts < since:  # a late amount: decayed to the pair's time instead (decayed_add)
            return [value + decayed_at(amount, ts, since, self.half_life_ms), since]
        if ts == since:
            return [value + amount, ts]
        return [value * (self.factors.get(since) or self._factor(since)) + amount, ts]


def _rate(clicks: float, shown: float, prior: float, strength: float) -> float:
    return (clicks + strength * prior) / (shown + strength)


def global_ctr(state: GlobalState, ts: int, cfg: StreamsConfig, *,
               decay: _Decay | None = None) -> float:
    """The partition's smoothed click rate p̄ at `ts` (`decay`: the close's, at `ts`)."""
    cal = cfg.calibration
    decay = decay or _Decay(ts, cal.half_life_days * MS_PER_DAY)
    return _rate(decay.at(state["clicks"]), decay.at(state["shown"]), cal.prior_ctr,
                 cal.global_prior_strength)


def theta(state: GlobalState, position: int, ts: int, p_bar: float, cfg: StreamsConfig, *,
          first: float | None = None) -> float:
    """Examination propensity of `position` relative to position 1, estimated online.
    `first`: position 1's rate (`position_rate`) when the caller has it (one per window)."""
    if position == 1:
        return 1.0
    if first is None:
        first = position_rate(state, 1, ts, p_bar, cfg)
    return clip(position_rate(state, position, ts, p_bar, cfg) / first,
                cfg.calibration.theta_min, 1.0)


def position_rate(state: GlobalState, position: int, ts: int, p_bar: float,
                  cfg: StreamsConfig) -> float:
    """The partition's smoothed click rate at `position` (shrunk toward p̄) at `ts`."""
    cal, half, key = cfg.calibration, cfg.calibration.half_life_days * MS_PER_DAY, str(position)
    shown = _at(state["position_shown"].get(key, [0.0, 0]), ts, half)
    clicks = _at(state["position_clicks"].get(key, [0.0, 0]), ts, half)
    return _rate(clicks, shown, p_bar, cal.kappa)


def close(
    user: UserState, glob: GlobalState, impression: Impression, cfg: StreamsConfig
) -> list[Sample]:
    """Close one window: build its samples from the state before, then count its outcome
    (`close_as`)."""
    return close_as(user, glob, impression, cfg, Sample.model_validate)


# The fields of a row of `sample_rows` that are checked in every row (`sample_json_of`):
# what it computes. A request id of 200 characters makes a sample id of 203, the prompt
# grows by every suggestion shown above, the deadline and the floats come from state and
# configuration. The others are constants, bools and ints it makes, and fields of the
# validated impression and its suggestions under Sample's annotations (pinned by
# tests/streams/test_sample_fields.py).
COMPUTED_FIELDS = ("sample_id", "closed_ts", "prompt", "completion", "user_impressions",
                   "user_clicks", "user_ctr", "global_ctr", "w_activity", "w_tool",
                   "w_position", "weight")
_sample_json = sample_json_of(COMPUTED_FIELDS)


def close_json(
    user: UserState, glob: GlobalState, impression: Impression, cfg: StreamsConfig
) -> list[bytes]:
    """`close` with each sample as the JSON the worker sends: the bytes of
    `Sample.to_json_bytes`, without a model per sample (`contracts.events.sample_json_of`)."""
    return close_as(user, glob, impression, cfg, _sample_json)


def close_as(
    user: UserState, glob: GlobalState, impression: Impression, cfg: StreamsConfig,
    make: Callable[[dict[str, Any]], T],
) -> list[T]:
    """Close one window: build its samples from the state before (each row made into a `T`
    by `make` as it is built, so what raises does so before anything is counted), then
    count its outcome.

    If `glob` already counted this close, its samples were delivered before (the worker
    writes the partition's state only after the broker acknowledged them) and a crash lost
    only the user's write: the user's state is brought up to date and nothing is emitted,
    so the samples on the topic stay the ones computed from the state before.
    """
    rid = impression.request_id
    pending = user["pending"].pop(rid)
    order = [pending["deadline"], rid]
    already_counted = order <= glob["last_closed"]
    decay = _Decay(impression.ts, cfg.calibration.half_life_days * MS_PER_DAY)
    samples = [] if already_counted else [
        make(row) for row in sample_rows(user, glob, impression, pending, cfg, decay=decay)]
    count_outcome(user, None if already_counted else glob, impression, pending, cfg,
                  decay=decay)
    glob["last_closed"] = max(order, glob["last_closed"])
    # Remember recent closes for a while (and at most max_closed_per_user of them), to
    # tell expired clicks from unknown ones.
    closed_at = pending["deadline"]
    closed = user["closed"]
    closed[rid] = closed_at
    retention_ms = 2 * deadline_of(0, cfg)
    if len(closed) <= cfg.max_closed_per_user and min(closed.values()) >= closed_at - retention_ms:
        return samples  # all kept, in their order: what the rebuild below would give
    kept = [(t, r) for r, t in closed.items() if t >= closed_at - retention_ms]
    if len(kept) > cfg.max_closed_per_user:
        kept = sorted(kept)[-cfg.max_closed_per_user:]
    user["closed"] = {r: t for t, r in kept}
    return samples


def sample_rows(
    user: UserState,
    glob: GlobalState,
    impression: Impression,
    pending: Pending,
    cfg: StreamsConfig,
    *,
    decay: _Decay | None = None,
) -> Iterator[dict[str, Any]]:
    """The window's samples as plain rows (`Sample`'s JSON names in its field order, values
    of the exact types its fields hold: `contracts.events.sample_json` dumps them as they
    are), one at a time. `decay`: the close's (`close_as`), at the impression's time."""
    cal = cfg.calibration
    ts = impression.ts
    decay = decay or _Decay(ts, cal.half_life_days * MS_PER_DAY)
    p_bar = global_ctr(glob, ts, cfg, decay=decay)
    window = _window_row(impression, pending, decay.at(user["shown"]), decay.at(user["clicks"]),
                         p_bar)
    executed_positions = pending["executed"]
    clicked_positions = set(pending["clicks"]).union(executed_positions)
    toolrec = toolrec_estimates(glob, ts, p_bar, cfg)
    weights_of = Calibrator(window["user_impressions"], window["user_clicks"], p_bar,
                            cal).weights
    first: float | None = None  # position 1's rate, once per window (`theta`)
    prompt = impression.prompt  # = sample_prompt(impression.prompt, the suggestions above)
    request_id = impression.request_id
    for suggestion in impression.suggestions:
        position, tool_id = suggestion.position, suggestion.tool_id
        clicked = position in clicked_positions
        executed = position in executed_positions
        completion = format_completion(suggestion.text)
        theta_k = 1.0  # θ is read only by the position term (`position_weight`): its rates
        if cal.position_enabled:  # are not computed when the term is off (the default)
            if first is None and position != 1:
                first = position_rate(glob, 1, ts, p_bar, cfg)
            theta_k = theta(glob, position, ts, p_bar, cfg, first=first)
        user_ctr, w_activity, w_tool, w_position, weight = weights_of(
            clicked=clicked,
            executed=executed,
            is_tool_query=tool_id is not None,
            theta=theta_k,
            toolrec=None if toolrec is None else ToolRecState(
                toolrec[0], toolrec[1], usage_quantile(toolrec[2], tool_id)),
        )
        row = window.copy()  # its own fields below, in place: the keys keep their order
        row["sample_id"] = f"{request_id}:{position}"
        row["prompt"] = prompt
        row["completion"] = completion
        row["position"] = position
        row["clicked"] = clicked
        row["executed"] = executed
        row["tool_id"] = tool_id
        row["is_tool_query"] = tool_id is not None
        row["user_ctr"] = user_ctr
        row["w_activity"] = w_activity
        row["w_tool"] = w_tool
        row["w_position"] = w_position
        row["weight"] = weight
        yield row
        prompt += completion


def _window_row(impression: Impression, pending: Pending, user_impressions: float,
                user_clicks: float, global_ctr: float) -> dict[str, Any]:
    """What a window's sample rows share, in a row whose per-sample fields are left for
    `sample_rows` to set in each copy (a dict copy costs a third of building one of 27
    keys: issue 12)."""
    row = _SAMPLE_ROW.copy()
    row["request_id"] = impression.request_id
    row["event_id"] = impression.event_id
    row["user_id"] = impression.user_id
    row["session_id"] = impression.session_id
    row["impression_ts"] = impression.ts
    row["closed_ts"] = pending["deadline"]
    row["model_version"] = impression.model_version
    row["template_version"] = impression.template_version
    row["n_shown"] = len(impression.suggestions)
    row["explored"] = bool(impression.decoding.get("explore", False))
    row["user_impressions"] = user_impressions
    row["user_clicks"] = user_clicks
    row["global_ctr"] = global_ctr
    return row


# Every sample row's keys in Sample's field order, as Sample defines them; `_window_row`
# and `sample_rows` set every value but the schema tag (a None left over fails Sample's
# check: tests/streams/test_sample_fields.py).
_SAMPLE_ROW: dict[str, Any] = dict.fromkeys(json_names(Sample)) | {"schema": SAMPLE_SCHEMA}


def count_outcome(
    user: UserState,
    glob: GlobalState | None,
    impression: Impression,
    pending: Pending,
    cfg: StreamsConfig,
    *,
    decay: _Decay | None = None,
) -> None:
    """Add a closed impression's shown suggestions and clicks to user and partition state
    (`decay`: the close's, at the impression's time)."""
    decay = decay or _Decay(impression.ts, cfg.calibration.half_life_days * MS_PER_DAY)
    added = decay.added
    clicked = set(pending["clicks"]).union(pending["executed"])

    user["shown"] = added(user["shown"], pending["n"])
    user["clicks"] = added(user["clicks"], len(clicked))
    if glob is None:
        return
    glob["shown"] = added(glob["shown"], pending["n"])
    glob["clicks"] = added(glob["clicks"], len(clicked))
    shown, clicks = glob["position_shown"], glob["position_clicks"]
    for suggestion in impression.suggestions:
        position = suggestion.position
        key = str(position)
        shown[key] = added(shown.get(key, _NOTHING), 1)
        clicks[key] = added(clicks.get(key, _NOTHING), 1 if position in clicked else 0)
    if cfg.calibration.form == "toolrec":
        count_toolrec(user, glob, impression, clicked, cfg)


def toolrec_estimates(
    glob: GlobalState, ts: int, p_bar: float, cfg: StreamsConfig
) -> tuple[float, float, dict[str, float]] | None:
    """(μ, s, tool usage counts at `ts`) of the ToolRec form; None for the form "ours"."""
    cal = cfg.calibration
    if cal.form != "toolrec":
        return None
    half = cal.half_life_days * MS_PER_DAY
    sketch = CtrSketch(glob.get("ctr_sketch", {}), cal.toolrec_sketch_bins)
    mu, scale = toolrec_user_scale(sketch, p_bar, cal)
    uses = {t: _at(pair, ts, half) for t, pair in glob.get("tool_uses", {}).items()}
    return mu, scale, uses


def count_toolrec(
    user: UserState, glob: GlobalState, impression: Impression, clicked: set[int],
    cfg: StreamsConfig,
) -> None:
    """The ToolRec form's state after a close: clicked tools' usage, the user's sketch bin."""
    cal, ts = cfg.calibration, impression.ts
    half = cal.half_life_days * MS_PER_DAY
    uses = glob.setdefault("tool_uses", {})
    for suggestion in impression.suggestions:
        if suggestion.tool_id is not None and suggestion.position in clicked:
            uses[suggestion.tool_id] = _added(uses.get(suggestion.tool_id, [0.0, 0]), 1.0, ts,
                                              half)
    p_u = smoothed_user_ctr(_at(user["shown"], ts, half),
                            _at(user["clicks"], ts, half),
                            global_ctr(glob, ts, cfg), cal.kappa)
    sketch = CtrSketch(glob.setdefault("ctr_sketch", {}), cal.toolrec_sketch_bins)
    user["ctr_bin"] = sketch.move(user.get("ctr_bin"), p_u)
