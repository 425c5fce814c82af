"""Held-out evaluation and the promotion gate.

Metrics of one model (`ModelEvaluator.metrics`), all on fixed inputs so that two models are
compared on the same ground:

- `reward_margin` — weighted KTO reward margin on held-out samples (`trainer.data`'s stable
  per-request hold-out, never trained on): with r_i = β·(log π(y_i|x_i) − log π_ref(y_i|x_i))
  and a fixed reference (the SFT baseline; the adapter-disabled base when there is none),
  margin = Σ_D w·r / Σ_D w − Σ_U w·r / Σ_U w over clicked (D) and non-clicked (U) samples,
  w the calibrated weights. The reference's own margin is 0 by definition; the margin is
  linear in log π, so the difference of two models' margins does not depend on the
  reference chosen. It is measured only with enough evidence (`Evidence`: at least
  `min_heldout_clicks` clicked and `min_heldout_nonclicks` non-clicked held-out samples).
- generation metrics on a small fixed prompt set (`EVAL_REQUESTS`, greedy decoding through
  the serving `Generator`, so exactly what users would see): `format_valid_rate` (parser's
  format check), `tool_grounded_share` (suggestions linked to a tool; needs a linker),
  `duplicate_rate` (duplicates the parser dropped / all lines), `distinct_1`/`distinct_2`,
  `mean_length` (words per suggestion) and `relevance` (mean cosine of each suggestion to
  "query + response" with retrieval's encoder; needs an encoder).

The gate (`gate`) has three outcomes:
- `reject` — a guarded metric regresses by more than its tolerance (`TrainingConfig.gate`)
  against the champion (the base model when there is none) OR against the fixed SFT
  baseline (`Registry.baseline`), with the same tolerances: a chain of tolerated small
  regressions cannot drift further than one tolerance from the baseline;
- `not_enough_evidence` — nothing regressed, but the held-out set is too small to measure
  the reward margin (see above): nothing is promoted, the champion stays, and the next
  refresh re-reads everything since the champion, so the held-out set grows;
- `promote` — otherwise.
`length_drift` = |mean_length_cand / mean_length_ref − 1| has an absolute bound;
`suggestions_per_request` (valid suggestions per generated list) may drop by at most its
tolerance. A metric
either side could not measure (None) is reported and not guarded.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from toolrec.errors import TrainerError

if TYPE_CHECKING:
    import pyarrow as pa

    from generator.config import GeneratorConfig
    from generator.parser import ToolLinker
    from trainer.config import GateTolerances, TrainingConfig

__all__ = [
    "EVAL_REQUESTS",
    "Evidence",
    "GateOutcome",
    "GateResult",
    "ModelEvaluator",
    "distinct_n",
    "gate",
    "margin_difference_se",
    "use_adapter",
    "weighted_margin",
]

log = logging.getLogger(__name__)
Encoder = Callable[[list[str]], np.ndarray]
ToolSearch = Callable[[str, str], Sequence[Any]]  # (query, response) -> retrieval ToolHits

# (query, assistant response, tools shown as side information: (tool_id, name, example))
EVAL_REQUESTS: tuple[tuple[str, str, tuple[tuple[str, str, str], ...]], ...] = (
    ("my battery is almost empty", "Your battery is at 8%.", (
        ("battery_saver", "battery saver", "turn on battery saver"),
        ("brightness", "brightness", "lower the screen brightness"))),
    ("wake me up tomorrow", "What time should I wake you?", (
        ("alarm", "alarm", "set an alarm for 7"),
        ("dnd", "do not disturb", "turn on do not disturb"))),
    ("I can't connect to the internet", "Your phone is not connected to Wi-Fi.", (
        ("wifi", "wifi settings", "open wifi settings"),
        ("airplane", "airplane mode", "turn off airplane mode"))),
    ("it's too dark to see", "The flashlight can help.", (
        ("flashlight", "flashlight", "turn on the flashlight"),
        ("dark_mode", "dark mode", "turn off dark mode"))),
    ("I'm going into a meeting", "Good luck with your meeting.", (
        ("dnd", "do not disturb", "turn on do not disturb"),
        ("volume", "volume", "mute the phone"))),
    ("play something relaxing", "Playing a calm playlist.", (
        ("timer", "timer", "start a sleep timer for 30 minutes"),
        ("volume", "volume", "lower the volume"))),
    ("how much storage do I have", "You have 12 GB free.", (
        ("storage", "storage", "clean up storage"),
        ("photos", "photos", "back up my photos"))),
    ("share where I am with mom", "Sharing your location with Mom.", (
        ("location", "location", "share my location"),
        ("call", "phone", "call mom"))),
)


# ------------------------------------------------------------------------ pure metrics


def weighted_margin(rewards: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """Σ_D w·r / Σ_D w − Σ_U w·r / Σ_U w. Raises TrainerError when a class is missing."""
    labels = np.asarray(labels, dtype=bool)
    w = np.asarray(weights, dtype=np.float64)
    r = np.asarray(rewards, dtype=np.float64)
    w_d, w_u = w[labels].sum(), w[~labels].sum()
    if w_d <= 0 or w_u <= 0:
        raise TrainerError(
            f"the held-out set needs weighted clicked and non-clicked samples (got weight "
            f"{w_d:.3g} / {w_u:.3g}); raise trainer.training.holdout_share or collect more data"
        )
    return float((w[labels] * r[labels]).sum() / w_d - (w[~labels] * r[~labels]).sum() / w_u)


def margin_difference_se(rewards_a: np.ndarray, rewards_b: np.ndarray, labels: np.ndarray,
                         weights: np.ndarray, requests: Sequence[str]) -> float:
    """Standard error of weighted_margin(a) − weighted_margin(b) on the same samples,
    clustered by request (sibling suggestions share a prompt, so they are not independent):
    the margin difference is Σ_i c_i·d_i with d = a − b and c_i = w_i/Σ_D w for clicks,
    −w_i/Σ_U w otherwise; its variance is estimated as Σ_requests (Σ_i c_i·(d_i − d̄_class))².
    Informational: the gate reports it beside the margins, it does not test with it."""
    labels = np.asarray(labels, dtype=bool)
    w = np.asarray(weights, dtype=np.float64)
    d = np.asarray(rewards_a, dtype=np.float64) - np.asarray(rewards_b, dtype=np.float64)
    w_d, w_u = w[labels].sum(), w[~labels].sum()
    if w_d <= 0 or w_u <= 0:
        raise TrainerError("the margin's standard error needs weighted clicks and non-clicks")
    c = np.where(labels, w / w_d, -w / w_u)
    mean = np.where(labels, (c * d)[labels].sum(), -(c * d)[~labels].sum())
    contributions = c * (d - mean)
    clusters: dict[str, float] = {}
    for request, value in zip(requests, contributions, strict=True):
        clusters[request] = clusters.get(request, 0.0) + float(value)
    return float(np.sqrt(sum(v * v for v in clusters.values())))


def distinct_n(texts: Sequence[str], n: int) -> float | None:
    """Distinct word n-grams / all word n-grams over `texts` (None when there are none)."""
    grams = [
        tuple(words[i : i + n])
        for words in (t.lower().split() for t in texts)
        for i in range(len(words) - n + 1)
    ]
    return len(set(grams)) / len(grams) if grams else None


GateOutcome = Literal["promote", "reject", "not_enough_evidence"]


@dataclass(frozen=True)
class Evidence:
    """How much held-out evidence the reward margin rests on, against the required minimums."""

    clicks: int
    nonclicks: int
    min_clicks: int
    min_nonclicks: int

    @classmethod
    def of(cls, held_out: pa.Table, training: TrainingConfig) -> Evidence:
        labels = held_out.column("label").to_pylist()
        clicks = sum(bool(x) for x in labels)
        return cls(clicks, len(labels) - clicks, training.min_heldout_clicks,
                   training.min_heldout_nonclicks)

    @property
    def enough(self) -> bool:
        return self.clicks >= self.min_clicks and self.nonclicks >= self.min_nonclicks

    @property
    def measurable(self) -> bool:
        """Both classes present: the margin can be computed (whether or not it is required)."""
        return self.clicks > 0 and self.nonclicks > 0

    def reason(self) -> str:
        return (f"not enough evidence: {self.clicks} held-out clicks and {self.nonclicks} "
                f"non-clicks, the reward margin needs >= {self.min_clicks} and >= "
                f"{self.min_nonclicks} (trainer.training.min_heldout_clicks / "
                "min_heldout_nonclicks); the champion stays and the next refresh accumulates")

    def record(self) -> dict[str, Any]:
        return {"heldout_clicks": self.clicks, "heldout_nonclicks": self.nonclicks,
                "min_heldout_clicks": self.min_clicks,
                "min_heldout_nonclicks": self.min_nonclicks, "enough": self.enough}


@dataclass(frozen=True)
class GateResult:
    """The gate's decision with every check; `record()` is what the registry stores.
    `checks` compare with the champion, `baseline_checks` with the fixed SFT baseline."""

    promote: bool
    checks: dict[str, dict[str, Any]]
    reasons: list[str] = field(default_factory=list)
    outcome: GateOutcome = "promote"
    baseline_checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "promote": self.promote, "reasons": self.reasons,
                "checks": self.checks, "baseline_checks": self.baseline_checks,
                "evidence": self.evidence}


_HIGHER_IS_BETTER = ("reward_margin", "format_valid_rate", "tool_grounded_share",
                     "distinct_2", "relevance", "suggestions_per_request")


def gate(candidate: dict[str, Any], reference: dict[str, Any], tol: GateTolerances, *,
         baseline: dict[str, Any] | None = None, evidence: Evidence | None = None,
         reference_name: str = "the champion", baseline_name: str = "the SFT baseline",
         ) -> GateResult:
    """Reject on any regression beyond its tolerance against `reference` (the champion) or
    `baseline`; else 'not_enough_evidence' when `evidence` is short; else promote."""
    checks, reasons = _compare(candidate, reference, tol, reference_name)
    baseline_checks: dict[str, dict[str, Any]] = {}
    if baseline is not None:
        baseline_checks, more = _compare(candidate, baseline, tol, baseline_name)
        reasons += more
    outcome: GateOutcome = "reject" if reasons else "promote"
    if outcome == "promote" and evidence is not None and not evidence.enough:
        outcome, reasons = "not_enough_evidence", [evidence.reason()]
    return GateResult(promote=outcome == "promote", checks=checks, reasons=reasons,
                      outcome=outcome, baseline_checks=baseline_checks,
                      evidence=evidence.record() if evidence is not None else {})


def _compare(candidate: dict[str, Any], reference: dict[str, Any], tol: GateTolerances,
             against: str) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every guarded metric of `candidate` against `reference`: (checks, regressions)."""
    checks: dict[str, dict[str, Any]] = {}
    reasons: list[str] = []

    def check(name: str, ok: bool | None, allowed: float, detail: str) -> None:
        checks[name] = {"candidate": candidate.get(name), "reference": reference.get(name),
                        "tolerance": allowed, "ok": ok}
        if ok is False:
            reasons.append(f"{name} regressed against {against}: {detail}")

    for name in _HIGHER_IS_BETTER:
        cand, ref, allowed = candidate.get(name), reference.get(name), getattr(tol, name)
        ok = None if cand is None or ref is None else cand >= ref - allowed
        check(name, ok, allowed, f"{cand} < {ref} - {allowed}")
    cand, ref = candidate.get("duplicate_rate"), reference.get("duplicate_rate")
    ok = None if cand is None or ref is None else cand <= ref + tol.duplicate_rate
    check("duplicate_rate", ok, tol.duplicate_rate, f"{cand} > {ref} + {tol.duplicate_rate}")
    cand, ref = candidate.get("mean_length"), reference.get("mean_length")
    drift = None if not cand or not ref else abs(cand / ref - 1)
    check("length_drift", None if drift is None else drift <= tol.length_drift,
          tol.length_drift, f"|{cand}/{ref} - 1| = {drift} > {tol.length_drift}")
    checks["length_drift"]["candidate"] = drift
    return checks, reasons


# ---------------------------------------------------------------------- model metrics


@contextmanager
def use_adapter(model: Any, name: str | None) -> Iterator[None]:
    """Run with PEFT adapter `name` active, or with adapters disabled (`None`: the base)."""
    if name is None:
        with model.disable_adapter():
            yield
        return
    previous = model.active_adapter
    model.set_adapter(name)
    try:
        yield
    finally:
        model.set_adapter(previous)


class ModelEvaluator:
    """Computes the metrics of the adapters of one PEFT model on fixed held-out inputs."""

    def __init__(
        self,
        training: TrainingConfig,
        generator_config: GeneratorConfig,
        *,
        linker: ToolLinker | None = None,
        encoder: Encoder | None = None,
        tool_search: ToolSearch | None = None,
    ) -> None:
        """`linker` / `encoder` enable tool grounding / relevance; `tool_search(query,
        response)` (retrieval's search) picks the prompts' tools, else the fixed ones."""
        self.training = training
        self.generator_config = generator_config
        self.linker = linker
        self.encoder = encoder
        self.tool_search = tool_search
        self._inputs: list[Any] | None = None

    def margins(self, model: Any, tokenizer: Any, table: pa.Table,
                adapters: Sequence[str | None], *, reference: str | None = None,
                ) -> dict[str | None, float]:
        """The held-out weighted reward margin of each adapter against the `reference`
        adapter (None: the adapter-disabled base), whose own margin is 0."""
        rewards = self.rewards(model, tokenizer, table, adapters, reference=reference)
        labels = np.asarray(table.column("label").to_pylist(), dtype=bool)
        weights = np.asarray(table.column("weight").to_pylist(), dtype=np.float64)
        return {name: weighted_margin(r, labels, weights) for name, r in rewards.items()}

    def rewards(self, model: Any, tokenizer: Any, table: pa.Table,
                adapters: Sequence[str | None], *, reference: str | None = None,
                ) -> dict[str | None, np.ndarray]:
        """Per held-out sample, each adapter's implied reward β·(log π − log π_reference)."""
        prompts = table.column("prompt").to_pylist()
        completions = table.column("completion").to_pylist()
        requests = (table.column("request_id").to_pylist()
                    if "request_id" in table.column_names else None)
        with use_adapter(model, reference):
            ref = completion_logps(model, tokenizer, prompts, completions, self.training,
                                   requests=requests)
        out: dict[str | None, np.ndarray] = {}
        for name in dict.fromkeys(adapters):  # each adapter once, in order
            if name == reference:
                out[name] = np.zeros_like(ref)
                continue
            with use_adapter(model, name):
                logps = completion_logps(model, tokenizer, prompts, completions,
                                         self.training, requests=requests)
            out[name] = self.training.beta * (logps - ref)
        return out

    def generation_metrics(self, model: Any, tokenizer: Any, *, version: str) -> dict[str, Any]:
        """Greedy generations on the first `eval_prompts` EVAL_REQUESTS, scored."""
        from generator.config import DecodingConfig
        from generator.generator import Generator

        inputs = self.eval_inputs()
        generator = Generator(model, tokenizer, config=self.generator_config,
                              linker=self.linker, model_version=version)
        greedy = DecodingConfig(temperature=0.0, num_candidates=1, explore_rate=0.0, seed=0,
                                max_new_tokens=self.generator_config.decoding.max_new_tokens)
        started = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            results = generator.generate_batch(inputs, decoding=greedy)
        finally:
            model.train(was_training)
        metrics = self._score(inputs, results)
        metrics["generation_s"] = round(time.perf_counter() - started, 3)
        return metrics

    def score_generator(self, generator: Any) -> tuple[dict[str, Any], list[Any]]:
        """The same metrics for a ready generator of any engine (serving's fast engine is
        compared with PyTorch on these prompts): (metrics, the GenerationResults)."""
        from generator.config import DecodingConfig

        inputs = self.eval_inputs()
        greedy = DecodingConfig(temperature=0.0, num_candidates=1, explore_rate=0.0, seed=0,
                                max_new_tokens=self.generator_config.decoding.max_new_tokens)
        results = generator.generate_batch(inputs, decoding=greedy)
        return self._score(inputs, results), results

    def eval_inputs(self) -> list[Any]:
        """The fixed prompt inputs (the same for every model this evaluator scores)."""
        from generator.prompt import PromptInputs, PromptTool, prompt_tools

        if self._inputs is None:
            requests = [EVAL_REQUESTS[i % len(EVAL_REQUESTS)]
                        for i in range(self.training.eval_prompts)]
            self._inputs = [
                PromptInputs(query=q, response=r, tools=(
                    prompt_tools(self.tool_search(q, r)) if self.tool_search is not None
                    else tuple(PromptTool(*t) for t in tools)))
                for q, r, tools in requests
            ]
        return self._inputs

    def _score(self, inputs: Sequence[Any], results: Sequence[Any]) -> dict[str, Any]:
        texts = [s.text for r in results for s in r.suggestions]
        duplicates = sum(d.reason == "duplicate" for r in results for d in r.dropped)
        lines = len(texts) + sum(len(r.dropped) for r in results)
        metrics: dict[str, Any] = {
            "format_valid_rate": float(np.mean([r.format_valid for r in results])),
            "suggestions_per_request": len(texts) / max(len(results), 1),
            "duplicate_rate": duplicates / lines if lines else 0.0,
            "distinct_1": distinct_n(texts, 1),
            "distinct_2": distinct_n(texts, 2),
            "mean_length": float(np.mean([len(t.split()) for t in texts])) if texts else None,
            "tool_grounded_share": None,
            "relevance": None,
        }
        if self.linker is not None and texts:
            metrics["tool_grounded_share"] = float(
                np.mean([s.tool_id is not None for r in results for s in r.suggestions])
            )
        if self.encoder is not None and texts:
            metrics["relevance"] = self._relevance(inputs, results)
        return metrics

    def _relevance(self, inputs: Sequence[Any], results: Sequence[Any]) -> float | None:
        assert self.encoder is not None
        contexts = [f"{i.query} {i.response}".strip() for i in inputs]
        pairs = [(k, s.text) for k, r in enumerate(results) for s in r.suggestions]
        if not pairs:
            return None
        ctx = np.asarray(self.encoder(contexts), dtype=np.float64)
        sug = np.asarray(self.encoder([t for _, t in pairs]), dtype=np.float64)
        sims = [float(sug[j] @ ctx[k]) for j, (k, _) in enumerate(pairs)]
        return float(np.mean(sims))


EVAL_BATCH = 32  # samples per scoring forward (no gradients: larger trees share more)


def completion_logps(
    model: Any, tokenizer: Any, prompts: Sequence[str], completions: Sequence[str],
    training: TrainingConfig, *, requests: Sequence[str] | None = None,
) -> np.ndarray:
    """Σ log π(completion | prompt) per sample, tokenized as the trainer does (TRL's common
    prefix; no EOS after a per-suggestion completion; `max_length` truncation).

    Scored with the fast KTO engine's token trees (`trainer.fastkto`): the samples of one
    request (`requests`; their prompts nest) and the instruction prefix every prompt starts
    with run once per forward of EVAL_BATCH samples, and the vocabulary head only at
    completion tokens. A row whose prompt alone fills `max_length` scores 0 (no completion
    token is left).
    """
    import torch

    from trainer.fastkto import batch_logps, build_batch, plan_batches, tokenize_rows

    ids = requests if requests is not None else [""] * len(prompts)
    rows = [{"prompt": p, "completion": c, "label": False, "weight": 1.0, "request_id": r}
            for p, c, r in zip(prompts, completions, ids, strict=True)]
    samples = tokenize_rows(tokenizer, rows, max_length=None)  # max_length=None: none dropped
    out = np.zeros(len(samples), dtype=np.float64)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in plan_batches(samples, EVAL_BATCH, seed=0):
                plan = replace(build_batch(samples, batch, max_length=training.max_length),
                               kl_first=[], kl_items=[])  # no KL pairs: the gate needs none
                if plan.targets:
                    out[batch] = batch_logps(model, plan, grad=False)[0].double().cpu().numpy()
    finally:
        model.train(was_training)
    if not np.all(np.isfinite(out)):
        raise TrainerError("non-finite log-probabilities on the held-out set; the model is broken")
    return out


def metric_summary(metrics: dict[str, Any]) -> str:
    """One log line of the guarded metrics."""
    keys = ("reward_margin", "format_valid_rate", "tool_grounded_share", "duplicate_rate",
            "distinct_2", "mean_length", "relevance")
    parts = []
    for key in keys:
        value = metrics.get(key)
        parts.append(f"{key}={value:.3f}" if isinstance(value, float) and math.isfinite(value)
                     else f"{key}={value}")
    return " ".join(parts)
