"""Sample-weighted KTO: TRL's `KTOTrainer` with each sample's loss multiplied by its weight.

The objective (this project's, after the ToolRec abstract; see DESIGN.md §4):

    L = (1/B) · Σ_i  c(y_i) · w_i · ℓ_KTO(x_i, y_i)

where ℓ_KTO is TRL's per-sample KTO loss (Eq. 7 of the KTO paper), `w_i` the calibrated
`weight` column of the sample and `c(y)` TRL's class weight (`desirable_weight` /
`undesirable_weight`). With all `w_i = 1` this is exactly the stock trainer's loss; a sample
with `w_i = 0` contributes no gradient; the contribution of one sample is linear in `w_i`.
The mean is over the batch size B, not over Σw, precisely so that it stays linear: the per
class re-normalization of the weights (`trainer.data`) keeps its scale near 1.

How it hooks into TRL 1.16 without forking `_compute_loss`:
- the `weight` column survives column pruning (`_set_signature_columns_if_needed`),
- the collator (`WeightedUnpairedCollator`) turns it into a float tensor in the batch,
- `compute_loss` pops it before TRL builds the model's forward kwargs, so it never reaches
  the model, and for the duration of that call sets TRL's class weights to the per-sample
  tensors `c(y)·w` of the batch's chosen / rejected rows, in TRL's own order
  (`nonzero(label)`), so TRL's `desirable_weight * chosen_losses` multiplies elementwise.
  The unit tests pin this against the stock trainer, so a TRL change that breaks the
  contract fails them.

Per-suggestion completions (`generator.prompt`: "- text\\n") must not end the turn, so the EOS
token TRL appends to every non-conversational completion is removed after tokenization
(`completion_eos=False`, the default).

TRL's constraints, handled here and in `trainer.data`: the KL estimate needs a batch > 1
(`TrainingConfig.batch_size >= 2`) and the sampler must stay sequential (the KL completions
are rotated within fixed batches), so the data is shuffled before it gets here.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerCallback
from trl.trainer.kto_config import KTOConfig
from trl.trainer.kto_trainer import DataCollatorForUnpairedPreference, KTOTrainer

from toolrec.errors import TrainerError

if TYPE_CHECKING:
    from datasets import Dataset

    from trainer.config import TrainingConfig

__all__ = [
    "WEIGHT_COLUMN",
    "ProgressLogCallback",
    "WeightedKTOTrainer",
    "WeightedUnpairedCollator",
    "kto_args",
    "lora_config",
]

WEIGHT_COLUMN = "weight"
log = logging.getLogger(__name__)


@dataclass
class WeightedUnpairedCollator(DataCollatorForUnpairedPreference):
    """TRL's unpaired-preference collator plus a float `weight` tensor per batch."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        output = super().torch_call(examples)
        try:
            weights = [float(example[WEIGHT_COLUMN]) for example in examples]
        except KeyError as exc:
            raise TrainerError(
                f"a training example has no {WEIGHT_COLUMN!r} field (keys: {sorted(examples[0])}); "
                "build the dataset with trainer.data.to_kto_dataset"
            ) from exc
        output[WEIGHT_COLUMN] = torch.tensor(weights, dtype=torch.float32)
        return output


class WeightedKTOTrainer(KTOTrainer):
    """`KTOTrainer` whose per-sample losses are multiplied by the dataset's `weight` column."""

    def __init__(self, model: Any, *, completion_eos: bool = False, **kwargs: Any) -> None:
        """`KTOTrainer`'s arguments (by keyword), plus `completion_eos`: keep TRL's EOS after
        each completion (False for our per-suggestion factorization, whose completions end
        with the suggestion delimiter, not the end of the turn; see `generator.prompt`)."""
        self._completion_eos = completion_eos
        if kwargs.get("train_dataset") is None:
            raise TrainerError("WeightedKTOTrainer needs train_dataset=... (a weighted dataset)")
        _check_weights(kwargs["train_dataset"], "train_dataset")
        if kwargs.get("eval_dataset") is not None:
            _check_weights(kwargs["eval_dataset"], "eval_dataset")
        if kwargs.get("data_collator") is None:
            kwargs["data_collator"] = _default_collator(kwargs)
        super().__init__(model, **kwargs)

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, name: str) -> Any:
        """TRL's tokenization, then (unless `completion_eos`) the EOS it appends removed."""
        dataset = super()._prepare_dataset(dataset, processing_class, args, name)
        if self._completion_eos:
            return dataset
        return dataset.map(
            _strip_eos, fn_kwargs={"eos_id": self._tokenizer.eos_token_id}, desc="Removing EOS"
        )

    def _set_signature_columns_if_needed(self) -> None:
        """Keep `weight` through `remove_unused_columns`."""
        # TRL leaves this method unannotated.
        super()._set_signature_columns_if_needed()  # type: ignore[no-untyped-call]
        columns: list[str] = list(self._signature_columns or [])
        if WEIGHT_COLUMN not in columns:
            self._signature_columns = [*columns, WEIGHT_COLUMN]  # type: ignore[assignment]

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        """TRL's loss with c(y)·w per sample; `weight` is removed before the model's forward."""
        inputs = dict(inputs)
        weights = inputs.pop(WEIGHT_COLUMN, None)
        if weights is None:
            raise TrainerError(
                f"the batch has no {WEIGHT_COLUMN!r} tensor; pass a dataset with a weight column "
                "and keep the default WeightedUnpairedCollator"
            )
        with self._per_sample_class_weights(weights, inputs["label"]):
            # TRL leaves this method unannotated.
            return super().compute_loss(  # type: ignore[no-untyped-call]
                model, inputs, return_outputs, num_items_in_batch
            )

    @contextmanager
    def _per_sample_class_weights(self, weights: torch.Tensor, labels: Any) -> Iterator[None]:
        """Swap TRL's scalar class weights for this batch's per-sample tensors, then restore."""
        device = self.accelerator.device
        w = torch.as_tensor(weights, dtype=torch.float32, device=device)
        chosen = torch.as_tensor(labels, device=device).bool()
        args: Any = self.args  # a KTOConfig
        desirable, undesirable = args.desirable_weight, args.undesirable_weight
        self.desirable_weight = desirable * w[chosen]  # order of TRL's nonzero(label)
        self.undesirable_weight = undesirable * w[~chosen]
        mode = "train" if getattr(self.model, "training", False) else "eval"
        self._metrics[mode]["weight/mean"].append(w.mean().item())
        try:
            yield
        finally:
            self.desirable_weight, self.undesirable_weight = desirable, undesirable


def _strip_eos(example: dict[str, Any], eos_id: int) -> dict[str, Any]:
    for key in ("completion_ids", "KL_completion_ids"):
        ids = example.get(key)
        if ids and ids[-1] == eos_id:
            example[key] = ids[:-1]
    return example


def _check_weights(dataset: Dataset | None, name: str) -> None:
    """Fail early, naming the problem, when a dataset lacks valid weights."""
    if dataset is None:
        return
    columns = getattr(dataset, "column_names", None) or []
    if WEIGHT_COLUMN not in columns:
        raise TrainerError(
            f"{name} has no {WEIGHT_COLUMN!r} column (columns: {columns}); build it with "
            "trainer.data.to_kto_dataset"
        )
    bad = [w for w in dataset[WEIGHT_COLUMN] if not (math.isfinite(w) and w >= 0)]
    if bad:
        raise TrainerError(
            f"{name} has {len(bad)} invalid weights (e.g. {bad[0]!r}); weights must be finite "
            "and >= 0"
        )


def _default_collator(kwargs: dict[str, Any]) -> WeightedUnpairedCollator:
    """The collator TRL would build, plus the weight tensor."""
    tokenizer = kwargs.get("processing_class")
    args: KTOConfig | None = kwargs.get("args")
    if tokenizer is None or args is None:
        raise TrainerError(
            "WeightedKTOTrainer needs explicit `args` (KTOConfig) and `processing_class` "
            "(the tokenizer); build them with trainer.kto.kto_args and generator.loading.load_model"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    pad_to = args.pad_to_multiple_of if isinstance(args.pad_to_multiple_of, int) else None
    return WeightedUnpairedCollator(
        pad_token_id=tokenizer.pad_token_id, max_length=args.max_length, pad_to_multiple_of=pad_to
    )


def kto_args(
    config: TrainingConfig, output_dir: Path, *, max_steps: int | None = None, seed: int = 0
) -> KTOConfig:
    """The KTOConfig of one refresh: CPU, fp32 unless configured, no checkpoints, no hub."""
    steps = config.max_steps if max_steps is None else max_steps
    return KTOConfig(
        output_dir=str(output_dir),
        learning_rate=config.learning_rate,
        beta=config.beta,
        desirable_weight=config.desirable_weight,
        undesirable_weight=config.undesirable_weight,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_train_epochs=config.epochs,
        max_steps=steps if steps > 0 else -1,
        max_length=config.max_length,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type="linear",
        weight_decay=0.0,
        activation_checkpointing=False,  # transformers 5.23 name; TRL defaults it on
        bf16=config.bf16,
        use_cpu=True,
        save_strategy="no",
        report_to=[],
        logging_steps=config.logging_steps,
        disable_tqdm=True,
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        remove_unused_columns=True,
    )


def lora_config(config: TrainingConfig) -> Any:
    """The LoRA adapter of a fresh (first) refresh; later refreshes reuse the champion's."""
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=0.0,
        target_modules=list(config.lora_target_modules),
        task_type="CAUSAL_LM",
        bias="none",
    )


class ProgressLogCallback(TrainerCallback):
    """One log line every `every_s` seconds: step, samples/s and ETA (daemon-friendly)."""

    def __init__(self, samples_per_step: int, *, every_s: float = 10.0, label: str = "kto") -> None:
        self.samples_per_step = samples_per_step
        self.every_s = every_s
        self.label = label
        self._start = 0.0
        self._last = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._start = self._last = time.monotonic()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        now = time.monotonic()
        done, total = state.global_step, max(state.max_steps, 1)
        if now - self._last < self.every_s and 1 < done < total:
            return
        self._last = now
        elapsed = max(now - self._start, 1e-9)
        rate = done * self.samples_per_step / elapsed
        eta = (total - done) * elapsed / max(done, 1)
        log.info(
            "%s step %d/%d  %.2f samples/s  elapsed %.0fs  ETA %.0fs",
            self.label, done, total, rate, elapsed, eta,
        )
