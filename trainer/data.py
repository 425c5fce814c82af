"""Samples (rows of the `samples` Delta table) → the weighted-KTO training and held-out sets.

Steps of one refresh's data (`build_training_set`), all deterministic for a seed:

1. Hold-out split by a stable hash of `request_id` (`is_holdout`): a request is held out in
   every refresh or in none, and the 3–4 sibling suggestions of one request (which share
   their prompt) are always on the same side, so the gate never scores a prompt some model
   trained on.
2. New samples (added since the champion's Delta version) are capped to the most recent
   `max_train_samples · (1 - replay_share)`; a replay sample of older training rows is
   mixed in so that `replay_share` of the set is old data (against forgetting).
3. Per-class re-normalization, then the cap (`renormalize_class_weights`, this project's
   rule, DESIGN.md §4): the calibrated weights keep their ratios within a class, and the two
   classes are scaled so that the weighted desirable:undesirable ratio Σw_D / Σw_U is the
   observed ratio clipped into [ratio_min, ratio_max] (KTO paper, Eq. 8: 1:1 to 4:3) and the
   mean weight is 1 (the loss of `trainer.kto` is a mean over the batch, so this keeps it on
   the stock trainer's scale). Then no weight may exceed `weight_max` (the calibration's
   `w_max`): weights above it are set to it and the excess is spread over the uncapped
   samples of the same class in proportion to their weights ("water-filling"). What that
   guarantees:
   - always: every training weight ≤ weight_max (2 clicks among 200 samples get
     weight_max each, not 50);
   - when each class can carry its share under the cap (n_class · weight_max ≥ its
     re-normalized total): the ratio stays in [ratio_min, ratio_max] and the mean stays 1;
     the calibration's ratios hold among the uncapped samples of a class, the capped ones
     are flattened to the cap (as the calibration's own clip does);
   - otherwise every sample of the short class sits at the cap, the other class keeps its
     re-normalized share, and the ratio falls below ratio_min (clicks) or above ratio_max
     (non-clicks); the mean weight is then < 1 (smaller steps on thin evidence). The
     refresh logs this and records the ratio actually used (`TrainingSet.weighted_ratio`).
   Each sample's calibrated and trained weight are kept (`weight_calibrated`, `weight`) and
   summarised per class (`weight_summary`) for the registry row and the run's artifact.
4. Shuffle: TRL's KTO sampler must stay sequential (the KL completions are rotated within
   fixed batches), so the order is randomized here, once.

The held-out set (`build_eval_set`) is every held-out request of the new data and, topping
it up, of the older data, most recent first, stratified by class so that clicks (the scarce
class) are kept first: up to half of `max_eval_samples` are clicks. The gate's margin is a
difference of per-class weighted means, so stratifying does not bias it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from toolrec.errors import TrainerError

if TYPE_CHECKING:
    from datasets import Dataset

    from trainer.config import TrainingConfig

__all__ = [
    "KTO_COLUMNS",
    "SAMPLE_COLUMNS",
    "InsufficientDataError",
    "TrainingSet",
    "build_eval_set",
    "build_training_set",
    "format_weight_summary",
    "is_holdout",
    "renormalize_class_weights",
    "split_holdout",
    "to_kto_dataset",
    "weight_summary",
]

KTO_COLUMNS = ("prompt", "completion", "label", "weight")
SAMPLE_COLUMNS = ("sample_id", "request_id", "prompt", "completion", "clicked", "weight",
                  "closed_ts")


class InsufficientDataError(TrainerError):
    """Not enough (or too one-sided) data for a refresh; the refresh is skipped."""


@dataclass(frozen=True)
class TrainingSet:
    """A shuffled, re-weighted training table (columns KTO_COLUMNS + sample_id, request_id,
    weight_calibrated) and counts. `weight` is the weight used in training."""

    table: pa.Table
    n_new: int
    n_replay: int
    n_desirable: int
    n_undesirable: int
    weighted_ratio: float  # Σw_D / Σw_U after re-normalization and the cap

    def weights(self) -> pa.Table:
        """Per-sample training weights, kept with the run: sample_id, request_id, label,
        weight_calibrated (the sample row's), weight_trained (after re-normalization + cap)."""
        t = self.table
        return pa.table({
            "sample_id": t.column("sample_id"), "request_id": t.column("request_id"),
            "label": t.column("label"), "weight_calibrated": t.column("weight_calibrated"),
            "weight_trained": t.column("weight"),
        })

    def weight_summary(self) -> dict[str, Any]:
        """`weight_summary` of the trained weights (for the registry row and the log)."""
        return weight_summary(np.asarray(self.table.column("weight").to_pylist()),
                              np.asarray(self.table.column("label").to_pylist(), dtype=bool))

    def counts(self) -> dict[str, int]:
        return {
            "n_train": self.table.num_rows,
            "n_new": self.n_new,
            "n_replay": self.n_replay,
            "n_desirable": self.n_desirable,
            "n_undesirable": self.n_undesirable,
        }


def is_holdout(request_ids: list[str], share: float) -> np.ndarray:
    """Stable per-request hold-out membership: blake2b(request_id) below `share` of 2^64.
    Pass the rows' `request_id`s, so that a request's suggestions share one side."""
    if share <= 0:
        return np.zeros(len(request_ids), dtype=bool)
    limit = int(share * 2**64)
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(r.encode(), digest_size=8).digest(), "big") < limit
            for r in request_ids
        ),
        dtype=bool,
        count=len(request_ids),
    )


def split_holdout(table: pa.Table, share: float) -> tuple[pa.Table, pa.Table]:
    """(training rows, held-out rows) of `table`, split by request (`request_id`)."""
    if "request_id" not in table.column_names:
        raise TrainerError(
            f"sample rows lack request_id (have {table.column_names}); the hold-out split is "
            "by request so that sibling suggestions never straddle it"
        )
    mask = pa.array(is_holdout(table.column("request_id").to_pylist(), share))
    return table.filter(pc.invert(mask)), table.filter(mask)


def renormalize_class_weights(
    weights: np.ndarray, labels: np.ndarray, *, ratio_min: float, ratio_max: float,
    weight_max: float | None = None,
) -> np.ndarray:
    """Scale each class so Σw_D/Σw_U = clip(observed, ratio_min, ratio_max) and mean(w) = 1,
    then cap every weight at `weight_max` (module doc, step 3, says what then still holds)."""
    weights = np.asarray(weights, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    if weights.shape != labels.shape or weights.size == 0:
        raise TrainerError(f"need equally long, non-empty weights and labels, got "
                           f"{weights.shape} and {labels.shape}")
    desirable, undesirable = weights[labels].sum(), weights[~labels].sum()
    if desirable <= 0 or undesirable <= 0:
        raise InsufficientDataError(
            f"cannot balance classes: total weight desirable={desirable:.3g}, "
            f"undesirable={undesirable:.3g}; KTO needs weighted clicks and non-clicks"
        )
    ratio = float(np.clip(desirable / undesirable, ratio_min, ratio_max))
    total = float(weights.size)
    out = np.empty_like(weights)
    for mask, share in ((labels, total * ratio / (1 + ratio)), (~labels, total / (1 + ratio))):
        out[mask] = _capped_class(weights[mask], share, weight_max)
    return out


def _capped_class(weights: np.ndarray, total: float, cap: float | None) -> np.ndarray:
    """`weights` scaled to sum to `total`, none above `cap`: capped weights are set to the cap
    and the excess is spread over the others in proportion (water-filling). When even all at
    the cap cannot reach `total`, all are at the cap (the sum is then below `total`)."""
    scaled: np.ndarray = weights * (total / weights.sum())
    if cap is None or scaled.max() <= cap:
        return scaled
    at_cap = np.zeros(weights.shape, dtype=bool)
    while True:  # each pass caps at least one more sample, so this ends
        free = ~at_cap
        rest, free_sum = total - cap * at_cap.sum(), weights[free].sum()
        if not free.any() or free_sum <= 0:
            return np.where(at_cap, cap, 0.0)
        out = np.where(at_cap, cap, weights * (rest / free_sum))
        over = free & (out > cap)
        if not over.any():
            return out
        at_cap |= over


def weight_summary(weights: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Per class (clicked / not_clicked / all): n, min, median, p90, max, mean, sum and Kish's
    effective sample size (Σw)²/Σw²; plus the weighted ratio Σw_D/Σw_U."""
    weights = np.asarray(weights, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)

    def stats(w: np.ndarray) -> dict[str, float | int | None]:
        if w.size == 0:
            return {"n": 0}
        ess = float(w.sum() ** 2 / (w**2).sum()) if (w**2).sum() > 0 else 0.0
        return {"n": int(w.size), "min": float(w.min()), "median": float(np.median(w)),
                "p90": float(np.quantile(w, 0.9)), "max": float(w.max()),
                "mean": float(w.mean()), "sum": float(w.sum()), "ess": ess}

    undesirable = weights[~labels].sum()
    return {
        "clicked": stats(weights[labels]), "not_clicked": stats(weights[~labels]),
        "all": stats(weights),
        "ratio": float(weights[labels].sum() / undesirable) if undesirable > 0 else None,
    }


def format_weight_summary(summary: dict[str, Any]) -> str:
    """One log line of `weight_summary`."""
    parts = []
    for name in ("clicked", "not_clicked"):
        s = summary.get(name) or {}
        if not s.get("n"):
            parts.append(f"{name}: none")
            continue
        parts.append(f"{name}: n={s['n']} min={s['min']:.3g} median={s['median']:.3g} "
                     f"p90={s['p90']:.3g} max={s['max']:.3g} ess={s['ess']:.1f}")
    ess = (summary.get("all") or {}).get("ess")
    ratio = summary.get("ratio")
    parts.append(f"all: ess={ess:.1f}" if ess is not None else "all: none")
    parts.append(f"D:U={ratio:.3f}" if ratio is not None else "D:U=-")
    return "; ".join(parts)


def _rows(table: pa.Table) -> pa.Table:
    missing = [c for c in SAMPLE_COLUMNS if c not in table.column_names]
    if missing:
        raise TrainerError(
            f"sample rows lack columns {missing} (have {table.column_names}); read them from "
            "the lake's `samples` table"
        )
    return table.select(list(SAMPLE_COLUMNS))


def _most_recent(table: pa.Table, limit: int) -> pa.Table:
    if table.num_rows <= limit:
        return table
    keys = [("closed_ts", "descending"), ("sample_id", "ascending")]
    order = pc.sort_indices(table, sort_keys=keys)
    return table.take(order[:limit])


def _random_rows(table: pa.Table, n: int, rng: np.random.Generator) -> pa.Table:
    if n <= 0 or table.num_rows == 0:
        return table.slice(0, 0)
    picks = rng.choice(table.num_rows, size=min(n, table.num_rows), replace=False)
    return table.take(pa.array(np.sort(picks)))


def build_training_set(
    new: pa.Table, old: pa.Table | None, config: TrainingConfig, *, seed: int | None = None
) -> TrainingSet:
    """New samples + a replay of older ones, hold-out removed, re-weighted and shuffled.

    Raises InsufficientDataError when a class has fewer than `min_per_class` samples.
    """
    rng = np.random.default_rng(config.seed if seed is None else seed)
    new_train, _ = split_holdout(_rows(new), config.holdout_share)
    replaying = old is not None and old.num_rows > 0 and config.replay_share > 0
    share_new = 1 - config.replay_share if replaying else 1.0
    new_train = _most_recent(new_train, max(1, int(config.max_train_samples * share_new)))
    replay = new_train.slice(0, 0)
    if old is not None and replaying:
        old_train, _ = split_holdout(_rows(old), config.holdout_share)
        want = round(new_train.num_rows * config.replay_share / (1 - config.replay_share))
        want = min(want, config.max_train_samples - new_train.num_rows)
        replay = _random_rows(old_train, want, rng)
    rows = pa.concat_tables([new_train, replay])
    labels = np.asarray(rows.column("clicked").to_pylist(), dtype=bool)
    n_d, n_u = int(labels.sum()), int((~labels).sum())
    if min(n_d, n_u) < config.min_per_class:
        raise InsufficientDataError(
            f"{n_d} clicked and {n_u} non-clicked training samples; a refresh needs at least "
            f"{config.min_per_class} of each (trainer.training.min_per_class)"
        )
    weights = renormalize_class_weights(
        np.asarray(rows.column("weight").to_pylist(), dtype=np.float64), labels,
        ratio_min=config.desirable_ratio_min, ratio_max=config.desirable_ratio_max,
        weight_max=config.weight_max,
    )
    table = pa.table({
        "sample_id": rows.column("sample_id"),
        "request_id": rows.column("request_id"),
        "weight_calibrated": rows.column("weight"),
        "prompt": rows.column("prompt"),
        "completion": rows.column("completion"),
        "label": pa.array(labels),
        "weight": pa.array(weights, type=pa.float64()),
    }).take(pa.array(rng.permutation(rows.num_rows)))
    return TrainingSet(
        table=table,
        n_new=new_train.num_rows,
        n_replay=replay.num_rows,
        n_desirable=n_d,
        n_undesirable=n_u,
        weighted_ratio=float(weights[labels].sum() / weights[~labels].sum()),
    )


def build_eval_set(new: pa.Table, old: pa.Table | None, config: TrainingConfig) -> pa.Table:
    """Held-out rows for the gate: every held-out request of the new and the older data,
    most recent first, at most `max_eval_samples`, clicks kept first (up to half of it).

    Columns: sample_id, request_id, prompt, completion, label, weight (calibrated weights).
    """
    _, held = split_holdout(_rows(new), config.holdout_share)
    if old is not None and old.num_rows:
        _, old_held = split_holdout(_rows(old), config.holdout_share)
        held = pa.concat_tables([held, old_held])
    clicked = pc.equal(held.column("clicked"), True)
    clicks = _most_recent(held.filter(clicked), config.max_eval_samples // 2)
    others = _most_recent(held.filter(pc.invert(clicked)),
                          config.max_eval_samples - clicks.num_rows)
    held = pa.concat_tables([clicks, others])
    return pa.table({
        "sample_id": held.column("sample_id"),
        "request_id": held.column("request_id"),
        "prompt": held.column("prompt"),
        "completion": held.column("completion"),
        "label": held.column("clicked"),
        "weight": held.column("weight"),
    })


def to_kto_dataset(table: pa.Table) -> Dataset:
    """The TRL dataset (prompt, completion, label, weight), in the table's (shuffled) order."""
    from datasets import Dataset

    missing = [c for c in KTO_COLUMNS if c not in table.column_names]
    if missing:
        raise TrainerError(f"training table lacks {missing}; build it with build_training_set")
    columns: dict[str, Any] = {c: table.column(c).to_pylist() for c in KTO_COLUMNS}
    return Dataset.from_dict(columns)
