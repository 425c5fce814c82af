"""Fast weighted KTO: the loss of `trainer.kto` (TRL's KTO, Eq. 7, times c(y)·w) for less work.

Same objective as `trainer.kto.WeightedKTOTrainer` on the same batches, to float tolerance:

    L = (1/B) · Σ_i c(y_i) · w_i · ℓ_KTO(x_i, y_i),
    z0 = clamp(mean_i[log π(y'_i|x_i) − log π_ref(y'_i|x_i)], min=0), detached,

with TRL 1.16's tokenization (prompt and prompt+completion tokenized as strings, the completion
where they diverge, `max_length` truncation, prompts that fill it dropped) and its KL pairs
(completions rotated by +1 within each batch: y'_i = y_{i-1}). What is cheaper, and why:

1. Shared prefixes. A sample's log-prob needs the hidden states of its tokens except the last.
   In the per-suggestion factorization (`sample_prompt`) the samples of one request nest:
   sample k's tokens are a prefix of sample k+1's. A batch is split into groups by a
   token-level test (a sample joins a group when its tokens but the last are a prefix of the
   group's sequence; else it founds its own), so one causal forward per group scores every
   member, and a sample whose tokenization differs simply gets its own sequence. Batches are
   packed with whole requests (`plan_batches`) so siblings meet. No padding: one sequence per
   forward.
2. The vocabulary head (49k × 576 for SmolLM2) runs only at the positions that predict a
   scored token, on hidden states taken from the backbone, not over every prompt position.
3. KL log-probs: TRL runs a second full forward over prompt + mismatched completion. Here the
   policy's key/value cache of the group forward (the prompt is a prefix of it) is reused and
   only the KL completion's tokens are run, all KL completions of a group in one no-grad call
   with a 4-D mask (each attends to its own prompt prefix and its own earlier tokens).
4. Reference = the starting adapter (the champion), by construction: the reference log-probs
   of every batch (target and KL pairs) are computed with the model itself, without
   gradients, BEFORE the first update, and reused across epochs (batches keep their
   contents across epochs, so the KL pairs do too; only their order is reshuffled).

Dropout is off (the model stays in eval mode), as TRL's `disable_dropout=True` default.
Gradient accumulation follows TRL: each micro-batch has its own KL estimate and its loss is
divided by the number of micro-batches of the step. Optimizer: AdamW, linear schedule with
warm-up and gradient clipping at 1.0, as the Hugging Face loop `trainer.kto.kto_args` builds.
`TrainingConfig.max_steps` caps the optimizer steps (0: the epochs decide).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from toolrec.errors import TrainerError

if TYPE_CHECKING:
    from trainer.config import TrainingConfig

__all__ = [
    "BatchPlan",
    "FastKTOResult",
    "KTOSample",
    "ReferenceLogps",
    "batch_logps",
    "build_batch",
    "kto_loss",
    "plan_batches",
    "reference_logps",
    "tokenize_rows",
    "train_weighted_kto",
]

log = logging.getLogger(__name__)
ASSISTANT_TURN = "<|im_start|>assistant\n"  # where the rendered prompt ends (trainer.prompt)


# ----------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class KTOSample:
    """One tokenized training row, as TRL would tokenize it."""

    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    label: bool
    weight: float
    request: str  # samples of one request are packed into one batch when they fit


def tokenize_rows(
    tokenizer: Any, rows: Iterable[Mapping[str, Any]], *, max_length: int | None,
    completion_eos: bool = False,
) -> list[KTOSample]:
    """TRL 1.16's tokenization of (prompt, completion, label, weight) rows.

    As `KTOTrainer._prepare_dataset`: EOS text appended to the completion, prompt and
    prompt+completion tokenized as strings, the completion starting where they diverge, rows
    whose prompt alone fills `max_length` dropped; then, as `WeightedKTOTrainer` unless
    `completion_eos`, a final EOS id removed (a suggestion line does not end the turn).
    """
    samples = []
    eos_text, eos_id = tokenizer.eos_token, tokenizer.eos_token_id
    for i, row in enumerate(rows):
        prompt, completion = str(row["prompt"]), str(row["completion"])
        weight = float(row.get("weight", 1.0))
        if not (math.isfinite(weight) and weight >= 0):
            raise TrainerError(f"row {i} has weight {weight!r}; weights must be finite and >= 0")
        if not completion.endswith(eos_text):
            completion += eos_text
        prompt_ids = tokenizer(text=prompt)["input_ids"]
        full_ids = tokenizer(text=prompt + completion)["input_ids"]
        split = _common_prefix(prompt_ids, full_ids)
        completion_ids = list(full_ids[split:])
        if not completion_eos and completion_ids and completion_ids[-1] == eos_id:
            completion_ids.pop()
        if max_length is not None and split >= max_length:
            continue  # TRL drops it: no completion token would survive truncation
        samples.append(KTOSample(tuple(full_ids[:split]), tuple(completion_ids),
                                 bool(row["label"]), weight, _request_key(row, prompt)))
    return samples


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _request_key(row: Mapping[str, Any], prompt: str) -> str:
    """The request a row belongs to: `request_id`, else the `sample_id` before its position
    (`request_id:position`), else the rendered prompt (the prompt up to the assistant turn)."""
    if row.get("request_id"):
        return str(row["request_id"])
    sample_id = row.get("sample_id")
    if sample_id and ":" in str(sample_id):
        return str(sample_id).rsplit(":", 1)[0]
    cut = prompt.rfind(ASSISTANT_TURN)
    return prompt[: cut + len(ASSISTANT_TURN)] if cut >= 0 else prompt


def plan_batches(samples: Sequence[KTOSample], batch_size: int, *, seed: int) -> list[list[int]]:
    """Batches of exactly `batch_size` samples (the last may be short), filled with whole
    requests in a seeded random order, so that siblings share a forward. A request that
    does not fit continues in the next batch."""
    if batch_size < 1:
        raise TrainerError(f"batch_size must be >= 1, got {batch_size}")
    requests: dict[str, list[int]] = {}
    for i, sample in enumerate(samples):
        requests.setdefault(sample.request, []).append(i)
    order = list(requests.values())
    random.Random(seed).shuffle(order)
    flat = [i for members in order for i in sorted(members, key=lambda j: len(samples[j].prompt_ids))]
    return [flat[k : k + batch_size] for k in range(0, len(flat), batch_size)]


# ----------------------------------------------------------------------------- batch plan


@dataclass
class _Group:
    """One causal sequence shared by the batch items whose context is a prefix of it."""

    ids: list[int]
    targets: list[tuple[int, int, int]] = field(default_factory=list)  # (item, pos, token)
    kl_first: list[tuple[int, int, int]] = field(default_factory=list)  # (item, pos, token)
    kl_items: list[tuple[int, int, list[int]]] = field(default_factory=list)  # (item, start, ids)


@dataclass
class BatchPlan:
    """A batch as groups of shared sequences; `labels` and `weights` in batch order."""

    groups: list[_Group]
    labels: torch.Tensor
    weights: torch.Tensor
    n_tokens: int  # tokens run through the backbone per policy step (groups + KL tokens)

    @property
    def size(self) -> int:
        return int(self.labels.numel())


def build_batch(samples: Sequence[KTOSample], indices: Sequence[int], *,
                max_length: int | None) -> BatchPlan:
    """Group the batch's sequences by shared prefix; KL pairs as TRL: y'_i = y_{i-1}."""
    items = [samples[i] for i in indices]
    fulls = [_truncate(list(s.prompt_ids) + list(s.completion_ids), max_length) for s in items]
    groups: list[_Group] = []
    owner: list[_Group] = [None] * len(items)  # type: ignore[list-item]
    for b in sorted(range(len(items)), key=lambda k: (-len(fulls[k]), k)):
        context = fulls[b][:-1]  # hidden states are needed at every position but the last
        group = next((g for g in groups if g.ids[: len(context)] == context), None)
        if group is None:
            group = _Group(ids=context)
            groups.append(group)
        owner[b] = group
        start = max(len(items[b].prompt_ids), 1)
        group.targets.extend((b, j - 1, fulls[b][j]) for j in range(start, len(fulls[b])))
    n = len(items)
    for b, sample in enumerate(items):
        prompt = list(sample.prompt_ids)
        kl_full = _truncate(prompt + list(items[(b - 1) % n].completion_ids), max_length)
        kl_ids = kl_full[len(prompt):]
        if not kl_ids or not prompt:
            continue
        owner[b].kl_first.append((b, len(prompt) - 1, kl_ids[0]))
        if len(kl_ids) > 1:
            owner[b].kl_items.append((b, len(prompt), kl_ids))
    n_tokens = sum(len(g.ids) + sum(len(k) - 1 for _, _, k in g.kl_items) for g in groups)
    return BatchPlan(groups, torch.tensor([s.label for s in items], dtype=torch.bool),
                     torch.tensor([s.weight for s in items], dtype=torch.float32), n_tokens)


def _truncate(ids: list[int], max_length: int | None) -> list[int]:
    return ids if max_length is None else ids[:max_length]


# ----------------------------------------------------------------------------- log-probs


def _parts(model: Any) -> tuple[Any, Any]:
    """(backbone, LM head) of a causal LM, PEFT-wrapped or not (LoRA layers stay inside)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = getattr(base, base.base_model_prefix, None)
    head = base.get_output_embeddings()
    if backbone is None or head is None:
        raise TrainerError(f"{type(base).__name__} has no backbone/LM head to score with; "
                           "the fast KTO engine needs a causal LM (e.g. LlamaForCausalLM)")
    return backbone, head


def _scores(head: Any, hidden: torch.Tensor, tokens: list[int]) -> torch.Tensor:
    """log p(token) from hidden states [P, H], the head run only at these P positions."""
    logits = head(hidden).float()
    target = torch.tensor(tokens, dtype=torch.long, device=logits.device)
    return logits.log_softmax(-1).gather(-1, target[:, None]).squeeze(-1)


def _kl_mask(prefix: int, starts: list[int], lengths: list[int], dtype: torch.dtype) -> torch.Tensor:
    """4-D additive mask of the KL tokens: each KL completion sees its prompt (the first
    `start` cached positions of the group) and its own earlier tokens, nothing else."""
    q = sum(lengths)
    allowed = torch.zeros(q, prefix + q, dtype=torch.bool)
    row = 0
    for start, length in zip(starts, lengths, strict=True):
        allowed[row : row + length, :start] = True
        block = torch.ones(length, length, dtype=torch.bool).tril()
        allowed[row : row + length, prefix + row : prefix + row + length] = block
        row += length
    mask = torch.zeros(q, prefix + q, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


def _kl_pass(backbone: Any, group: _Group, cache: Any, device: torch.device,
             dtype: torch.dtype) -> tuple[torch.Tensor, list[int], list[int]]:
    """No-grad forward of the group's KL tokens on its cached prefix: (hidden, items, tokens)."""
    inputs, positions, starts, lengths, items, tokens = [], [], [], [], [], []
    for b, start, ids in group.kl_items:
        run = ids[:-1]  # the last KL token is only predicted
        inputs.extend(run)
        positions.extend(range(start, start + len(run)))
        starts.append(start)
        lengths.append(len(run))
        items.extend([b] * len(run))
        tokens.extend(ids[1:])
    out = backbone(
        input_ids=torch.tensor([inputs], device=device),
        position_ids=torch.tensor([positions], device=device),
        attention_mask=_kl_mask(len(group.ids), starts, lengths, dtype).to(device),
        past_key_values=cache, use_cache=True,
    )
    return out.last_hidden_state[0], items, tokens


def batch_logps(model: Any, plan: BatchPlan, *, grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(completion log-probs, KL log-probs) of the batch's items under `model`.

    The first carries gradients when `grad`; the KL log-probs never do (TRL computes them
    under no_grad and detaches the estimate)."""
    backbone, head = _parts(model)
    device = head.weight.device
    dtype = head.weight.dtype
    logps = torch.zeros(plan.size, device=device)
    kl_logps = torch.zeros(plan.size, device=device)
    with torch.set_grad_enabled(grad):
        for group in plan.groups:
            need_cache = bool(group.kl_items)
            out = backbone(input_ids=torch.tensor([group.ids], device=device), use_cache=need_cache)
            hidden = out.last_hidden_state[0]
            items, positions, tokens = zip(*group.targets, strict=True)
            scored = _scores(head, hidden[list(positions)], list(tokens))
            logps = logps.index_add(0, torch.tensor(items, device=device), scored)
            with torch.no_grad():
                kl_logps = _group_kl(backbone, head, group, hidden.detach(),
                                     out.past_key_values, kl_logps, device, dtype)
    return logps, kl_logps


def _group_kl(backbone: Any, head: Any, group: _Group, hidden: torch.Tensor, cache: Any,
              kl_logps: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if not group.kl_first:
        return kl_logps
    items, positions, tokens = zip(*group.kl_first, strict=True)
    kl_logps = kl_logps.index_add(0, torch.tensor(items, device=device),
                                  _scores(head, hidden[list(positions)], list(tokens)))
    if group.kl_items:
        kl_hidden, kl_items, kl_tokens = _kl_pass(backbone, group, cache, device, dtype)
        kl_logps = kl_logps.index_add(0, torch.tensor(kl_items, device=device),
                                      _scores(head, kl_hidden, kl_tokens))
    return kl_logps


# ----------------------------------------------------------------------------- loss


@dataclass(frozen=True)
class ReferenceLogps:
    """Reference log-probs of one batch: its completions and its KL pairs (no grad)."""

    logps: torch.Tensor
    kl_logps: torch.Tensor


def reference_logps(model: Any, plan: BatchPlan) -> ReferenceLogps:
    """The batch's reference log-probs under `model` as it is now (call before any update)."""
    with torch.no_grad():
        logps, kl_logps = batch_logps(model, plan, grad=False)
    return ReferenceLogps(logps.detach(), kl_logps.detach())


@dataclass(frozen=True)
class LossParts:
    """The batch loss (with graph) and detached numbers for logs."""

    loss: torch.Tensor
    kl: float
    reward_chosen: float | None
    reward_rejected: float | None


def kto_loss(logps: torch.Tensor, kl_logps: torch.Tensor, ref: ReferenceLogps, plan: BatchPlan,
             *, beta: float, desirable_weight: float = 1.0,
             undesirable_weight: float = 1.0) -> LossParts:
    """TRL's KTO loss (Eq. 7) with each sample's loss times c(y)·w, mean over the batch."""
    kl = (kl_logps - ref.kl_logps).mean().detach().clamp(min=0)
    logratios = logps - ref.logps
    labels = plan.labels.to(logps.device)
    losses = torch.where(labels, 1 - torch.sigmoid(beta * (logratios - kl)),
                         1 - torch.sigmoid(beta * (kl - logratios)))
    class_weight = torch.where(labels, desirable_weight, undesirable_weight)
    loss = (class_weight * plan.weights.to(logps.device) * losses).mean()
    rewards = beta * logratios.detach()
    return LossParts(
        loss, float(kl),
        float(rewards[labels].mean()) if labels.any() else None,
        float(rewards[~labels].mean()) if (~labels).any() else None,
    )


# ----------------------------------------------------------------------------- training


@dataclass
class FastKTOResult:
    """What one training run did: per-step losses, steps, seconds (wall and CPU)."""

    losses: list[float]
    steps: int
    seconds: float
    cpu_seconds: float
    reference_seconds: float
    samples: int
    batches: int
    tokens_per_step: float
    stopped: bool = False
    kl: list[float] = field(default_factory=list)

    @property
    def train_loss(self) -> float | None:
        return sum(self.losses) / len(self.losses) if self.losses else None


def _schedule(n_batches: int, config: TrainingConfig, max_steps: int | None,
              seed: int) -> list[list[int]]:
    """Optimizer steps as lists of batch indices: batch order reshuffled per epoch (contents
    fixed, so the precomputed reference stays valid), `gradient_accumulation_steps` each."""
    ga = config.gradient_accumulation_steps
    per_epoch = math.ceil(n_batches / ga)
    total = math.ceil(config.epochs * per_epoch)
    cap = config.max_steps if max_steps is None else max_steps
    if cap and cap > 0:
        total = min(total, cap)
    rng = random.Random(seed + 1)
    steps: list[list[int]] = []
    while len(steps) < total:
        order = list(range(n_batches))
        rng.shuffle(order)
        steps.extend(order[k : k + ga] for k in range(0, n_batches, ga))
    return steps[:total]


def _lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Transformers' linear schedule with warm-up."""
    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))
    return factor


class _Progress:
    """One log line every `every_s` seconds: step, samples/s, ETA (daemon-friendly)."""

    def __init__(self, total: int, label: str, every_s: float) -> None:
        self.total, self.label, self.every_s = total, label, every_s
        self.start = self.last = time.monotonic()

    def step(self, done: int, samples: int, loss: float) -> None:
        now = time.monotonic()
        if now - self.last < self.every_s and 1 < done < self.total:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        eta = (self.total - done) * elapsed / max(done, 1)
        log.info("%s step %d/%d  loss %.4f  %.2f samples/s  elapsed %.0fs  ETA %.0fs",
                 self.label, done, self.total, loss, samples / elapsed, elapsed, eta)


def train_weighted_kto(
    model: Any, tokenizer: Any, rows: Iterable[Mapping[str, Any]], config: TrainingConfig, *,
    max_steps: int | None = None, stop: threading.Event | None = None,
    on_step: Callable[[int, float], None] | None = None, completion_eos: bool = False,
    label: str = "kto", log_every_s: float = 10.0,
) -> FastKTOResult:
    """Train the trainable (LoRA) parameters of `model` with weighted KTO on `rows`
    (prompt, completion, label, weight[, sample_id | request_id]); the reference is `model`
    as passed in. Stops after the step during which `stop` gets set (result.stopped)."""
    started, cpu_started = time.monotonic(), time.process_time()
    torch.manual_seed(config.seed)
    samples = tokenize_rows(tokenizer, rows, max_length=config.max_length,
                            completion_eos=completion_eos)
    if not samples:
        raise TrainerError("no training rows left after tokenization (every prompt fills "
                           f"max_length={config.max_length}?)")
    plans = [build_batch(samples, idx, max_length=config.max_length)
             for idx in plan_batches(samples, config.batch_size, seed=config.seed)]
    steps = _schedule(len(plans), config, max_steps, config.seed)
    model.eval()  # no dropout, as TRL's disable_dropout
    refs = _precompute(model, plans, sorted({b for step in steps for b in step}), label)
    reference_s = time.monotonic() - started
    losses, kls, stopped = _optimize(model, plans, refs, steps, config, stop, on_step, label,
                                     log_every_s)
    tokens = sum(plans[b].n_tokens for step in steps for b in step) / max(len(steps), 1)
    return FastKTOResult(losses, len(losses), time.monotonic() - started,
                         time.process_time() - cpu_started, reference_s, len(samples),
                         len(plans), tokens, stopped, kls)


def _precompute(model: Any, plans: list[BatchPlan], used: list[int],
                label: str) -> dict[int, ReferenceLogps]:
    started = time.monotonic()
    refs = {b: reference_logps(model, plans[b]) for b in used}
    log.info("%s reference log-probs of %d batches (%d samples) in %.1fs", label, len(used),
             sum(plans[b].size for b in used), time.monotonic() - started)
    return refs


def _optimize(model: Any, plans: list[BatchPlan], refs: dict[int, ReferenceLogps],
              steps: list[list[int]], config: TrainingConfig, stop: threading.Event | None,
              on_step: Callable[[int, float], None] | None, label: str,
              every_s: float) -> tuple[list[float], list[float], bool]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TrainerError("the model has no trainable parameters; wrap it in a LoRA adapter")
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(config.warmup_steps, len(steps)))
    progress = _Progress(len(steps), label, every_s)
    losses: list[float] = []
    kls: list[float] = []
    done_samples = 0
    for number, step in enumerate(steps, start=1):
        loss, kl = accumulate_step(model, [plans[b] for b in step], [refs[b] for b in step],
                                   beta=config.beta)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss)
        kls.append(kl)
        done_samples += sum(plans[b].size for b in step)
        progress.step(number, done_samples, loss)
        if on_step is not None:
            on_step(number, loss)
        if stop is not None and stop.is_set():
            return losses, kls, True
    return losses, kls, False


def accumulate_step(model: Any, plans: Sequence[BatchPlan], refs: Sequence[ReferenceLogps], *,
                    beta: float) -> tuple[float, float]:
    """Gradients of one optimizer step (micro-batch losses / their number, as the HF loop);
    returns the step's loss and mean KL estimate. Does not step the optimizer."""
    total, kl_total = 0.0, 0.0
    for plan, ref in zip(plans, refs, strict=True):
        logps, kl_logps = batch_logps(model, plan, grad=True)
        parts = kto_loss(logps, kl_logps, ref, plan, beta=beta)
        (parts.loss / len(plans)).backward()
        total += parts.loss.item() / len(plans)
        kl_total += parts.kl / len(plans)
    return total, kl_total
