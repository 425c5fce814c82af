"""Encoder fine-tuning (retrieval.finetune): triple mining, batch packing, the key, the LoRA
file and its merged model directory."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from retrieval.encoder import encoder_identity
from retrieval.finetune import (
    FinetuneSettings,
    finetune_key,
    load_lora,
    lora_bytes,
    lora_model_dir,
    merge_lora,
    mine_triples,
    pack_batches,
)
from toolrec.errors import RetrievalError


def _unit(rows: list[list[float]]) -> np.ndarray:
    x = np.array(rows, dtype=np.float64)
    out: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


# three tools in 3-d: tool 1 sits next to tool 0, tool 2 far from both
PHRASINGS = [(0, "wifi on"), (0, "turn on wifi"), (1, "wifi off"), (1, "turn off wifi"),
             (2, "set alarm"), (2, "wake me up")]
PHRASE_VECS = _unit([[1, 0.1, 0], [1, 0, 0.1], [0.9, 0.4, 0], [0.9, 0.3, 0.1],
                     [0, 0, 1], [0, 0.1, 1]])


def test_triples_take_a_positive_of_the_own_tool_and_a_negative_of_the_confused_one() -> None:
    anchors = [(0, "wifi on"), (2, "wake me up")]
    triples = mine_triples(anchors, PHRASE_VECS[[0, 5]], PHRASINGS, PHRASE_VECS,
                           hard_pool=1, seed=0)
    first, second = triples
    assert (first.tool, first.anchor, first.positive) == (0, "wifi on", "turn on wifi")
    # tool 1 is the nearest other tool; of its phrasings, the one nearest the anchor
    nearest = 2 + int(np.argmax(PHRASE_VECS[2:4] @ PHRASE_VECS[0]))
    assert first.negative == PHRASINGS[nearest][1]
    assert second.positive == "set alarm" and second.negative != "wake me up"


def test_mining_is_deterministic_and_skips_tools_without_another_phrasing() -> None:
    phrasings = [*PHRASINGS, (3, "lonely")]
    vecs = np.vstack([PHRASE_VECS, _unit([[0, 1, 0]])])
    anchors = [(0, "turn on wifi"), (3, "lonely"), (1, "wifi off")]
    once = mine_triples(anchors, vecs[[1, 6, 2]], phrasings, vecs, hard_pool=2, seed=3)
    again = mine_triples(anchors, vecs[[1, 6, 2]], phrasings, vecs, hard_pool=2, seed=3)
    assert once == again
    assert [t.anchor for t in once] == ["turn on wifi", "wifi off"]
    assert all(t.positive != t.anchor for t in once)


def test_batches_cover_every_row_once_and_never_repeat_a_tool() -> None:
    tools = [0, 0, 0, 1, 1, 2, 3, 4, 5, 5]
    batches = pack_batches(tools, batch_size=3, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(len(tools)))
    assert all(len(b) <= 3 and len({tools[i] for i in b}) == len(b) for b in batches)
    assert pack_batches(tools, batch_size=3, seed=1) == batches


def test_key_changes_with_catalog_base_and_settings() -> None:
    base = finetune_key("cat1", "minilm:abc:seq128", FinetuneSettings())
    assert base == finetune_key("cat1", "minilm:abc:seq128", FinetuneSettings())
    assert len({base, finetune_key("cat2", "minilm:abc:seq128", FinetuneSettings()),
                finetune_key("cat1", "minilm:abd:seq128", FinetuneSettings()),
                finetune_key("cat1", "minilm:abc:seq128", FinetuneSettings(epochs=2))}) == 4


def test_merge_adds_the_low_rank_update_to_the_named_weight() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    a, b = rng.normal(size=(2, 3)), rng.normal(size=(4, 2))
    merged = merge_lora({"q.weight": w, "q.bias": np.zeros(4, np.float32)},
                        {"q.weight:A": a, "q.weight:B": b})
    np.testing.assert_allclose(merged["q.weight"], w + b @ a, rtol=1e-6)
    assert merged["q.weight"].dtype == np.float32 and not merged["q.bias"].any()
    with pytest.raises(RetrievalError, match="no base weight"):
        merge_lora({"q.weight": w}, {"k.weight:A": a, "k.weight:B": b})


def _base_dir(path: Path) -> Path:
    from safetensors.numpy import save_file

    path.mkdir()
    save_file({"q.weight": np.eye(3, dtype=np.float32)}, str(path / "model.safetensors"))
    (path / "config.json").write_text('{"hidden_size": 3}')
    (path / "tokenizer.json").write_text("{}")
    return path


def _lora_file(path: Path, arrays: dict[str, np.ndarray], digest: str | None = None) -> Path:
    blob = lora_bytes(arrays)
    path.write_bytes(blob)
    path.with_suffix(".json").write_text(
        json.dumps({"sha256": digest or hashlib.sha256(blob).hexdigest()}))
    return path


def test_merged_model_dir_is_keyed_by_the_lora_digest(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    base = _base_dir(tmp_path / "base")
    lora = {"q.weight:A": np.ones((1, 3)), "q.weight:B": np.full((3, 1), 0.5)}
    first = lora_model_dir(base, _lora_file(tmp_path / "a.npz", lora), tmp_path / "cache")
    np.testing.assert_allclose(load_file(str(first / "model.safetensors"))["q.weight"],
                               np.eye(3) + 0.5)
    assert (first / "tokenizer.json").is_file() and (first / "config.json").is_file()
    assert lora_model_dir(base, tmp_path / "a.npz", tmp_path / "cache") == first  # cached
    lora["q.weight:B"] = lora["q.weight:B"] * 2
    second = lora_model_dir(base, _lora_file(tmp_path / "b.npz", lora), tmp_path / "cache")
    # same config and weight size: the record keeps the identities (index, CT2 key) apart
    identities = {encoder_identity(d, 128) for d in (base, first, second)}
    assert second != first and len(identities) == 3


def test_lora_file_is_checked(tmp_path: Path) -> None:
    path = _lora_file(tmp_path / "x.npz", {"q.weight:A": np.ones((1, 3))}, digest="0" * 64)
    with pytest.raises(RetrievalError, match="SHA-256"):
        load_lora(path)
    with pytest.raises(RetrievalError, match="fit-encoder"):
        load_lora(tmp_path / "missing.npz")
