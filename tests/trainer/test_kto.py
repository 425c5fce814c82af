"""Sample-weighted KTO against TRL's stock KTOTrainer, on the tiny Llama.

The loss-level tests build their batches by hand with the trainer's own collator so that a
sample's completion can be changed while its KL completion (which feeds the batch's shared,
detached KL estimate) stays fixed: then any change of the loss or gradient is that one
sample's contribution, and these tests fail if a weight lands on the wrong sample, is
ignored, is normalized away or leaks into the model's forward.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset
from trl import KTOTrainer

from generator.loading import load_model
from toolrec.errors import TrainerError
from trainer.config import TrainingConfig
from trainer.kto import WEIGHT_COLUMN, WeightedKTOTrainer, kto_args, lora_config

pytestmark = pytest.mark.usefixtures("single_torch_thread")

CONFIG = TrainingConfig(batch_size=4, max_steps=3, learning_rate=5e-3, logging_steps=1)
ACTIONS = ["battery saver", "bluetooth", "an alarm for 7", "wifi settings", "dark mode",
           "the flashlight", "airplane mode", "do not disturb"]
LABELS = [True, False, True, False, False, True, False, True]


def _rows(weights: list[float] | None = None) -> dict[str, list[Any]]:
    rows: dict[str, list[Any]] = {
        "prompt": [f"User: turn on {a}\nAssistant: Done.\nSuggestions:\n" for a in ACTIONS],
        "completion": [f"- open {a} settings\n" for a in reversed(ACTIONS)],
        "label": list(LABELS),
    }
    if weights is not None:
        rows[WEIGHT_COLUMN] = weights
    return rows


def _trainer(
    model_dir: Path, tmp_path: Path, cls: type[KTOTrainer], rows: dict[str, Any], **kwargs: Any
) -> Any:
    """`cls` on the tiny model with LoRA; the weighted trainer keeps TRL's EOS here so that it
    sees exactly the stock trainer's sequences."""
    if cls is WeightedKTOTrainer:
        kwargs.setdefault("completion_eos", True)
    model, tokenizer = load_model(model_dir)
    trainer = cls(
        model=model,
        args=kto_args(CONFIG, tmp_path / cls.__name__),
        train_dataset=Dataset.from_dict(rows),
        processing_class=tokenizer,
        peft_config=lora_config(CONFIG),
        **kwargs,
    )
    _perturb_adapter(trainer.model)
    return trainer


def _perturb_adapter(model: Any) -> None:
    """A fresh LoRA equals the reference (B = 0); move it so rewards and KL are non-trivial."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)


def _trainable(model: Any) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _loss_and_grad(trainer: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    trainer.model.zero_grad(set_to_none=True)
    loss = trainer.compute_loss(trainer.model, dict(batch))
    loss.backward()
    grad = torch.cat([p.grad.flatten() for p in _trainable(trainer.model)])
    return loss.detach(), grad


def _batch(trainer: Any, weights: list[float], *, swap: int | None = None) -> dict[str, Any]:
    """Collate 4 hand-tokenized samples; `swap` replaces that sample's completion only."""
    tok = trainer.processing_class
    examples = []
    for i in range(4):
        completion = f" open {ACTIONS[i]} settings\n"
        if i == swap:
            completion = " call mom and share my location now\n"
        examples.append({
            "prompt_ids": tok(f"User: turn on {ACTIONS[i]}\nSuggestions:\n")["input_ids"],
            "completion_ids": tok(completion)["input_ids"] + [tok.eos_token_id],
            "KL_completion_ids": tok(f" open {ACTIONS[(i - 1) % 4]} settings\n")["input_ids"],
            "label": LABELS[i],
            WEIGHT_COLUMN: weights[i],
        })
    return trainer.data_collator(examples)


@pytest.fixture
def weighted(tiny_model_dir: Path, tmp_path: Path) -> Any:
    return _trainer(tiny_model_dir, tmp_path, WeightedKTOTrainer, _rows([1.0] * 8))


def test_unit_weights_give_the_stock_loss_and_gradient(
    weighted: Any, tiny_model_dir: Path, tmp_path: Path
) -> None:
    stock = _trainer(tiny_model_dir, tmp_path, KTOTrainer, _rows())
    batch = _batch(weighted, [1.0] * 4)
    stock_batch = {k: v for k, v in batch.items() if k != WEIGHT_COLUMN}
    loss_w, grad_w = _loss_and_grad(weighted, batch)
    loss_s, grad_s = _loss_and_grad(stock, stock_batch)
    assert loss_s.item() != pytest.approx(0.5, abs=1e-4), "adapter perturbation had no effect"
    assert torch.equal(loss_w, loss_s)
    assert torch.allclose(grad_w, grad_s, rtol=0, atol=1e-9)


def test_unit_weights_train_exactly_like_stock(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Through the whole pipeline: pruning, collator, sequential batches, optimizer steps."""
    weighted = _trainer(tiny_model_dir, tmp_path, WeightedKTOTrainer, _rows([1.0] * 8))
    stock = _trainer(tiny_model_dir, tmp_path, KTOTrainer, _rows())
    weighted.train()
    stock.train()
    for p_w, p_s in zip(_trainable(weighted.model), _trainable(stock.model), strict=True):
        assert torch.allclose(p_w, p_s, rtol=0, atol=1e-7)
    assert weighted.state.log_history[-1]["train_loss"] == stock.state.log_history[-1]["train_loss"]


@pytest.mark.parametrize("j", [1, 2], ids=["undesirable", "desirable"])
def test_zero_weight_sample_contributes_no_gradient(weighted: Any, j: int) -> None:
    weights = [1.0, 0.7, 1.3, 2.0]
    zero = list(weights)
    zero[j] = 0.0
    loss_a, grad_a = _loss_and_grad(weighted, _batch(weighted, zero))
    loss_b, grad_b = _loss_and_grad(weighted, _batch(weighted, zero, swap=j))
    assert torch.allclose(loss_a, loss_b, rtol=0, atol=1e-7)
    # equal up to float32 rounding of the gradient's scale (the swapped batch runs other
    # values through the same kernels: max difference 1.3e-8 at a scale of 0.045 on an
    # AVX2-only core, 0 elsewhere), far below the weighted sample's effect checked next
    rounding = 8 * torch.finfo(torch.float32).eps * grad_a.abs().max().item()
    assert torch.allclose(grad_a, grad_b, rtol=0, atol=rounding)
    # the same change with the sample weighted does move the loss: the test is not vacuous
    loss_c, grad_c = _loss_and_grad(weighted, _batch(weighted, weights))
    loss_d, grad_d = _loss_and_grad(weighted, _batch(weighted, weights, swap=j))
    assert abs(loss_c.item() - loss_d.item()) > 1e-4
    assert (grad_c - grad_d).abs().max().item() > 1e-5


@pytest.mark.parametrize("j", [0, 3], ids=["desirable", "undesirable"])
def test_scaling_one_weight_scales_its_contribution_linearly(weighted: Any, j: int) -> None:
    base = [1.0, 0.5, 1.5, 1.0]

    def at(k: float) -> tuple[torch.Tensor, torch.Tensor]:
        weights = list(base)
        weights[j] = k
        return _loss_and_grad(weighted, _batch(weighted, weights))

    loss_0, grad_0 = at(0.0)
    loss_1, grad_1 = at(1.0)
    unit_loss, unit_grad = loss_1 - loss_0, grad_1 - grad_0
    assert abs(unit_loss.item()) > 1e-4 and unit_grad.abs().max().item() > 1e-5
    for k in (2.0, 3.5):
        loss_k, grad_k = at(k)
        assert (loss_k - loss_0).item() == pytest.approx(k * unit_loss.item(), rel=1e-4)
        assert torch.allclose(grad_k - grad_0, k * unit_grad, rtol=1e-3, atol=1e-7)
    # the other samples' contribution is untouched by sample j's weight
    loss_other, _ = _loss_and_grad(weighted, _batch(weighted, [0.0 if i == j else w
                                                                for i, w in enumerate(base)]))
    assert torch.allclose(loss_other, loss_0)


def test_weight_survives_pruning_and_never_reaches_the_forward(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    rows = _rows([0.5, 1.0, 2.0, 1.0, 0.0, 1.5, 1.0, 3.0])
    rows["sample_id"] = [f"r{i}:1" for i in range(8)]
    rows["tool_id"] = ["battery"] * 8
    trainer = _trainer(tiny_model_dir, tmp_path, WeightedKTOTrainer, rows)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch[WEIGHT_COLUMN].tolist() == [0.5, 1.0, 2.0, 1.0]
    assert "sample_id" not in batch and "tool_id" not in batch
    seen: list[set[str]] = []

    def record(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        seen.append(set(kwargs))

    handle = trainer.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        trainer.train()
    finally:
        handle.remove()
    assert seen and all(WEIGHT_COLUMN not in keys for keys in seen)
    assert trainer.state.log_history[0]["weight/mean"] == pytest.approx(1.125)  # first batch


def test_missing_or_invalid_weights_fail_clearly(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="no 'weight' column"):
        _trainer(tiny_model_dir, tmp_path, WeightedKTOTrainer, _rows())
    with pytest.raises(TrainerError, match="invalid weights"):
        _trainer(tiny_model_dir, tmp_path, WeightedKTOTrainer, _rows([1.0] * 7 + [-1.0]))


def test_per_suggestion_completions_do_not_end_the_turn(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """By default the EOS TRL appends is removed: a suggestion line is not the end of a list."""
    trainer = _trainer(
        tiny_model_dir, tmp_path, WeightedKTOTrainer, _rows([1.0] * 8), completion_eos=False
    )
    eos = trainer.processing_class.eos_token_id
    newline = trainer.processing_class("\n", add_special_tokens=False)["input_ids"][-1]
    for example in trainer.train_dataset:
        assert example["completion_ids"][-1] == newline != eos
        assert example["KL_completion_ids"][-1] == newline
    trainer.train()
