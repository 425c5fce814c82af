"""The toolrec-tansu:// Faust transport (streams.transport)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from streams.app import create_app
from streams.config import StreamsConfig
from streams.transport import TansuConsumerThread
from toolrec.kafka import AIOKAFKA_FETCH_MAX_WAIT_MS, TANSU_FETCH_MAX_WAIT_MS, KafkaConfig


def test_the_worker_consumer_waits_briefly_for_tansu_fetches(tmp_path: Path) -> None:
    """tansu answers an empty fetch only when its wait runs out, so the worker's consumer is
    built with a short one instead of Faust's fixed 1,500 ms (nothing is contacted here)."""
    kafka = KafkaConfig(flavor="tansu", bootstrap_servers="127.0.0.1:9")
    app = create_app(StreamsConfig(app_id="fetch-wait-test", data_dir=tmp_path), kafka)

    async def worker_consumer() -> Any:
        thread = app.consumer._new_consumer_thread()  # type: ignore[attr-defined]
        assert isinstance(thread, TansuConsumerThread)
        return thread._create_worker_consumer(app.transport)  # type: ignore[arg-type]

    consumer = asyncio.run(worker_consumer())
    assert consumer._fetch_max_wait_ms == TANSU_FETCH_MAX_WAIT_MS < 1500


def test_the_lake_sink_consumer_waits_briefly_only_on_tansu(tmp_path: Path) -> None:
    """The lake sink's aiokafka consumer takes its fetch wait from the Kafka config: short
    on tansu, aiokafka's own default on Kafka (which answers as soon as records arrive).
    Built, not started: nothing is contacted."""
    from lakehouse.config import LakeConfig
    from lakehouse.sink import Sink

    async def wait_of(flavor: str) -> int:
        kafka = KafkaConfig(flavor=flavor, bootstrap_servers="127.0.0.1:9")
        sink = Sink(LakeConfig(root=str(tmp_path / flavor)), kafka)
        return int(sink._new_consumer()._fetch_max_wait_ms)

    assert asyncio.run(wait_of("tansu")) == TANSU_FETCH_MAX_WAIT_MS < AIOKAFKA_FETCH_MAX_WAIT_MS
    assert asyncio.run(wait_of("kafka")) == AIOKAFKA_FETCH_MAX_WAIT_MS
