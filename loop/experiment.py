"""`toolrec experiment calibration`: does calibrating clicks make KTO suggest better?

Design (affordable on a 2-core CPU; this project's own protocol):

1. per seed, ONE logged traffic set: a simulated population (`loop.simulator`, seed s)
   makes `users × requests_per_user` requests in time order; the bootstrap SFT model
   answers them exactly as serving would (retrieval → GQR prompt → `Generator`, the online
   decoding with its exploration share) and the simulated users click and execute. The
   impressions and feedback are the real event contracts;
2. per arm, the samples are recomputed from those same events by the streaming stage's own
   pure functions (`streams.window` join + `streams.calibration`), with the arm's
   `CalibrationConfig` (`ARM_SWITCHES`):
       raw            weights 1 (activity, tool and position off)
       activity       activity level only
       tool           tool level only
       full           dual-level (activity × tool) — this project's form (DESIGN.md §4)
       full_position  dual-level × the position term
       full_toolrec   the form reported for ToolRec (DESIGN.md §4b)
   then trained with the trainer's weighted KTO (`trainer.data.build_training_set`: the
   per-class re-normalization and cap; `trainer.fastkto.train_weighted_kto`: LoRA from the
   SFT adapter, which is also the frozen reference) for `max_steps` optimizer steps, the
   adapter saved every `eval_every` steps. An arm whose weights leave a class empty (the
   ToolRec form weighs every skipped tool query 0: with few non-tool suggestions no
   undesirable weight may remain) is not trained, as a refresh would be skipped: the SFT
   model stays, and the arm's result is the SFT model's (recorded as `not_trained`);
   With `objective="reward"` (GQR's CTR alignment, `trainer.reward`) an arm does not train
   on its samples directly: a logistic CTR model is fitted on them (clicked, weighted by the
   arm's calibration), `candidates` more lists are sampled per logged prompt from the SFT
   model (once per seed, shared by the arms), every candidate list is scored (expected
   clicks, Σ p_k), and each prompt whose best and worst list differ by ≥ `min_reward_gap`
   gives one desirable (best) and one undesirable (worst) whole-list sample. So the arms
   differ only in what the CTR model learned from their weights;
3. every checkpoint of every arm (and the SFT baseline, arm `sft`, = step 0 of every
   curve) answers the same fixed evaluation turns with the same decoding seeds; the
   simulator scores them with its hidden truth: ground-truth CTR of the reference user,
   share of clicks on the right tool, relevance. The last checkpoint is the arm's result;
   the earlier ones draw its learning curve.

Statistics (over seeds, the independent replicates; `paired_vs_raw`): per arm the mean and
a 95 % Student-t interval; per arm ≠ raw the paired difference to raw (same traffic, same
evaluation turns), absolute and relative to raw's CTR, with a paired t-test and Holm's
correction over the m = (arms − 1) comparisons. The interval of a comparison is reported at
the level of its Holm step: the i-th smallest p-value gets 1 − 0.05/(m − i + 1), and every
comparison from the first one Holm does not reject on gets that step's level — so an
interval excludes 0 exactly when Holm rejects "no difference" for that arm.

Diagnostics (why an arm wins or not): on each arm's training samples, the weighted mean
true utility of clicked minus non-clicked suggestions (`utility_gap`; what the weighted
objective actually pushes towards), the share of desirable weight that comes from heavy
clickers, and the share that sits on tool-invoking suggestions. With the reward objective
also the CTR model's coefficients, the number of pairs, the correlation of its list reward
with the simulator's true list CTR over all candidates (`reward_true_corr`) and how much
truly better the chosen lists are than the rejected ones (`pair_true_gap`) — the ground
truth is read for these diagnostics only, never for training.

Engine: `engine="ctranslate2"` converts the SFT adapter and every checkpoint to int8 (as
serving converts a champion) and generates with CTranslate2; greedy lists differ slightly
from fp32 PyTorch, identically for every arm.
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
from typing import Any, TypeVar

from loop.config import ExperimentConfig
from loop.errors import LoopError
from loop.metrics import Record, holm, mean_interval, paired_p, summarize
from loop.models import StartModel
from loop.simulator import Reaction, Shown, Simulator, Turn

log = logging.getLogger(__name__)
_T = TypeVar("_T")

ARM_SWITCHES: dict[str, dict[str, Any]] = {
    "raw": {"activity_enabled": False, "tool_enabled": False, "position_enabled": False},
    "activity": {"activity_enabled": True, "tool_enabled": False, "position_enabled": False},
    "tool": {"activity_enabled": False, "tool_enabled": True, "position_enabled": False},
    "full": {"activity_enabled": True, "tool_enabled": True, "position_enabled": False},
    "full_position": {"activity_enabled": True, "tool_enabled": True, "position_enabled": True},
    "full_toolrec": {"form": "toolrec", "activity_enabled": True, "tool_enabled": True,
                     "position_enabled": False},
    "oracle": {"activity_enabled": False, "tool_enabled": False, "position_enabled": False},
}
METRICS = ("gt_ctr", "gt_right_tool_share", "relevance", "tool_query_share", "mean_words")
T0_MS = 1_767_225_600_000  # 2026-01-01: logged traffic runs on a fixed simulated clock
USER_KEY = b"toolrec-experiment-user-id-key-0"


@dataclass
class Logged:
    """One seed's logged traffic: the events the system saw and the simulator's truth."""

    records: list[Record]
    impressions: list[Any]  # contracts.events.Impression, time order
    feedback: list[Any]  # contracts.events.Feedback, time order
    utility: dict[str, float]  # sample_id -> true utility
    cohort: dict[str, str]  # request_id -> activity cohort


@dataclass
class ArmResult:
    seed: int
    arm: str
    metrics: dict[str, Any]
    diagnostics: dict[str, Any] = field(default_factory=dict)
    refresh: dict[str, Any] = field(default_factory=dict)  # training: steps, loss, seconds
    curve: list[dict[str, Any]] = field(default_factory=list)  # {step, gt_ctr, …} per checkpoint


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

    def checkpoints(self) -> list[int]:
        """The optimizer steps whose adapters are evaluated (the last is the arm's result)."""
        every = self.cfg.eval_every or self.cfg.max_steps
        steps = list(range(every, self.cfg.max_steps, every))
        return [*steps, self.cfg.max_steps]

    def _tick(self, what: str) -> None:
        self._units_done += 1
        elapsed = time.monotonic() - self._started
        eta = elapsed / self._units_done * (self._units_total - self._units_done)
        self.echo(f"experiment: {what} done ({self._units_done}/{self._units_total} steps, "
                  f"elapsed {elapsed / 60:.1f} min, ETA {eta / 60:.1f} min)")

    def _seed(self, seed: int) -> None:
        sim = self._simulator(seed)

        def log_and_sample(generator: Any) -> tuple[Logged, CandidateSet | None]:
            logged = self._log_traffic(sim, seed, generator)
            return logged, (self._candidates(sim, logged, seed, generator)
                            if self.cfg.objective == "reward" else None)

        logged, candidates = self._using(self.start.adapter_dir, "sft", log_and_sample)
        self._tick(f"seed {seed}: logged traffic ({len(logged.records)} requests, "
                   f"observed CTR {summarize(logged.records)['obs_ctr']:.3f})")
        eval_turns = self._eval_turns(sim)
        history = history_events(sim, logged, self.cfg.history_per_user, seed)
        for arm in self.cfg.arms:
            started = time.monotonic()
            result = self._arm(sim, logged, history, eval_turns, seed, arm, candidates)
            result.refresh["arm_s"] = round(time.monotonic() - started, 1)
            self.results.append(result)
            self._tick(f"seed {seed} arm {arm}: GT CTR {result.metrics['gt_ctr']:.4f}, "
                       f"right-tool {_f(result.metrics['gt_right_tool_share'])}, relevance "
                       f"{_f(result.metrics['relevance'])}")

    def _arm(self, sim: Simulator, logged: Logged, history: tuple[list[Any], list[Any]],
             eval_turns: list[Turn], seed: int, arm: str,
             candidates: CandidateSet | None = None) -> ArmResult:
        if arm == "sft":
            metrics = self._evaluate(sim, self.start.adapter_dir, arm, eval_turns, seed)
            return ArmResult(seed, arm, metrics, curve=[_curve_point(0, metrics)])
        from trainer.data import InsufficientDataError

        samples = replay_samples(logged, self._streams_config(arm), history)
        diagnostics = weight_diagnostics(samples, logged)
        if candidates is None:
            if arm == "oracle":
                raise LoopError("the oracle arm needs objective='reward' (it picks candidate "
                                "lists by their true CTR)")
            rows = [s.model_dump(by_alias=True) for s in samples]
        else:
            rows, reward_diagnostics = reward_rows(samples, candidates,
                                                   l2=self.cfg.reward_l2,
                                                   min_gap=self.cfg.min_reward_gap,
                                                   oracle=arm == "oracle")
            diagnostics |= reward_diagnostics
            self.echo(f"seed {seed} arm {arm}: CTR model {reward_diagnostics['ctr_model']}; "
                      f"{reward_diagnostics['pairs']} list pairs, true CTR chosen − rejected "
                      f"{_f(reward_diagnostics['pair_true_gap'])}")
        try:
            adapters, training = self._train(rows, seed, arm,
                                             whole_lists=candidates is not None)
        except InsufficientDataError as exc:
            # What production does: the refresh is skipped and the SFT champion keeps serving.
            self.echo(f"seed {seed} arm {arm}: not trained ({exc}); the SFT model stays")
            sft = next((r for r in self.results if r.seed == seed and r.arm == "sft"), None)
            metrics = (dict(sft.metrics) if sft else
                       self._evaluate(sim, self.start.adapter_dir, arm, eval_turns, seed))
            return ArmResult(seed, arm, metrics, diagnostics,
                             {"steps": 0, "not_trained": str(exc)}, [_curve_point(0, metrics)])
        curve, metrics = [], {}
        for step, adapter in adapters.items():
            metrics = self._evaluate(sim, adapter, f"{arm}@{step}", eval_turns, seed)
            curve.append(_curve_point(step, metrics))
        return ArmResult(seed, arm, metrics, diagnostics, training, curve)

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
        """The start model with `adapter_dir`, on the experiment's engine (ctranslate2:
        converted to int8 in a scratch directory, as serving converts a champion)."""
        if self.cfg.engine == "torch":
            from generator.generator import Generator

            return Generator.load(self.start.model_dir, adapter_dir,
                                  config=self.generator_config, linker=self.retriever,
                                  model_version=version)
        import torch

        from generator.fast import FastGenerator, convert_model
        from loop.demo import fresh_dir

        engine_dir = fresh_dir(self.cfg.out_dir / "engine") / "model"
        convert_model(self.start.model_dir, adapter_dir, engine_dir)
        return FastGenerator.load_converted(engine_dir, config=self.generator_config,
                                            linker=self.retriever, model_version=version,
                                            threads=torch.get_num_threads())

    def _using(self, adapter_dir: Path, version: str, work: Callable[[Any], _T]) -> _T:
        """`work(generator)` with the model loaded, freed as soon as it returns (this frame
        holds the only reference; a CTranslate2 model must not outlive the interpreter, and
        two loaded at once double the memory)."""
        generator = self._generator(adapter_dir, version)
        try:
            return work(generator)
        finally:
            del generator
            gc.collect()

    def _answer(self, generator: Any, turns: Sequence[Turn], *, seed: int, explore: float,
                label: str, inputs: Sequence[Any] | None = None,
                ) -> tuple[list[tuple[Shown, ...]], list[str]]:
        """What the model shows for each turn (and the rendered prompts), generated in
        batches like serving does. `inputs`: the turns' prompt inputs when the caller has
        them already (retrieval runs once per turn, not once per pass)."""
        decoding = self.generator_config.decoding
        shown: list[tuple[Shown, ...]] = []
        prompts: list[str] = []
        batch = self.cfg.generation_batch
        started = time.monotonic()
        for start in range(0, len(turns), batch):
            chunk = (inputs[start:start + batch] if inputs is not None
                     else [self._inputs(t) for t in turns[start:start + batch]])
            dec = decoding.model_copy(update={"seed": seed * 100_003 + start,
                                              "explore_rate": explore})
            results = generator.generate_batch(chunk,
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

    def _log_traffic(self, sim: Simulator, seed: int, generator: Any) -> Logged:
        turns = [sim.turn(u, i) for i in range(self.cfg.requests_per_user)
                 for u in range(self.cfg.users)]
        shown, prompts = self._answer(generator, turns, seed=seed,
                                      explore=self.settings.serving.explore_share,
                                      label=f"seed {seed} logged traffic")
        return build_logged(sim, turns, shown, prompts, self.generator_config.decoding)

    def _candidates(self, sim: Simulator, logged: Logged, seed: int,
                    generator: Any) -> CandidateSet:
        """`cfg.candidates` more lists per logged prompt from the logging model, drawn as
        serving draws them (other seeds), scored into reward-model features."""
        turns = [r.turn for r in logged.records]
        inputs = [self._inputs(turn) for turn in turns]
        draws = [self._answer(generator, turns, seed=seed * 1_000 + 500 + c,
                              explore=self.settings.serving.explore_share,
                              label=f"seed {seed} candidates {c + 1}/{self.cfg.candidates}",
                              inputs=inputs)[0]
                 for c in range(self.cfg.candidates)]
        lists = [[r.shown, *(draw[i] for draw in draws)] for i, r in enumerate(logged.records)]
        tools = [tuple(t.tool_id for t in i.tools) for i in inputs]
        return build_candidates(sim, logged, lists, tools, self.retriever.encode)

    def _eval_turns(self, sim: Simulator) -> list[Turn]:
        """Fixed evaluation turns: later turns of the same users, never logged."""
        first = 10_000
        return [sim.turn(k % self.cfg.users, first + k // self.cfg.users)
                for k in range(self.cfg.eval_turns)]

    def _evaluate(self, sim: Simulator, adapter: Path, arm: str, turns: list[Turn],
                  seed: int) -> dict[str, Any]:
        shown, _ = self._using(adapter, arm, lambda generator: self._answer(
            generator, turns, seed=seed + 7_919, explore=0.0,
            label=f"seed {seed} arm {arm} evaluation"))
        records = [Record(0, t, f"eval-{i}", arm, s, sim.judge(t, s), Reaction(None))
                   for i, (t, s) in enumerate(zip(turns, shown, strict=True))]
        return summarize(records)

    def _train(self, rows: list[dict[str, Any]], seed: int, arm: str, *,
               whole_lists: bool = False) -> tuple[dict[int, Path], dict[str, Any]]:
        """Weighted KTO from the SFT adapter on the arm's rows (the sample table's columns);
        the adapter of every checkpoint step, and what the training did. `whole_lists`: each
        completion is a whole list that ends the turn, so its end-of-turn token is scored."""
        import pyarrow as pa

        from loop.demo import fresh_dir
        from trainer.data import build_training_set
        from trainer.fastkto import train_weighted_kto

        root = fresh_dir(self.cfg.out_dir / "runs" / f"seed{seed}-{arm}")
        training = self._training_config(seed)
        table = pa.Table.from_pylist(rows)
        train = build_training_set(table, None, training)
        model, tokenizer = self._trainable_model()
        wanted, saved = set(self.checkpoints()), {}

        def on_step(step: int, loss: float) -> None:
            if step in wanted:
                saved[step] = root / f"step-{step:05d}"
                model.save_pretrained(str(saved[step]))

        result = train_weighted_kto(model, tokenizer, train.table.to_pylist(), training,
                                    max_steps=self.cfg.max_steps, on_step=on_step,
                                    completion_eos=whole_lists, label=f"seed {seed} {arm}")
        if result.steps < self.cfg.max_steps:
            raise RuntimeError(f"seed {seed} arm {arm}: KTO ran {result.steps} steps, the "
                               f"experiment asks {self.cfg.max_steps}; {train.table.num_rows} "
                               f"training samples in batches of {training.batch_size} cannot "
                               f"fill them in {training.epochs} epochs (raise epochs or lower "
                               "max_steps)")
        return saved, {
            "steps": result.steps, "n_train": train.table.num_rows,
            "n_desirable": train.n_desirable, "weighted_ratio": train.weighted_ratio,
            "train_loss": result.train_loss, "seconds": round(result.seconds, 1),
            "cpu_seconds": round(result.cpu_seconds, 1),
            "seconds_per_step": round(result.seconds / max(result.steps, 1), 2),
        }

    def _trainable_model(self) -> tuple[Any, Any]:
        """The base model with the SFT adapter as the trainable LoRA (and the reference)."""
        from peft import PeftModel

        from generator.loading import load_model

        base, tokenizer = load_model(self.start.model_dir)
        return PeftModel.from_pretrained(base, str(self.start.adapter_dir),
                                         is_trainable=True), tokenizer

    def _training_config(self, seed: int) -> Any:
        """The trainer's settings with the experiment's size; no hold-out (no gate here: the
        simulator's ground truth judges), every logged sample may train."""
        objective = {name: value for name in ("beta", "undesirable_weight")
                     if (value := getattr(self.cfg, name)) is not None}
        return self.settings.trainer.training.model_copy(update={
            **objective,
            "max_steps": self.cfg.max_steps, "batch_size": self.cfg.batch_size,
            "learning_rate": self.cfg.learning_rate, "epochs": self.cfg.epochs,
            "holdout_share": 0.0, "min_per_class": 1, "seed": seed,
            "max_train_samples": max(self.settings.trainer.training.max_train_samples,
                                     self.cfg.users * self.cfg.requests_per_user * 10),
            **self.start.training_overrides,
        })

    @property
    def wall_s(self) -> float:
        return round(time.monotonic() - self._started, 1)

    def _save(self) -> None:
        path = self.cfg.out_dir / "results.json"
        path.write_text(json.dumps({
            "config": self.cfg.model_dump(mode="json"),
            "start_model": str(self.start.adapter_dir),
            "wall_s": self.wall_s,
            "results": [r.__dict__ for r in self.results],
        }, indent=2, default=str))


# --------------------------------------------------------------------------- pure parts


def build_logged(sim: Simulator, turns: Sequence[Turn], shown: Sequence[tuple[Shown, ...]],
                 prompts: Sequence[str], decoding: Any) -> Logged:
    """Impressions and feedback as serving and the telemetry producer would send them, plus
    the simulator's hidden truth about each (kept apart)."""
    from contracts.events import new_feedback, new_impression, pseudonymize
    from generator.prompt import TEMPLATE_VERSION

    records: list[Record] = []
    impressions: list[Any] = []
    feedback: list[Any] = []
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
        impressions.append(new_impression(
            event_id=f"e-{request_id}", request_id=request_id, user_id=user_id,
            session_id=turn.request.session_id, ts=ts, model_version="sft",
            template_version=TEMPLATE_VERSION, prompt=prompt, query=turn.request.query,
            context=turn.request.context,
            suggestions=[{"position": s.position, "text": s.text, "tool_id": s.tool_id}
                         for s in items],
            decoding={"temperature": decoding.temperature, "top_p": decoding.top_p},
        ))
        for k, event in enumerate(reaction.events):
            feedback.append(new_feedback(
                event_id=f"f-{request_id}-{k}", request_id=request_id, user_id=user_id,
                ts=ts + 200 + k, type=event.type, position=event.position,
                success=event.success,
            ))
        for s, u in zip(items, judgement.utility, strict=True):
            utility[f"{request_id}:{s.position}"] = u
    return Logged(records, impressions, feedback, utility, cohort)


@dataclass
class CandidateSet:
    """The reward objective's candidate lists of one seed, per logged request (the logged list
    first), with the reward model's features of each list and, for diagnostics only, the
    simulator's ground-truth CTR of each list (never trained on)."""

    request_ids: list[str]
    prompts: list[str]
    lists: list[list[tuple[Shown, ...]]]  # display order
    options: list[list[Any]]  # the same lists as trainer.reward.ListCandidate
    features: list[list[Any]]  # numpy (n_lines, len(trainer.reward.FEATURES)) per list
    true_ctr: list[list[float]]


def build_candidates(sim: Simulator, logged: Logged, lists: Sequence[Sequence[tuple[Shown, ...]]],
                     tools: Sequence[tuple[str, ...]],
                     encode: Callable[[Sequence[str]], Any]) -> CandidateSet:
    """Features (`trainer.reward.list_features`; relevance = cosine to the turn's query and
    response) and true CTR of every candidate list of every logged request."""
    from trainer.reward import ListCandidate, Suggestion, candidate_features

    prompts = {i.request_id: i.prompt for i in logged.impressions}
    out = CandidateSet([], [], [], [], [], [])
    for record, candidates, prompt_tools in zip(logged.records, lists, tools, strict=True):
        if record.request_id not in prompts:  # an empty logged list: nothing was shown
            continue
        request = record.turn.request
        ordered = [tuple(sorted(c, key=lambda s: s.position)) for c in candidates]
        options = [ListCandidate(tuple(Suggestion(s.text, s.tool_id) for s in shown))
                   for shown in ordered]
        features = candidate_features(f"{request.query} {request.response}", options,
                                      prompt_tools, encode)
        out.request_ids.append(record.request_id)
        out.prompts.append(prompts[record.request_id])
        out.lists.append(ordered)
        out.options.append(options)
        out.features.append(features)
        out.true_ctr.append([sim.judge(record.turn, shown).ref_ctr for shown in ordered])
    return out


def reward_rows(samples: Sequence[Any], candidates: CandidateSet, *, l2: float,
                min_gap: float, oracle: bool = False) -> tuple[list[dict[str, Any]],
                                                                dict[str, Any]]:
    """GQR's CTR alignment data for one arm: a CTR model fitted on the logged lists' lines,
    labelled by the arm's samples (clicked, calibrated weight), scores every candidate list;
    per prompt the best list is a desirable and the worst an undesirable whole-list sample
    (`trainer.reward.label_pairs`). Returns the rows (the sample table's columns) and what
    the reward model did, including how much better the chosen lists truly are (diagnostic).
    `oracle`: the lists are ranked by their true CTR instead (the ceiling of this selection;
    the CTR model is still fitted and reported)."""
    import numpy as np

    from trainer.reward import fit_ctr, label_pairs, pair_rows

    by_id = {s.sample_id: s for s in samples}
    x, y, w = [], [], []
    for rid, lists, features in zip(candidates.request_ids, candidates.lists,
                                    candidates.features, strict=True):
        for shown, row in zip(lists[0], features[0], strict=True):
            sample = by_id.get(f"{rid}:{shown.position}")
            if sample is not None:
                x.append(row)
                y.append(float(sample.clicked))
                w.append(sample.weight)
    model = fit_ctr(np.asarray(x), np.asarray(y), np.asarray(w), l2=l2)
    rows: list[dict[str, Any]] = []
    gaps, scored, truth = [], [], []
    for rid, prompt, options, features, true_ctr in zip(
            candidates.request_ids, candidates.prompts, candidates.options, candidates.features,
            candidates.true_ctr, strict=True):
        predicted = [model.list_reward(f) for f in features]
        scored += predicted
        truth += true_ctr
        pair = label_pairs(options, true_ctr if oracle else predicted, min_gap=min_gap)
        if pair is None:
            continue
        gaps.append(true_ctr[pair[0]] - true_ctr[pair[1]])
        rows += pair_rows(rid, prompt, options, pair)
    return rows, {
        "ctr_model": model.describe(), "pairs": len(gaps),
        "pair_true_gap": float(np.mean(gaps)) if gaps else None,
        "reward_true_corr": _corr(scored, truth),
    }


def _corr(a: Sequence[float], b: Sequence[float]) -> float | None:
    import numpy as np

    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def history_events(sim: Simulator, logged: Logged, per_user: int,
                   seed: int) -> tuple[list[Any], list[Any]]:
    """Each user's earlier impressions and clicks, before the logged traffic (not trained on).

    In production the activity state is a 14-day decayed history; a few logged requests per
    user would leave every ρ_u near 1. So each user gets `per_user` earlier impressions whose
    lists have the true utilities of random logged lists (what the baseline shows) and
    clicks drawn from the user's own click model. Only counts reach the calibration state,
    so the placeholder texts do not matter."""
    from contracts.events import new_feedback, new_impression, pseudonymize
    from loop.population import draw_click

    rng = random.Random(f"history:{seed}")
    pool = [r.judgement.utility for r in logged.records if r.judgement.utility]
    impressions: list[Any] = []
    feedback: list[Any] = []
    if not pool:
        return impressions, feedback
    for user in sim.users:
        user_id = pseudonymize(user.raw_id, USER_KEY)
        for j in range(per_user):
            request_id = f"h{seed}-{user.index:05d}-{j:04d}"
            ts = T0_MS - (per_user - j) * 600_000 - user.index
            utilities = rng.choice(pool)
            impressions.append(new_impression(
                event_id=f"e-{request_id}", request_id=request_id, user_id=user_id,
                session_id=f"h-{user_id}", ts=ts, model_version="history",
                template_version="history", prompt="history", query="history",
                suggestions=[{"position": k, "text": f"earlier suggestion {k}"}
                             for k in range(1, len(utilities) + 1)],
            ))
            k = draw_click(utilities, user.params, sim.config.click.eta, rng)
            if k is not None:
                feedback.append(new_feedback(
                    event_id=f"f-{request_id}", request_id=request_id, user_id=user_id,
                    ts=ts + 200, type="click", position=k))
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


def _curve_point(step: int, metrics: dict[str, Any]) -> dict[str, Any]:
    return {"step": step, **{k: metrics.get(k) for k in
                             ("gt_ctr", "gt_right_tool_share", "relevance")}}


def _f(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


# --------------------------------------------------------------------------- summary


def aggregate(results: Sequence[ArmResult], arms: Sequence[str]) -> list[dict[str, Any]]:
    """Per arm: mean and 95 % interval over seeds of each metric, and the paired difference
    of gt_ctr to the raw arm (same seed) at its Holm level (`paired_vs_raw`)."""
    comparisons = paired_vs_raw(results, arms)
    rows = []
    for arm in arms:
        mine = [r for r in results if r.arm == arm]
        row: dict[str, Any] = {"arm": arm, "seeds": len(mine)}
        for metric in (*METRICS, "utility_gap", "heavy_share_of_click_weight"):
            values = [v for v in (_value(r, metric) for r in mine)
                      if v is not None and not math.isnan(v)]
            row[metric] = mean_interval(values) if values else None
        vs = comparisons.get(arm)
        row["gt_ctr_minus_raw"] = (_triple(vs["abs"]) if vs and vs["abs"]["lo"] is not None
                                   else None)
        row["vs_raw"] = vs
        rows.append(row)
    return rows


def paired_vs_raw(results: Sequence[ArmResult], arms: Sequence[str],
                  alpha: float = 0.05) -> dict[str, dict[str, Any]]:
    """Per arm ≠ raw: the paired gt_ctr difference to raw over seeds, absolute and relative
    to raw, with a paired t-test and Holm's correction over all these comparisons (the
    module docstring says how the intervals' levels are chosen)."""
    raw = {r.seed: r.metrics.get("gt_ctr") for r in results if r.arm == "raw"}
    pairs: dict[str, list[tuple[float, float]]] = {}  # arm -> (arm's, raw's) per seed
    for arm in arms:
        if arm == "raw":
            continue
        pairs[arm] = [(r.metrics["gt_ctr"], raw[r.seed] or 0.0) for r in results
                      if r.arm == arm and raw.get(r.seed) is not None
                      and r.metrics.get("gt_ctr") is not None]
    pairs = {a: p for a, p in pairs.items() if p}
    diffs = {a: [x - b for x, b in p] for a, p in pairs.items()}
    corrected = holm({a: paired_p(d) for a, d in diffs.items()}, alpha)
    out = {}
    for arm, p in pairs.items():
        step = corrected.get(arm, {"p_holm": None, "reject": False, "level": 1 - alpha,
                                   "comparisons": len(corrected)})
        rel = [(x - b) / b for x, b in p if b > 0]
        out[arm] = {"seeds": len(p), "p": paired_p(diffs[arm]), **step,
                    "abs": _interval_dict(diffs[arm], step["level"]),
                    "rel": _interval_dict(rel, step["level"]) if rel else None}
    return out


def curves(results: Sequence[ArmResult], arms: Sequence[str],
           metric: str = "gt_ctr") -> dict[str, list[dict[str, Any]]]:
    """Per arm the learning curve: mean [95 % interval] over seeds of `metric` at each
    evaluated step; step 0 of a trained arm is the SFT baseline of the same seed."""
    sft = {r.seed: r.curve[0] for r in results if r.arm == "sft" and r.curve}
    out: dict[str, list[dict[str, Any]]] = {}
    for arm in arms:
        by_step: dict[int, list[float]] = {}
        for r in (x for x in results if x.arm == arm):
            points = list(r.curve)
            if arm != "sft" and r.seed in sft:
                points = [sft[r.seed], *points]
            for point in points:
                if point.get(metric) is not None:
                    by_step.setdefault(int(point["step"]), []).append(point[metric])
        out[arm] = [{"step": step, "seeds": len(v), **_interval_dict(v, 0.95)}
                    for step, v in sorted(by_step.items())]
    return out


def calibration_json(results: Sequence[ArmResult], arms: Sequence[str],
                     config: dict[str, Any], wall_s: float | None) -> dict[str, Any]:
    """The committed record of a run (issue 11's shape): per arm seeds, KTO steps and the
    mean [95 % interval] of gt_ctr, relevance and right-tool share; per arm ≠ raw the paired
    difference to raw (absolute and relative) at its Holm level; the learning curves."""
    arms_out = {}
    for arm in arms:
        mine = [r for r in results if r.arm == arm]
        if not mine:
            continue
        steps = sorted({int((r.refresh or {}).get("steps", 0)) for r in mine})
        entry: dict[str, Any] = {"seeds": len(mine),
                                 "kto_steps": steps[0] if len(steps) == 1 else steps}
        arms_out[arm] = entry
        for key, metric in (("gt_ctr", "gt_ctr"), ("relevance", "relevance"),
                            ("right_tool_share", "gt_right_tool_share")):
            values = [r.metrics[metric] for r in mine if r.metrics.get(metric) is not None]
            entry[key] = _interval_dict(values, 0.95) if values else None
    return {"arms": arms_out, "vs_raw": paired_vs_raw(results, arms),
            "curves": curves(results, arms), "wall_s": wall_s, "config": config}


def _interval_dict(values: Sequence[float], level: float) -> dict[str, Any]:
    """Mean and interval; one replicate has no interval (lo = hi = None)."""
    mean, low, high = mean_interval(values, level)
    if len(values) < 2:
        return {"mean": mean, "lo": None, "hi": None, "level": level}
    return {"mean": mean, "lo": low, "hi": high, "level": level}


def _triple(value: dict[str, float]) -> tuple[float, float, float]:
    return (value["mean"], value["lo"], value["hi"])


def _value(result: ArmResult, metric: str) -> float | None:
    if metric in result.metrics:
        value: float | None = result.metrics[metric]
        return value
    return result.diagnostics.get(metric)


def load_results(path: Path) -> list[ArmResult]:
    data = json.loads(Path(path).read_text())
    return [ArmResult(**r) for r in data["results"]]


_MERGE_IGNORES = ("seeds", "out_dir", "publish")


def merge_results(parts: Sequence[Path], target: Path) -> None:
    """One results.json from runs over disjoint seeds with otherwise equal settings (seeds
    split across processes). Refuses a settings mismatch or a seed run twice. `wall_s` is the
    longest part's: the parts ran side by side."""
    loaded = [json.loads(Path(p).read_text()) for p in parts]
    if target.exists():
        loaded.insert(0, json.loads(target.read_text()))
    first = loaded[0]

    def settings(data: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in data["config"].items() if k not in _MERGE_IGNORES}

    seeds: list[int] = []
    for data in loaded:
        if settings(data) != settings(first):
            raise LoopError("cannot merge experiment runs with different settings: "
                            f"{settings(data)} vs {settings(first)}; rerun with the same flags")
        part_seeds = sorted({r["seed"] for r in data["results"]})
        if set(part_seeds) & set(seeds):
            raise LoopError(f"seeds {sorted(set(part_seeds) & set(seeds))} appear in more than "
                            "one run; merge runs over disjoint seeds only")
        seeds += part_seeds
    merged = {**first, "config": {**first["config"], "seeds": sorted(seeds)},
              "wall_s": max(float(d.get("wall_s") or 0) for d in loaded),
              "results": [r for d in loaded for r in d["results"]]}
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(merged, indent=2, default=str))


def write_outputs(results: Sequence[ArmResult], cfg: ExperimentConfig,
                  wall_s: float | None) -> dict[str, Path]:
    """report.html, results.md and calibration.json in `out_dir`; with `cfg.publish` also
    `publish_json` and the experiment section of `publish_markdown` (the committed record)."""
    from loop.report import experiment_markdown, experiment_report, write

    arms = [a for a in cfg.arms if any(r.arm == a for r in results)]
    rows = aggregate(results, arms)
    notes = findings(rows)
    config = cfg.model_dump(mode="json")
    record = calibration_json(results, arms, config, wall_s)
    markdown = experiment_markdown(rows, results, config, notes, record)
    paths = {
        "report": write(cfg.out_dir / "report.html",
                        experiment_report(rows, results, config, notes, record)),
        "markdown": write(cfg.out_dir / "results.md", markdown),
        "json": write(cfg.out_dir / "calibration.json", json.dumps(record, indent=2)),
    }
    if cfg.publish:
        paths["published_json"] = write(cfg.publish_json, json.dumps(record, indent=2) + "\n")
        paths["published_markdown"] = write(
            cfg.publish_markdown, replace_section(cfg.publish_markdown, markdown))
    return paths


SECTION_START = "<!-- calibration-experiment: written by `toolrec experiment calibration "\
    "--publish`; edits inside are overwritten -->"
SECTION_END = "<!-- /calibration-experiment -->"


def replace_section(path: Path, markdown: str) -> str:
    """`path`'s text with the experiment section replaced by `markdown` (appended when the
    file has none yet); everything outside the markers stays as it is."""
    text = Path(path).read_text(encoding="utf-8") if Path(path).is_file() else ""
    body = markdown.replace("# Calibration experiment", "## Calibration experiment", 1)
    section = f"{SECTION_START}\n{body.rstrip()}\n{SECTION_END}"
    if SECTION_START in text and SECTION_END in text:
        head, rest = text.split(SECTION_START, 1)
        return head + section + rest.split(SECTION_END, 1)[1]
    return text.rstrip() + ("\n\n" if text else "") + section + "\n"


def findings(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Plain statements of what the numbers say (no interpretation beyond the intervals)."""
    by_arm = {r["arm"]: r for r in rows}
    out = []
    for arm in ("full", "full_toolrec", "full_position", "activity", "tool", "sft"):
        vs = (by_arm.get(arm) or {}).get("vs_raw")
        if not vs:
            continue
        if vs["abs"]["lo"] is None:
            out.append(f"{arm}: ground-truth CTR {vs['abs']['mean']:+.4f} vs raw-click KTO on "
                       "a single seed — no interval, no verdict.")
            continue
        mean, low, high = _triple(vs["abs"])
        verdict = ("better than" if low > 0 else "worse than" if high < 0
                   else "not distinguishable from")
        rel = vs.get("rel")
        rel_text = (f" ({rel['mean']:+.1%} relative, [{rel['lo']:+.1%}, {rel['hi']:+.1%}])"
                    if rel else "")
        out.append(f"{arm}: ground-truth CTR {mean:+.4f} vs raw-click KTO{rel_text}, "
                   f"{vs['level']:.1%} interval [{low:+.4f}, {high:+.4f}] (Holm over "
                   f"{vs['comparisons']} comparisons, adjusted p "
                   f"{_f(vs['p_holm'])}) over {vs['seeds']} paired seeds — {verdict} raw "
                   "KTO at this sample size.")
    sft = by_arm.get("sft")
    for arm, row in by_arm.items():
        if arm != "sft" and sft and row["gt_ctr"] and sft["gt_ctr"]:
            out.append(f"{arm} vs the SFT baseline: ground-truth CTR {row['gt_ctr'][0]:.4f} vs "
                       f"{sft['gt_ctr'][0]:.4f}.")
    gaps = {a: r["utility_gap"][0] for a, r in by_arm.items() if r.get("utility_gap")}
    if gaps:
        out.append("weighted utility gap of the training data (clicked − skipped, true "
                   "utility): " + ", ".join(f"{a} {g:.3f}" for a, g in gaps.items()) + ".")
    return out
