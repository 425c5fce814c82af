"""The persisted index: built once, loaded when unchanged, rebuilt when the catalog changes."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from retrieval.catalog import Catalog, parse_records
from retrieval.config import RetrievalConfig
from retrieval.encoder import Encoder
from retrieval.index import INDEX_DIRNAME, IndexParams, ToolIndex
from retrieval.retriever import Retriever
from toolrec.errors import RetrievalError

from .conftest import SMALL_IDS, records


def _fresh(catalog: Catalog, encoder: Encoder, cache: Path) -> Retriever:
    return Retriever(RetrievalConfig(cache_dir=cache), catalog=catalog, encoder=encoder)


def test_build_then_load(small_catalog: Catalog, encoder: Encoder, tmp_path: Path) -> None:
    first = _fresh(small_catalog, encoder, tmp_path).index
    assert first.rebuilt
    [meta_file] = (tmp_path / INDEX_DIRNAME).glob("*/meta.json")
    meta = json.loads(meta_file.read_text())
    assert meta["catalog_hash"] == small_catalog.hash
    assert meta["n_tools"] == len(small_catalog)
    second = _fresh(small_catalog, encoder, tmp_path).index
    assert not second.rebuilt
    assert (second.phrases == first.phrases).all()


def test_rebuilt_when_catalog_changes(catalog: Catalog, small_catalog: Catalog,
                                      encoder: Encoder, tmp_path: Path) -> None:
    assert _fresh(small_catalog, encoder, tmp_path).index.rebuilt
    changed = records(catalog, SMALL_IDS)
    changed[0]["examples"].append("get me on the wireless lan")
    changed_catalog = parse_records(changed, source="changed")
    assert changed_catalog.hash != small_catalog.hash
    retriever = _fresh(changed_catalog, encoder, tmp_path)
    assert retriever.index.rebuilt
    assert retriever.index.meta["catalog_hash"] == changed_catalog.hash
    assert len(list((tmp_path / INDEX_DIRNAME).glob("*/meta.json"))) == 2  # old one kept
    assert _fresh(small_catalog, encoder, tmp_path).index.rebuilt is False
    assert len(retriever.index.phrases) == len(small_catalog.tools[0].texts()) + sum(
        len(t.texts()) for t in small_catalog.tools[1:]) + 1
    hits = retriever.search("get me on the wireless lan", k=1)
    assert hits[0].tool_id == "connectivity.wifi.on"


def test_corrupt_index_is_rebuilt(small_catalog: Catalog, encoder: Encoder,
                                  tmp_path: Path) -> None:
    assert _fresh(small_catalog, encoder, tmp_path).index.rebuilt
    [hnsw] = (tmp_path / INDEX_DIRNAME).glob("*/phrases.hnsw")
    hnsw.write_bytes(b"garbage")
    retriever = _fresh(small_catalog, encoder, tmp_path)
    assert retriever.index.rebuilt
    assert retriever.search("switch on wifi", k=1)[0].tool_id == "connectivity.wifi.on"


def test_different_encoder_settings_rebuild(small_catalog: Catalog, encoder: Encoder,
                                            tmp_path: Path) -> None:
    assert _fresh(small_catalog, encoder, tmp_path).index.rebuilt
    config = RetrievalConfig(cache_dir=tmp_path, max_seq_length=64)
    other = Retriever(config, catalog=small_catalog, encoder=Encoder(max_seq_length=64))
    assert other.index.rebuilt


def test_processes_starting_together_build_one_index(small_catalog: Catalog, encoder: Encoder,
                                                     tmp_path: Path) -> None:
    """The worker and the API open a cold cache at the same moment: one builds, the others
    wait for it and load its index (two racing builds failed to rename onto each other)."""
    gate = threading.Barrier(4)

    def open_index(_: int) -> ToolIndex:
        gate.wait()
        return ToolIndex.open(small_catalog, encoder, tmp_path, IndexParams(),
                              encoder_id="test-encoder")

    with ThreadPoolExecutor(4) as pool:
        indexes = list(pool.map(open_index, range(4)))
    assert sorted(index.rebuilt for index in indexes) == [False, False, False, True]
    assert all((index.phrases == indexes[0].phrases).all() for index in indexes)
    assert len([p for p in (tmp_path / INDEX_DIRNAME).iterdir() if p.is_dir()]) == 1


def test_an_unwritable_cache_is_a_clear_error(small_catalog: Catalog, encoder: Encoder,
                                              tmp_path: Path) -> None:
    not_a_dir = tmp_path / "cache"
    not_a_dir.write_text("a file where the cache directory should be")
    with pytest.raises(RetrievalError, match="set retrieval.cache_dir to a writable directory"):
        ToolIndex.open(small_catalog, encoder, not_a_dir, IndexParams(), encoder_id="test")


def test_an_encoder_of_another_width_gets_its_own_index(small_catalog: Catalog, encoder: Encoder,
                                                        tiny_mpnet_dir: Path,
                                                        tmp_path: Path) -> None:
    """The index takes its width from the encoder's vectors: a 48-wide model builds,
    reloads from the cache and searches; the default encoder on the same cache rebuilds."""
    def other() -> Retriever:
        return _fresh(small_catalog, Encoder(tiny_mpnet_dir, engine="torch", threads=1),
                      tmp_path)

    built = other()
    assert built.index.rebuilt and built.index.phrases.shape[1] == 48
    reloaded = other()
    assert not reloaded.index.rebuilt and reloaded.index.centroids.shape[1] == 48
    assert len(reloaded.search("switch on wifi", k=3)) == 3
    default = _fresh(small_catalog, encoder, tmp_path).index
    assert default.rebuilt and default.phrases.shape[1] == 384


def test_the_adapter_refuses_an_encoder_of_another_width(small_catalog: Catalog,
                                                          tiny_mpnet_dir: Path,
                                                          tmp_path: Path) -> None:
    config = RetrievalConfig(cache_dir=tmp_path, adapter=True)
    retriever = Retriever(config, catalog=small_catalog,
                          encoder=Encoder(tiny_mpnet_dir, engine="torch", threads=1))
    with pytest.raises(RetrievalError, match="fitted on 384-d embeddings, the encoder gives 48-d"):
        retriever.search("wifi on")
