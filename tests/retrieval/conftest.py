"""One real Retriever (all-MiniLM-L6-v2 from the installed package, the shipped catalog)
shared by the whole session; its index is persisted under `.toolrec/retrieval`, so only the
first run on a machine pays for encoding the catalog."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from retrieval.catalog import Catalog, load_catalog, parse_records
from retrieval.config import RetrievalConfig
from retrieval.encoder import Encoder, default_model_dir
from retrieval.retriever import Retriever


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    """The configured encoder (CTranslate2 int8 by default): what the shipped linker was
    fitted with."""
    return Retriever(RetrievalConfig()).encoder


@pytest.fixture(scope="session")
def retriever(encoder: Encoder) -> Retriever:
    return Retriever(RetrievalConfig(), encoder=encoder).warm()


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


def records(catalog: Catalog, ids: list[str]) -> list[dict[str, Any]]:
    """Deep copies of some shipped records, to build small test catalogs from."""
    return [copy.deepcopy(catalog.get(i).model_dump(mode="json")) for i in ids]


SMALL_IDS = [
    "connectivity.wifi.on", "connectivity.wifi.off", "battery.saver.on", "battery.usage",
    "display.brightness.down", "clock.alarm.set", "clock.timer.set", "media.play.genre",
    "phone.call", "home.lights.on", "home.lights.off", "navigation.drive",
]


@pytest.fixture
def small_catalog(catalog: Catalog) -> Catalog:
    return parse_records(records(catalog, SMALL_IDS), source="small")


@pytest.fixture
def small_retriever(small_catalog: Catalog, encoder: Encoder, tmp_path: Path) -> Retriever:
    """A retriever over 12 tools with its own cache dir (fast to build)."""
    config = RetrievalConfig(cache_dir=tmp_path / "cache")
    return Retriever(config, catalog=small_catalog, encoder=encoder)


@pytest.fixture(scope="session")
def tiny_mpnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 48-wide, 2-layer MPNet (random weights, saved by transformers) with the bundled
    tokenizer: another architecture and width, no token type ids, nothing CTranslate2
    converts."""
    from transformers import MPNetConfig, MPNetModel

    out = tmp_path_factory.mktemp("tiny-mpnet")
    config = MPNetConfig(vocab_size=30527, hidden_size=48, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=96)
    MPNetModel(config).save_pretrained(out)
    base = default_model_dir()
    (out / "tokenizer.json").write_bytes((base / "tokenizer.json").read_bytes())
    return out
