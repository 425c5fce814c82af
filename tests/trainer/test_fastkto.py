"""The fast KTO engine (`trainer.fastkto`) against the stock-TRL path (`trainer.kto`), tiny Llama.

The stock side is `WeightedKTOTrainer` (TRL's `KTOTrainer` + per-sample weights) whose
reference is the champion adapter, loaded as TRL's "ref" adapter; both sides start from the
same champion, take their reference log-probs there, then move the policy the same way, so
rewards are non-zero. The stock trainer gets the rows in the engine's batch order, so its
sequential batches are the engine's batches.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import torch
from datasets import Dataset

from bench.samples import synthetic_samples
from generator.loading import load_model
from trainer import fastkto as fk
from trainer.config import TrainingConfig
from trainer.data import build_training_set
from trainer.kto import WeightedKTOTrainer, kto_args, lora_config

pytestmark = pytest.mark.usefixtures("single_torch_thread")

CONFIG = TrainingConfig(batch_size=6, max_steps=2, learning_rate=5e-3, holdout_share=0.0,
                        min_per_class=1)


def _rows(n: int = 18, seed: int = 5) -> list[dict[str, Any]]:
    """Real GQR prompts in the per-suggestion factorization (3 samples per request)."""
    table = pa.Table.from_pylist(synthetic_samples(n, seed=seed))
    return build_training_set(table, None, CONFIG, seed=seed).table.to_pylist()


def _perturb(model: Any, seed: int, scale: float = 0.05) -> None:
    """Move the trainable adapter deterministically (same names, same values on both sides)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=generator) * scale)


def _grads(model: Any) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])


@pytest.fixture(scope="module")
def champion(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter that differs from the base model: the refresh's starting point."""
    from peft import get_peft_model

    torch.manual_seed(0)
    model, _ = load_model(tiny_model_dir)
    peft = get_peft_model(model, lora_config(CONFIG))
    _perturb(peft, 1)
    out = tmp_path_factory.mktemp("champion") / "adapter"
    peft.save_pretrained(str(out))
    return out


def _policy(model_dir: Path, champion: Path) -> tuple[Any, Any]:
    """The engine's policy: the champion's adapter, trainable, in eval mode (no dropout)."""
    from peft import PeftModel

    model, tokenizer = load_model(model_dir)
    policy = PeftModel.from_pretrained(model, str(champion), is_trainable=True)
    policy.eval()
    return policy, tokenizer


def _stock(model_dir: Path, champion: Path, rows: list[dict[str, Any]], tmp: Path) -> Any:
    """WeightedKTOTrainer continuing from the champion, with the champion as its reference."""
    from peft import PeftConfig, set_peft_model_state_dict
    from peft.utils import load_peft_weights

    model, tokenizer = load_model(model_dir)
    config = PeftConfig.from_pretrained(str(champion))
    config.inference_mode = False
    columns = {k: [r[k] for r in rows] for k in ("prompt", "completion", "label", "weight")}
    trainer = WeightedKTOTrainer(model=model, args=kto_args(CONFIG, tmp / "stock"),
                                 train_dataset=Dataset.from_dict(columns),
                                 processing_class=tokenizer, peft_config=config)
    peft_model: Any = trainer.model
    set_peft_model_state_dict(peft_model, load_peft_weights(str(champion), device="cpu"))
    peft_model.load_adapter(str(champion), adapter_name="ref")  # TRL's reference adapter
    return trainer


def _engine_batches(tokenizer: Any, rows: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    samples = fk.tokenize_rows(tokenizer, rows, max_length=CONFIG.max_length)
    order = fk.plan_batches(samples, CONFIG.batch_size, seed=0)
    plans = [fk.build_batch(samples, idx, max_length=CONFIG.max_length) for idx in order]
    return order, plans


def _compare_with_stock(model_dir: Path, champion: Path, rows: list[dict[str, Any]],
                        tmp: Path) -> list[float]:
    """Loss and gradients of every batch, engine vs stock; returns the engine's KL values."""
    policy, tokenizer = _policy(model_dir, champion)
    order, plans = _engine_batches(tokenizer, rows)
    refs = [fk.reference_logps(policy, plan) for plan in plans]  # before any update
    _perturb(policy, 2)
    stock = _stock(model_dir, champion, [rows[i] for idx in order for i in idx], tmp)
    _perturb(stock.model, 2)
    kls = []
    for plan, ref, batch in zip(plans, refs, stock.get_train_dataloader(), strict=True):
        policy.zero_grad(set_to_none=True)
        logps, kl_logps = fk.batch_logps(policy, plan, grad=True)
        parts = fk.kto_loss(logps, kl_logps, ref, plan, beta=CONFIG.beta)
        parts.loss.backward()
        stock.model.zero_grad(set_to_none=True)
        stock_loss = stock.compute_loss(stock.model, dict(batch))
        stock_loss.backward()
        assert parts.loss.item() == pytest.approx(stock_loss.item(), abs=1e-6)
        assert torch.allclose(_grads(policy), _grads(stock.model), rtol=1e-4, atol=1e-7)
        with torch.no_grad():  # the KL path on its own: TRL's KL log-probs, policy and ref
            stock_kl = stock._compute_kl_logps(stock.model, dict(batch))
            _, stock_ref_kl = stock.compute_ref_log_probs(stock.model, dict(batch))
        assert torch.allclose(kl_logps, stock_kl, atol=1e-4)
        assert torch.allclose(ref.kl_logps, stock_ref_kl, atol=1e-4)
        kls.append(parts.kl)
    return kls


@pytest.mark.parametrize("weights", ["unit", "calibrated"])
def test_loss_and_gradients_equal_the_stock_trainer(
    tiny_model_dir: Path, champion: Path, tmp_path: Path, weights: str
) -> None:
    rows = _rows()
    if weights == "unit":
        rows = [{**r, "weight": 1.0} for r in rows]
    else:
        assert len({round(r["weight"], 6) for r in rows}) > 3  # really non-uniform
    _compare_with_stock(tiny_model_dir, champion, rows, tmp_path)


@pytest.mark.parametrize("label", [True, False], ids=["desirable-only", "undesirable-only"])
def test_one_class_batches_equal_the_stock_trainer(
    tiny_model_dir: Path, champion: Path, tmp_path: Path, label: bool
) -> None:
    rows = [{**r, "label": label} for r in _rows(12)]
    _compare_with_stock(tiny_model_dir, champion, rows, tmp_path)


def test_an_empty_completion_scores_zero_as_in_the_stock_trainer(
    tiny_model_dir: Path, champion: Path, tmp_path: Path
) -> None:
    rows = _rows(6)
    rows[2] = {**rows[2], "completion": ""}
    _compare_with_stock(tiny_model_dir, champion, rows, tmp_path)


def test_tokenization_is_trls(tiny_model_dir: Path, champion: Path, tmp_path: Path) -> None:
    rows = _rows(9)
    stock = _stock(tiny_model_dir, champion, rows, tmp_path)
    samples = fk.tokenize_rows(stock.processing_class, rows, max_length=CONFIG.max_length)
    assert [list(s.prompt_ids) for s in samples] == stock.train_dataset["prompt_ids"]
    assert [list(s.completion_ids) for s in samples] == stock.train_dataset["completion_ids"]


def test_siblings_share_one_forward(tiny_model_dir: Path) -> None:
    _, tokenizer = load_model(tiny_model_dir)
    rows = _rows()
    samples = fk.tokenize_rows(tokenizer, rows, max_length=CONFIG.max_length)
    order = fk.plan_batches(samples, CONFIG.batch_size, seed=0)
    for idx in order:  # 3 suggestions per request, batches of 6: whole requests
        requests = [samples[i].request for i in idx]
        assert len(set(requests)) == 2 and requests.count(requests[0]) == 3
    plan = fk.build_batch(samples, order[0], max_length=CONFIG.max_length)
    longest = max(len(samples[i].prompt_ids) + len(samples[i].completion_ids) for i in order[0])
    # two requests that share the system prompt: well under two whole sequences of tokens
    assert len(plan.ids) < 2 * longest
    assert plan.n_tokens * 4 < plan.sequence_tokens


def test_reference_is_the_starting_adapter_not_the_base(
    tiny_model_dir: Path, champion: Path, tmp_path: Path
) -> None:
    rows = _rows(12)
    policy, tokenizer = _policy(tiny_model_dir, champion)
    order, plans = _engine_batches(tokenizer, rows)
    stock = _stock(tiny_model_dir, champion, [rows[i] for idx in order for i in idx], tmp_path)
    for plan, batch in zip(plans, stock.get_train_dataloader(), strict=True):
        ref = fk.reference_logps(policy, plan)
        champion_logps, champion_kl = stock.compute_ref_log_probs(stock.model, dict(batch))
        assert torch.allclose(ref.logps, champion_logps, atol=1e-4)
        assert torch.allclose(ref.kl_logps, champion_kl, atol=1e-4)
        with policy.disable_adapter():
            base = fk.reference_logps(policy, plan)
        assert (ref.logps - base.logps).abs().max().item() > 0.05


def test_training_starts_at_the_reference(tiny_model_dir: Path, champion: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    """At the first step policy = reference: every reward and the KL estimate are 0, so the
    loss is exactly 0.5 · mean(w) of the first batch; later steps move away from it."""
    rows = _rows(12)
    policy, tokenizer = _policy(tiny_model_dir, champion)
    first: list[float] = []
    config = CONFIG.model_copy(update={"max_steps": 3, "epochs": 2.0})
    with caplog.at_level(logging.INFO, logger="trainer.fastkto"):
        result = fk.train_weighted_kto(policy, tokenizer, rows, config, log_every_s=0.0,
                                       on_step=lambda step, loss: first.append(loss))
    assert result.steps == 3 and result.losses == first and result.kl[0] == 0.0
    samples = fk.tokenize_rows(tokenizer, rows, max_length=CONFIG.max_length)
    batches = fk.plan_batches(samples, CONFIG.batch_size, seed=CONFIG.seed)
    first_batch = fk._schedule(len(batches), config, None, CONFIG.seed)[0][0]
    mean_w = sum(samples[i].weight for i in batches[first_batch]) / len(batches[first_batch])
    assert result.losses[0] == pytest.approx(0.5 * mean_w, abs=1e-6)
    assert result.losses[2] != pytest.approx(result.losses[0], abs=1e-4)
    assert any("samples/s" in r.getMessage() and "ETA" in r.getMessage() for r in caplog.records)


def test_gradient_accumulation_2_equals_one_batch_of_double_size(
    tiny_model_dir: Path, champion: Path
) -> None:
    """From the starting adapter (KL = 0 for any pairing), 2 micro-batches of 6 accumulated
    give the gradient of one batch of 12 and the same update; off the start, each micro-batch
    keeps its own KL estimate (as TRL), and the step's gradient is the mean of theirs."""
    rows = _rows(12)
    policy, tokenizer = _policy(tiny_model_dir, champion)
    samples = fk.tokenize_rows(tokenizer, rows, max_length=CONFIG.max_length)
    order = fk.plan_batches(samples, CONFIG.batch_size, seed=0)
    halves = [fk.build_batch(samples, idx, max_length=CONFIG.max_length) for idx in order]
    double = fk.build_batch(samples, order[0] + order[1], max_length=CONFIG.max_length)
    half_refs = [fk.reference_logps(policy, plan) for plan in halves]
    double_ref = fk.reference_logps(policy, double)
    fk.accumulate_step(policy, halves, half_refs, beta=CONFIG.beta)
    accumulated = _grads(policy)
    policy.zero_grad(set_to_none=True)
    fk.accumulate_step(policy, [double], [double_ref], beta=CONFIG.beta)
    assert accumulated.abs().max() > 1e-4
    assert torch.allclose(accumulated, _grads(policy), rtol=1e-5, atol=1e-7)  # max |g| ≈ 0.03

    _perturb(policy, 3)
    singles = []
    for plan, ref in zip(halves, half_refs, strict=True):
        policy.zero_grad(set_to_none=True)
        fk.accumulate_step(policy, [plan], [ref], beta=CONFIG.beta)
        singles.append(_grads(policy))
    policy.zero_grad(set_to_none=True)
    fk.accumulate_step(policy, halves, half_refs, beta=CONFIG.beta)
    assert torch.allclose(_grads(policy), torch.stack(singles).mean(0), rtol=1e-5, atol=1e-9)


def test_training_with_accumulation_makes_the_double_batch_update(
    tiny_model_dir: Path, champion: Path
) -> None:
    """Through `train_weighted_kto`: one step of 2 × 6 accumulated = one step of 12. AdamW's
    first step moves each parameter by lr·g/(|g| + eps) ≈ lr·sign(g), so a gradient within
    float noise of AdamW's eps (1e-8) moves by a noisy fraction of lr: all but a few
    elements agree within lr·0.01, and none can differ by a whole lr."""
    rows = _rows(12)
    updated = []
    for batch_size, accumulation in ((6, 2), (12, 1)):
        policy, tokenizer = _policy(tiny_model_dir, champion)
        config = CONFIG.model_copy(update={"batch_size": batch_size, "max_steps": 1,
                                           "gradient_accumulation_steps": accumulation})
        assert fk.train_weighted_kto(policy, tokenizer, rows, config).steps == 1
        updated.append(torch.cat([p.detach().flatten() for p in policy.parameters()
                                  if p.requires_grad]))
    policy, _ = _policy(tiny_model_dir, champion)
    start = torch.cat([p.detach().flatten() for p in policy.parameters() if p.requires_grad])
    assert (updated[0] - start).abs().max() > CONFIG.learning_rate / 2  # it did move
    diff = (updated[0] - updated[1]).abs()
    noisy = int((diff > CONFIG.learning_rate * 0.01).sum())
    assert noisy <= diff.numel() // 1000, (noisy, diff.numel())  # measured: 1 of 28,672
    assert float(diff.max()) < CONFIG.learning_rate  # what AdamW's first step can move


@pytest.mark.parametrize("j", [0, 4])
def test_zero_weight_sample_contributes_no_gradient(
    tiny_model_dir: Path, champion: Path, j: int
) -> None:
    policy, tokenizer = _policy(tiny_model_dir, champion)
    rows = _rows(6)
    rows[j] = {**rows[j], "weight": 0.0}
    _, (plan,) = _engine_batches(tokenizer, rows)
    ref = fk.reference_logps(policy, plan)
    _perturb(policy, 2)
    item = plan.weights.tolist().index(0.0)  # its place in the batch
    logps, kl_logps = fk.batch_logps(policy, plan, grad=True)
    logps.retain_grad()
    fk.kto_loss(logps, kl_logps, ref, plan, beta=CONFIG.beta).loss.backward()
    assert logps.grad is not None and logps.grad[item] == 0.0
    assert (logps.grad.abs() > 0).sum() == plan.size - 1
    with_zero = _grads(policy)
    # the same gradient when that sample's log-prob cannot carry any gradient at all
    policy.zero_grad(set_to_none=True)
    logps, kl_logps = fk.batch_logps(policy, plan, grad=True)
    cut = torch.where(torch.arange(plan.size) == item, logps.detach(), logps)
    fk.kto_loss(cut, kl_logps, ref, plan, beta=CONFIG.beta).loss.backward()
    assert torch.allclose(with_zero, _grads(policy), rtol=0, atol=1e-9)


def test_training_is_deterministic_for_a_seed(tiny_model_dir: Path, champion: Path) -> None:
    rows = _rows(12)
    runs = []
    for _ in range(2):
        policy, tokenizer = _policy(tiny_model_dir, champion)
        result = fk.train_weighted_kto(policy, tokenizer, rows, CONFIG)
        params = torch.cat([p.detach().flatten() for p in policy.parameters() if p.requires_grad])
        runs.append((result.losses, params))
    assert runs[0][0] == runs[1][0]
    assert torch.equal(runs[0][1], runs[1][1])


def test_bf16_starts_at_its_reference_and_stays_near_fp32(
    tiny_model_dir: Path, champion: Path
) -> None:
    """bf16 autocast covers the reference too, so the first step is still exactly at it;
    later losses stay within bf16 rounding of the fp32 run's."""
    rows = _rows(12)
    runs = {}
    for bf16 in (False, True):
        policy, tokenizer = _policy(tiny_model_dir, champion)
        config = CONFIG.model_copy(update={"bf16": bf16, "max_steps": 2})
        runs[bf16] = fk.train_weighted_kto(policy, tokenizer, rows, config)
    assert runs[True].losses[0] == pytest.approx(runs[False].losses[0], abs=1e-6)  # 0.5·mean w
    assert runs[True].losses[1] == pytest.approx(runs[False].losses[1], abs=2e-2)


def test_undesirable_weight_zero_trains_on_clicks_only(tiny_model_dir: Path,
                                                       champion: Path) -> None:
    """GQR's CTR-filtered objective: class weight 0 leaves skipped samples without gradient,
    while every clicked sample keeps its own."""
    policy, tokenizer = _policy(tiny_model_dir, champion)
    _, (plan,) = _engine_batches(tokenizer, _rows(6))
    labels = plan.labels.bool()
    assert labels.any() and (~labels).any()
    ref = fk.reference_logps(policy, plan)
    _perturb(policy, 2)
    logps, kl_logps = fk.batch_logps(policy, plan, grad=True)
    logps.retain_grad()
    fk.kto_loss(logps, kl_logps, ref, plan, beta=CONFIG.beta,
                undesirable_weight=0.0).loss.backward()
    assert logps.grad is not None
    assert (logps.grad[~labels] == 0).all()
    assert (logps.grad[labels].abs() > 0).all()
