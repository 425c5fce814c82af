"""The embedding adapter (retrieval.adapter): the fit, the checked file, the index key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from retrieval.adapter import (
    AdapterFit,
    fit_adapter,
    load_adapter,
    npz_bytes,
    spoken_frames,
)
from retrieval.catalog import Catalog
from retrieval.config import RetrievalConfig
from retrieval.encoder import Encoder
from retrieval.retriever import Retriever
from toolrec.errors import RetrievalError


def _write(path: Path, u: np.ndarray, v: np.ndarray, digest: str | None = None) -> None:
    blob = npz_bytes(u, v)
    path.write_bytes(blob)
    path.with_suffix(".json").write_text(
        json.dumps({"sha256": digest or hashlib.sha256(blob).hexdigest()}))


def test_fit_pulls_confused_phrasings_to_their_own_tool() -> None:
    """Two tools whose phrasings overlap in one direction: the fit separates them."""
    rng = np.random.default_rng(0)
    dim = 16
    shared, a, b = rng.normal(size=(3, dim))
    phrases = np.stack([shared + 0.3 * (a if t == 0 else b) + 0.05 * rng.normal(size=dim)
                        for t in (0, 1) for _ in range(6)])
    phrases /= np.linalg.norm(phrases, axis=1, keepdims=True)
    owner = np.repeat([0, 1], 6)
    u, v = fit_adapter(phrases, owner, phrases[:0], owner[:0],
                       AdapterFit(rank=4, epochs=60, learning_rate=5e-2, l2=1e-4))

    def gap(x: np.ndarray) -> float:  # mean own-tool cosine minus other-tool cosine
        sims = x @ x.T
        same = owner[:, None] == owner[None, :]
        return float(sims[same & ~np.eye(len(x), dtype=bool)].mean() - sims[~same].mean())

    y = phrases + (phrases @ v) @ u.T
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    assert gap(y) > gap(phrases) + 0.1


def test_adapter_file_is_checked(tmp_path: Path) -> None:
    u, v = np.zeros((8, 2)), np.ones((8, 2))
    path = tmp_path / "adapter.npz"
    _write(path, u, v)
    adapter = load_adapter(path)
    x = np.eye(8, dtype=np.float32)[:3]
    assert np.allclose(adapter.apply(x), x)  # U = 0: the identity
    _write(path, u, v, digest="0" * 64)
    with pytest.raises(RetrievalError, match="SHA-256"):
        load_adapter(path)
    with pytest.raises(RetrievalError, match="does not exist"):
        load_adapter(tmp_path / "missing.npz")


def test_packaged_adapter_loads_and_was_fitted_on_the_catalog_only() -> None:
    adapter = load_adapter()
    assert adapter.u.shape == (384, adapter.meta["settings"]["rank"])
    assert "no evaluation rows" in adapter.meta["fitted_on"]


def test_spoken_frames_are_deterministic() -> None:
    examples = [(0, "turn on wifi"), (1, "set an alarm")]
    assert spoken_frames(examples) == spoken_frames(examples)
    assert (0, "can you turn on wifi") in spoken_frames(examples)


def test_adapter_keys_its_own_index(small_catalog: Catalog, encoder: Encoder,
                                    tmp_path: Path) -> None:
    """On and off build two indexes side by side; off reproduces the raw encoder."""
    cache = tmp_path / "cache"
    on = Retriever(RetrievalConfig(cache_dir=cache, adapter=True), catalog=small_catalog,
                   encoder=encoder)
    off = Retriever(RetrievalConfig(cache_dir=cache, adapter=False), catalog=small_catalog,
                    encoder=encoder)
    assert on.index.meta["encoder"] != off.index.meta["encoder"]
    assert "adapter-" in on.index.meta["encoder"]
    raw = encoder.encode(["turn the wifi on"])
    assert np.allclose(off.encode(["turn the wifi on"]), raw)
    assert not np.allclose(on.encode(["turn the wifi on"]), raw)
    assert on.search("turn the wifi on", k=1)[0].tool_id == "connectivity.wifi.on"
