"""Fixtures shared by every stage's tests: real local brokers, started and stopped per test,
and the one fixture layer of models, each built once per test run:

- `tiny_model_dir`: a tiny Llama checkpoint directory (≈0.7M parameters, seed 0, its own
  byte-level BPE tokenizer with a ChatML template; `trainer.models.build_tiny_model`). Treat it
  as read-only: tests that change weights load their own copy or save to their own tmp_path.
- `tiny_sft`: the bootstrap SFT run on it over two catalog categories (an adapter, its report).
- `tiny_start`: the tiny model with the production tiny SFT recipe (`loop.models.tiny`: every
  catalog tool, `trainer.models.TINY_SFT`), what the loop tests serve first.
- tests/serving serves `tiny_start` with its adapter merged in (`model_dir` there).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest

from infra.broker import LocalStack
from infra.topics import ensure_topics
from toolrec.kafka import KafkaConfig
from trainer.models import TINY_GENERATOR
from trainer.models import TINY_SFT as TINY_RECIPE

if TYPE_CHECKING:
    from loop.models import StartModel

# Nothing may download at run time: models load from local files only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalStack]:
    """A tansu broker (memory engine) on a free 127.0.0.1 port, stopped even on failure."""
    with LocalStack(tmp_path / "broker", storage="memory") as stack:
        yield stack


@pytest.fixture
def durable_broker(tmp_path: Path) -> Iterator[LocalStack]:
    """A tansu broker on the s3 engine backed by a local SeaweedFS: survives restarts."""
    with LocalStack(tmp_path / "durable", storage="s3") as stack:
        yield stack


@pytest.fixture
def kafka(broker: LocalStack) -> KafkaConfig:
    """Settings for the `broker` fixture, with the project's topics created."""
    config = broker.kafka_config()
    ensure_topics(config)
    return config


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama checkpoint directory (seed 0), shared by the whole test session."""
    from trainer.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "tiny-llama", seed=0)


# The tiny bootstrap SFT: short prompts, a LoRA on every linear layer with a high learning
# rate, and two catalog categories (49 tools), so that a random ≈0.85M-parameter model learns
# the list format in the recipe's 100 steps (it does not learn when to stop: the SmolLM2
# bootstrap does). 80 steps were enough until session 12's question and stated-need
# examples made the two categories' targets longer and more varied: at 80 it wrote "-" lines.
TINY_CATEGORIES = ("battery", "display")
TINY_SFT = {**TINY_RECIPE, "max_steps": 100}


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine two
    spinning OpenMP threads cost several times the CPU of one."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def single_torch_thread() -> Iterator[None]:
    """Use with `pytestmark = pytest.mark.usefixtures("single_torch_thread")`."""
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def tiny_sft(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Any:
    """The bootstrap SFT run on the tiny model over part of the real SysToolKit catalog,
    once per session: `.adapter_dir` is a LoRA adapter (a champion to continue from),
    `.report` the SFTReport, `.config` the GeneratorConfig, `.tools` the catalog tools used."""
    from generator.config import BootstrapSFTConfig, GeneratorConfig
    from retrieval.catalog import load_catalog
    from trainer.sft import run_sft
    from trainer.sft_data import build_sft_examples

    config = GeneratorConfig(**TINY_GENERATOR, sft=BootstrapSFTConfig(**TINY_SFT))
    tools = [t for t in load_catalog().tools if t.category in TINY_CATEGORIES]
    examples = build_sft_examples(tools, config.sft.examples, config=config)
    adapter_dir = tmp_path_factory.mktemp("tiny-sft") / "adapter"
    with one_torch_thread():
        report = run_sft(tiny_model_dir, adapter_dir, examples, config=config.sft,
                         progress=False)
    return SimpleNamespace(adapter_dir=adapter_dir, report=report, config=config, tools=tools)


@pytest.fixture(scope="session")
def tiny_start(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> StartModel:
    """`loop.models.tiny` on the session's tiny model (linked in, not rebuilt): the tiny SFT
    adapter of the production recipe, trained once per run."""
    from loop.models import tiny

    cache = tmp_path_factory.mktemp("tiny-start")
    (cache / "tiny-llama").symlink_to(tiny_model_dir, target_is_directory=True)
    with one_torch_thread():
        return tiny(cache)
