"""Faust transports of toolrec, selected by the broker URL scheme (Faust's own extension
point, the `faust.transports` entry points in pyproject.toml):

- `toolrec://host:port` — Faust's aiokafka transport whose consumer flushes the producer
  before committing offsets. Faust's at-least-once waits only for messages *attached* to
  the committed events, not for table changelog writes; without the flush a crash right
  after a commit could lose state updates of committed events.
- `toolrec-tansu://host:port` — the same, plus corrected end offsets for tansu's
  ListOffsets defect (`infra.compat`), which Faust's table recovery relies on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from infra.compat import true_end_offsets
from toolrec.errors import StreamError


class DurableConsumer(faust_aiokafka.Consumer):
    """Commits an offset only after every write made while processing it is on the broker."""

    async def _commit_offsets(
        self, offsets: Mapping[TP, int], start_new_transaction: bool = True
    ) -> bool:
        await self.app.producer.flush()
        return await super()._commit_offsets(offsets, start_new_transaction)


class Transport(faust_aiokafka.Transport):
    Consumer = DurableConsumer


class TansuConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Highwaters (used by changelog recovery) from real Fetch responses."""

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


class TansuConsumer(DurableConsumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return TansuConsumerThread(self, loop=self.loop, beacon=self.beacon)


class TansuTransport(faust_aiokafka.Transport):
    Consumer = TansuConsumer
