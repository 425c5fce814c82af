"""The bootstrap SFT training set, generated from the SysToolKit catalog.

Why: a base instruct model (SmolLM2-135M) does not follow the GQR template — it chats.
Before any click exists, supervised fine-tuning on synthetic, tool-grounded lists teaches it
the response format (`- <query>` lines, exactly n of them, then the end of the turn) and to
draw its suggestions from the tools shown as side information. Clicks then align it (KTO).

How one example is made (`build_sft_examples`, deterministic for a seed):
1. pick a category uniformly, then a tool `T` of it that has example utterances;
2. the user query is one of `T`'s examples;
3. the assistant response is a short templated acknowledgement built from `T`'s name or
   description (empty in ~15% of examples: the response is optional side information);
4. the context (in ~80% of examples) is a device context — retrieval's `DeviceContext`
   fields, as serving receives them: neutral background fields, and in most cases
   values in which `T`'s context hints (`battery_low`, `night`, `app:phone`,
   `!charging`, …) hold (`context_from_hints`); 0–2 recent queries are examples of random
   other tools;
5. the tools shown are what serving would show: `search(inputs)` when given (retrieval's
   `Retriever.search` through `retriever_search`), otherwise `T` followed by tools that
   share its category or a context hint, in random order, capped at `max_tools`;
6. the target list: n (2…`n_suggestions`) examples of the *shown* tools other than `T`
   (a follow-up, not a rephrasing of the request) and other than the recent queries,
   preferring tools whose hints match the context, one per tool first, de-duplicated,
   each within the parser's length limits — so the model learns to ground every
   suggestion in a listed tool;
7. `prompt = render_prompt(inputs, n)`, `completion = format_response(targets)`: the exact
   factorization the generator decodes and the KTO trainer later scores.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from generator.config import GeneratorConfig
from generator.parser import words_key
from generator.prompt import PromptInputs, format_response, prompt_tools, render_prompt
from toolrec.errors import TrainerError

__all__ = [
    "SFTExample",
    "ToolSearch",
    "build_sft_examples",
    "context_from_hints",
    "retriever_search",
]

ToolSearch = Callable[[PromptInputs, int], Sequence[Any]]
"""(inputs without tools, k) -> the tools (catalog Tools or ToolHits) to show, best first."""

# A representative foreground package per retrieval app category (`app:<category>` hints).
_APP_PACKAGES = {
    "media": "com.spotify.music", "video": "com.google.android.youtube",
    "navigation": "com.google.android.apps.maps", "messaging": "com.whatsapp",
    "browser": "com.android.chrome", "camera": "com.android.camera",
    "phone": "com.google.android.dialer", "fitness": "com.strava",
    "reading": "com.amazon.kindle", "game": "com.king.candycrushsaga",
    "social": "com.instagram.android", "shopping": "com.ebay.mobile",
}
_NETWORKS = ("wifi", "cellular", "offline")
_LOCALES = ("de-DE", "fr-FR", "es-ES", "it-IT", "zh-CN")

_RESPONSES = (
    "Done.",
    "Okay, done: {description}.",
    "Sure. {description}.",
    "{name} is taken care of.",
    "All set. Anything else?",
    "Here you go: {name}.",
)


@dataclass(frozen=True)
class SFTExample:
    """One training pair, with what it was made from (for inspection and tests)."""

    prompt: str
    completion: str
    inputs: PromptInputs
    targets: tuple[str, ...]
    target_tools: tuple[str, ...]


def context_from_hints(hints: Sequence[str], rng: random.Random) -> dict[str, Any]:
    """A device context (retrieval's `DeviceContext` fields) in which `hints` hold.

    `x` makes hint x active, `!x` makes it inactive; unknown hints are ignored.
    """
    context: dict[str, Any] = {}
    for hint in hints:
        on, name = not hint.startswith("!"), hint.lstrip("!")
        if name == "battery_low":
            context["battery"] = rng.randint(3, 19) if on else rng.randint(40, 95)
            if on:
                context.setdefault("charging", False)
        elif name in ("charging", "headset", "driving"):
            context[name] = on
        elif name in ("night", "morning", "evening") and on:
            context["time_of_day"] = name
        elif name in _NETWORKS:
            context["network"] = name if on else rng.choice([n for n in _NETWORKS if n != name])
        elif name == "non_english":
            context["locale"] = rng.choice(_LOCALES) if on else "en-US"
        elif name.startswith("app:") and on and name[4:] in _APP_PACKAGES:
            context["foreground_app"] = _APP_PACKAGES[name[4:]]
    return context


def retriever_search(retriever: Any) -> ToolSearch:
    """A ToolSearch over retrieval's `Retriever.search(query, response=, recent=, context=)`."""

    def search(inputs: PromptInputs, k: int) -> Sequence[Any]:
        return list(retriever.search(
            inputs.query,
            response=inputs.response,
            recent=list(inputs.recent),
            context=dict(inputs.context),
            k=k,
        ))

    return search


def _examples(tool: Any) -> list[str]:
    return [str(e) for e in (getattr(tool, "examples", None) or []) if str(e).strip()]


def _hints(tool: Any) -> set[str]:
    return set(getattr(tool, "context", None) or [])


class _Catalog:
    """Lookups over the usable tools (those with examples)."""

    def __init__(self, tools: Sequence[Any]) -> None:
        self.tools = [t for t in tools if _examples(t)]
        if len(self.tools) < 2:
            raise TrainerError(
                f"the catalog has {len(self.tools)} tools with example utterances; the SFT "
                "data needs at least 2 — check retrieval's SysToolKit catalog"
            )
        self.by_category: dict[str, list[Any]] = defaultdict(list)
        self.by_hint: dict[str, list[Any]] = defaultdict(list)
        for tool in self.tools:
            self.by_category[str(getattr(tool, "category", "") or "")].append(tool)
            for hint in _hints(tool):
                self.by_hint[hint].append(tool)
        self.categories = sorted(self.by_category)

    def neighbours(self, seed: Any, rng: random.Random, k: int) -> list[Any]:
        """`seed`, then tools of its category or sharing one of its hints, shuffled."""
        pool = {str(t.id): t for t in self.by_category[str(getattr(seed, "category", ""))]}
        for hint in _hints(seed):
            pool.update((str(t.id), t) for t in self.by_hint[hint])
        pool.pop(str(seed.id), None)
        others = sorted(pool.values(), key=lambda t: str(t.id))
        rng.shuffle(others)
        return [seed, *others[: max(k - 1, 0)]]


def _response(tool: Any, rng: random.Random) -> str:
    if rng.random() < 0.15:
        return ""
    template = rng.choice(_RESPONSES)
    description = str(getattr(tool, "description", "") or "").rstrip(".")
    name = str(getattr(tool, "name", "") or tool.id)
    return template.format(description=description[:1].lower() + description[1:], name=name)


def _context(hints: list[str], rng: random.Random) -> tuple[dict[str, Any], set[str]]:
    """A request's device context and the hints it activates (see the module docstring)."""
    if rng.random() >= 0.8:
        return {}, set()
    background = {"battery": rng.randint(40, 100), "time_of_day": "afternoon", "locale": "en-US"}
    keys = rng.sample(sorted(background), rng.randint(1, len(background)))
    context: dict[str, Any] = {key: background[key] for key in sorted(keys)}
    if not hints or rng.random() >= 0.8:
        return context, set()
    context.update(context_from_hints(hints, rng))
    return context, {h for h in hints if not h.startswith("!")}


def _inputs(
    catalog: _Catalog, rng: random.Random, config: GeneratorConfig
) -> tuple[PromptInputs, Any, set[str]]:
    """Steps 1–4: the request (no tools yet), the tool it is about, the active hints."""
    category = rng.choice(catalog.categories)
    seed = rng.choice(catalog.by_category[category])
    context, active = _context(sorted(_hints(seed)), rng)
    recent = tuple(
        rng.choice(_examples(rng.choice(catalog.tools)))
        for _ in range(rng.randint(0, min(2, config.max_recent)))
    )
    query = rng.choice(_examples(seed))
    return PromptInputs(query, _response(seed, rng), recent, (), context), seed, active


def _targets(
    shown: Sequence[Any], inputs: PromptInputs, seed_tool: Any, active: set[str], n: int,
    rng: random.Random, config: GeneratorConfig,
) -> list[tuple[str, str]]:
    """(text, tool_id) targets: examples of the shown tools other than the one the query
    is about, context-matching tools first, one per tool before a second one."""
    # The parser's duplicate key (same words in any order), so every target survives it.
    avoid = {words_key(inputs.query), *(words_key(r) for r in inputs.recent)}
    others = [t for t in shown if str(t.id) != str(seed_tool.id)]
    ranked = sorted(others, key=lambda t: (-len(_hints(t) & active), rng.random()))
    rounds = [[(e, str(t.id)) for e in rng.sample(_examples(t), len(_examples(t)))]
              for t in ranked]
    picked: list[tuple[str, str]] = []
    seen = set(avoid)
    for depth in range(max((len(r) for r in rounds), default=0)):  # one per tool, then more
        for candidates in rounds:
            if depth >= len(candidates) or len(picked) >= n:
                continue
            text, tool_id = candidates[depth]
            key = words_key(text)
            fits = (len(text) <= config.max_suggestion_chars
                    and len(text.split()) <= config.max_suggestion_words)
            if key and key not in seen and fits:
                seen.add(key)
                picked.append((text, tool_id))
    return picked


def build_sft_examples(
    tools: Sequence[Any],
    count: int,
    *,
    config: GeneratorConfig | None = None,
    seed: int = 0,
    search: ToolSearch | None = None,
) -> list[SFTExample]:
    """`count` SFT examples from catalog tools (objects with id, name, category,
    description, examples, context hints), made as the module docstring describes."""
    config = config or GeneratorConfig()
    catalog = _Catalog(tools)
    rng = random.Random(seed)
    examples: list[SFTExample] = []
    attempts = 0
    while len(examples) < count and attempts < count * 5:
        attempts += 1
        example = _example(catalog, rng, config, search)
        if example is not None:
            examples.append(example)
    if len(examples) < count:
        raise TrainerError(
            f"built only {len(examples)} of {count} SFT examples in {attempts} attempts; the "
            "catalog's tools lack usable example utterances (≤ max_suggestion_chars)"
        )
    return examples


def _example(
    catalog: _Catalog, rng: random.Random, config: GeneratorConfig, search: ToolSearch | None
) -> SFTExample | None:
    base, seed_tool, active = _inputs(catalog, rng, config)
    k = max(config.max_tools, 1)
    if search is not None:
        shown = [getattr(hit, "tool", hit) for hit in search(base, k)][:k]
    else:
        shown = catalog.neighbours(seed_tool, rng, k)
    n = rng.randint(min(2, config.n_suggestions), config.n_suggestions)
    targets = _targets(shown, base, seed_tool, active, n, rng, config)
    if not targets:
        return None
    inputs = PromptInputs(base.query, base.response, base.recent, prompt_tools(shown),
                          base.context)
    texts = tuple(t for t, _ in targets)
    return SFTExample(
        prompt=render_prompt(inputs, len(texts), config),
        completion=format_response(texts),
        inputs=inputs,
        targets=texts,
        target_tools=tuple(tool_id for _, tool_id in targets),
    )
