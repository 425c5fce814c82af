"""Shared fixtures of the trainer tests: a tiny locally-built Llama, built once per session.

`tiny_model_dir` is a real Hugging Face checkpoint directory (≈0.7M-parameter Llama, its own
byte-level BPE tokenizer with a ChatML template); load it with `trainer.models.load_model`.
Treat it as read-only: tests that change weights load their own copy into memory or
save to their own tmp_path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama checkpoint directory (seed 0), shared by the whole test session."""
    from trainer.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "tiny-llama", seed=0)
