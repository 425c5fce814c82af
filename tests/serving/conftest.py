"""Fixtures of the serving tests: a tiny Llama that has learnt the suggestion-list format,
a small real SysToolKit subset with its index, settings that point everything (spool,
lake, registry artifacts, state) into tmp dirs, and a server running in a thread.

Costs are paid once per session: the tiny model and its SFT (`tiny_start` in
tests/conftest.py, shared with the loop tests) merged into one checkpoint, and the index over
~30 tools.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CATEGORIES = ("battery", "connectivity", "clock", "display", "sound", "dnd")
TOOLS_PER_CATEGORY = 5
GENERATOR = dict(n_suggestions=3, max_tools=3, max_recent=1, max_suggestion_words=8)


@pytest.fixture(scope="session")
def catalog_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real subset of SysToolKit (a few categories), so the index builds in seconds."""
    from retrieval.catalog import write_catalog

    data = json.loads((Path(__file__).parents[2] / "retrieval/data/systoolkit.json").read_text())
    picked: list[dict[str, Any]] = []
    for category in CATEGORIES:
        picked += [t for t in data["tools"] if t["category"] == category][:TOOLS_PER_CATEGORY]
    path = tmp_path_factory.mktemp("catalog") / "systoolkit-subset.json"
    write_catalog(picked, path)
    return path


@pytest.fixture(scope="session")
def retriever(catalog_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One warmed Retriever over the subset, shared by every app of the session."""
    from retrieval import RetrievalConfig, Retriever

    config = RetrievalConfig(catalog_path=catalog_path,
                             cache_dir=tmp_path_factory.mktemp("retrieval-cache"))
    return Retriever(config).warm()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_start: Any) -> Path:
    """The session's tiny model with its SFT adapter (`tiny_start`, tests/conftest.py: the
    one recipe that teaches the tiny model the list format) merged in and saved as a plain
    checkpoint, so each hot-swap version can be a LoRA on top of it; read-only for tests."""
    from generator.loading import apply_adapter, load_model
    from tests.conftest import one_torch_thread

    path = tmp_path_factory.mktemp("serving-model") / "tiny"
    with one_torch_thread():
        model, tokenizer = load_model(tiny_start.model_dir)
        merged = apply_adapter(model, tiny_start.adapter_dir, merge=True)
        merged.save_pretrained(str(path))
        tokenizer.save_pretrained(str(path))
    return path


def make_lora(model_dir: Path, out_dir: Path, seed: int) -> Path:
    """A small LoRA adapter for the tiny model (random A, zero B: a distinct version that
    generates like the base)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from generator.loading import load_model

    torch.manual_seed(seed)
    model, _ = load_model(model_dir)
    peft = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))
    peft.save_pretrained(out_dir)
    return out_dir


def make_settings(tmp_path: Path, base_model_dir: Path, catalog_path: Path, *,
                  kafka: Any = None, **serving: Any) -> Any:
    """Settings with every path under tmp_path; `serving` overrides ServingConfig fields."""
    from generator.config import DecodingConfig, GeneratorConfig
    from infra.config import InfraConfig
    from lakehouse.config import LakeConfig
    from retrieval import RetrievalConfig
    from serving.config import ServingConfig
    from toolrec.config import Settings
    from toolrec.kafka import KafkaConfig
    from trainer.config import TrainerConfig, TrainingConfig

    decoding = DecodingConfig(max_new_tokens=20, temperature=0.7, explore_temperature=1.0,
                              explore_candidates=2)
    generator = GeneratorConfig(model_dir=base_model_dir, decoding=decoding, **GENERATOR)
    training = TrainingConfig(artifact_dir=tmp_path / "artifacts")
    defaults: dict[str, Any] = dict(
        follow="static", spool_dir=tmp_path / "spool", torch_threads=1, max_pending=32,
        engine_cache_dir=tmp_path / "engines",
        registry_poll_s=0.0, drain_timeout_s=5.0 if kafka else 0.2,
        send_timeout_s=3.0 if kafka else 0.5,
        retry_backoff_s=0.2,
        retry_backoff_max_s=1.0,
    )
    return Settings(
        kafka=kafka or KafkaConfig(bootstrap_servers="127.0.0.1:1"),
        infra=InfraConfig(state_dir=tmp_path / "state"),
        lake=LakeConfig(root=str(tmp_path / "lake")),
        retrieval=RetrievalConfig(catalog_path=catalog_path, cache_dir=tmp_path / "rc"),
        trainer=TrainerConfig(generator=generator, training=training),
        serving=ServingConfig(**{**defaults, **serving}),
    )


@pytest.fixture
def settings_factory(tmp_path: Path, model_dir: Path,
                     catalog_path: Path) -> Callable[..., Any]:
    def factory(**kwargs: Any) -> Any:
        return make_settings(tmp_path, model_dir, catalog_path, **kwargs)

    return factory


@pytest.fixture
def serve(retriever: Any) -> Iterator[Callable[..., Any]]:
    """Start the API for some settings on a free port; every server is stopped at the end."""
    from infra.processes import free_port
    from serving.main import create_app
    from serving.server import ThreadedServer
    from serving.services import Services

    servers: list[ThreadedServer] = []

    def start(settings: Any, *, wait_ready: bool = True) -> ThreadedServer:
        services = Services.build(settings, retriever=retriever)
        server = ThreadedServer(create_app(settings, services=services), port=free_port())
        servers.append(server.start())
        server.services = services  # type: ignore[attr-defined]
        if wait_ready:
            wait_ready_version(server.url)
        return server

    yield start
    for server in servers:
        server.stop()


def wait_ready_version(url: str, version: str | None = None, timeout_s: float = 60.0) -> dict:
    """Poll /readyz until ready (and serving `version`, if given)."""
    deadline = time.monotonic() + timeout_s
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = httpx.get(f"{url}/readyz", timeout=10)
        state = response.json()
        if response.status_code == 200 and (version is None or state["model_version"] == version):
            return state
        time.sleep(0.1)
    raise AssertionError(f"not ready with {version} within {timeout_s} s: {state}")


def read_topic(kafka: Any, topic: str, *, until: Callable[[list[Any]], bool] | None = None,
               timeout_s: float = 30.0) -> list[Any]:
    """Every message of `topic` from the beginning, read to the end of the log; with
    `until`, keep reading (events are sent in the background) until it holds."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False,
                             group_id=None, auto_offset_reset="earliest")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        messages: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                messages.extend(batch)
            marks = [consumer.highwater(tp) for tp in tps]
            at_end = all(m is not None and consumer.position(tp) >= m
                         for tp, m in zip(tps, marks, strict=True))
            if at_end and (until is None or until(messages)):
                return messages
        raise AssertionError(f"{topic}: condition not met within {timeout_s} s "
                             f"({len(messages)} messages read)")
    finally:
        consumer.close()


def metric(url: str, sample: str) -> float:
    """The value of one sample (name with labels, as printed) of /metrics; 0 if absent."""
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def ids_of(messages: list[Any], field: str = "request_id") -> list[str]:
    return [json.loads(m.value)[field] for m in messages]


BASE_REQUEST = {
    "user_id": "alice",
    "session_id": "s-1",
    "query": "my battery is low",
    "response": "Your battery is at 12%.",
    "recent_queries": ["turn on wifi"],
    "context": {"battery": 12, "charging": False, "network": "wifi", "hour": 21},
    "n": 3,
}
