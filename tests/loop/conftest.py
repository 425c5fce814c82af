"""Shared fixtures of the loop tests: the real catalog and a cheap deterministic encoder."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np
import pytest

from loop.config import SimulatorConfig
from loop.simulator import Simulator


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
