"""Encoder fine-tuning (retrieval.finetune): triple mining, batch packing, the key, the
no-tool negatives in the loss, the compact update, the update file and its merged model
directory."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval.encoder import encoder_identity
from retrieval.finetune import (
    FinetuneSettings,
    Triple,
    _batch_loss,
    compact_update,
    finetune_key,
    load_update,
    merge_update,
    mine_triples,
    pack_batches,
    update_bytes,
    update_model_dir,
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


def test_key_changes_with_what_is_trained_not_with_how_it_ships() -> None:
    base = finetune_key("cat1", "minilm:abc:seq128", FinetuneSettings())
    assert base == finetune_key("cat1", "minilm:abc:seq128", FinetuneSettings())
    with_no_tool = FinetuneSettings(no_tool_per_batch=8)
    assert len({base, finetune_key("cat2", "minilm:abc:seq128", FinetuneSettings()),
                finetune_key("cat1", "minilm:abd:seq128", FinetuneSettings()),
                finetune_key("cat1", "minilm:abc:seq128", FinetuneSettings(epochs=2)),
                finetune_key("cat1", "minilm:abc:seq128", with_no_tool, ["a"]),
                finetune_key("cat1", "minilm:abc:seq128", with_no_tool, ["b"])}) == 6
    # the shipped form is cut from the same fit
    assert base == finetune_key("cat1", "minilm:abc:seq128",
                                FinetuneSettings(update_rank=8, row_tolerance=0.1))


def test_merge_adds_each_kind_of_update_to_its_weight() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    emb = rng.normal(size=(5, 3)).astype(np.float32)
    a, b = rng.normal(size=(2, 3)), rng.normal(size=(4, 2))
    merged = merge_update(
        {"q.weight": w, "q.bias": np.zeros(4, np.float32), "emb.weight": emb},
        {"q.weight:A": a, "q.weight:B": b, "q.bias:D": np.ones(4, np.float16),
         "emb.weight:rows": np.array([1, 3], np.int32),
         "emb.weight:R": np.ones((2, 3), np.float16)})
    np.testing.assert_allclose(merged["q.weight"], w + b @ a, rtol=1e-5)
    np.testing.assert_array_equal(merged["q.bias"], np.ones(4))
    np.testing.assert_allclose(merged["emb.weight"], emb + np.array([0, 1, 0, 1, 0])[:, None])
    assert {v.dtype for v in merged.values()} == {np.dtype(np.float32)}
    with pytest.raises(RetrievalError, match="no base weight"):
        merge_update({"q.weight": w}, {"k.weight:A": a, "k.weight:B": b})
    with pytest.raises(RetrievalError, match="no q.weight:B"):
        merge_update({"q.weight": w}, {"q.weight:A": a})
    with pytest.raises(RetrievalError, match="no q.weight:rows"):
        merge_update({"q.weight": w}, {"q.weight:R": a})
    with pytest.raises(RetrievalError, match="unknown kind"):
        merge_update({"q.weight": w}, {"q.weight:Z": a})


def test_compact_update_keeps_a_low_rank_change_and_the_moved_rows_only() -> None:
    rng = np.random.default_rng(1)
    linear = "encoder.layer.0.attention.self.query.weight"
    base = {linear: rng.normal(size=(8, 6)).astype(np.float32),
            "embeddings.word_embeddings.weight": rng.normal(size=(10, 6)).astype(np.float32),
            "encoder.layer.0.output.LayerNorm.bias": np.zeros(6, np.float32),
            "pooler.dense.weight": np.eye(6, dtype=np.float32)}
    low_rank = (rng.normal(size=(8, 2)) @ rng.normal(size=(2, 6))).astype(np.float32) * 0.01
    tuned = dict(base)
    tuned[linear] = base[linear] + low_rank
    moved = base["embeddings.word_embeddings.weight"] * (1 - 1e-5)  # the rest only decayed
    moved[[2, 7]] += 0.05
    tuned["embeddings.word_embeddings.weight"] = moved
    tuned["encoder.layer.0.output.LayerNorm.bias"] = np.full(6, 0.1, np.float32)
    update = compact_update(base, tuned, rank=2, row_tolerance=1e-3)
    assert update[f"{linear}:A"].shape == (2, 6) and update[f"{linear}:B"].shape == (8, 2)
    assert update["embeddings.word_embeddings.weight:rows"].tolist() == [2, 7]
    assert not any(k.startswith("pooler") for k in update)  # unchanged weights are left out
    assert all(v.dtype in (np.float16, np.int32) for v in update.values())
    merged = merge_update(base, update)
    for key in (linear, "encoder.layer.0.output.LayerNorm.bias"):
        np.testing.assert_allclose(merged[key], tuned[key], atol=2e-3)
    np.testing.assert_allclose(merged["embeddings.word_embeddings.weight"][[2, 7]],
                               moved[[2, 7]], atol=2e-3)


class _Words:
    """A whitespace tokenizer over a fixed vocabulary (the `tokenizers` batch interface)."""

    vocab = ["pad", "wifi", "on", "off", "alarm", "set", "why", "sky", "blue"]

    def encode_batch(self, texts: list[str]) -> list[Any]:
        out = []
        for text in texts:
            ids = [self.vocab.index(w) for w in text.split()]
            pad = 3 - len(ids)
            out.append(type("Encoding", (), {"ids": ids + [0] * pad,
                                             "attention_mask": [1] * len(ids) + [0] * pad}))
        return out


def test_no_tool_texts_are_negatives_of_every_anchor_never_a_target() -> None:
    """With a bag-of-words model (one-hot embeddings, mean-pooled) the cosines are exact: a
    no-tool text sharing no word with the anchors costs nearly nothing; one equal to an
    anchor ties with its positive (ln 2 for that anchor, half of it over the batch of 2)."""
    import torch

    class BagOfWords(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = torch.nn.Embedding.from_pretrained(torch.eye(len(_Words.vocab)))

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return type("Output", (), {"last_hidden_state": self.table(input_ids)})

    batch = [Triple(0, "wifi on", "on wifi", "alarm set"),
             Triple(1, "alarm set", "set alarm", "wifi off")]
    model, words = BagOfWords(), _Words()
    plain = _batch_loss(model, words, batch, 20.0).item()
    far = _batch_loss(model, words, batch, 20.0, ["why sky blue"]).item()
    near = _batch_loss(model, words, batch, 20.0, ["wifi on"]).item()
    # an unrelated text has cosine 0 with both anchors: e^0 beside the positive's e^20
    assert far == pytest.approx(plain, abs=1e-6)
    # "wifi on" equals the first anchor: its softmax splits between positive and that text
    assert near == pytest.approx(plain + np.log(2) / 2, abs=1e-4)


def _base_dir(path: Path) -> Path:
    from safetensors.numpy import save_file

    path.mkdir()
    save_file({"q.weight": np.eye(3, dtype=np.float32)}, str(path / "model.safetensors"))
    (path / "config.json").write_text('{"hidden_size": 3}')
    (path / "tokenizer.json").write_text("{}")
    return path


def _update_file(path: Path, arrays: dict[str, np.ndarray],
                 digest: str | None = None) -> Path:
    blob = update_bytes(arrays)
    path.write_bytes(blob)
    path.with_suffix(".json").write_text(
        json.dumps({"sha256": digest or hashlib.sha256(blob).hexdigest()}))
    return path


def test_merged_model_dir_is_keyed_by_the_update_digest(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    base = _base_dir(tmp_path / "base")
    update = {"q.weight:A": np.ones((1, 3)), "q.weight:B": np.full((3, 1), 0.5)}
    first = update_model_dir(base, _update_file(tmp_path / "a.npz", update), tmp_path / "cache")
    np.testing.assert_allclose(load_file(str(first / "model.safetensors"))["q.weight"],
                               np.eye(3) + 0.5)
    assert (first / "tokenizer.json").is_file() and (first / "config.json").is_file()
    assert update_model_dir(base, tmp_path / "a.npz", tmp_path / "cache") == first  # cached
    update["q.weight:B"] = update["q.weight:B"] * 2
    second = update_model_dir(base, _update_file(tmp_path / "b.npz", update), tmp_path / "cache")
    # same config and weight size: the record keeps the identities (index, CT2 key) apart
    identities = {encoder_identity(d, 128) for d in (base, first, second)}
    assert second != first and len(identities) == 3


def test_update_file_is_checked(tmp_path: Path) -> None:
    path = _update_file(tmp_path / "x.npz", {"q.weight:A": np.ones((1, 3))}, digest="0" * 64)
    with pytest.raises(RetrievalError, match="SHA-256"):
        load_update(path)
    with pytest.raises(RetrievalError, match="fit-encoder"):
        load_update(tmp_path / "missing.npz")


def test_fit_encoder_writes_an_update_the_retriever_runs_with(
        tmp_path: Path, small_catalog: Any, encoder: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`toolrec tools fit-encoder` end to end on 12 tools: a real (tiny) fit, compacted,
    written with its digest; `retrieval.encoder_update` then merges and runs it."""
    from click.testing import CliRunner

    import retrieval.cli as tools_cli
    from retrieval.config import RetrievalConfig
    from retrieval.retriever import Retriever
    from toolrec.cli import cli

    cache = tmp_path / "cache"
    base = Retriever(RetrievalConfig(cache_dir=cache), catalog=small_catalog, encoder=encoder)
    monkeypatch.setattr(tools_cli, "_retriever", lambda settings, **kw: base)
    monkeypatch.setenv("TOOLREC_RETRIEVAL__CACHE_DIR", str(cache))
    out = tmp_path / "update.npz"
    result = CliRunner().invoke(cli, ["tools", "fit-encoder", "--out", str(out),
                                      "--update-rank", "4", "--no-tool-per-batch", "2",
                                      "--no-framed"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert meta["catalog_hash"] == small_catalog.hash and meta["no_tool_texts"] > 0
    assert meta["steps"] >= 1 and f"-> {out}" in result.output

    tuned = Retriever(RetrievalConfig(cache_dir=cache, encoder_update=True,
                                      encoder_update_path=out), catalog=small_catalog)
    text = "switch the wifi on"
    assert tuned.encoder_id != base.encoder_id  # keys its own index and conversion
    assert not np.allclose(tuned.encode([text])[0], base.encode([text])[0])
    assert tuned.search(text, k=1)[0].tool_id == "connectivity.wifi.on"
