"""The user simulator: turns with hidden intents, true utility, clicks, executions.

    sim = Simulator(config, tools=load_catalog().tools, encode=Retriever().encode)
    turn = sim.turn(user=3, index=0)          # turn.request is all the system may see
    judgement = sim.judge(turn, shown)        # hidden: utilities and ground truth
    reaction = sim.react(turn, shown, judgement)   # the clicks / executions to send

True utility of a shown suggestion s for the turn's hidden intent I (`UtilityConfig`):
    cos(s, I) = max over I's phrasings of the cosine of their MiniLM embeddings
    r = clip((cos − rel_low) / (rel_high − rel_low), 0, 1)
    match = I is a tool and s invokes exactly it (s.tool_id == I's tool id)
    u = (r + tool_bonus·match) / (1 + tool_bonus)
so a suggestion that runs the intended tool is worth up to twice a merely relevant one
(the product wants actions: a chip that does the thing beats one that talks about it), and
relevance is anchored on measured MiniLM cosines (`UtilityConfig`: unrelated text ≈ 0,
a paraphrase ≈ 1), so utility spreads from 0 (off-topic) over ≈0.1–0.35 (on-topic, wrong
tool) to ≈1 (the intended tool). Which follow-ups are intended, and why a grounded
generator can meet them, is `loop.intents`' business; who clicks how much and how position
hides lower chips is `loop.population`'s (activity cohorts, cascade with examine(k) = k^−η).
After a click on a tool-invoking suggestion the phone executes it: the simulator sends an
`execute` event that succeeds with probability exec_success_match (right tool) or
exec_success_other (another tool: it runs, but often is not what the user wanted and is
cancelled or fails its confirmation).

Ground truth per turn (never sent anywhere; `loop.metrics` aggregates it per model
version): the reference user's expected click-through (P(any click) under the cascade of
`loop.population`), the expected clicks that land on the right tool, and the relevance.

Everything is deterministic for `config.seed`: a turn depends only on (seed, user, index),
a reaction only on that and the suggestions shown — not on timing, order or concurrency.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np

from loop.config import SimulatorConfig
from loop.intents import Intent, IntentModel, Request
from loop.population import User, cascade, draw_click, population, reference_user

Encode = Callable[[Sequence[str]], np.ndarray]
FeedbackType = Literal["click", "execute", "dismiss"]


@dataclass(frozen=True)
class Shown:
    """One suggestion as the API returned it."""

    position: int
    text: str
    tool_id: str | None = None


@dataclass(frozen=True)
class Turn:
    user: User
    index: int
    request: Request
    intent: Intent  # hidden


@dataclass(frozen=True)
class Judgement:
    """Hidden truth about one shown list (position order)."""

    relevance: tuple[float, ...]  # cosine to the intent
    utility: tuple[float, ...]
    match: tuple[bool, ...]  # invokes the intended tool
    ref_clicks: tuple[float, ...]  # reference user's P(click lands at k)

    @property
    def ref_ctr(self) -> float:
        return float(sum(self.ref_clicks))

    @property
    def ref_right_tool(self) -> float:
        return float(sum(p for p, m in zip(self.ref_clicks, self.match, strict=True) if m))


@dataclass(frozen=True)
class FeedbackEvent:
    type: FeedbackType
    position: int
    success: bool | None = None


@dataclass(frozen=True)
class Reaction:
    """What the user did: the clicked position (or None) and the events to send."""

    position: int | None
    events: tuple[FeedbackEvent, ...] = ()

    @property
    def clicked(self) -> bool:
        return self.position is not None


class Simulator:
    """A seeded population of users answering turns. See the module docstring."""

    def __init__(self, config: SimulatorConfig, *, tools: Sequence[Any], encode: Encode,
                 battery_low_threshold: int = 20) -> None:
        self.config = config
        self.encode = encode
        self.battery_low_threshold = battery_low_threshold
        self.intents = IntentModel(tools, need_query_share=config.need_query_share,
                                   tool_intent_share=config.tool_intent_share, encode=encode)
        self.users = population(config.seed, config.users, config.click)
        self.reference = reference_user(config.click)
        self._phrasing_vectors: dict[str, np.ndarray] = {}
        self._openings: dict[tuple[int, int], tuple[str, str, tuple[str, ...]]] = {}

    @cached_property
    def by_raw_id(self) -> dict[str, User]:
        return {u.raw_id: u for u in self.users}

    # ---------------------------------------------------------------- turns
    def _rng(self, purpose: str, user: int, index: int) -> random.Random:
        return random.Random(f"{purpose}:{self.config.seed}:{user}:{index}")

    def _opening(self, user: int, index: int) -> tuple[str, str, tuple[str, ...]]:
        key = (user, index)
        if key not in self._openings:
            self._openings[key] = self.intents.opening(self._rng("opening", user, index))
        return self._openings[key]

    def turn(self, user: int, index: int) -> Turn:
        """Turn `index` (0-based, over the user's whole life) of user `user`."""
        owner = self.users[user]
        session, first = divmod(index, self.config.session_turns)
        recent = tuple(self._opening(user, i)[0] for i in range(index - first, index))
        query, response, about = self._opening(user, index)
        rng = self._rng("turn", user, index)
        context = self.intents.context(rng)
        intent = self.intents.intent(about, self._hints(context), rng,
                                     text=f"{query} {response}".strip())
        request = Request(
            raw_user_id=owner.raw_id,
            session_id=f"{owner.raw_id}-s{session}",
            query=query,
            response=response,
            recent=recent,
            context=context,
            n=self.config.n_suggestions,
        )
        return Turn(owner, index, request, intent)

    def _hints(self, context: dict[str, Any]) -> dict[str, float]:
        from retrieval.context import DeviceContext, active_hints

        return active_hints(DeviceContext.parse(context),
                            battery_low_threshold=self.battery_low_threshold)

    # ---------------------------------------------------------------- ground truth
    def _intent_vectors(self, intent: Intent) -> np.ndarray:
        key = f"{intent.kind}:{intent.key}"
        if key not in self._phrasing_vectors:
            self._phrasing_vectors[key] = np.asarray(self.encode(list(intent.phrasings)))
        return self._phrasing_vectors[key]

    def relevance(self, intent: Intent, texts: Sequence[str]) -> list[float]:
        """Best cosine of each text to the intent's phrasings."""
        if not texts:
            return []
        vectors = np.asarray(self.encode(list(texts)))
        return [float(x) for x in (vectors @ self._intent_vectors(intent).T).max(axis=1)]

    def utility(self, cosine: float, match: bool) -> float:
        cfg = self.config.utility
        r = min(max((cosine - cfg.rel_low) / (cfg.rel_high - cfg.rel_low), 0.0), 1.0)
        return (r + cfg.tool_bonus * float(match)) / (1.0 + cfg.tool_bonus)

    def judge(self, turn: Turn, shown: Sequence[Shown]) -> Judgement:
        """The hidden truth about `shown` for this turn."""
        ordered = sorted(shown, key=lambda s: s.position)
        cosines = self.relevance(turn.intent, [s.text for s in ordered])
        intended = turn.intent.tool_id
        match = tuple(intended is not None and s.tool_id == intended for s in ordered)
        utility = tuple(self.utility(c, m) for c, m in zip(cosines, match, strict=True))
        ref = cascade(utility, self.reference, self.config.click.eta)
        return Judgement(tuple(cosines), utility, match, tuple(ref))

    # ---------------------------------------------------------------- behaviour
    def react(self, turn: Turn, shown: Sequence[Shown], judgement: Judgement) -> Reaction:
        """The user's clicks and the phone's execution, drawn from their seeded stream."""
        ordered = sorted(shown, key=lambda s: s.position)
        rng = self._rng("react", turn.user.index, turn.index)
        k = draw_click(judgement.utility, turn.user.params, self.config.click.eta, rng)
        if k is None:
            return Reaction(None)
        suggestion = ordered[k - 1]
        events = [FeedbackEvent("click", suggestion.position)]
        if suggestion.tool_id is not None:
            cfg = self.config.utility
            p = cfg.exec_success_match if judgement.match[k - 1] else cfg.exec_success_other
            events.append(FeedbackEvent("execute", suggestion.position, rng.random() < p))
        return Reaction(suggestion.position, tuple(events))


def build_simulator(config: SimulatorConfig, retrieval: Any) -> Simulator:
    """A Simulator over the shipped SysToolKit with retrieval's MiniLM encoder (local files)."""
    from retrieval import Retriever

    retriever = Retriever(retrieval)
    return Simulator(config, tools=retriever.catalog.tools, encode=retriever.encode,
                     battery_low_threshold=retrieval.battery_low_threshold)
