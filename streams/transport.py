"""Faust transports of toolrec, selected by the broker URL scheme (Faust's own extension
point, the `faust.transports` entry points in pyproject.toml):

- `toolrec://host:port` — Faust's aiokafka transport as it is. (It used to flush the
  producer before every offset commit, for the Faust table's changelog writes; the worker
  now writes its state and outputs itself and waits for them inside each batch,
  `streams.sender`, and Faust 0.15 flushes its producer before committing anyway.)
- `toolrec-tansu://host:port` — the same, plus corrected end offsets for tansu's
  ListOffsets defect (`infra.compat`), which Faust's consumer relies on for highwaters,
  and a short fetch wait (`TANSU_FETCH_MAX_WAIT_MS`): tansu answers a fetch that found no
  records when its wait runs out, not when records arrive.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from infra.compat import true_end_offsets
from toolrec.errors import StreamError
from toolrec.kafka import TANSU_FETCH_MAX_WAIT_MS


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport under the project's scheme."""


class TansuConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Highwaters (used by changelog recovery) from real Fetch responses; a short fetch
    wait (`TANSU_FETCH_MAX_WAIT_MS`)."""

    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Faust's worker consumer waits a fixed 1,500 ms for a fetch that finds nothing new
        # and passes no setting for it; aiokafka reads the value when the consumer starts.
        consumer._fetch_max_wait_ms = TANSU_FETCH_MAX_WAIT_MS
        return consumer

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        reported = await super()._highwaters(partitions)
        if self.consumer.in_transaction:
            return reported
        kafka_config = getattr(self.app, "kafka_config", None)
        if kafka_config is None:
            raise StreamError(
                "the toolrec-tansu:// transport needs app.kafka_config; build the app with "
                "streams.app.create_app, which sets it"
            )
        return cast(
            Mapping[TP, int], await true_end_offsets(kafka_config.client_kwargs(), reported)
        )


class TansuConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return TansuConsumerThread(self, loop=self.loop, beacon=self.beacon)


class TansuTransport(faust_aiokafka.Transport):
    Consumer = TansuConsumer
