"""Shared fixtures of the loop tests: the real catalog and a cheap deterministic encoder."""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from loop.config import SimulatorConfig
from loop.simulator import Simulator

# Plumbing tests of the loop (a refresh yields a candidate, a promotion swaps the served
# version), not the tiny model's quality: every gate tolerance is wide open, a refresh may train
# on a single click, and the held-out reward margin is optional (no held-out set, no minimum
# evidence), so that round 1's refresh promotes v2.
_OPEN_GATE = {"trainer": {"training": {
    "min_per_class": 1, "holdout_share": 0.0, "min_heldout_clicks": 0,
    "min_heldout_nonclicks": 0, "gate": {
        "reward_margin": 10.0, "format_valid_rate": 1.0, "tool_grounded_share": 1.0,
        "duplicate_rate": 1.0, "distinct_2": 1.0, "length_drift": 10.0, "relevance": 2.0,
        "suggestions_per_request": 100.0,
    }}}}


@pytest.fixture(scope="session")
def open_gate() -> dict[str, Any]:
    """Settings overrides that open the trainer's gate (see the comment above)."""
    return copy.deepcopy(_OPEN_GATE)


def hashing_encode(texts: Sequence[str], dim: int = 512) -> np.ndarray:
    """Bag-of-words hashing embeddings (L2-normalized): cosine = word overlap. Stands in
    for MiniLM in pure unit tests; the integration tests use the real encoder."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % dim] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1.0, norms)


@pytest.fixture(scope="session")
def tools() -> list:
    from retrieval.catalog import load_catalog

    return load_catalog().tools


@pytest.fixture
def sim(tools: list) -> Simulator:
    return Simulator(SimulatorConfig(seed=7, users=40), tools=tools, encode=hashing_encode)
