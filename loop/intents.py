"""What a simulated turn is about: the visible request and the hidden follow-up intent.

A turn (this project's design, deterministic for its seed key):
1. the query — with probability 1 − `need_query_share` an example utterance of a SysToolKit
   tool T0 (category uniform, then tool uniform), else a phrasing of a non-tool need;
2. the assistant's response — a short acknowledgement built from T0's description (empty in
   15 % of turns), or the need's answer;
3. a device context (hour, battery, charging, network, headset, driving, foreground app,
   locale) drawn from simple marginals, as an assistant backend would send it;
4. the hidden intent — what the user wants to do next. With probability
   `tool_intent_share` a tool, drawn from the mixture
       0.60 · over the tools *related to the turn*: the `RELATED_K` = 8 tools (T0 excluded)
              closest to the turn's text (query + response; MiniLM cosine to the tool's
              name + description) plus `HINT_BONUS` · Σ strength of the tool's hints that
              the context activates, drawn ∝ exp(score / `RELATED_TEMPERATURE`)
     + 0.20 · uniform over T0's category (T0 itself excluded)
     + 0.15 · over tools listing an active *salient* context hint (∝ hint strength ×
              the tool's weight for that hint): battery_low, headset, driving, offline,
              night or the foreground app's category — the situations that make a tool
              timely, not ever-present states like being on Wi-Fi
     + 0.05 · uniform over the whole catalog,
   a component without candidates giving its mass to the others, and tools whose `!hint`
   is active down-weighted ×0.2; otherwise a non-tool need, drawn with weight 3 when T0's
   category is among the need's related categories, else 1. (A turn that starts from a
   need uses the need's related categories in place of T0's.)

Why this is realistic. In real assistant logs the next request is not independent of
the turn: it continues the task just done (after "turn on Bluetooth", "connect my
headphones" or "play music"), it answers the situation (low battery, driving) and it
stays close in meaning to what was just said — which is what GQR's co-occurrence
retrieval and ToolRec's context-aware tool retrieval exploit, and why they work. The
`related` component models exactly that: the tools near the turn in meaning and context
are the likely next steps, the nearest most likely. The simulator measures relatedness
with its own scorer (text cosine + hint bonus), not with the system's retriever, so the
world is not defined by the system under test; because both read the same turn, the tools
the system retrieves overlap the intent's likely candidates, and a grounded generator can
meet the intent — but it must choose well among the retrieved tools to do so (the intent
is one draw from ≈8 candidates, the prompt shows 4 tools, the list has 4 slots). The other
components keep a long tail no retriever sees (same-category moves, context-driven needs,
anything at all), and a quarter of intents are non-tool needs that no tool fulfils.

So the intent is predictable from what the system sees — query, response and context — but
never sent: a good generator can learn to suggest it, nobody can read it off the request.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np

from loop.needs import NEEDS, Need
from retrieval.context import parse_hint

IntentKind = Literal["tool", "need"]

_APPS = (
    "com.spotify.music", "com.google.android.youtube", "com.google.android.apps.maps",
    "com.whatsapp", "com.android.chrome", "com.android.camera", "com.google.android.dialer",
    "com.strava", "com.amazon.kindle", "com.instagram.android", "com.ebay.mobile",
    "com.netflix.mediaclient", "com.waze", "org.telegram.messenger",
)
_LOCALES = ("de-DE", "fr-FR", "es-ES", "en-GB", "it-IT")
_ACKS = (
    "Done. {description}.",
    "Okay, {description_lc}.",
    "Sure, {name_lc} is done.",
    "All set: {description_lc}.",
    "{name} — done. Anything else?",
)
W_RELATED, W_CATEGORY, W_CONTEXT, W_ANY, NEGATED = 0.60, 0.20, 0.15, 0.05, 0.2
RELATED_K = 8  # candidates of the related component (≈ two prompts' worth of tools)
RELATED_TEMPERATURE = 0.05  # softmax temperature over relatedness scores (cosine units)
HINT_BONUS = 0.1  # relatedness added per unit of active hint strength
SALIENT_HINTS = frozenset({"battery_low", "headset", "driving", "offline", "night"})


def salient(hint: str) -> bool:
    return hint in SALIENT_HINTS or hint.startswith("app:")


@dataclass(frozen=True)
class Intent:
    """The hidden follow-up need of a turn. Never part of what the system receives."""

    kind: IntentKind
    key: str  # tool id or need id
    phrasings: tuple[str, ...]

    @property
    def tool_id(self) -> str | None:
        return self.key if self.kind == "tool" else None


@dataclass(frozen=True)
class Request:
    """Exactly what is sent to `POST /v1/recommend` (the raw user id is pseudonymized by the
    system)."""

    raw_user_id: str
    session_id: str
    query: str
    response: str
    recent: tuple[str, ...]
    context: Mapping[str, Any] = field(default_factory=dict)
    n: int = 4

    def payload(self) -> dict[str, Any]:
        return {
            "user_id": self.raw_user_id,
            "session_id": self.session_id,
            "query": self.query,
            "response": self.response,
            "recent_queries": list(self.recent),
            "context": dict(self.context),
            "n": self.n,
        }


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


class IntentModel:
    """Draws queries, responses, contexts and hidden intents over one catalog.

    `encode` (texts → L2-normalized rows) measures how related a tool is to a turn; without
    it the `related` component is empty and gives its mass to the others."""

    def __init__(self, tools: Sequence[Any], *, need_query_share: float,
                 tool_intent_share: float, needs: Sequence[Need] = NEEDS,
                 encode: Callable[[Sequence[str]], np.ndarray] | None = None) -> None:
        self.tools = [t for t in tools if t.examples]
        self.needs = tuple(needs)
        self.need_query_share = need_query_share
        self.tool_intent_share = tool_intent_share
        self.encode = encode
        self.by_category: dict[str, list[Any]] = defaultdict(list)
        # hint -> [(tool, the tool's weight for it)]; "!hint" for tools less timely then
        self.by_hint: dict[str, list[tuple[Any, float]]] = defaultdict(list)
        self.hint_weights: dict[str, dict[str, float]] = {}  # tool id -> positive hints
        for tool in self.tools:
            self.by_category[tool.category].append(tool)
            positive: dict[str, float] = {}
            for text in tool.context:
                name, weight, negative = parse_hint(text)
                self.by_hint[f"!{name}" if negative else name].append((tool, weight))
                if not negative:
                    positive[name] = weight
            self.hint_weights[tool.id] = positive
        self.categories = sorted(self.by_category)

    @cached_property
    def tool_vectors(self) -> np.ndarray:
        """One row per tool: its name and description, embedded (what the tool is for)."""
        assert self.encode is not None
        return np.asarray(self.encode([f"{t.name}. {t.description}" for t in self.tools]))

    # ---------------------------------------------------------------- visible parts
    def opening(self, rng: random.Random) -> tuple[str, str, tuple[str, ...]]:
        """(query, response, categories the turn is about)."""
        if self.needs and rng.random() < self.need_query_share:
            need = rng.choice(self.needs)
            return rng.choice(need.phrasings), need.answer, need.related
        tool = rng.choice(self.by_category[rng.choice(self.categories)])
        return rng.choice(tool.examples), self._ack(tool, rng), (tool.category, tool.id)

    def _ack(self, tool: Any, rng: random.Random) -> str:
        if rng.random() < 0.15:
            return ""
        description = tool.description.rstrip(".")
        return rng.choice(_ACKS).format(
            description=description, description_lc=_lower_first(description),
            name=tool.name, name_lc=_lower_first(tool.name),
        )

    @staticmethod
    def context(rng: random.Random) -> dict[str, Any]:
        """A device context as an assistant backend sends it (retrieval's DeviceContext)."""
        ctx: dict[str, Any] = {"hour": rng.randrange(24)}
        low = rng.random() < 0.2
        ctx["battery"] = rng.randint(3, 20) if low else rng.randint(21, 100)
        ctx["charging"] = rng.random() < (0.1 if low else 0.25)
        ctx["network"] = rng.choices(("wifi", "cellular", "offline"), (0.6, 0.35, 0.05))[0]
        if rng.random() < 0.25:
            ctx["headset"] = True
        if rng.random() < 0.07:
            ctx["driving"] = True
        if rng.random() < 0.5:
            ctx["foreground_app"] = rng.choice(_APPS)
        ctx["locale"] = rng.choice(_LOCALES) if rng.random() < 0.1 else "en-US"
        return ctx

    # ---------------------------------------------------------------- hidden intent
    def intent(self, about: tuple[str, ...], hints: Mapping[str, float],
               rng: random.Random, *, text: str = "") -> Intent:
        """The follow-up intent of a turn about `about` (categories and/or a tool id) whose
        visible text (query and response) is `text`."""
        if rng.random() < self.tool_intent_share or not self.needs:
            tool = self._tool_intent(about, hints, rng, text)
            return Intent("tool", tool.id, tuple(dict.fromkeys((*tool.examples, tool.name))))
        weights = [3.0 if set(need.related) & set(about) else 1.0 for need in self.needs]
        need = rng.choices(self.needs, weights)[0]
        return Intent("need", need.id, need.phrasings)

    def related(self, text: str, about: tuple[str, ...],
                hints: Mapping[str, float]) -> list[tuple[Any, float]]:
        """The `RELATED_K` tools most related to a turn, with their relatedness scores:
        cosine of the turn's text to the tool + `HINT_BONUS` · Σ active hint strength ×
        the tool's weight for the hint. T0 (in `about`) is excluded."""
        if self.encode is None or not text.strip():
            return []
        vector = np.asarray(self.encode([text]))[0]
        scores = self.tool_vectors @ vector
        for i, tool in enumerate(self.tools):
            boost = sum(s * self.hint_weights[tool.id].get(h, 0.0) for h, s in hints.items())
            scores[i] += HINT_BONUS * boost
        order = [int(i) for i in np.argsort(-scores, kind="stable")
                 if self.tools[int(i)].id not in about]
        return [(self.tools[i], float(scores[i])) for i in order[:RELATED_K]]

    def _tool_intent(self, about: tuple[str, ...], hints: Mapping[str, float],
                     rng: random.Random, text: str = "") -> Any:
        weights = self.tool_distribution(about, hints, text)
        ids = sorted(weights)
        return self.by_id[rng.choices(ids, [weights[i] for i in ids])[0]]

    @cached_property
    def by_id(self) -> dict[str, Any]:
        return {t.id: t for t in self.tools}

    def tool_distribution(self, about: tuple[str, ...], hints: Mapping[str, float],
                          text: str = "") -> dict[str, float]:
        """P(intent = tool | the intent is a tool) for a turn: the module docstring's
        mixture (sums to 1)."""
        components = [
            (W_RELATED, self._related_weights(text, about, hints)),
            (W_CATEGORY, {t.id: 1.0 for c in about for t in self.by_category.get(c, [])
                          if t.id not in about}),
            (W_CONTEXT, self._context_weights(about, hints)),
            (W_ANY, {t.id: 1.0 for t in self.tools if t.id not in about}),
        ]
        weights: dict[str, float] = defaultdict(float)
        mass = sum(w for w, part in components if part)
        for share, part in components:
            total = sum(part.values())
            if total <= 0:
                continue  # no candidates: its share goes to the others (renormalized)
            for tool_id, value in part.items():
                weights[tool_id] += share / mass * value / total
        for hint in hints:
            for tool, _ in self.by_hint.get(f"!{hint}", []):
                if tool.id in weights:
                    weights[tool.id] *= NEGATED
        total = sum(weights.values())
        return {tool_id: w / total for tool_id, w in weights.items()}

    def _context_weights(self, about: tuple[str, ...],
                         hints: Mapping[str, float]) -> dict[str, float]:
        weights: dict[str, float] = defaultdict(float)
        for hint, strength in hints.items():
            if salient(hint):
                for tool, weight in self.by_hint.get(hint, []):
                    if tool.id not in about:
                        weights[tool.id] += strength * weight
        return dict(weights)

    def _related_weights(self, text: str, about: tuple[str, ...],
                         hints: Mapping[str, float]) -> dict[str, float]:
        related = self.related(text, about, hints)
        if not related:
            return {}
        top = related[0][1]
        return {t.id: math.exp((score - top) / RELATED_TEMPERATURE) for t, score in related}
