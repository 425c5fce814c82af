"""The pair model of retrieval.crossencoder and the extra-feature hook of `tools cv`."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import pytest

from retrieval.catalog import Catalog
from retrieval.crossencoder import (
    CrossEncoder,
    Pair,
    PairSettings,
    auc,
    build_pairs,
    catalog_texts,
    contrast_texts,
    settings_key,
    tool_text,
    train,
    training_set,
)
from retrieval.crossval import CvSpec, cross_validate
from retrieval.encoder import default_model_dir
from retrieval.evaluate import CONTRAST_RESOURCE, linker_rows, load_eval_set, normalize
from retrieval.lexical import form_text
from retrieval.retriever import Retriever
from toolrec.errors import RetrievalError


def test_settings_name_what_is_wrong() -> None:
    with pytest.raises(RetrievalError, match="max_per_tool"):
        PairSettings(max_per_tool=0)
    with pytest.raises(RetrievalError, match="warmup=1"):
        PairSettings(warmup=1)


def test_pairs_of_a_tool_row_and_of_a_no_tool_twin() -> None:
    texts = [("hey, turn the wifi on?", "wifi.on", ()),
             ("why is wifi slow", None, ("wifi.on",))]
    ranked = [["wifi.on", "wifi.off", "wifi.scan"], ["wifi.on", "wifi.scan", "wifi.off"]]
    pairs = build_pairs(texts, ranked, PairSettings(negatives=1, twin_negatives=2))
    assert pairs == [Pair("turn the wifi on", "wifi.on", 1.0),  # the said form
                     Pair("turn the wifi on", "wifi.off", 0.0),
                     Pair("why is wifi slow", "wifi.on", 0.0),  # its mate's tool first
                     Pair("why is wifi slow", "wifi.scan", 0.0),
                     Pair("why is wifi slow", "wifi.off", 0.0)]


def test_training_texts_are_catalog_examples_and_contrast_pairs(catalog: Catalog) -> None:
    examples = catalog_texts(catalog, 2, seed=0)
    assert examples == catalog_texts(catalog, 2, seed=0)
    per_tool = {t.id: min(2, len(t.examples)) for t in catalog.tools}
    assert len(examples) == sum(per_tool.values())
    contrast = contrast_texts(catalog, CONTRAST_RESOURCE)
    twins = [c for c in contrast if c[1] is None]
    assert len(twins) * 2 == len(contrast)
    assert all(len(known) == 1 and known[0] in catalog for _, _, known in twins)


def test_pair_model_trains_on_no_tuning_or_eval_text(catalog: Catalog) -> None:
    """No training pair's text equals a row of a set with tuning rows (157 spoken rows
    equal catalog examples). Counted only; the fresh set has its own checks."""
    fake = SimpleNamespace(catalog=catalog, encode=lambda texts: None,
                           search=lambda text, k: [])
    pairs = training_set(fake, PairSettings(max_per_tool=1000), CONTRAST_RESOURCE)
    texts = {normalize(p.text) for p in pairs}
    rows = [r.text for name in ("catalog", "spoken", "forms") for r in load_eval_set(name)]
    assert sum(normalize(t) in texts or normalize(form_text(t)) in texts for t in rows) == 0
    assert len({p.text for p in pairs}) > 4000  # only the equal ones left out


def test_name_only_tool_side_and_its_cache_key(catalog: Catalog) -> None:
    """The name-only option shortens the tool side and names its own fit."""
    tool = catalog.tools[0]
    assert tool_text(tool) == f"{tool.name}: {tool.description}"
    assert tool_text(tool, name_only=True) == tool.name
    keys = {settings_key(PairSettings(name_only=n), catalog, CONTRAST_RESOURCE)
            for n in (False, True)}
    assert len(keys) == 2


def test_auc_counts_ties_as_half() -> None:
    assert auc(np.array([3.0, 2.0, 1.0]), np.array([True, False, False])) == 1.0
    assert auc(np.array([1.0, 1.0]), np.array([True, False])) == 0.5
    assert auc(np.array([1.0, 2.0, 3.0, 0.0]), np.array([True, True, False, False])) == 0.5
    assert np.isnan(auc(np.array([1.0]), np.array([True])))


@pytest.mark.slow
def test_pair_model_learns_and_round_trips(catalog: Catalog, tmp_path: object) -> None:
    """A few steps on four pairs move their scores apart; saved and loaded it scores alike."""
    import torch

    torch.set_num_threads(1)
    model = CrossEncoder(default_model_dir(), catalog, max_length=32)
    pairs = [Pair("turn on the wifi", "connectivity.wifi.on", 1.0),
             Pair("turn on the wifi", "connectivity.wifi.off", 0.0),
             Pair("why is the sky blue", "connectivity.wifi.on", 0.0),
             Pair("switch wifi off", "connectivity.wifi.off", 1.0)]
    losses = train(model, pairs, PairSettings(epochs=12, batch_size=4, learning_rate=1e-4,
                                              head_learning_rate=1e-2, warmup=0.0))
    assert losses[-1] < 0.3
    texts, tools = [p.text for p in pairs], [p.tool for p in pairs]
    scores = model.score(texts, tools)
    assert scores[0] > scores[1] and scores[3] > scores[2]
    path = tmp_path / "pair.pt"  # type: ignore[operator]
    model.save(path)
    again = CrossEncoder(default_model_dir(), catalog, max_length=32).load(path)
    assert np.allclose(again.score(texts, tools), scores, atol=1e-5)


@pytest.mark.slow
def test_cv_extra_feature_reaches_the_linker(retriever: Retriever) -> None:
    """An extra feature that knows the answer lets the linker link nearly every right
    top-1 (the shipped features alone: 84 % of them)."""
    gold = {r.text: r.gold for r, _ in linker_rows(retriever, contrast=False)}

    def oracle(texts: Sequence[str], best: Sequence[str]) -> np.ndarray:
        return np.array([float(gold[t] == b) for t, b in zip(texts, best, strict=True)])

    report = cross_validate(retriever, CvSpec(repeats=1, folds=2, extra=oracle))
    spoken = report["scores"]["spoken"]
    assert spoken["recall"][0] > 0.97 * spoken["recall@1"][0]
    assert spoken["precision"][0] > 0.94 and report["spec"]["extra"].endswith("oracle")
