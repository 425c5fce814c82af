"""`toolrec experiment calibration`: does dual-level calibration beat raw clicks?

Design (affordable on a 2-core CPU; this project's own protocol):

1. per seed, ONE logged traffic set: a simulated population (`loop.simulator`, seed s)
   makes `users × requests_per_user` requests in time order; the bootstrap SFT model
   answers them exactly as serving would (retrieval → GQR prompt → `Generator`, the online
   decoding with its exploration share) and the simulated users click and execute. The
   impressions and feedback are the real event contracts (`streams.schemas`);
2. per arm, the samples are recomputed from those same events by the streaming stage's own
   pure functions (`streams.window` join + `streams.calibration`), with the arm's switches
   of `CalibrationConfig`:
       raw            weights 1 (activity, tool and position off)
       activity       activity level only
       tool           tool level only
       full           dual-level (activity × tool) — the method
       full_position  dual-level × the position term
   then written to a fresh Delta table and trained with one incremental refresh of the
   trainer (`trainer.refresh.Refresher`: weighted KTO with LoRA from the SFT champion,
   hold-out, per-class re-normalization) with `max_steps` steps;
3. every arm's adapter (and the SFT baseline, arm `sft`) answers the same fixed evaluation
   turns with the same decoding seeds; the simulator scores them with its hidden truth:
   ground-truth CTR of the reference user, share of clicks on the right tool, relevance.
Over ≥ 3 seeds: mean and 95 % Student-t interval per arm, and the paired difference of each
arm to `raw` per seed (same traffic, same evaluation turns).

Diagnostics (why an arm wins or not): on each arm's training samples, the weighted mean
true utility of clicked minus non-clicked suggestions (`utility_gap`; what the weighted
objective actually pushes towards), the share of desirable weight that comes from heavy
clickers, and the share that sits on tool-invoking suggestions.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loop.config import ExperimentConfig
from loop.metrics import Record, mean_interval, summarize
from loop.models import StartModel
from loop.simulator import Reaction, Shown, Simulator, Turn

log = logging.getLogger(__name__)

ARM_SWITCHES: dict[str, dict[str, Any]] = {
    "raw": {"activity_enabled": False, "tool_enabled": False, "position_enabled": False},
    "activity": {"activity_enabled": True, "tool_enabled": False, "position_enabled": False},
    "tool": {"activity_enabled": False, "tool_enabled": True, "position_enabled": False},
    "full": {"activity_enabled": True, "tool_enabled": True, "position_enabled": False},
    "full_position": {"activity_enabled": True, "tool_enabled": True, "position_enabled": True},
    "full_toolrec": {"form": "toolrec", "activity_enabled": True, "tool_enabled": True,
                     "position_enabled": False},
}
METRICS = ("gt_ctr", "gt_right_tool_share", "relevance", "tool_query_share", "mean_words")
T0_MS = 1_767_225_600_000  # 2026-01-01: logged traffic runs on a fixed simulated clock
USER_KEY = b"toolrec-experiment-user-id-key-0"


@dataclass
class Logged:
    """One seed's logged traffic: the events the system saw and the simulator's truth."""

    records: list[Record]
    impressions: list[Any]  # streams.schemas.Impression, time order
    feedback: list[Any]  # streams.schemas.Feedback, time order
    utility: dict[str, float]  # sample_id -> true utility
    cohort: dict[str, str]  # request_id -> activity cohort


@dataclass
class ArmResult:
    seed: int
    arm: str
    metrics: dict[str, Any]
    diagnostics: dict[str, Any] = field(default_factory=dict)
    refresh: dict[str, Any] = field(default_factory=dict)


class Experiment:
    """Runs the protocol of the module docstring. `run()` returns every (seed, arm) result."""

    def __init__(self, settings: Any, cfg: ExperimentConfig, start: StartModel, *,
                 echo: Callable[[str], None] = print) -> None:
        from retrieval import Retriever

        self.settings = settings
        self.cfg = cfg
        self.start = start
        self.echo = echo
        self.generator_config = settings.trainer.generator.model_copy(
            update={"model_dir": start.model_dir, **start.generator_overrides})
        self.retriever = Retriever(settings.retrieval)
        self.results: list[ArmResult] = []
        self._started = time.monotonic()
        self._units_done = 0

    # ---------------------------------------------------------------- orchestration
    def run(self) -> list[ArmResult]:
        self.cfg.out_dir.mkdir(parents=True, exist_ok=True)
        for seed in self.cfg.seeds:
            self._seed(seed)
            self._save()
        return self.results

    @property
    def _units_total(self) -> int:
        return len(self.cfg.seeds) * (1 + len(self.cfg.arms))

    def _tick(self, what: str) -> None:
        self._units_done += 1
        elapsed = time.monotonic() - self._started
        eta = elapsed / self._units_done * (self._units_total - self._units_done)
        self.echo(f"experiment: {what} done ({self._units_done}/{self._units_total} steps, "
                  f"elapsed {elapsed / 60:.1f} min, ETA {eta / 60:.1f} min)")

    def _seed(self, seed: int) -> None:
        sim = self._simulator(seed)
        logged = self._log_traffic(sim, seed)
        self._tick(f"seed {seed}: logged traffic ({len(logged.records)} requests, "
                   f"observed CTR {summarize(logged.records)['obs_ctr']:.3f})")
        eval_turns = self._eval_turns(sim)
        history = history_events(sim, logged, self.cfg.history_per_user, seed)
        for arm in self.cfg.arms:
            started = time.monotonic()
            result = self._arm(sim, logged, history, eval_turns, seed, arm)
            result.refresh["arm_s"] = round(time.monotonic() - started, 1)
            self.results.append(result)
            self._tick(f"seed {seed} arm {arm}: GT CTR {result.metrics['gt_ctr']:.4f}, "
                       f"right-tool {_f(result.metrics['gt_right_tool_share'])}, relevance "
                       f"{_f(result.metrics['relevance'])}")

    def _arm(self, sim: Simulator, logged: Logged, history: tuple[list[Any], list[Any]],
             eval_turns: list[Turn], seed: int, arm: str) -> ArmResult:
        if arm == "sft":
            adapter, refresh, diagnostics = self.start.adapter_dir, {}, {}
        else:
            samples = replay_samples(logged, self._streams_config(arm), history)
            diagnostics = weight_diagnostics(samples, logged)
            adapter, refresh = self._train(samples, seed, arm)
        metrics = self._evaluate(sim, adapter, arm, eval_turns, seed)
        return ArmResult(seed, arm, metrics, diagnostics, refresh)

    # ---------------------------------------------------------------- pieces
    def _simulator(self, seed: int) -> Simulator:
        n = self.generator_config.n_suggestions
        config = self.settings.loop.simulator.model_copy(
            update={"seed": seed, "users": self.cfg.users, "n_suggestions": n})
        return Simulator(config, tools=self.retriever.catalog.tools,
                         encode=self.retriever.encode,
                         battery_low_threshold=self.settings.retrieval.battery_low_threshold)

    def _streams_config(self, arm: str) -> Any:
        streams = self.settings.streams
        calibration = streams.calibration.model_copy(update=ARM_SWITCHES[arm])
        return streams.model_copy(update={"calibration": calibration})

    def _generator(self, adapter_dir: Path, version: str) -> Any:
        from generator.generator import Generator

        return Generator.load(self.start.model_dir, adapter_dir, config=self.generator_config,
                              linker=self.retriever, model_version=version)

    def _answer(self, generator: Any, turns: Sequence[Turn], *, seed: int, explore: float,
                label: str) -> tuple[list[tuple[Shown, ...]], list[str]]:
        """What the model shows for each turn (and the rendered prompts), generated in
        batches like serving does."""
        decoding = self.generator_config.decoding
        shown: list[tuple[Shown, ...]] = []
        prompts: list[str] = []
        batch = self.cfg.generation_batch
        started = time.monotonic()
        for start in range(0, len(turns), batch):
            chunk = turns[start:start + batch]
            dec = decoding.model_copy(update={"seed": seed * 100_003 + start,
                                              "explore_rate": explore})
            results = generator.generate_batch([self._inputs(t) for t in chunk],
                                               n=self.generator_config.n_suggestions,
                                               decoding=dec)
            shown += [tuple(Shown(s["position"], s["text"], s["tool_id"]) for s in r.shown())
                      for r in results]
            prompts += [r.prompt for r in results]
            done = min(start + batch, len(turns))
            rate = done / max(time.monotonic() - started, 1e-9)
            if done == len(turns) or (start // batch) % 5 == 4:
                self.echo(f"  {label}: {done}/{len(turns)} requests, {rate:.2f} req/s, "
                          f"ETA {(len(turns) - done) / rate:.0f}s")
        return shown, prompts

    def _inputs(self, turn: Turn) -> Any:
        from generator.prompt import PromptInputs, prompt_tools

        request = turn.request
        k = self.generator_config.max_tools
        hits = self.retriever.search(request.query, response=request.response,
                                     recent=list(request.recent), context=dict(request.context),
                                     k=max(k, request.n))
        return PromptInputs(query=request.query, response=request.response,
                            recent=request.recent, tools=prompt_tools(hits[:k]),
                            context=dict(request.context))

    def _log_traffic(self, sim: Simulator, seed: int) -> Logged:
        turns = [sim.turn(u, i) for i in range(self.cfg.requests_per_user)
                 for u in range(self.cfg.users)]
        generator = self._generator(self.start.adapter_dir, "sft")
        try:
            shown, prompts = self._answer(generator, turns, seed=seed,
                                 explore=self.settings.serving.explore_share,
                                 label=f"seed {seed} logged traffic")
        finally:
            del generator
            gc.collect()
        return build_logged(sim, turns, shown, prompts, self.generator_config.decoding)

    def _eval_turns(self, sim: Simulator) -> list[Turn]:
        """Fixed evaluation turns: later turns of the same users, never logged."""
        first = 10_000
        return [sim.turn(k % self.cfg.users, first + k // self.cfg.users)
                for k in range(self.cfg.eval_turns)]

    def _evaluate(self, sim: Simulator, adapter: Path, arm: str, turns: list[Turn],
                  seed: int) -> dict[str, Any]:
        generator = self._generator(adapter, arm)
        try:
            shown, _ = self._answer(generator, turns, seed=seed + 7_919, explore=0.0,
                                 label=f"seed {seed} arm {arm} evaluation")
        finally:
            del generator
            gc.collect()
        records = [Record(0, t, f"eval-{i}", arm, s, sim.judge(t, s), Reaction(None))
                   for i, (t, s) in enumerate(zip(turns, shown, strict=True))]
        return summarize(records)

    def _train(self, samples: list[Any], seed: int, arm: str) -> tuple[Path, dict[str, Any]]:
        from lakehouse.config import LakeConfig
        from lakehouse.writer import write_samples
        from loop.demo import fresh_dir
        from trainer.refresh import Refresher
        from trainer.registry import Registry

        root = fresh_dir(self.cfg.out_dir / "runs" / f"seed{seed}-{arm}")
        lake = LakeConfig(root=str(root / "lake"))
        trainer = self._trainer_config(root, seed)
        write_samples(lake, [s.model_dump(by_alias=True) for s in samples])
        Registry(lake, trainer.training, None).import_adapter(
            self.start.adapter_dir, self.start.model_dir, promote=True, note="SFT baseline")
        refresher = Refresher(lake, trainer, None, linker=self.retriever,
                              encoder=self.retriever.encode)
        started = time.monotonic()
        result = refresher.run(min_new_samples=1, max_steps=self.cfg.max_steps)
        if result.record is None:
            raise RuntimeError(f"seed {seed} arm {arm}: the refresh trained nothing "
                               f"({result.reason})")
        record = result.record
        return record.adapter_dir, {
            "version": record.version, "gate": record.status, "n_train": record.n_train,
            "train_loss": record.metrics.get("train_loss"), "seconds":
            round(time.monotonic() - started, 1),
            "reward_margin": (record.metrics.get("candidate") or {}).get("reward_margin"),
        }

    def _trainer_config(self, root: Path, seed: int) -> Any:
        training = self.settings.trainer.training.model_copy(update={
            "max_steps": self.cfg.max_steps, "batch_size": self.cfg.batch_size,
            "learning_rate": self.cfg.learning_rate, "eval_prompts": 1,
            "max_eval_samples": 32, "min_new_samples": 1, "seed": seed, "announce": False,
            "artifact_dir": root / "artifacts", "lock_path": root / "trainer.lock",
            **self.start.training_overrides,
        })
        return self.settings.trainer.model_copy(update={
            "generator": self.generator_config, "training": training})

    def _save(self) -> None:
        path = self.cfg.out_dir / "results.json"
        path.write_text(json.dumps({
            "config": self.cfg.model_dump(mode="json"),
            "start_model": str(self.start.adapter_dir),
            "results": [r.__dict__ for r in self.results],
        }, indent=2, default=str))


# --------------------------------------------------------------------------- pure parts


def build_logged(sim: Simulator, turns: Sequence[Turn], shown: Sequence[tuple[Shown, ...]],
                 prompts: Sequence[str], decoding: Any) -> Logged:
    """Impressions and feedback as serving and the telemetry producer would send them, plus
    the simulator's hidden truth about each (kept apart)."""
    from generator.prompt import TEMPLATE_VERSION
    from streams.producer import pseudonymize
    from streams.schemas import Feedback, Impression

    records, impressions, feedback = [], [], []
    utility: dict[str, float] = {}
    cohort: dict[str, str] = {}
    for i, (turn, items, prompt) in enumerate(zip(turns, shown, prompts, strict=True)):
        request_id = f"x{sim.config.seed}-{i:06d}"
        judgement = sim.judge(turn, items)
        reaction = sim.react(turn, items, judgement)
        records.append(Record(0, turn, request_id, "sft", tuple(items), judgement, reaction))
        cohort[request_id] = turn.user.cohort
        if not items:
            continue
        ts = T0_MS + i * 1_000
        user_id = pseudonymize(turn.request.raw_user_id, USER_KEY)
        impressions.append(Impression.model_validate({
            "schema": "impression/1", "event_id": f"e-{request_id}", "request_id": request_id,
            "user_id": user_id, "session_id": turn.request.session_id, "ts": ts,
            "model_version": "sft", "template_version": TEMPLATE_VERSION, "prompt": prompt,
            "query": turn.request.query, "context": dict(turn.request.context),
            "suggestions": [{"position": s.position, "text": s.text, "tool_id": s.tool_id}
                            for s in items],
            "decoding": {"temperature": decoding.temperature, "top_p": decoding.top_p},
        }))
        for k, event in enumerate(reaction.events):
            feedback.append(Feedback.model_validate({
                "schema": "feedback/1", "event_id": f"f-{request_id}-{k}",
                "request_id": request_id, "user_id": user_id, "ts": ts + 200 + k,
                "type": event.type, "position": event.position, "success": event.success,
            }))
        for s, u in zip(items, judgement.utility, strict=True):
            utility[f"{request_id}:{s.position}"] = u
    return Logged(records, impressions, feedback, utility, cohort)


def history_events(sim: Simulator, logged: Logged, per_user: int,
                   seed: int) -> tuple[list[Any], list[Any]]:
    """Each user's earlier impressions and clicks, before the logged traffic (not trained on).

    In production the activity state is a 14-day decayed history; a few logged requests per
    user would leave every ρ_u near 1. So each user gets `per_user` earlier impressions whose
    lists have the true utilities of random logged lists (what the baseline shows) and
    clicks drawn from the user's own click model. Only counts reach the calibration state,
    so the placeholder texts do not matter."""
    from loop.population import draw_click
    from streams.producer import pseudonymize
    from streams.schemas import Feedback, Impression

    rng = random.Random(f"history:{seed}")
    pool = [r.judgement.utility for r in logged.records if r.judgement.utility]
    impressions, feedback = [], []
    if not pool:
        return impressions, feedback
    for user in sim.users:
        user_id = pseudonymize(user.raw_id, USER_KEY)
        for j in range(per_user):
            request_id = f"h{seed}-{user.index:05d}-{j:04d}"
            ts = T0_MS - (per_user - j) * 600_000 - user.index
            utilities = rng.choice(pool)
            impressions.append(Impression.model_validate({
                "schema": "impression/1", "event_id": f"e-{request_id}",
                "request_id": request_id, "user_id": user_id, "session_id": f"h-{user_id}",
                "ts": ts, "model_version": "history", "template_version": "history",
                "prompt": "history", "query": "history",
                "suggestions": [{"position": k, "text": f"earlier suggestion {k}"}
                                for k in range(1, len(utilities) + 1)],
            }))
            k = draw_click(utilities, user.params, sim.config.click.eta, rng)
            if k is not None:
                feedback.append(Feedback.model_validate({
                    "schema": "feedback/1", "event_id": f"f-{request_id}",
                    "request_id": request_id, "user_id": user_id, "ts": ts + 200,
                    "type": "click", "position": k}))
    return impressions, feedback


def replay_samples(logged: Logged, streams_config: Any,
                   history: tuple[list[Any], list[Any]] = ([], [])) -> list[Any]:
    """The samples the Faust worker would emit for these events under `streams_config`:
    the same pure transitions (`streams.window`), one partition, windows closed in
    deadline order. `history` events count into the user and global state first; their
    own samples are dropped."""
    from streams.window import (
        close,
        deadline_of,
        new_global_state,
        new_user_state,
        on_feedback,
        on_impression,
    )

    users: dict[str, Any] = {}
    glob = new_global_state()
    impressions, feedback = [*history[0], *logged.impressions], [*history[1], *logged.feedback]
    events = sorted([(e.ts, 0, e) for e in impressions] + [(e.ts, 1, e) for e in feedback],
                    key=lambda x: (x[0], x[1]))
    pending = []
    for offset, (_, kind, event) in enumerate(events):
        user = users.setdefault(event.user_id, new_user_state(0))
        if kind == 0:
            outcome = on_impression(user, event, offset, 0, streams_config)
            if outcome == "accepted":
                pending.append((deadline_of(event.ts, streams_config), event.request_id, event))
        else:
            on_feedback(user, event, offset, event.model_dump_json(by_alias=True),
                        streams_config)
    samples = []
    logged_ids = {i.request_id for i in logged.impressions}
    for _, _, impression in sorted(pending, key=lambda p: (p[0], p[1])):
        closed = close(users[impression.user_id], glob, impression, streams_config)
        if impression.request_id in logged_ids:
            samples += closed
    return samples


def weight_diagnostics(samples: Sequence[Any], logged: Logged) -> dict[str, Any]:
    """What an arm's weights make the objective prefer (see the module docstring)."""
    def weighted(rows: list[Any], value: Callable[[Any], float]) -> float | None:
        total = sum(s.weight for s in rows)
        return sum(s.weight * value(s) for s in rows) / total if total > 0 else None

    clicked = [s for s in samples if s.clicked]
    skipped = [s for s in samples if not s.clicked]
    utility = lambda s: logged.utility.get(s.sample_id, 0.0)  # noqa: E731
    u_click, u_skip = weighted(clicked, utility), weighted(skipped, utility)
    heavy = lambda s: float(logged.cohort.get(s.request_id) == "heavy")  # noqa: E731
    return {
        "samples": len(samples), "clicked": len(clicked),
        "utility_clicked": u_click, "utility_skipped": u_skip,
        "utility_gap": None if u_click is None or u_skip is None else u_click - u_skip,
        "heavy_share_of_click_weight": weighted(clicked, heavy),
        "tool_share_of_click_weight": weighted(clicked, lambda s: float(s.is_tool_query)),
        "unweighted_utility_gap": _gap(clicked, skipped, utility),
    }


def _gap(clicked: list[Any], skipped: list[Any], value: Callable[[Any], float]) -> float | None:
    if not clicked or not skipped:
        return None
    return (sum(map(value, clicked)) / len(clicked)) - (sum(map(value, skipped)) / len(skipped))


def _f(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


# --------------------------------------------------------------------------- summary


def aggregate(results: Sequence[ArmResult], arms: Sequence[str]) -> list[dict[str, Any]]:
    """Per arm: mean and 95 % interval over seeds of each metric, and the paired difference
    of gt_ctr to the raw arm (same seed)."""
    rows = []
    for arm in arms:
        mine = [r for r in results if r.arm == arm]
        row: dict[str, Any] = {"arm": arm, "seeds": len(mine)}
        for metric in (*METRICS, "utility_gap", "heavy_share_of_click_weight"):
            values = [_value(r, metric) for r in mine]
            values = [v for v in values if v is not None and not math.isnan(v)]
            row[metric] = mean_interval(values) if values else None
        raw = {r.seed: r.metrics["gt_ctr"] for r in results if r.arm == "raw"}
        diffs = [r.metrics["gt_ctr"] - raw[r.seed] for r in mine if r.seed in raw]
        row["gt_ctr_minus_raw"] = mean_interval(diffs) if diffs and arm != "raw" else None
        rows.append(row)
    return rows


def _value(result: ArmResult, metric: str) -> float | None:
    if metric in result.metrics:
        return result.metrics[metric]
    return result.diagnostics.get(metric)


def load_results(path: Path) -> list[ArmResult]:
    data = json.loads(Path(path).read_text())
    return [ArmResult(**r) for r in data["results"]]


def findings(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Plain statements of what the numbers say (no interpretation beyond the intervals)."""
    by_arm = {r["arm"]: r for r in rows}
    out = []
    for arm in ("full", "full_position", "activity", "tool"):
        row = by_arm.get(arm)
        if row is None or not row["gt_ctr_minus_raw"]:
            continue
        mean, low, high = row["gt_ctr_minus_raw"]
        verdict = ("better than" if low > 0 else "worse than" if high < 0
                   else "not distinguishable from")
        out.append(f"{arm}: ground-truth CTR {mean:+.4f} vs raw-click KTO, 95% interval "
                   f"[{low:+.4f}, {high:+.4f}] over {row['seeds']} paired seeds — {verdict} "
                   "raw KTO at this sample size.")
    for arm in ("raw", "full"):
        row, sft = by_arm.get(arm), by_arm.get("sft")
        if row and sft and row["gt_ctr"] and sft["gt_ctr"]:
            out.append(f"{arm} vs the SFT baseline: ground-truth CTR {row['gt_ctr'][0]:.4f} vs "
                       f"{sft['gt_ctr'][0]:.4f}.")
    gaps = {a: r["utility_gap"][0] for a, r in by_arm.items() if r.get("utility_gap")}
    if gaps:
        out.append("weighted utility gap of the training data (clicked − skipped, true "
                   "utility): " + ", ".join(f"{a} {g:.3f}" for a, g in gaps.items()) + ".")
    return out
