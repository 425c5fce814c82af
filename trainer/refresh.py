"""Incremental refresh: new samples → weighted KTO from the champion → gate → registry.

One refresh (`Refresher.run`), single-flight across processes (`TrainingConfig.lock_path`):

1. clean up what a killed earlier refresh left (temporary / unregistered artifact dirs);
2. read the `samples` rows added since the Delta version the champion was trained up to
   (`read_samples_since`), and the older rows for replay and hold-out top-up
   (`replay_rows`: the version just read, filtered, never time travel to the champion's;
   only the last `replay_window_days` before the newest new sample, so the read stays
   bounded as the lake grows);
   skip when fewer than M new samples or a class is missing;
3. build the training set (`trainer.data`: per-request hold-out removed, replay mixed in,
   per-class re-normalized weights capped at `weight_max`, shuffled; the weight
   distribution is logged) and the held-out set;
4. train weighted KTO with LoRA (`training.engine`: `trainer.fastkto` or TRL's trainer in
   `trainer.kto`), continuing from the champion's adapter (its weights loaded into a fresh
   adapter of the same config); the KTO reference is the champion, frozen (DESIGN.md §4c);
   a fresh adapter, whose start is the base model, when there is no champion. With
   `training.objective = "reward"` (the default) the training rows of step 3 are replaced
   by whole-list pairs (`trainer.listwise`: a CTR model on the training-side clicks ranks
   lists the champion samples on their stored prompts); "no pair" skips the refresh;
5. evaluate candidate, champion (or the base) and the fixed SFT baseline
   (`Registry.baseline`) on the same held-out samples and fixed prompts; the reward margin
   only with enough held-out clicks and non-clicks; gate (`trainer.evaluate`);
6. publish the adapter with `training_weights.parquet` (per sample: calibrated and trained
   weight): written to `<artifact_dir>/.tmp-<version>-<pid>/`, checksummed, atomically
   renamed to `<artifact_dir>/<version>/`;
7. register the row — the LAST write; champion if the gate passed (one Delta commit with
   the old champion's retirement), rejected on a regression, candidate when there was not
   enough evidence; then announce a promotion. Only a promotion moves the champion's
   `data_version_to`, so after a rejection or "not enough evidence" the next refresh reads
   the same data again plus what arrived since: the held-out set grows.

A crash or SIGKILL before step 7 leaves no row: the champion and the registry are as they
were, and step 1 of the next run removes the leftovers. The Delta commit of step 7 is
atomic. A crash between 7 and the announcement is healed by the daemon re-announcing the
champion at start. A missing or corrupt champion adapter fails the refresh with
`AdapterError` before anything is written.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow.compute as pc
import pyarrow.parquet as pq
from transformers import TrainerCallback

from contracts.models import BASE_VERSION, version_name
from toolrec.durable import FileLock, now_ms
from toolrec.errors import TrainerError
from trainer.data import (
    SAMPLE_COLUMNS,
    InsufficientDataError,
    TrainingSet,
    build_eval_set,
    build_training_set,
    format_weight_summary,
    to_kto_dataset,
)
from trainer.registry import (
    TMP_PREFIX,
    AnnounceError,
    ModelRecord,
    Registry,
    publish_artifact,
    verify_artifact,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from generator.parser import ToolLinker
    from lakehouse.config import LakeConfig
    from toolrec.kafka import KafkaConfig
    from trainer.config import TrainerConfig, TrainingConfig
    from trainer.evaluate import Encoder, Evidence, GateResult, ToolSearch

__all__ = ["RefreshCancelled", "RefreshResult", "Refresher", "retrieval_parts"]

log = logging.getLogger(__name__)
Outcome = Literal["promoted", "rejected", "not_enough_evidence", "candidate", "skipped"]
CHAMPION_ADAPTER = "champion"
BASELINE_ADAPTER = "baseline"
WEIGHTS_FILE = "training_weights.parquet"  # per-sample weights, beside the adapter


class RefreshCancelled(TrainerError):
    """A stop was requested (daemon shutdown); nothing was registered."""


@dataclass(frozen=True)
class RefreshResult:
    """What one refresh did. `record` is the registered row (None when skipped)."""

    outcome: Outcome
    reason: str
    record: ModelRecord | None = None
    new_samples: int = 0
    announced: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def version(self) -> str | None:
        return self.record.version if self.record else None


@dataclass(frozen=True)
class _Sides:
    """What the candidate is gated against: PEFT adapter names (None: the base model) and
    registry versions ('base': the base model) of the champion and the SFT baseline."""

    reference: str | None
    reference_version: str
    baseline: str | None
    baseline_version: str


@dataclass
class _Data:
    since: int | None
    until: int
    new: pa.Table
    train: TrainingSet
    held_out: pa.Table
    old: pa.Table | None = None  # the older samples (replay, hold-out top-up, CTR history)
    reward_objective: dict[str, Any] = field(default_factory=dict)  # what trainer.listwise did


class Refresher:
    """Runs refreshes for one lake / registry. Stage objects in, nothing global."""

    def __init__(
        self,
        lake: LakeConfig,
        config: TrainerConfig,
        kafka: KafkaConfig | None = None,
        *,
        base_model: Path | None = None,
        linker: ToolLinker | None = None,
        encoder: Encoder | None = None,
        tool_search: ToolSearch | None = None,
        tool_ids: Mapping[str, str] | None = None,
    ) -> None:
        self.lake = lake
        self.config = config
        self.training = config.training
        self.registry = Registry(lake, config.training, kafka)
        self.base_model = Path(base_model or config.generator.model_dir)
        self.linker = linker
        self.encoder = encoder
        self.tool_search = tool_search
        self.tool_ids = tool_ids or {}  # a tool's name as prompts show it → its id
        if self.training.objective == "reward" and encoder is None:
            # refused here, once, not at every refresh: the objective scores lists by their
            # relevance to the turn
            raise TrainerError(
                "trainer.training.objective 'reward' needs the retrieval encoder, which is "
                "missing (trainer.training.gate_retrieval is false, or retrieval did not load: "
                "see the warning above); fix retrieval or set trainer.training.objective = "
                "'clicks'")
        self.lock = FileLock(Path(self.training.lock_path), what="refresh lock")
        self._stop = threading.Event()

    # ------------------------------------------------------------------ queries

    def pending(self) -> int:
        """Samples that arrived since the newest registered attempt (the daemon's M test):
        after a rejection the daemon waits for new data instead of retraining on the same.
        (A refresh itself always trains on everything since the champion's version.)"""
        from lakehouse.tables import read_samples_since

        versions = [r.data_version_to for r in self.registry.records()
                    if r.data_version_to is not None]
        new, _ = read_samples_since(self.lake, max(versions) if versions else None)
        rows: int = new.num_rows
        return rows

    # ------------------------------------------------------------------ the refresh

    def run(self, *, min_new_samples: int | None = None, lock_timeout_s: float = 0.0,
            max_steps: int | None = None, stop: threading.Event | None = None) -> RefreshResult:
        """One refresh (see the module doc). Raises LockBusyError when another runs and
        RefreshCancelled when `stop` is set before the registration."""
        self._stop = stop or threading.Event()
        with self.lock.held(timeout_s=lock_timeout_s):
            try:
                return self._run_locked(
                    self.training.min_new_samples if min_new_samples is None else min_new_samples,
                    max_steps,
                )
            finally:
                gc.collect()  # a daemon runs many refreshes: free the models now

    def _check_stop(self, where: str) -> None:
        if self._stop.is_set():
            raise RefreshCancelled(f"stop requested {where}; nothing was registered")

    def _run_locked(self, min_new: int, max_steps: int | None) -> RefreshResult:
        timings: dict[str, float] = {}
        started = time.monotonic()
        self.registry.cleanup_orphans()
        champion = self._checked_champion()
        try:
            data = self._read(champion, min_new)
        except InsufficientDataError as exc:
            log.info("refresh skipped: %s", exc)
            return RefreshResult("skipped", str(exc), new_samples=getattr(exc, "new", 0))
        timings["read_s"] = time.monotonic() - started
        self._check_stop("before training")
        seq = self.registry.next_seq()
        version = version_name(seq)
        tmp_dir = self.registry.artifact_dir / f"{TMP_PREFIX}{version}-{os.getpid()}"
        tmp_dir.mkdir(parents=True)
        try:
            record, gate_ok = self._train_and_evaluate(
                version, seq, champion, data, tmp_dir, timings, max_steps
            )
        except InsufficientDataError as exc:  # the reward objective found no list pair
            log.info("refresh skipped: %s", exc)
            return RefreshResult("skipped", str(exc), new_samples=data.new.num_rows)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)  # gone once published
        try:
            self._check_stop("before registration")
        except RefreshCancelled:
            shutil.rmtree(record.adapter_dir, ignore_errors=True)
            raise
        record = self.registry.register(record, promote=gate_ok)
        timings["total_s"] = time.monotonic() - started
        return self._finish(record, champion, data, timings)

    def _checked_champion(self) -> ModelRecord | None:
        champion = self.registry.champion()
        if champion is None:
            return None
        verify_artifact(champion.adapter_dir, version=champion.version)
        if Path(champion.base_model).resolve() != self.base_model.resolve():
            raise TrainerError(
                f"the champion {champion.version} was trained on base model "
                f"{champion.base_model}, but trainer.generator.model_dir is {self.base_model}; "
                "point it at the champion's base or roll back to `base`"
            )
        return champion

    def _read(self, champion: ModelRecord | None, min_new: int) -> _Data:
        from lakehouse.tables import read_samples_since

        since = champion.data_version_to if champion else None
        share = champion.metrics.get("holdout_share") if champion else None
        if share is not None and share != self.training.holdout_share:
            log.warning("holdout_share changed from %s (champion %s) to %s: requests the "
                        "champion trained on may now be held out, which favours it at the gate",
                        share, champion.version if champion else "-",
                        self.training.holdout_share)
        new, until = read_samples_since(self.lake, since)
        if new.num_rows < min_new:
            error = InsufficientDataError(
                f"{new.num_rows} new samples since samples version {since}; a refresh needs "
                f"at least {min_new} (trainer.training.min_new_samples)"
            )
            error.new = new.num_rows  # type: ignore[attr-defined]
            raise error
        old = (replay_rows(self.lake, new, until, columns=self._older_columns(),
                           window_days=self.training.replay_window_days)
               if since is not None and since >= 0 else None)
        train = build_training_set(new, old, self.training)
        held_out = build_eval_set(new, old, self.training)
        log.info("refresh data: samples versions (%s, %d]: %d new, %d replay, %d train, "
                 "%d held out, weighted D:U = %.2f", since, until, new.num_rows,
                 train.n_replay, train.table.num_rows, held_out.num_rows, train.weighted_ratio)
        log.info("training weights: %s", format_weight_summary(train.weight_summary()))
        if not (self.training.desirable_ratio_min - 1e-9 <= train.weighted_ratio
                <= self.training.desirable_ratio_max + 1e-9):
            log.warning("the weight cap %.3g moved the weighted D:U ratio to %.3f, outside "
                        "[%.3g, %.3g]: a class is too small to carry its share (trainer.data)",
                        self.training.weight_max, train.weighted_ratio,
                        self.training.desirable_ratio_min, self.training.desirable_ratio_max)
        return _Data(since, until, new, train, held_out, old)

    def _older_columns(self) -> tuple[str, ...]:
        """The older samples' columns a refresh reads: the list columns too when the reward
        objective fits its CTR model on them (one read serves replay and that fit)."""
        if self.training.objective != "reward" or not self.training.reward.ctr_history:
            return SAMPLE_COLUMNS
        from trainer.listwise import LIST_COLUMNS

        return tuple(dict.fromkeys((*SAMPLE_COLUMNS, *LIST_COLUMNS)))

    def _train_and_evaluate(
        self, version: str, seq: int, champion: ModelRecord | None, data: _Data,
        tmp_dir: Path, timings: dict[str, float], max_steps: int | None,
    ) -> tuple[ModelRecord, bool]:
        loaded = None
        if self.training.objective == "reward":
            started = time.monotonic()
            loaded = self._trainable(champion)
            data = self._with_list_pairs(data, loaded, champion)
            timings["pairs_s"] = time.monotonic() - started
        t0 = time.monotonic()
        model, tokenizer, train_loss = self._train(champion, data.train, tmp_dir / "trainer",
                                                   max_steps, loaded=loaded)
        self._check_stop("during training")
        timings["train_s"] = time.monotonic() - t0
        adapter_tmp = tmp_dir / "adapter"
        model.save_pretrained(str(adapter_tmp), selected_adapters=["default"])
        return self._evaluate_and_publish(version, seq, champion, data, (model, tokenizer),
                                          adapter_tmp, timings, train_loss=train_loss)

    def _evaluate_and_publish(
        self, version: str, seq: int, champion: ModelRecord | None, data: _Data,
        loaded: tuple[Any, Any], adapter_tmp: Path, timings: dict[str, float], *,
        train_loss: float | None,
    ) -> tuple[ModelRecord, bool]:
        """Gate the trained adapter 'default' of `loaded` (model, tokenizer) against the
        champion and the SFT baseline, then publish it with its training weights."""
        from trainer.evaluate import gate

        t1 = time.monotonic()
        sides = self._sides(loaded[0], champion)
        metrics, evidence = self._metrics(loaded, data.held_out, version, sides)
        same = sides.baseline_version == sides.reference_version
        result = gate(metrics["candidate"], metrics["reference"], self.training.gate,
                      baseline=None if same else metrics["baseline"], evidence=evidence,
                      reference_name=f"the champion {sides.reference_version}",
                      baseline_name=f"the SFT baseline {sides.baseline_version}")
        timings["evaluate_s"] = time.monotonic() - t1
        _log_gate(version, sides, metrics, result)
        pq.write_table(data.train.weights(), adapter_tmp / WEIGHTS_FILE)
        final = publish_artifact(adapter_tmp, self.registry.artifact_path(version), info={
            "version": version, "parent": champion.version if champion else None,
            "base_model": str(self.base_model), "created_ts": now_ms(),
        })
        status = {"promote": "champion", "reject": "rejected"}.get(result.outcome, "candidate")
        trained_with, completion_eos = self._objective_settings()
        record = ModelRecord(
            version=version, seq=seq, parent=champion.version if champion else None,
            base_model=str(self.base_model), adapter_path=str(final),
            data_version_from=data.since, data_version_to=data.until,
            n_holdout=data.held_out.num_rows, n_train=data.train.table.num_rows,
            n_new=data.train.n_new, n_replay=data.train.n_replay,
            n_desirable=data.train.n_desirable, n_undesirable=data.train.n_undesirable,
            metrics={**metrics, "reference_version": sides.reference_version,
                     "baseline_version": sides.baseline_version, "train_loss": train_loss,
                     "train_weights": data.train.weight_summary(),
                     "holdout_share": self.training.holdout_share,
                     "objective": self.training.objective,
                     "learning_rate": trained_with.learning_rate,
                     "completion_eos": completion_eos,
                     **({"reward_objective": data.reward_objective}
                        if data.reward_objective else {}),
                     "weights_file": WEIGHTS_FILE, "timings": dict(timings)},
            decision=result.record(),
            status=status,  # type: ignore[arg-type]
        )
        return record, result.promote

    def _train(self, champion: ModelRecord | None, train: TrainingSet, out_dir: Path,
               max_steps: int | None, *, loaded: tuple[Any, Any] | None = None,
               ) -> tuple[Any, Any, float | None]:
        """Weighted KTO from the champion (reference = the champion) with the configured
        engine: (model with the trained adapter 'default', tokenizer, mean training loss).
        `loaded`: the fast engine's model and tokenizer, loaded already (`_trainable`)."""
        if self.training.engine == "trl":
            trainer = self._trainer(champion, train, out_dir, max_steps)
            trainer.train()
            return trainer.model, trainer.processing_class, _train_loss(trainer)
        if self.training.engine != "fast":
            raise TrainerError(f"unknown trainer.training.engine {self.training.engine!r}; "
                               "use 'fast' or 'trl'")
        from trainer.fastkto import train_weighted_kto

        model, tokenizer = loaded or self._trainable(champion)
        config, completion_eos = self._objective_settings()
        result = train_weighted_kto(model, tokenizer, train.table.to_pylist(), config,
                                    max_steps=max_steps, stop=self._stop, label="refresh",
                                    completion_eos=completion_eos)
        return model, tokenizer, result.train_loss

    def _objective_settings(self) -> tuple[TrainingConfig, bool]:
        """The training settings the objective trains with, and whether a completion ends
        with the end-of-sequence token: whole lists (reward) at `reward.learning_rate`, and
        they end there; single clicks at the configured rate, open-ended."""
        if self.training.objective != "reward":
            return self.training, False
        return self.training.model_copy(
            update={"learning_rate": self.training.reward.learning_rate}), True

    def _trainable(self, champion: ModelRecord | None) -> tuple[Any, Any]:
        """The base model with a trainable LoRA 'default' that starts as the champion's (a
        fresh one without a champion), and its tokenizer."""
        from peft import get_peft_model

        from generator.loading import load_model
        from trainer.kto import lora_config

        model, tokenizer = load_model(self.base_model)
        model = get_peft_model(model, _champion_lora(champion) if champion
                               else lora_config(self.training))
        if champion is not None:
            _load_adapter_weights(model, champion)
        return model, tokenizer

    def _sampler(self, loaded: tuple[Any, Any],
                 champion: ModelRecord | None) -> tuple[Any, Literal["ctranslate2", "torch"]]:
        """The champion as serving runs it, to sample candidate lists, and the engine's name:
        its CTranslate2 engine when the registry has one (SmolLM2 here, 2026-12-04: 0.44–0.58
        lists/s on PyTorch, 1.2–2.0 on the int8 engine), else `loaded`, the PyTorch model
        about to be trained, before its first step (its adapter is still the champion's)."""
        import torch

        from generator.fast import FastGenerator
        from generator.generator import Generator

        version = champion.version if champion else BASE_VERSION
        if champion is not None and champion.engine_path:
            engine = Path(champion.engine_path)
            verify_artifact(engine, version=f"{champion.version} (engine)")
            fast = FastGenerator.load_converted(engine, config=self.config.generator,
                                                linker=self.linker, model_version=version,
                                                threads=torch.get_num_threads())
            return fast, "ctranslate2"
        model, tokenizer = loaded
        model.eval()  # no dropout while sampling
        return Generator(model, tokenizer, config=self.config.generator, linker=self.linker,
                         model_version=version), "torch"

    def _with_list_pairs(self, data: _Data, loaded: tuple[Any, Any],
                         champion: ModelRecord | None) -> _Data:
        """`data` training on the reward objective's whole-list pairs (`trainer.listwise`),
        sampled from `loaded` before its first step, i.e. from the champion. Raises
        InsufficientDataError when no prompt gives a pair."""
        import pyarrow as pa

        from trainer.data import split_holdout
        from trainer.listwise import pair_set

        assert self.encoder is not None  # checked in __init__
        train_side, _ = split_holdout(data.new, self.training.holdout_share)
        # the older requests' training side only: the gate tops its hold-out up from them
        history = (split_holdout(data.old, self.training.holdout_share)[0]
                   if data.old is not None and self.training.reward.ctr_history else None)
        generator, sampler = self._sampler(loaded, champion)
        try:
            pairs = pair_set(train_side, generator, self.encoder, self.tool_ids,
                             self.training.reward, seed=self.training.seed + (data.until or 0),
                             history=history,
                             checkpoint=lambda: self._check_stop("while sampling lists"))
        finally:
            del generator  # a CTranslate2 model is freed now, not at interpreter exit
        if not pairs.rows:
            raise InsufficientDataError(
                f"the reward objective found no list pair in {pairs.diagnostics['requests']} "
                f"requests ({pairs.diagnostics['skipped_requests']} unreadable): every "
                f"prompt's lists scored within reward.min_gap")
        train = build_training_set(pa.Table.from_pylist(pairs.rows), None, self.training)
        log.info("reward objective: training on %d whole lists (%d pairs) from %d prompts",
                 train.table.num_rows, pairs.diagnostics["pairs"], pairs.diagnostics["prompts"])
        return replace(data, train=train,
                       reward_objective={**pairs.diagnostics, "sampler": sampler})

    def _trainer(self, champion: ModelRecord | None, train: TrainingSet, out_dir: Path,
                 max_steps: int | None) -> Any:
        """TRL's trainer (engine 'trl') continuing from the champion, whose adapter is also
        loaded as TRL's reference adapter "ref" (else the reference is the adapter-disabled
        base, which for a fresh LoRA is the starting point too)."""
        from generator.loading import load_model
        from trainer.kto import ProgressLogCallback, WeightedKTOTrainer, kto_args, lora_config

        _quiet_libraries()
        model, tokenizer = load_model(self.base_model)
        peft_config = _champion_lora(champion) if champion else lora_config(self.training)
        args = kto_args(self.training, out_dir, max_steps=max_steps, seed=self.training.seed)
        samples_per_step = self.training.batch_size * self.training.gradient_accumulation_steps
        trainer = WeightedKTOTrainer(
            model=model, args=args, train_dataset=to_kto_dataset(train.table),
            processing_class=tokenizer, peft_config=peft_config,
            callbacks=[ProgressLogCallback(samples_per_step, label="refresh"),
                       StopCallback(self._stop)],
        )
        if champion is not None:
            _load_adapter_weights(trainer.model, champion)
            _load_reference_adapter(trainer.model, champion)
        return trainer

    def _sides(self, model: Any, champion: ModelRecord | None) -> _Sides:
        """Load the champion's and the SFT baseline's adapters beside the candidate's."""
        baseline = self.registry.baseline()
        reference = self._load_adapter(model, champion, CHAMPION_ADAPTER)
        if baseline is not None and champion is not None and baseline.version == champion.version:
            baseline_adapter = reference
        else:
            if baseline is not None:
                verify_artifact(baseline.adapter_dir, version=baseline.version)
            baseline_adapter = self._load_adapter(model, baseline, BASELINE_ADAPTER)
        return _Sides(reference, champion.version if champion else BASE_VERSION,
                      baseline_adapter, baseline.version if baseline else BASE_VERSION)

    def _load_adapter(self, model: Any, record: ModelRecord | None, name: str) -> str | None:
        if record is None:
            return None  # the base model: adapters disabled
        from generator.loading import ModelFilesError

        try:
            model.load_adapter(str(record.adapter_dir), adapter_name=name)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise ModelFilesError(
                f"cannot load the adapter of {record.version} ({record.adapter_dir}) for the "
                f"gate: {exc}"
            ) from exc
        return name

    def _metrics(self, loaded: tuple[Any, Any], held_out: pa.Table, version: str,
                 sides: _Sides) -> tuple[dict[str, dict[str, Any]], Evidence]:
        """Generation metrics of candidate, champion and baseline, and their held-out reward
        margins (against the baseline) when the evidence suffices, with the standard errors
        of the candidate's margin differences."""
        from trainer.evaluate import Evidence, ModelEvaluator, use_adapter

        model, tokenizer = loaded
        evaluator = ModelEvaluator(self.training, self.config.generator, linker=self.linker,
                                   encoder=self.encoder, tool_search=self.tool_search)
        evidence = Evidence.of(held_out, self.training)
        margins: dict[str | None, float] = {}
        errors: dict[str, float] = {}
        if evidence.enough and evidence.measurable:
            margins, errors = _margins(evaluator, loaded, held_out, sides)
        else:
            log.info("reward margin not measured: %s", evidence.reason())
        out: dict[str, dict[str, Any]] = {}
        for side, adapter, name in (("candidate", "default", version),
                                    ("reference", sides.reference, sides.reference_version),
                                    ("baseline", sides.baseline, sides.baseline_version)):
            if side == "baseline" and sides.baseline_version == sides.reference_version:
                out[side] = out["reference"]
                continue
            with use_adapter(model, adapter):
                out[side] = evaluator.generation_metrics(model, tokenizer, version=name)
            out[side]["reward_margin"] = margins.get(adapter)
        out["candidate"].update(errors)
        return out, evidence

    def _finish(self, record: ModelRecord, champion: ModelRecord | None, data: _Data,
                timings: dict[str, float]) -> RefreshResult:
        outcome: Outcome = {"champion": "promoted", "rejected": "rejected"}.get(
            record.status, "candidate")  # type: ignore[assignment]
        if outcome == "candidate" and record.decision.get("outcome") == "not_enough_evidence":
            outcome = "not_enough_evidence"
        announced = False
        if outcome == "promoted":
            try:
                announced = self.registry.announce(
                    record, "promote", previous=champion.version if champion else None
                ) is not None
            except AnnounceError as exc:
                log.error("%s", exc)
        reason = "; ".join(record.decision.get("reasons", [])) or record.note or "gate passed"
        log.info("refresh %s: %s (%s) in %.1fs", record.version, outcome, reason,
                 timings.get("total_s", 0.0))
        return RefreshResult(outcome, reason, record, data.new.num_rows, announced, timings)


def replay_rows(lake: LakeConfig, new: pa.Table, until: int,
                columns: Sequence[str] = SAMPLE_COLUMNS, *,
                window_days: float | None = None) -> pa.Table:
    """The rows the champion could have trained on, for replay: the `samples` version this
    refresh read (`until`, the table's current one) minus `new`, by the write batch each
    row carries. Not time travel to the champion's version: vacuum deletes that version's
    files once they pass its retention (compaction rewrites them), and the read fails for
    good. Rows keep their batch id through `optimize`, so the filter stays exact.

    `window_days` keeps only impressions at most that long before `new`'s newest (None:
    all): the read stays bounded as the lake grows, and the sink writes in time order, so
    the files' statistics let the reader skip older files whole."""
    from lakehouse.tables import BATCH_FIELD, read_table

    batch = BATCH_FIELD.name
    batches = pc.unique(new.column(batch)).to_pylist() if new.num_rows else []
    filters: list[tuple[str, str, Any]] = [(batch, "not in", batches)] if batches else []
    if window_days is not None and new.num_rows:
        newest = int(pc.max(new.column("impression_ts")).as_py())
        filters.append(("impression_ts", ">=", newest - round(window_days * 86_400_000)))
    return read_table(lake, "samples", version=until, columns=list(columns),
                      filters=filters or None)


def _margins(evaluator: Any, loaded: tuple[Any, Any], held_out: pa.Table, sides: _Sides,
             ) -> tuple[dict[str | None, float], dict[str, float]]:
    """Held-out margins (reference: the baseline) of candidate, champion and baseline, and the
    request-clustered standard errors of the candidate's differences to the other two."""
    import numpy as np

    from trainer.evaluate import margin_difference_se, weighted_margin

    model, tokenizer = loaded
    rewards = evaluator.rewards(model, tokenizer, held_out,
                                ["default", sides.reference, sides.baseline],
                                reference=sides.baseline)
    labels = np.asarray(held_out.column("label").to_pylist(), dtype=bool)
    weights = np.asarray(held_out.column("weight").to_pylist(), dtype=np.float64)
    requests = held_out.column("request_id").to_pylist()
    margins = {name: weighted_margin(r, labels, weights) for name, r in rewards.items()}
    errors = {f"reward_margin_se_vs_{side}": margin_difference_se(
        rewards["default"], rewards[adapter], labels, weights, requests)
        for side, adapter in (("champion", sides.reference), ("baseline", sides.baseline))}
    return margins, errors


def _log_gate(version: str, sides: _Sides, metrics: dict[str, dict[str, Any]],
              result: GateResult) -> None:
    from trainer.evaluate import metric_summary

    log.info("candidate %s: %s", version, metric_summary(metrics["candidate"]))
    log.info("champion %s: %s", sides.reference_version, metric_summary(metrics["reference"]))
    if sides.baseline_version != sides.reference_version:
        log.info("SFT baseline %s: %s", sides.baseline_version,
                 metric_summary(metrics["baseline"]))
    evidence = result.evidence
    log.info("gate: %s (held-out evidence: %s clicks, %s non-clicks) %s",
             result.outcome.upper(), evidence.get("heldout_clicks"),
             evidence.get("heldout_nonclicks"), result.reasons)


def retrieval_parts(config: Any, *, max_tools: int = 4) -> dict[str, Any]:
    """Keyword arguments of `Refresher` from retrieval (`RetrievalConfig`): its linker,
    encoder and tool search, for the gate's grounding and relevance metrics and realistic
    eval prompts. Empty, with a warning, when retrieval cannot load: those two metrics are
    then not measured (not guarded) and the eval prompts use fixed tools."""
    from generator.prompt import tool_label

    try:
        from retrieval import Retriever

        retriever = Retriever(config).warm()
    except Exception as exc:  # any failure only disables two gate metrics
        log.warning("retrieval unavailable (%s): the gate skips tool grounding and relevance",
                    exc)
        return {}

    def search(query: str, response: str) -> Any:
        return retriever.search(query, response=response, k=max_tools)

    return {"linker": retriever, "encoder": retriever.encode, "tool_search": search,
            "tool_ids": {tool_label(tool.name): tool.id for tool in retriever.catalog.tools}}


class StopCallback(TrainerCallback):
    """Ends training at the next step once the stop event is set (graceful shutdown)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.stop.is_set():
            control.should_training_stop = True
        return control


def _champion_lora(champion: ModelRecord) -> Any:
    """The champion's LoRA config, made trainable (saved configs say inference_mode)."""
    from peft import PeftConfig

    from generator.loading import ModelFilesError

    try:
        config = PeftConfig.from_pretrained(str(champion.adapter_dir))
    except (OSError, ValueError) as exc:
        raise ModelFilesError(
            f"cannot read the champion adapter config in {champion.adapter_dir}: {exc}; roll "
            "back to an earlier version (`toolrec models rollback`)"
        ) from exc
    config.inference_mode = False
    return config


def _load_adapter_weights(model: Any, champion: ModelRecord) -> None:
    """Continue from the champion: its weights into the trainer's fresh 'default' adapter."""
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    from generator.loading import ModelFilesError

    try:
        weights = load_peft_weights(str(champion.adapter_dir), device="cpu")
        result = set_peft_model_state_dict(model, weights, adapter_name="default")
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelFilesError(
            f"cannot load the champion adapter weights from {champion.adapter_dir}: {exc}; roll "
            "back to an earlier version (`toolrec models rollback`)"
        ) from exc
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ModelFilesError(
            f"the champion adapter {champion.adapter_dir} does not fit the base model "
            f"(unexpected keys, e.g. {unexpected[:3]}); check trainer.generator.model_dir"
        )


def _load_reference_adapter(model: Any, champion: ModelRecord) -> None:
    """The champion as TRL's reference adapter "ref", frozen, dropout off like the rest."""
    from trl.trainer.utils import disable_dropout_in_model

    from generator.loading import ModelFilesError

    try:
        model.load_adapter(str(champion.adapter_dir), adapter_name="ref")
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelFilesError(
            f"cannot load the champion adapter {champion.adapter_dir} as the KTO reference: "
            f"{exc}; roll back to an earlier version (`toolrec models rollback`)"
        ) from exc
    disable_dropout_in_model(model)  # TRL disabled dropout at init, before "ref" existed


def _train_loss(trainer: Any) -> float | None:
    for entry in reversed(trainer.state.log_history):
        if "train_loss" in entry:
            return float(entry["train_loss"])
    return None


def _quiet_libraries() -> None:
    """TRL's class-count warning does not apply to per-sample re-normalized weights, and
    dataset progress bars flood daemon logs."""
    import datasets

    datasets.disable_progress_bars()
    logging.getLogger("trl.trainer.kto_trainer").setLevel(logging.ERROR)
