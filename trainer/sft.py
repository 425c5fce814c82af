"""Bootstrap SFT: a LoRA adapter that makes a base model emit well-formed, grounded lists.

A plain PyTorch loop over PEFT (not TRL's SFTTrainer): the data are a few hundred short
examples (`trainer.sft_data`), the loss is the next-token loss on the completion only (the
prompt is masked), and a plain loop keeps start-up cheap, shows progress with rate and
ETA, and stays deterministic for a seed. The adapter is written atomically (temporary
sibling directory, then rename) with an `sft-report.json`; it is the first champion, and
weighted-KTO refreshes continue from it (`BootstrapSFTConfig.target_modules`).

The adapter of the default settings on SmolLM2 ships in the package (`trainer/bundled/`,
3.7 MB; made by this very code, ≈36 min on 2 cores): `bootstrap` installs it when its
report matches the configured settings and template, and trains only otherwise (or with
`force`), so a fresh machine's `make demo` does not start with half an hour of SFT.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from generator.config import BootstrapSFTConfig, GeneratorConfig
from generator.loading import load_model
from generator.prompt import TEMPLATE_VERSION
from toolrec.errors import TrainerError
from trainer.models import atomic_output_dir, bootstrap_smollm2
from trainer.sft_data import SFTExample, ToolSearch, build_sft_examples

__all__ = [
    "BootstrapResult",
    "SFTReport",
    "bootstrap",
    "collate",
    "completion_loss",
    "format_check",
    "lora_config",
    "reusable_adapter",
    "run_sft",
    "tokenize_example",
]

log = logging.getLogger(__name__)
REPORT_FILE = "sft-report.json"
BUNDLED_SMOLLM2_ADAPTER = Path(__file__).parent / "bundled" / "smollm2-sft"


@dataclass(frozen=True)
class SFTReport:
    adapter_dir: str
    base_model: str
    template_version: str
    examples: int
    dropped_too_long: int
    steps: int
    first_loss: float
    final_loss: float
    seconds: float
    examples_per_second: float


def lora_config(config: BootstrapSFTConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
    )


def tokenize_example(tokenizer: Any, example: SFTExample) -> tuple[list[int], list[int]]:
    """(input ids, labels) with the prompt masked (-100), split where TRL would split."""
    prompt_ids = tokenizer(example.prompt, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(example.prompt + example.completion, add_special_tokens=False)[
        "input_ids"
    ]
    cut = 0
    while cut < min(len(prompt_ids), len(full_ids)) and prompt_ids[cut] == full_ids[cut]:
        cut += 1
    return full_ids, [-100] * cut + full_ids[cut:]


def collate(rows: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    """Left-padded batch: every completion ends at the right edge, so the loss needs the
    logits of the last `keep` positions only (the LM head over a 49k vocabulary is ~20% of
    SmolLM2's forward cost and most of its activation memory). Position ids follow the
    attention mask, as in generation, so padded rows see the same positions as unpadded."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.tensor([[pad_id] * (width - len(i)) + i for i, _ in rows])
    mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i, _ in rows])
    labels = torch.tensor([[-100] * (width - len(lab)) + lab for _, lab in rows])
    learned = max(sum(x != -100 for x in lab) for _, lab in rows)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
        "labels": labels,
        "keep": min(learned + 1, width),
    }


def completion_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Mean next-token cross-entropy over the completion tokens of a `collate` batch."""
    import torch

    keep = batch["keep"]
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        logits_to_keep=keep,
    ).logits
    targets = batch["labels"][:, -keep + 1 :] if keep > 1 else batch["labels"][:, :0]
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        targets.reshape(-1),
        ignore_index=-100,
    )


def _batches(
    rows: list[tuple[list[int], list[int]]], size: int, pad_id: int, rng: random.Random
) -> list[dict[str, Any]]:
    order = list(range(len(rows)))
    rng.shuffle(order)
    return [
        collate([rows[i] for i in order[start : start + size]], pad_id)
        for start in range(0, len(order), size)
    ]


def _schedule(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then linear decay to 10% of the peak."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    remaining = (total - step) / max(total - warmup, 1)
    return 0.1 + 0.9 * max(remaining, 0.0)


def run_sft(
    model_dir: Path,
    out_dir: Path,
    examples: Sequence[SFTExample],
    *,
    config: BootstrapSFTConfig | None = None,
    progress: bool = True,
) -> SFTReport:
    """Train a LoRA adapter on `examples` over the base model in `model_dir`; save it to
    `out_dir` (replaced atomically) and return what happened."""
    import torch
    from peft import get_peft_model

    config = config or BootstrapSFTConfig()
    started = time.monotonic()
    torch.manual_seed(config.seed)
    model, tokenizer = load_model(Path(model_dir), dtype="float32")
    model = get_peft_model(model, lora_config(config))
    rows = [tokenize_example(tokenizer, ex) for ex in examples]
    usable = [r for r in rows if len(r[0]) <= config.max_seq_len and any(x != -100 for x in r[1])]
    if not usable:
        raise TrainerError(
            f"none of {len(rows)} SFT examples fits max_seq_len={config.max_seq_len} tokens; "
            "raise trainer.generator.sft.max_seq_len"
        )
    losses = _train(model, usable, tokenizer.pad_token_id, config, progress)
    seconds = time.monotonic() - started
    report = SFTReport(
        adapter_dir=str(out_dir),
        base_model=str(model_dir),
        template_version=TEMPLATE_VERSION,
        examples=len(usable),
        dropped_too_long=len(rows) - len(usable),
        steps=len(losses),
        first_loss=round(losses[0], 4),
        final_loss=round(sum(losses[-5:]) / len(losses[-5:]), 4),
        seconds=round(seconds, 1),
        examples_per_second=round(len(losses) * config.batch_size / max(seconds, 1e-9), 2),
    )
    _save(model, Path(out_dir), report, config)
    return report


def _train(
    model: Any, rows: list[tuple[list[int], list[int]]], pad_id: int,
    config: BootstrapSFTConfig, progress: bool,
) -> list[float]:
    import torch
    from tqdm import tqdm

    rng = random.Random(config.seed)
    per_epoch = math.ceil(len(rows) / config.batch_size)
    total = config.max_steps or per_epoch * config.epochs  # max_steps wins, as in HF
    warmup = int(total * config.warmup_ratio)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _schedule(s, total, warmup)
    )
    model.train()
    losses: list[float] = []
    bar = tqdm(total=total, desc="bootstrap SFT", unit="step", disable=not progress)
    while len(losses) < total:
        for batch in _batches(rows, config.batch_size, pad_id, rng):
            loss = completion_loss(model, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if len(losses) >= total:
                break
    bar.close()
    model.eval()
    return losses


def _save(model: Any, out_dir: Path, report: SFTReport, config: BootstrapSFTConfig) -> None:
    with atomic_output_dir(out_dir) as tmp_dir:
        model.save_pretrained(tmp_dir)
        payload = {**asdict(report), "config": config.model_dump(mode="json")}
        (tmp_dir / REPORT_FILE).write_text(json.dumps(payload, indent=2) + "\n")
    log.info("bootstrap SFT adapter written to %s (%s)", out_dir, report)


# --------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class BootstrapResult:
    model_dir: Path
    adapter_dir: Path | None  # None: no SFT was asked for
    report: SFTReport | None  # the run's report, or the one saved with a reused adapter
    reused_adapter: bool
    model_seconds: float  # preparing the base model (≈0 when it already existed)


def reusable_adapter(adapter_dir: Path, config: BootstrapSFTConfig) -> SFTReport | None:
    """The report of an adapter made with exactly these settings and this template, else None
    (then the bootstrap trains again: changed defaults never leave a stale champion)."""
    path = adapter_dir / REPORT_FILE
    if not (adapter_dir / "adapter_config.json").is_file() or not path.is_file():
        return None
    payload = json.loads(path.read_text())
    made_with = payload.pop("config", None)
    if made_with != config.model_dump(mode="json"):
        return None
    if payload.get("template_version") != TEMPLATE_VERSION:
        return None
    return SFTReport(**payload)


def _install_bundled(adapter_dir: Path, config: BootstrapSFTConfig) -> SFTReport | None:
    """Copy the shipped SmolLM2 adapter to `adapter_dir` if it was made with `config`."""
    import shutil

    report = reusable_adapter(BUNDLED_SMOLLM2_ADAPTER, config)
    if report is None:
        return None
    with atomic_output_dir(adapter_dir) as staging:
        for path in BUNDLED_SMOLLM2_ADAPTER.iterdir():
            shutil.copy2(path, staging / path.name)
    log.info("installed the bundled bootstrap SFT adapter in %s", adapter_dir)
    return report


def bootstrap(
    config: GeneratorConfig,
    *,
    sft: bool = True,
    tools: Sequence[Any] = (),
    search: ToolSearch | None = None,
    force: bool = False,
    progress: bool = True,
) -> BootstrapResult:
    """`toolrec models bootstrap`: SmolLM2 as an fp32 checkpoint in `config.model_dir`, then
    (with `sft`) the bootstrap SFT adapter in `config.bootstrap_adapter_dir`.

    Idempotent: a finished model is reused; so is an adapter made with the same SFT settings
    and template version, unless `force`.
    """
    started = time.monotonic()
    model_dir = bootstrap_smollm2(config.model_dir)
    model_seconds = round(time.monotonic() - started, 1)
    if not sft:
        return BootstrapResult(model_dir, None, None, False, model_seconds)
    adapter_dir = Path(config.bootstrap_adapter_dir)
    saved = None if force else reusable_adapter(adapter_dir, config.sft)
    if saved is None and not force:
        saved = _install_bundled(adapter_dir, config.sft)
    if saved is not None:
        return BootstrapResult(model_dir, adapter_dir, saved, True, model_seconds)
    examples = build_sft_examples(
        tools, config.sft.examples, config=config, seed=config.sft.seed, search=search
    )
    report = run_sft(model_dir, adapter_dir, examples, config=config.sft, progress=progress)
    return BootstrapResult(model_dir, adapter_dir, report, False, model_seconds)


def format_check(generator: Any, examples: Sequence[SFTExample]) -> dict[str, float]:
    """Greedy generations on held-out examples: format-valid rate, suggestions per request,
    share of suggestions linked to a tool (when the generator has a linker), seconds each."""
    from generator.config import DecodingConfig

    cap = generator.config.decoding.max_new_tokens
    greedy = DecodingConfig(temperature=0.0, max_new_tokens=cap)
    started = time.monotonic()
    results = [generator.generate(ex.inputs, n=len(ex.targets), decoding=greedy)
               for ex in examples]
    suggestions = [s for r in results for s in r.suggestions]
    return {
        "format_valid_rate": sum(r.format_valid for r in results) / max(len(results), 1),
        "suggestions_per_request": len(suggestions) / max(len(results), 1),
        "tool_linked_share": (
            sum(s.tool_id is not None for s in suggestions) / len(suggestions)
            if suggestions and generator.linker is not None else float("nan")
        ),
        "seconds_per_request": (time.monotonic() - started) / max(len(results), 1),
    }
