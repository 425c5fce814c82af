"""Incremental refresh: new samples → weighted KTO from the champion → gate → registry.

One refresh (`Refresher.run`), single-flight across processes (`TrainingConfig.lock_path`):

1. clean up what a killed earlier refresh left (temporary / unregistered artifact dirs);
2. read the `samples` rows added since the Delta version the champion was trained up to
   (`read_samples_since`), and the older rows as of that version (time travel) for replay
   and hold-out top-up; skip when fewer than M new samples or a class is missing;
3. build the training set (`trainer.data`: hold-out removed, replay mixed in, per-class
   re-normalized weights, shuffled) and the held-out set;
4. train weighted KTO with LoRA, continuing from the champion's adapter (its weights loaded
   into a fresh adapter of the same config; the KTO reference stays the adapter-disabled
   base); a fresh adapter when there is no champion;
5. evaluate candidate and champion (or the base) on the same held-out samples and fixed
   prompts; gate (`trainer.evaluate`);
6. publish the adapter: written to `<artifact_dir>/.tmp-<version>-<pid>/`, checksummed,
   atomically renamed to `<artifact_dir>/<version>/`;
7. register the row — the LAST write; champion if the gate passed (one Delta commit with
   the old champion's retirement), else rejected; then announce a promotion.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from transformers import TrainerCallback

from toolrec.errors import TrainerError
from trainer.data import (
    SAMPLE_COLUMNS,
    InsufficientDataError,
    TrainingSet,
    build_eval_set,
    build_training_set,
    to_kto_dataset,
)
from trainer.registry import (
    TMP_PREFIX,
    AnnounceError,
    FileLock,
    ModelRecord,
    Registry,
    now_ms,
    publish_artifact,
    verify_artifact,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from lakehouse.config import LakeConfig
    from toolrec.kafka import KafkaConfig
    from trainer.config import TrainerConfig
    from trainer.evaluate import Encoder, ToolSearch
    from trainer.parser import ToolLinker

__all__ = ["RefreshCancelled", "RefreshResult", "Refresher", "retrieval_parts"]

log = logging.getLogger(__name__)
Outcome = Literal["promoted", "rejected", "candidate", "skipped"]
CHAMPION_ADAPTER = "champion"


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


@dataclass
class _Data:
    since: int | None
    until: int
    new: pa.Table
    train: TrainingSet
    held_out: pa.Table


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
    ) -> None:
        self.lake = lake
        self.config = config
        self.training = config.training
        self.registry = Registry(lake, config.training, kafka)
        self.base_model = Path(base_model or config.generator.model_dir)
        self.linker = linker
        self.encoder = encoder
        self.tool_search = tool_search
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
        return new.num_rows

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
        version = f"v{seq}"
        tmp_dir = self.registry.artifact_dir / f"{TMP_PREFIX}{version}-{os.getpid()}"
        tmp_dir.mkdir(parents=True)
        try:
            record, gate_ok = self._train_and_evaluate(
                version, seq, champion, data, tmp_dir, timings, max_steps
            )
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
        from lakehouse.tables import read_samples_since, read_table

        since = champion.data_version_to if champion else None
        new, until = read_samples_since(self.lake, since)
        if new.num_rows < min_new:
            error = InsufficientDataError(
                f"{new.num_rows} new samples since samples version {since}; a refresh needs "
                f"at least {min_new} (trainer.training.min_new_samples)"
            )
            error.new = new.num_rows  # type: ignore[attr-defined]
            raise error
        old = None
        if since is not None and since >= 0:
            old = read_table(self.lake, "samples", version=since, columns=list(SAMPLE_COLUMNS))
        train = build_training_set(new, old, self.training)
        held_out = build_eval_set(new, old, self.training)
        log.info("refresh data: samples versions (%s, %d]: %d new, %d replay, %d train, "
                 "%d held out, weighted D:U = %.2f", since, until, new.num_rows,
                 train.n_replay, train.table.num_rows, held_out.num_rows, train.weighted_ratio)
        return _Data(since, until, new, train, held_out)

    def _train_and_evaluate(
        self, version: str, seq: int, champion: ModelRecord | None, data: _Data,
        tmp_dir: Path, timings: dict[str, float], max_steps: int | None,
    ) -> tuple[ModelRecord, bool]:
        from trainer.evaluate import ModelEvaluator, gate, metric_summary

        t0 = time.monotonic()
        trainer = self._trainer(champion, data.train, tmp_dir / "trainer", max_steps)
        trainer.train()
        self._check_stop("during training")
        timings["train_s"] = time.monotonic() - t0
        model, tokenizer = trainer.model, trainer.processing_class
        adapter_tmp = tmp_dir / "adapter"
        model.save_pretrained(str(adapter_tmp), selected_adapters=["default"])
        t1 = time.monotonic()
        reference = self._load_reference(model, champion)
        evaluator = ModelEvaluator(self.training, self.config.generator, linker=self.linker,
                                   encoder=self.encoder, tool_search=self.tool_search)
        candidate_m, reference_m = self._metrics(evaluator, model, tokenizer, data.held_out,
                                                 version, reference, champion)
        result = gate(candidate_m, reference_m, self.training.gate)
        timings["evaluate_s"] = time.monotonic() - t1
        log.info("candidate %s: %s", version, metric_summary(candidate_m))
        log.info("reference %s: %s", champion.version if champion else "base",
                 metric_summary(reference_m))
        log.info("gate: %s %s", "PROMOTE" if result.promote else "REJECT", result.reasons)
        final = publish_artifact(adapter_tmp, self.registry.artifact_path(version), info={
            "version": version, "parent": champion.version if champion else None,
            "base_model": str(self.base_model), "created_ts": now_ms(),
        })
        record = ModelRecord(
            version=version, seq=seq, parent=champion.version if champion else None,
            base_model=str(self.base_model), adapter_path=str(final),
            data_version_from=data.since, data_version_to=data.until,
            n_holdout=data.held_out.num_rows, n_train=data.train.table.num_rows,
            n_new=data.train.n_new, n_replay=data.train.n_replay,
            n_desirable=data.train.n_desirable, n_undesirable=data.train.n_undesirable,
            metrics={"candidate": candidate_m, "reference": reference_m,
                     "reference_version": champion.version if champion else "base",
                     "train_loss": _train_loss(trainer), "timings": dict(timings)},
            decision=result.record(),
            status="champion" if result.promote else "rejected",
        )
        return record, result.promote

    def _trainer(self, champion: ModelRecord | None, train: TrainingSet, out_dir: Path,
                 max_steps: int | None) -> Any:
        from trainer.kto import ProgressLogCallback, WeightedKTOTrainer, kto_args, lora_config
        from trainer.models import load_model

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
        return trainer

    def _load_reference(self, model: Any, champion: ModelRecord | None) -> str | None:
        if champion is None:
            return None
        from trainer.models import ModelFilesError

        try:
            model.load_adapter(str(champion.adapter_dir), adapter_name=CHAMPION_ADAPTER)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise ModelFilesError(
                f"cannot load the champion adapter {champion.adapter_dir} for comparison: {exc}"
            ) from exc
        return CHAMPION_ADAPTER

    def _metrics(self, evaluator: Any, model: Any, tokenizer: Any, held_out: pa.Table,
                 version: str, reference: str | None, champion: ModelRecord | None,
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
        from trainer.evaluate import use_adapter

        margins = self._margins(evaluator, model, tokenizer, held_out, reference)
        with use_adapter(model, "default"):
            candidate = evaluator.generation_metrics(model, tokenizer, version=version)
        with use_adapter(model, reference):
            ref = evaluator.generation_metrics(
                model, tokenizer, version=champion.version if champion else "base")
        candidate["reward_margin"] = margins.get("default")
        ref["reward_margin"] = margins.get(reference)
        return candidate, ref

    def _margins(self, evaluator: Any, model: Any, tokenizer: Any, held_out: pa.Table,
                 reference: str | None) -> dict[str | None, float | None]:
        labels = held_out.column("label").to_pylist()
        if not any(labels) or all(labels):
            log.warning("held-out set has %d samples and lacks a class: reward margin not "
                        "measured (not guarded)", len(labels))
            return {}
        return dict(evaluator.margins(model, tokenizer, held_out, ["default", reference]))

    def _finish(self, record: ModelRecord, champion: ModelRecord | None, data: _Data,
                timings: dict[str, float]) -> RefreshResult:
        outcome: Outcome = {"champion": "promoted", "rejected": "rejected"}.get(
            record.status, "candidate")  # type: ignore[assignment]
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


def retrieval_parts(config: Any, *, max_tools: int = 4) -> dict[str, Any]:
    """Keyword arguments of `Refresher` from retrieval (`RetrievalConfig`): its linker,
    encoder and tool search, for the gate's grounding and relevance metrics and realistic
    eval prompts. Empty, with a warning, when retrieval cannot load: those two metrics are
    then not measured (not guarded) and the eval prompts use fixed tools."""
    try:
        from retrieval import Retriever

        retriever = Retriever(config).warm()
    except Exception as exc:  # any failure only disables two gate metrics
        log.warning("retrieval unavailable (%s): the gate skips tool grounding and relevance",
                    exc)
        return {}

    def search(query: str, response: str) -> Any:
        return retriever.search(query, response=response, k=max_tools)

    return {"linker": retriever, "encoder": retriever.encode, "tool_search": search}


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

    from trainer.models import ModelFilesError

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

    from trainer.models import ModelFilesError

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
