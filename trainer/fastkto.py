"""Fast weighted KTO: the loss of `trainer.kto` (TRL's KTO, Eq. 7, times c(y)·w) for less work.

Same objective as `trainer.kto.WeightedKTOTrainer` on the same batches, to float tolerance:

    L = (1/B) · Σ_i c(y_i) · w_i · ℓ_KTO(x_i, y_i),
    z0 = clamp(mean_i[log π(y'_i|x_i) − log π_ref(y'_i|x_i)], min=0), detached,

with TRL 1.16's tokenization (prompt and prompt+completion tokenized as strings, the completion
where they diverge, `max_length` truncation, prompts that fill it dropped) and its KL pairs
(completions rotated by +1 within each batch: y'_i = y_{i-1}). What is cheaper, and why:

1. Shared prefixes. A sample's log-prob needs the hidden states of its tokens except the last,
   and those depend only on the tokens before them. In the per-suggestion factorization
   (`sample_prompt`) the samples of one request nest (sample k's tokens are a prefix of
   sample k+1's) and every request starts with the same system instruction. So a batch
   becomes one token tree (a trie of its sequences, a node per distinct prefix), run as ONE
   causal forward with a tree attention mask (each node sees its ancestors) and positions =
   depths: every sample of the batch is scored from it, shared prefixes computed once, no
   padding. The sharing is decided token by token, so a sample whose tokenization differs
   from its siblings' simply gets its own branch. Batches are packed with whole requests
   (`plan_batches`) so that siblings meet.
2. The vocabulary head (49k × 576 for SmolLM2) runs only at the nodes that predict a scored
   token, on hidden states taken from the backbone, not over every prompt position.
3. KL log-probs: TRL runs a second full forward over prompt + mismatched completion. Here the
   policy's key/value cache of the tree forward is reused (the prompt is a path of the tree)
   and only the KL completions' tokens are run, all in one no-grad call with a 4-D mask
   (each sees its prompt's path and its own earlier tokens).
4. Reference = the starting adapter (the champion), by construction: the reference log-probs
   of every batch (target and KL pairs) are computed with the model itself, without
   gradients, BEFORE the first update, and reused across epochs (batches keep their
   contents across epochs, so the KL pairs do too; only their order is reshuffled).

Dropout is off (the model stays in eval mode), as TRL's `disable_dropout=True` default.
fp32 by default; `TrainingConfig.bf16` runs the forwards under bf16 autocast (reference
included, so the first step still starts at the reference exactly): measured here ≈35% less
CPU per step (1.3–1.4 vs 2.0–2.3 CPU-s for a SmolLM2 batch of 8, one thread), at a loss
≈1e-3 off the fp32 one, so it is off by default and the stock-equivalence tests are fp32.
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
ASSISTANT_TURN = "<|im_start|>assistant\n"  # where the rendered prompt ends (generator.prompt)


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
    by_position = [sorted(members, key=lambda j: len(samples[j].prompt_ids)) for members in order]
    flat = [i for members in by_position for i in members]
    return [flat[k : k + batch_size] for k in range(0, len(flat), batch_size)]


# ----------------------------------------------------------------------------- batch plan


@dataclass
class BatchPlan:
    """A batch as one token tree: every distinct prefix of the batch's sequences is one node.

    `ids[n]`, `parents[n]` (-1 at a root), `depths[n]` (its position in its sequence);
    `targets` (item, node, token): the token scored from node n's hidden state; `kl_first`
    likewise for the first token of each KL completion (from its prompt's last node);
    `kl_items` (item, prompt node, start position, KL completion ids) for the rest."""

    ids: list[int]
    parents: list[int]
    depths: list[int]
    targets: list[tuple[int, int, int]]
    kl_first: list[tuple[int, int, int]]
    kl_items: list[tuple[int, int, int, list[int]]]
    labels: torch.Tensor
    weights: torch.Tensor
    sequence_tokens: int  # what TRL runs per step: policy + reference, target + KL sequences

    @property
    def size(self) -> int:
        return int(self.labels.numel())

    @property
    def n_tokens(self) -> int:
        """Tokens run through the backbone per policy step: tree nodes + KL tokens."""
        return len(self.ids) + sum(len(k) - 1 for *_, k in self.kl_items)


class _Tree:
    """A token trie; a node's hidden state depends only on the path from its root."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.parents: list[int] = []
        self.depths: list[int] = []
        self._children: dict[tuple[int, int], int] = {}

    def path(self, tokens: Sequence[int]) -> list[int]:
        """The nodes of `tokens` (inserted where missing), one per token."""
        nodes, parent = [], -1
        for depth, token in enumerate(tokens):
            node = self._children.get((parent, token))
            if node is None:
                node = len(self.ids)
                self._children[(parent, token)] = node
                self.ids.append(token)
                self.parents.append(parent)
                self.depths.append(depth)
            nodes.append(node)
            parent = node
        return nodes


def build_batch(samples: Sequence[KTOSample], indices: Sequence[int], *,
                max_length: int | None) -> BatchPlan:
    """The batch's token tree; KL pairs as TRL: item i's KL completion is item i-1's."""
    items = [samples[i] for i in indices]
    fulls = [_truncate(list(s.prompt_ids) + list(s.completion_ids), max_length) for s in items]
    tree = _Tree()
    paths: list[list[int]] = [[] for _ in items]
    targets: list[tuple[int, int, int]] = []
    for b in sorted(range(len(items)), key=lambda k: (-len(fulls[k]), k)):
        # the last token is only predicted, but a KL pair needs the prompt's last node
        paths[b] = tree.path(fulls[b][: max(len(fulls[b]) - 1, len(items[b].prompt_ids))])
        start = max(len(items[b].prompt_ids), 1)
        targets.extend((b, paths[b][j - 1], fulls[b][j]) for j in range(start, len(fulls[b])))
    kl_first, kl_items = [], []
    n = len(items)
    for b, sample in enumerate(items):
        prompt = list(sample.prompt_ids)
        kl_full = _truncate(prompt + list(items[(b - 1) % n].completion_ids), max_length)
        kl_ids = kl_full[len(prompt):]
        if not kl_ids or not prompt:
            continue
        end = paths[b][len(prompt) - 1]
        kl_first.append((b, end, kl_ids[0]))
        if len(kl_ids) > 1:
            kl_items.append((b, end, len(prompt), kl_ids))
    kl_lengths = [len(s.prompt_ids) + len(items[(b - 1) % n].completion_ids)
                  for b, s in enumerate(items)]
    per_sample = sum(2 * len(f) + 2 * _capped(k, max_length) for f, k in zip(fulls, kl_lengths,
                                                                             strict=True))
    return BatchPlan(tree.ids, tree.parents, tree.depths, targets, kl_first, kl_items,
                     torch.tensor([s.label for s in items], dtype=torch.bool),
                     torch.tensor([s.weight for s in items], dtype=torch.float32), per_sample)


def _truncate(ids: list[int], max_length: int | None) -> list[int]:
    return ids if max_length is None else ids[:max_length]


def _capped(length: int, max_length: int | None) -> int:
    return length if max_length is None else min(length, max_length)


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


def _scores(head: Any, hidden: torch.Tensor, tokens: Sequence[int]) -> torch.Tensor:
    """log p(token) from hidden states [P, H], the head run only at these P positions."""
    logits: torch.Tensor = head(hidden).float()
    target = torch.tensor(list(tokens), dtype=torch.long, device=logits.device)
    return logits.log_softmax(-1).gather(-1, target[:, None]).squeeze(-1)


def _ancestors(parents: list[int]) -> torch.Tensor:
    """allowed[i, j]: node j is node i or one of its ancestors (parents precede children)."""
    allowed = torch.zeros(len(parents), len(parents), dtype=torch.bool)
    for node, parent in enumerate(parents):
        if parent >= 0:
            allowed[node] = allowed[parent]
        allowed[node, node] = True
    return allowed


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    mask = torch.zeros(allowed.shape, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


def _kl_inputs(plan: BatchPlan, allowed: torch.Tensor) -> tuple[list[int], list[int], torch.Tensor,
                                                                list[int], list[int]]:
    """The KL tokens run on the tree's cache: ids, positions, mask rows (each sees its
    prompt's path and its own earlier tokens), and per scored token its item and target."""
    inputs: list[int] = []
    positions: list[int] = []
    items: list[int] = []
    tokens: list[int] = []
    lengths = [len(ids) - 1 for *_, ids in plan.kl_items]
    q, n = sum(lengths), len(plan.ids)
    rows = torch.zeros(q, n + q, dtype=torch.bool)
    row = 0
    for (b, end, start, ids), length in zip(plan.kl_items, lengths, strict=True):
        inputs.extend(ids[:-1])  # the last KL token is only predicted
        positions.extend(range(start, start + length))
        items.extend([b] * length)
        tokens.extend(ids[1:])
        rows[row : row + length, :n] = allowed[end]
        rows[row : row + length, n + row : n + row + length] = torch.ones(
            length, length, dtype=torch.bool).tril()
        row += length
    return inputs, positions, rows, items, tokens


def batch_logps(model: Any, plan: BatchPlan, *, grad: bool,
                bf16: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(completion log-probs, KL log-probs) of the batch's items under `model`.

    One forward over the token tree (tree attention mask, positions = depths); the first
    result carries gradients when `grad`. The KL log-probs never do (TRL computes them
    under no_grad and detaches the estimate): one no-grad forward of the KL tokens on the
    tree's key/value cache. `bf16`: the forwards under bf16 autocast (log-softmax in fp32)."""
    backbone, head = _parts(model)
    device, dtype = head.weight.device, head.weight.dtype
    allowed = _ancestors(plan.parents)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    with torch.set_grad_enabled(grad), autocast:
        out = backbone(
            input_ids=torch.tensor([plan.ids], device=device),
            position_ids=torch.tensor([plan.depths], device=device),
            attention_mask=_additive(allowed, dtype).to(device),
            use_cache=bool(plan.kl_items),
        )
        hidden = out.last_hidden_state[0]
        logps = torch.zeros(plan.size, device=device)
        if plan.targets:  # an empty completion (TRL keeps it) scores 0
            items, nodes, tokens = zip(*plan.targets, strict=True)
            logps = logps.index_add(0, torch.tensor(items, device=device),
                                    _scores(head, hidden[list(nodes)], tokens))
    with torch.no_grad(), autocast:
        kl_logps = torch.zeros(plan.size, device=device)
        if plan.kl_first:
            items, nodes, tokens = zip(*plan.kl_first, strict=True)
            kl_logps.index_add_(0, torch.tensor(items, device=device),
                                _scores(head, hidden.detach()[list(nodes)], tokens))
        if plan.kl_items:
            inputs, positions, rows, kl_items, kl_tokens = _kl_inputs(plan, allowed)
            kl_hidden = backbone(
                input_ids=torch.tensor([inputs], device=device),
                position_ids=torch.tensor([positions], device=device),
                attention_mask=_additive(rows, dtype).to(device),
                past_key_values=out.past_key_values, use_cache=True,
            ).last_hidden_state[0]
            kl_logps.index_add_(0, torch.tensor(kl_items, device=device),
                                _scores(head, kl_hidden, kl_tokens))
    return logps, kl_logps


# ----------------------------------------------------------------------------- loss


@dataclass(frozen=True)
class ReferenceLogps:
    """Reference log-probs of one batch: its completions and its KL pairs (no grad)."""

    logps: torch.Tensor
    kl_logps: torch.Tensor


def reference_logps(model: Any, plan: BatchPlan, *, bf16: bool = False) -> ReferenceLogps:
    """The batch's reference log-probs under `model` as it is now (call before any update)."""
    with torch.no_grad():
        logps, kl_logps = batch_logps(model, plan, grad=False, bf16=bf16)
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
    as passed in. Stops after the step during which `stop` gets set (result.stopped).
    Runs on `config.threads` torch threads (restored afterwards)."""
    previous = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(model, tokenizer, rows, config, max_steps=max_steps, stop=stop,
                      on_step=on_step, completion_eos=completion_eos, label=label,
                      log_every_s=log_every_s)
    finally:
        torch.set_num_threads(previous)


def _train(
    model: Any, tokenizer: Any, rows: Iterable[Mapping[str, Any]], config: TrainingConfig, *,
    max_steps: int | None, stop: threading.Event | None,
    on_step: Callable[[int, float], None] | None, completion_eos: bool, label: str,
    log_every_s: float,
) -> FastKTOResult:
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
    refs = _precompute(model, plans, sorted({b for step in steps for b in step}), label,
                       bf16=config.bf16)
    reference_s = time.monotonic() - started
    losses, kls, stopped = _optimize(model, plans, refs, steps, config, stop, on_step, label,
                                     log_every_s)
    tokens = sum(plans[b].n_tokens for step in steps for b in step) / max(len(steps), 1)
    return FastKTOResult(losses, len(losses), time.monotonic() - started,
                         time.process_time() - cpu_started, reference_s, len(samples),
                         len(plans), tokens, stopped, kls)


def _precompute(model: Any, plans: list[BatchPlan], used: list[int], label: str, *,
                bf16: bool) -> dict[int, ReferenceLogps]:
    started = time.monotonic()
    cpu_started = time.process_time()
    refs = {b: reference_logps(model, plans[b], bf16=bf16) for b in used}
    log.info("%s reference log-probs of %d batches (%d samples) in %.1fs (%.1f CPU-s)", label,
             len(used), sum(plans[b].size for b in used), time.monotonic() - started,
             time.process_time() - cpu_started)
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
                                   beta=config.beta, bf16=config.bf16,
                                   class_weights=(config.desirable_weight,
                                                  config.undesirable_weight))
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
                    beta: float, bf16: bool = False,
                    class_weights: tuple[float, float] = (1.0, 1.0)) -> tuple[float, float]:
    """Gradients of one optimizer step (micro-batch losses / their number, as the HF loop);
    returns the step's loss and mean KL estimate. Does not step the optimizer."""
    total, kl_total = 0.0, 0.0
    for plan, ref in zip(plans, refs, strict=True):
        logps, kl_logps = batch_logps(model, plan, grad=True, bf16=bf16)
        parts = kto_loss(logps, kl_logps, ref, plan, beta=beta,
                         desirable_weight=class_weights[0], undesirable_weight=class_weights[1])
        if parts.loss.requires_grad:  # not when no item of the batch has a completion token
            torch.autograd.backward(parts.loss / len(plans))
        total += parts.loss.item() / len(plans)
        kl_total += parts.kl / len(plans)
    return total, kl_total
