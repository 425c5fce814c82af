"""The `models` table (the model registry's rows, `MODELS_SPEC`): reading it and changing
which version is champion. The trainer (`trainer.registry.Registry`, which adds training
results, artifacts and imports) and serving (champion lookup, admin rollback) both use it.

Every change of the champion is ONE Delta commit (a MERGE on `version`), so a reader never
sees zero or two champions; writers serialize on a file lock (`<artifact_dir>/.registry.lock`,
one writer per Delta table, DESIGN.md §5). A champion change is announced on
`toolrec.models` (key `champion`) as a `contracts.models.ModelAnnouncement` when Kafka
settings are given.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pyarrow as pa

from contracts.models import BASE_VERSION, ModelAnnouncement, ModelRecord, verify_artifact
from lakehouse.tables import MODELS_SPEC, table_uri
from toolrec.durable import FileLock, now_ms
from toolrec.errors import AnnounceError, RegistryError

if TYPE_CHECKING:
    from deltalake import DeltaTable

    from lakehouse.config import LakeConfig
    from toolrec.kafka import KafkaConfig

__all__ = ["ModelsTable"]

log = logging.getLogger(__name__)

Action = Literal["promote", "rollback"]
LOCK_NAME = ".registry.lock"


class ModelsTable:
    """The registry table `name` under the lake root; `artifact_dir` holds the adapters and
    the writers' lock. With `kafka`, champion changes are announced. Cheap to construct."""

    def __init__(self, lake: LakeConfig, name: str, artifact_dir: Path,
                 kafka: KafkaConfig | None = None) -> None:
        self.lake = lake
        self.name = name
        self.kafka = kafka
        self.uri = table_uri(lake, name)
        self.artifact_dir = Path(artifact_dir).expanduser().resolve()
        self.write_lock = FileLock(self.artifact_dir / LOCK_NAME, what="registry lock")

    # ------------------------------------------------------------------ reading

    def _storage(self) -> dict[str, str] | None:
        return dict(self.lake.storage_options) or None

    def _table(self) -> DeltaTable | None:
        from deltalake import DeltaTable

        if not DeltaTable.is_deltatable(self.uri, storage_options=self._storage()):
            return None
        return DeltaTable(self.uri, storage_options=self._storage())

    def records(self) -> list[ModelRecord]:
        """Every registered version, oldest first."""
        table = self._table()
        if table is None:
            return []
        try:
            rows = table.to_pyarrow_table().to_pylist()
        except Exception as exc:  # delta-rs raises several types for unreadable files
            raise RegistryError(f"cannot read the registry table {self.uri}: {exc}") from exc
        return sorted((ModelRecord.from_row(r) for r in rows), key=lambda r: r.seq)

    def get(self, version: str) -> ModelRecord:
        for record in self.records():
            if record.version == version:
                return record
        raise RegistryError(
            f"model version {version!r} is not in the registry {self.uri}; "
            "see `toolrec models list`"
        )

    def champion(self) -> ModelRecord | None:
        """The serving champion, or None (serve the base model)."""
        champions = [r for r in self.records() if r.status == "champion"]
        if len(champions) > 1:  # cannot happen through this API; say so loudly if it does
            raise RegistryError(
                f"the registry has {len(champions)} champions "
                f"({[r.version for r in champions]}); promote one explicitly to repair it"
            )
        return champions[0] if champions else None

    # ------------------------------------------------------------------ writing

    def _ensure_table(self) -> DeltaTable:
        from deltalake import DeltaTable

        table = self._table()
        if table is not None:
            return table
        if "://" not in self.uri:
            Path(self.uri).mkdir(parents=True, exist_ok=True)
        return DeltaTable.create(
            self.uri, MODELS_SPEC.schema, mode="ignore", name=self.name,
            description=MODELS_SPEC.description, storage_options=self._storage(),
        )

    def merge(self, records: list[ModelRecord], action: str) -> None:
        """Upsert `records` on `version` in ONE Delta commit. Hold `write_lock`."""
        from deltalake import CommitProperties

        source = pa.Table.from_pylist([r.to_row() for r in records], schema=MODELS_SPEC.schema)
        table = self._ensure_table()
        properties = CommitProperties(custom_metadata={
            "toolrec.action": action,
            "toolrec.versions": ",".join(r.version for r in records),
        })
        (
            table.merge(
                source, predicate="t.version = s.version", source_alias="s", target_alias="t",
                commit_properties=properties,
                merge_schema=True,  # a registry written before a column was added gains it
            )
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )

    def promotion(self, record: ModelRecord, ts: int) -> list[ModelRecord]:
        """`record` as champion plus the current champion (if another) retired."""
        changes = [replace(record, status="champion", promoted_ts=ts, updated_ts=ts)]
        current = self.champion()
        if current is not None and current.version != record.version:
            changes.append(replace(current, status="retired", updated_ts=ts))
        return changes

    def rollback(self, to: str | None = None) -> ModelRecord | None:
        """Demote the champion to `rolled_back` and reinstate `to` (default: the most
        recently promoted former champion; the base model when there is none). Returns the
        new champion (None: base). The target's adapter is verified before anything changes."""
        with self.write_lock.held(timeout_s=60):
            current = self.champion()
            if current is None:
                raise RegistryError("there is no champion to roll back (serving the base model)")
            target = self._rollback_target(current, to)
            if target is not None:
                verify_artifact(target.adapter_dir, version=target.version)
            ts = now_ms()
            changes = [replace(current, status="rolled_back", updated_ts=ts)]
            if target is not None:
                changes.append(replace(target, status="champion", promoted_ts=ts, updated_ts=ts))
            self.merge(changes, "rollback")
        reinstated = changes[1] if target is not None else None
        self.announce(reinstated, "rollback", previous=current.version)
        return reinstated

    def _rollback_target(self, current: ModelRecord, to: str | None) -> ModelRecord | None:
        if to == BASE_VERSION:
            return None
        if to is not None:
            target = self.get(to)
            if target.version == current.version:
                raise RegistryError(f"{to} is the champion itself; pick an earlier version")
            if target.status == "rejected":
                raise RegistryError(f"{to} was rejected by the gate; promote it explicitly")
            return target
        former = [r for r in self.records() if r.status == "retired" and r.promoted_ts]
        return max(former, key=lambda r: r.promoted_ts or 0) if former else None

    # ------------------------------------------------------------------ announcing

    def announce(
        self, record: ModelRecord | None, action: Action, *, previous: str | None = None
    ) -> ModelAnnouncement | None:
        """Publish a champion change on toolrec.models (no-op without Kafka settings).
        Raises AnnounceError naming the broker on failure."""
        if self.kafka is None:
            return None
        message = ModelAnnouncement.of(record, action, previous=previous, ts=now_ms())
        _send(self.kafka, self.kafka.topics.models, message)
        log.info("announced %s of %s on %s", action, message.version, self.kafka.topics.models)
        return message


def _send(kafka: KafkaConfig, topic: str, message: ModelAnnouncement) -> None:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    producer = None
    try:
        producer = KafkaProducer(**kafka.client_kwargs(), acks="all", max_block_ms=10_000,
                                 request_timeout_ms=10_000)
        producer.send(topic, key=b"champion", value=message.to_bytes()).get(timeout=15)
        producer.flush(timeout=10)
    except KafkaError as exc:
        raise AnnounceError(
            f"could not announce {message.action} of {message.version} on {topic} via "
            f"{kafka.bootstrap_servers}: {exc!r}; the registry is updated — re-announce with "
            "`toolrec models announce` once the broker is reachable"
        ) from exc
    finally:
        if producer is not None:
            producer.close(timeout=5)
