"""The generator a loop run starts from: a base model and its bootstrap SFT adapter.

- `smollm2` (the real thing): `toolrec models bootstrap` writes SmolLM2-135M-Instruct as an
  fp32 checkpoint and trains the bootstrap SFT adapter (trainer stage; run once, reused);
- `tiny` (tests and quick runs): the trainer's tiny Llama plus a short high-learning-rate
  SFT, built once into a cache directory (≈1 min on 2 cores).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from loop.errors import LoopError

log = logging.getLogger(__name__)

ModelKind = Literal["smollm2", "tiny"]

TINY_TRAINING = {"learning_rate": 5e-3, "max_length": 512}


@dataclass(frozen=True)
class StartModel:
    """What a run serves first and trains from."""

    kind: ModelKind
    model_dir: Path
    adapter_dir: Path
    generator_overrides: dict[str, Any]
    training_overrides: dict[str, Any]


def _adapter_ready(adapter_dir: Path) -> bool:
    """An adapter is there and was trained on the prompt template the generator renders."""
    import json

    from generator.prompt import TEMPLATE_VERSION

    report = adapter_dir / "sft-report.json"
    if not (adapter_dir / "adapter_config.json").is_file() or not report.is_file():
        return False
    trained_on = json.loads(report.read_text()).get("template_version")
    if trained_on != TEMPLATE_VERSION:
        log.warning("the adapter %s was trained on template %s, the generator renders %s: "
                    "retraining it", adapter_dir, trained_on, TEMPLATE_VERSION)
        return False
    return True


def smollm2(generator: Any) -> StartModel:
    """SmolLM2 + bootstrap SFT adapter, running `toolrec models bootstrap` when missing."""
    model_dir, adapter_dir = Path(generator.model_dir), Path(generator.bootstrap_adapter_dir)
    if not ((model_dir / "config.json").is_file() and _adapter_ready(adapter_dir)):
        log.info("SmolLM2 or its bootstrap SFT adapter is missing: running `toolrec models "
                 "bootstrap` (once; several minutes on 2 cores)")
        done = subprocess.run([sys.executable, "-m", "toolrec", "models", "bootstrap",
                               "--force"], check=False)
        if done.returncode != 0 or not _adapter_ready(adapter_dir):
            raise LoopError(f"`toolrec models bootstrap` failed (exit {done.returncode}); "
                            f"no adapter at {adapter_dir}. Run it alone to see why.")
    return StartModel("smollm2", model_dir, adapter_dir, {}, {})


def tiny(cache_dir: Path, *, seed: int = 0) -> StartModel:
    """The tiny Llama and its SFT adapter under `cache_dir` (built once, then reused)."""
    from generator.config import BootstrapSFTConfig, GeneratorConfig
    from retrieval.catalog import load_catalog
    from trainer.models import TINY_GENERATOR, TINY_SFT, build_tiny_model
    from trainer.sft import run_sft
    from trainer.sft_data import build_sft_examples

    cache_dir = Path(cache_dir)
    model_dir = build_tiny_model(cache_dir / "tiny-llama", seed=seed)
    adapter_dir = cache_dir / "tiny-sft"
    if not _adapter_ready(adapter_dir):
        config = GeneratorConfig(**TINY_GENERATOR, sft=BootstrapSFTConfig(**TINY_SFT))
        examples = build_sft_examples(load_catalog().tools, config.sft.examples, config=config)
        run_sft(model_dir, adapter_dir, examples, config=config.sft, progress=True)
    return StartModel("tiny", model_dir, adapter_dir, dict(TINY_GENERATOR), dict(TINY_TRAINING))


def start_model(kind: ModelKind, generator: Any, cache_dir: Path) -> StartModel:
    if kind == "smollm2":
        return smollm2(generator)
    if kind == "tiny":
        return tiny(cache_dir)
    raise LoopError(f"unknown model kind {kind!r}; use 'smollm2' or 'tiny'")
