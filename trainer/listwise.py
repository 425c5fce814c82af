"""The reward objective in a refresh: GQR's CTR alignment on the samples table (GQR §3.2).

`training.objective = "reward"` trains on whole lists instead of single clicks (why:
`trainer.reward`; measured: `loop/RESULTS.md`, where it is the objective that lifted every
calibration arm above the SFT start). From the refresh's new training-side samples
(`pair_set`):

1. each request's logged list is read back from its sample rows (`logged_lists`): the
   rendered prompt is the prompt of its first shown suggestion, its turn and retrieved tools
   are parsed from it (`generator.prompt.parse_prompt`);
2. a CTR model is fitted on the logged lines, labelled by their clicks and weighted by
   their calibrated weights (so the calibration decides what the reward model believes),
   and on the newest `reward.ctr_history` training-side lists of earlier samples (one
   refresh's ≈ 170 lists left it noisy);
3. for the most recent `reward.max_prompts` requests, the champion samples
   `reward.candidates` more lists from the stored prompt with the generator's decoding, as
   serving does: on its CTranslate2 engine when it has one (`trainer.refresh`), else the
   PyTorch model about to be trained, before its first step;
4. per request the CTR model scores every list (logged included) and the best and worst
   become a desirable and an undesirable whole-list row (`trainer.reward.label_pairs`).

Held-out requests never get here: the gate scores the candidate on their single clicks,
as with the click objective. Imports generator, trainer.reward, pyarrow and numpy.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from generator.prompt import RenderedPrompt, completion_text, parse_prompt, sample_prompt
from toolrec.errors import ValidationError
from trainer.reward import (
    CtrModel,
    Encode,
    ListCandidate,
    Suggestion,
    candidate_features,
    fit_ctr,
    label_pairs,
    pair_rows,
)

if TYPE_CHECKING:
    from generator.generator import Generator
    from trainer.config import RewardObjectiveConfig

__all__ = ["LoggedList", "PairSet", "fit_logged", "logged_lists", "pair_set"]

log = logging.getLogger(__name__)
LIST_COLUMNS = ("request_id", "prompt", "completion", "position", "tool_id", "clicked",
                "weight", "closed_ts")


@dataclass(frozen=True)
class LoggedList:
    """One shown list as the samples table holds it, with its prompt read back."""

    request_id: str
    rendered: str  # the prompt the model saw
    prompt: RenderedPrompt
    shown: ListCandidate  # display order
    clicked: tuple[bool, ...]
    weights: tuple[float, ...]  # calibrated
    closed_ts: int

    @property
    def turn(self) -> str:
        """What relevance is measured against: the query and the response."""
        return f"{self.prompt.query} {self.prompt.response}"


@dataclass(frozen=True)
class PairSet:
    """The rows to train on and what the reward model did (for the registry row)."""

    rows: list[dict[str, Any]]
    diagnostics: dict[str, Any]


def logged_lists(table: pa.Table) -> tuple[list[LoggedList], int]:
    """The table's requests as lists (oldest close first), and how many requests were skipped
    because their rows do not make one list of this template: another template's prompt,
    or a row whose prompt is not the first one plus the suggestions shown above it."""
    rows = table.select(list(LIST_COLUMNS)).to_pylist()
    by_request: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_request[row["request_id"]].append(row)
    lists, skipped = [], 0
    for request_id, lines in by_request.items():
        lines.sort(key=lambda row: row["position"])
        texts = [completion_text(row["completion"]) for row in lines]
        rendered = lines[0]["prompt"]
        consistent = all(row["prompt"] == sample_prompt(rendered, texts[:k])
                         for k, row in enumerate(lines))
        try:
            prompt = parse_prompt(rendered) if consistent else None
        except ValidationError:
            prompt = None
        if prompt is None:
            skipped += 1
            continue
        lists.append(LoggedList(
            request_id, rendered, prompt,
            ListCandidate(tuple(Suggestion(text, row["tool_id"])
                                for text, row in zip(texts, lines, strict=True))),
            tuple(bool(row["clicked"]) for row in lines),
            tuple(float(row["weight"]) for row in lines),
            max(int(row["closed_ts"]) for row in lines)))
    lists.sort(key=lambda logged: (logged.closed_ts, logged.request_id))
    return lists, skipped


def _logged_features(logged: LoggedList, prompt_tools: Sequence[str],
                     encode: Encode) -> np.ndarray:
    """The CTR features of the list the user was shown."""
    return candidate_features(logged.turn, [logged.shown], prompt_tools, encode)[0]


def _history(table: pa.Table | None, limit: int, *, exclude: set[str]) -> list[LoggedList]:
    """The readable lists of the newest `limit` requests of `table` (by their last close)
    that are not in `exclude`. The newest are picked before any prompt is parsed: the older
    samples grow with the lake, the history stays `limit` lists."""
    if table is None or not limit or not table.num_rows:
        return []
    closes = table.group_by("request_id").aggregate([("closed_ts", "max")]).to_pylist()
    closes = [c for c in closes if c["request_id"] not in exclude]
    closes.sort(key=lambda c: (c["closed_ts_max"], c["request_id"]))
    newest = pa.array([c["request_id"] for c in closes[-limit:]])
    lists, _ = logged_lists(table.filter(pc.is_in(table.column("request_id"), newest)))
    return lists


def prompt_tool_ids(prompt: RenderedPrompt, tool_ids: Mapping[str, str]) -> tuple[str, ...]:
    """The prompt's tools as ids (`tool_ids`: name as rendered → id); unknown names (a tool
    renamed or removed since) keep their place as themselves, matching no linked tool."""
    return tuple(tool_ids.get(name, name) for name in prompt.tool_names)


def fit_logged(lists: Sequence[LoggedList], features: Sequence[np.ndarray], *,
               l2: float) -> CtrModel:
    """The CTR model of the logged lines: clicks weighted by their calibrated weights."""
    return fit_ctr(np.concatenate(features),
                   np.concatenate([np.asarray(logged.clicked, dtype=float) for logged in lists]),
                   np.concatenate([np.asarray(logged.weights) for logged in lists]), l2=l2)


def sample_candidates(generator: Generator, lists: Sequence[LoggedList], *, candidates: int,
                      batch: int, seed: int, checkpoint: Callable[[], None] = lambda: None,
                      ) -> list[list[ListCandidate]]:
    """`candidates` lists per logged prompt from `generator` with its decoding: `batch`
    prompts per generate call, each repeated `candidates` times (rows sample independently;
    on the int8 engine 4 prompts × 3 drew 1.5–2.0 lists/s against 1.3–1.5 for one draw of 8
    prompts per call, 2026-12-04). Progress is logged with rate and ETA; `checkpoint` runs
    before each call (a refresh's stop request raises there)."""
    decoding = generator.config.decoding
    out: list[list[ListCandidate]] = [[] for _ in lists]
    total, started = candidates * len(lists), time.monotonic()
    for start in range(0, len(lists), batch):
        checkpoint()
        rows = [logged for logged in lists[start:start + batch] for _ in range(candidates)]
        results = generator.generate_rendered(
            [logged.rendered for logged in rows], [logged.prompt.inputs() for logged in rows],
            n=max(logged.prompt.n for logged in rows),
            decoding=decoding.model_copy(update={"seed": seed * 1_000_003 + start,
                                                 "explore_rate": 0.0}))
        for index, result in enumerate(results):
            out[start + index // candidates].append(ListCandidate(tuple(
                Suggestion(s.text, s.tool_id) for s in result.suggestions)))
        done = min(start + batch, len(lists)) * candidates
        rate = done / max(time.monotonic() - started, 1e-9)
        log.info("reward objective: %d/%d candidate lists, %.2f lists/s, ETA %.0fs",
                 done, total, rate, (total - done) / rate)
    return out


def pair_set(table: pa.Table, generator: Generator, encode: Encode,
             tool_ids: Mapping[str, str], config: RewardObjectiveConfig, *,
             seed: int, history: pa.Table | None = None,
             checkpoint: Callable[[], None] = lambda: None) -> PairSet:
    """The reward objective's training rows from the training-side samples `table` (see the
    module docstring), and its diagnostics. `history`: older training-side samples; the
    CTR model is also fitted on their newest `config.ctr_history` lists (never sampled for)."""
    started = time.monotonic()
    lists, skipped = logged_lists(table)
    if not lists:
        return PairSet([], {"requests": 0, "skipped_requests": skipped, "pairs": 0})
    tools = [prompt_tool_ids(logged.prompt, tool_ids) for logged in lists]
    logged_features = [_logged_features(logged, prompt_tools, encode)
                       for logged, prompt_tools in zip(lists, tools, strict=True)]
    older = _history(history, config.ctr_history, exclude={x.request_id for x in lists})
    older_features = [_logged_features(logged, prompt_tool_ids(logged.prompt, tool_ids), encode)
                      for logged in older]
    model = fit_logged([*older, *lists], [*older_features, *logged_features], l2=config.l2)
    recent = lists[-config.max_prompts:]
    generation_started = time.monotonic()
    drawn = sample_candidates(generator, recent, candidates=config.candidates,
                              batch=config.generation_batch, seed=seed,
                              checkpoint=checkpoint)
    generated_s = time.monotonic() - generation_started
    rows: list[dict[str, Any]] = []
    gaps = []
    first = len(lists) - len(recent)
    for logged, prompt_tools, shown, draws in zip(recent, tools[first:], logged_features[first:],
                                                  drawn, strict=True):
        options = [logged.shown, *draws]
        rewards = [model.list_reward(f) for f in
                   [shown, *candidate_features(logged.turn, draws, prompt_tools, encode)]]
        pair = label_pairs(options, rewards, min_gap=config.min_gap)
        if pair is not None:
            gaps.append(rewards[pair[0]] - rewards[pair[1]])
            rows += pair_rows(logged.request_id, logged.rendered, options, pair)
    diagnostics = {
        "requests": len(lists), "skipped_requests": skipped, "prompts": len(recent),
        "ctr_history_lists": len(older),
        "candidates": config.candidates, "pairs": len(gaps),
        "mean_reward_gap": round(float(np.mean(gaps)), 4) if gaps else None,
        "ctr_model": model.describe(), "seconds": round(time.monotonic() - started, 1),
        "generation_seconds": round(generated_s, 1),
    }
    log.info("reward objective: %d pairs from %d prompts (%d requests read, %d skipped); "
             "CTR model %s", len(gaps), len(recent), len(lists), skipped, model.describe())
    return PairSet(rows, diagnostics)
