"""Fixtures shared by every stage's tests: real local brokers, started and stopped per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.broker import LocalStack
from infra.topics import ensure_topics
from toolrec.kafka import KafkaConfig

# Nothing may download at run time: models load from local files only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalStack]:
    """A tansu broker (memory engine) on a free 127.0.0.1 port, stopped even on failure."""
    with LocalStack(tmp_path / "broker", storage="memory") as stack:
        yield stack


@pytest.fixture
def durable_broker(tmp_path: Path) -> Iterator[LocalStack]:
    """A tansu broker on the s3 engine backed by a local SeaweedFS: survives restarts."""
    with LocalStack(tmp_path / "durable", storage="s3") as stack:
        yield stack


@pytest.fixture
def kafka(broker: LocalStack) -> KafkaConfig:
    """Settings for the `broker` fixture, with the project's topics created."""
    config = broker.kafka_config()
    ensure_topics(config)
    return config
