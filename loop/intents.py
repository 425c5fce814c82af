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
       0.55 · uniform over T0's category (T0 itself excluded)
     + 0.35 · over tools listing an active *salient* context hint (∝ hint strength):
              battery_low, headset, driving, offline, night or the foreground app's
              category — the situations that make a tool timely, not ever-present states
              like being on Wi-Fi
     + 0.10 · uniform over the whole catalog,
   a component without candidates giving its mass to the others, and tools whose `!hint`
   is active down-weighted ×0.2; otherwise a non-tool need, drawn with weight 3 when T0's
   category is among the need's related categories, else 1. (A turn that starts from a
   need uses the need's related categories in place of T0's.)
So the intent is predictable from what the system sees — query, response and context — but
never sent: a good generator can learn to suggest it, nobody can read it off the request.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from loop.needs import NEEDS, Need

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
W_CATEGORY, W_CONTEXT, W_ANY, NEGATED = 0.55, 0.35, 0.10, 0.2
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
    """Draws queries, responses, contexts and hidden intents over one catalog."""

    def __init__(self, tools: Sequence[Any], *, need_query_share: float,
                 tool_intent_share: float, needs: Sequence[Need] = NEEDS) -> None:
        self.tools = [t for t in tools if t.examples]
        self.needs = tuple(needs)
        self.need_query_share = need_query_share
        self.tool_intent_share = tool_intent_share
        self.by_category: dict[str, list[Any]] = defaultdict(list)
        self.by_hint: dict[str, list[Any]] = defaultdict(list)
        for tool in self.tools:
            self.by_category[tool.category].append(tool)
            for hint in tool.context:
                self.by_hint[hint].append(tool)
        self.categories = sorted(self.by_category)

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
               rng: random.Random) -> Intent:
        """The follow-up intent of a turn about `about` (categories and/or a tool id)."""
        if rng.random() < self.tool_intent_share or not self.needs:
            tool = self._tool_intent(about, hints, rng)
            return Intent("tool", tool.id, tuple(dict.fromkeys((*tool.examples, tool.name))))
        weights = [3.0 if set(need.related) & set(about) else 1.0 for need in self.needs]
        need = rng.choices(self.needs, weights)[0]
        return Intent("need", need.id, need.phrasings)

    def _tool_intent(self, about: tuple[str, ...], hints: Mapping[str, float],
                     rng: random.Random) -> Any:
        weights: dict[str, float] = defaultdict(float)
        by_id = {t.id: t for t in self.tools}
        mates = [t for c in about for t in self.by_category.get(c, []) if t.id not in about]
        active = [(t, s) for h, s in hints.items() if salient(h)
                  for t in self.by_hint.get(h, []) if t.id not in about]
        w_category = W_CATEGORY if mates else 0.0
        w_context = W_CONTEXT if active else 0.0
        for tool in mates:
            weights[tool.id] += w_category / len(mates)
        total = sum(s for _, s in active)
        for tool, strength in active:
            weights[tool.id] += w_context * strength / total
        for tool in self.tools:
            if tool.id not in about:
                weights[tool.id] += W_ANY / len(self.tools)
        for hint in hints:
            for tool in self.by_hint.get(f"!{hint}", []):
                if tool.id in weights:
                    weights[tool.id] *= NEGATED
        ids = sorted(weights)
        return by_id[rng.choices(ids, [weights[i] for i in ids])[0]]
