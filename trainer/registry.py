"""The model registry: a Delta table `models` under the lake root, an artifact directory of
LoRA adapters, and announcements of champion changes on `toolrec.models`.

One row per model version (`v1`, `v2`, …; the table's schema is `lakehouse.tables.
MODELS_SCHEMA`): parent, base model, adapter path, the `samples` Delta version range it was
trained on (`data_version_from` exclusive, `data_version_to` inclusive — the next refresh
reads from the *champion's* `data_version_to`, so data seen by a refresh that promoted
nothing is read again), sample counts, every metric and the training weight summary
(`metrics` JSON), the gate's outcome, reasons, checks against the champion and the SFT
baseline and its evidence counts (`decision` JSON), status and timestamps. The adapter
directory of a trained version also holds `training_weights.parquet` (per sample: id,
label, calibrated and trained weight). Statuses:

    candidate    registered, not (yet) promoted (the gate found not enough evidence, or the
                 champion changed during its refresh)
    champion     the one model serving; at most one row at a time
    rejected     failed the evaluation gate
    retired      a former champion superseded by a later promotion (may be promoted again)
    rolled_back  a former champion an operator rolled back (promote it explicitly to reuse)

The SFT baseline (`Registry.baseline`) is fixed: `training.baseline_version`, else the
first version imported with `import_adapter` (`toolrec models register`: the bootstrap SFT),
else the base model. Every candidate is gated against it as well as against the champion.

Every status change that touches two rows (the new and the old champion) is ONE Delta
commit (a MERGE on `version`), so a reader never sees zero or two champions; the commit's
metadata names the action. Writers serialize on a file lock (`<artifact_dir>/.registry.lock`;
one writer per Delta table, DESIGN.md §5). Delta's own history is the audit log.

Artifacts: `<artifact_dir>/<version>/` holds the adapter files and `manifest.json` (sizes
and SHA-256 of every file), published by an atomic rename of a finished temporary
directory (`publish_artifact`). `verify_artifact` re-checks the manifest; a missing or
corrupt adapter raises `AdapterError` and no row changes, so the champion keeps serving.

Announcements (JSON on `settings.kafka.topics.models`, key `champion`, one partition so
order holds): {"schema": "model-announcement/1", "version", "adapter_path", "action":
"promote" | "rollback", "ts" (ms), "base_model", "previous"}. A version of "base" with a
null adapter means: serve the base model. Serving follows the topic and, at start, asks
`Registry.champion()`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from contracts.models import ANNOUNCEMENT_SCHEMA, BASE_VERSION
from lakehouse.tables import MODELS_SPEC
from toolrec.durable import FileLock, fsync_dir, now_ms
from toolrec.errors import TrainerError

if TYPE_CHECKING:
    from deltalake import DeltaTable

    from lakehouse.config import LakeConfig
    from toolrec.kafka import KafkaConfig
    from trainer.config import TrainingConfig

__all__ = [
    "AdapterError",
    "AnnounceError",
    "ModelRecord",
    "Registry",
    "RegistryError",
    "Status",
    "publish_artifact",
    "verify_artifact",
]

log = logging.getLogger(__name__)

Status = Literal["candidate", "champion", "rejected", "retired", "rolled_back"]
Action = Literal["promote", "rollback"]
STATUSES: tuple[str, ...] = ("candidate", "champion", "rejected", "retired", "rolled_back")
MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"


class RegistryError(TrainerError):
    """The registry table is unreadable or an operation is not allowed in its state."""


class AdapterError(TrainerError):
    """A model's adapter directory is missing or does not match its manifest."""


class AnnounceError(TrainerError):
    """The registry changed but the announcement on toolrec.models failed."""


@dataclass(frozen=True)
class ModelRecord:
    """One registry row (metrics and decision decoded from JSON)."""

    version: str
    seq: int
    parent: str | None
    base_model: str
    adapter_path: str
    data_version_from: int | None
    data_version_to: int | None
    n_train: int = 0
    n_new: int = 0
    n_replay: int = 0
    n_holdout: int = 0
    n_desirable: int = 0
    n_undesirable: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)
    status: Status = "candidate"
    created_ts: int = 0
    promoted_ts: int | None = None
    updated_ts: int = 0
    note: str | None = None

    @property
    def adapter_dir(self) -> Path:
        return Path(self.adapter_path)

    @property
    def imported(self) -> bool:
        """Registered from an adapter trained elsewhere (`Registry.import_adapter`)."""
        return "imported_from" in self.metrics

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["metrics"] = json.dumps(self.metrics, sort_keys=True, default=float)
        row["decision"] = json.dumps(self.decision, sort_keys=True, default=str)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ModelRecord:
        values = dict(row)
        values["metrics"] = json.loads(values.get("metrics") or "{}")
        values["decision"] = json.loads(values.get("decision") or "{}")
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})


# ------------------------------------------------------------------------- artifacts


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def publish_artifact(tmp_dir: Path, final_dir: Path, *, info: dict[str, Any]) -> Path:
    """Write `manifest.json` (file sizes + SHA-256, `info`) into the finished `tmp_dir`,
    flush it to disk and rename it to `final_dir` atomically. Returns `final_dir`."""
    files = sorted(p for p in tmp_dir.rglob("*") if p.is_file() and p.name != MANIFEST)
    if not any(p.name == "adapter_config.json" for p in files):
        raise AdapterError(f"{tmp_dir} holds no adapter_config.json; nothing to publish")
    manifest = {
        **info,
        "files": {
            str(p.relative_to(tmp_dir)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
            for p in files
        },
    }
    (tmp_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    for path in [*files, tmp_dir / MANIFEST]:
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    if final_dir.exists():
        raise AdapterError(
            f"{final_dir} already exists; versions are never overwritten (remove it if it is "
            "an orphan not in the registry)"
        )
    tmp_dir.rename(final_dir)
    fsync_dir(final_dir.parent)
    return final_dir


def verify_artifact(adapter_dir: Path, *, version: str = "?") -> Path:
    """Check that `adapter_dir` exists and matches its manifest. Raises AdapterError."""
    adapter_dir = Path(adapter_dir)
    fix = "roll back (`toolrec models rollback`) or promote another version; retrain if needed"
    manifest_path = adapter_dir / MANIFEST
    if not manifest_path.is_file():
        raise AdapterError(
            f"the adapter of {version} is missing: {manifest_path} does not exist; {fix}"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError) as exc:
        raise AdapterError(
            f"the manifest {manifest_path} of {version} is corrupt ({exc}); {fix}"
        ) from exc
    for name, expected in files.items():
        path = adapter_dir / name
        if not path.is_file():
            raise AdapterError(f"the adapter of {version} lacks {path}; {fix}")
        if path.stat().st_size != expected["bytes"] or _sha256(path) != expected["sha256"]:
            raise AdapterError(
                f"the adapter file {path} of {version} is corrupt (size or SHA-256 differs from "
                f"its manifest); {fix}"
            )
    return adapter_dir


# -------------------------------------------------------------------------- registry


class Registry:
    """Read and change the registry; announce champion changes. Cheap to construct."""

    def __init__(
        self, lake: LakeConfig, training: TrainingConfig, kafka: KafkaConfig | None = None
    ) -> None:
        from lakehouse.tables import table_uri

        self.lake = lake
        self.training = training
        self.kafka = kafka
        self.uri = table_uri(lake, training.registry_table)
        self.artifact_dir = Path(training.artifact_dir).expanduser().resolve()
        self.write_lock = FileLock(self.artifact_dir / ".registry.lock", what="registry lock")

    # ------------------------------------------------------------------ reading

    def _storage(self) -> dict[str, str] | None:
        return dict(self.lake.storage_options) or None

    def _table(self) -> DeltaTable | None:
        from deltalake import DeltaTable

        if not DeltaTable.is_deltatable(self.uri, storage_options=self._storage()):
            return None
        return DeltaTable(self.uri, storage_options=self._storage())

    def _ensure_table(self) -> DeltaTable:
        from deltalake import DeltaTable

        table = self._table()
        if table is not None:
            return table
        if "://" not in self.uri:
            Path(self.uri).mkdir(parents=True, exist_ok=True)
        return DeltaTable.create(
            self.uri, MODELS_SPEC.schema, mode="ignore", name=self.training.registry_table,
            description=MODELS_SPEC.description, storage_options=self._storage(),
        )

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

    def baseline(self) -> ModelRecord | None:
        """The fixed SFT baseline (module doc); None means the base model."""
        if self.training.baseline_version is not None:
            return self.get(self.training.baseline_version)
        imported = [r for r in self.records() if r.imported]
        return imported[0] if imported else None

    def next_seq(self) -> int:
        """A sequence number no registered version and no artifact directory uses."""
        used = [r.seq for r in self.records()]
        if self.artifact_dir.is_dir():
            used += [int(p.name[1:]) for p in self.artifact_dir.iterdir()
                     if p.name.startswith("v") and p.name[1:].isdigit()]
        return max(used, default=0) + 1

    def artifact_path(self, version: str) -> Path:
        return self.artifact_dir / version

    # ------------------------------------------------------------------ writing

    def _merge(self, records: list[ModelRecord], action: str) -> None:
        """Upsert `records` on `version` in ONE Delta commit."""
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
            )
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )

    def _promotion(self, record: ModelRecord, ts: int) -> list[ModelRecord]:
        """`record` as champion plus the current champion (if another) retired."""
        changes = [replace(record, status="champion", promoted_ts=ts, updated_ts=ts)]
        current = self.champion()
        if current is not None and current.version != record.version:
            changes.append(replace(current, status="retired", updated_ts=ts))
        return changes

    def register(self, record: ModelRecord, *, promote: bool) -> ModelRecord:
        """Write a new version's row (the last step of a refresh). With `promote`, it
        becomes champion in the same commit, unless the champion changed since the
        candidate was evaluated against it (`record.parent`): then it stays a candidate."""
        verify_artifact(record.adapter_dir, version=record.version)
        with self.write_lock.held(timeout_s=60):
            if any(r.version == record.version for r in self.records()):
                raise RegistryError(f"version {record.version} is already registered")
            ts = now_ms()
            record = replace(record, created_ts=record.created_ts or ts, updated_ts=ts)
            current = self.champion()
            current_version = current.version if current else None
            if promote and current_version != record.parent:
                note = (f"not promoted: the champion changed from {record.parent} to "
                        f"{current_version} during the refresh")
                record = replace(record, status="candidate", note=note)
                promote = False
            if promote:
                self._merge(self._promotion(record, ts), "register+promote")
                return replace(record, status="champion", promoted_ts=ts)
            self._merge([record], f"register:{record.status}")
            return record

    def promote(self, version: str) -> ModelRecord:
        """Make `version` the champion (its adapter is verified first) and announce it."""
        with self.write_lock.held(timeout_s=60):
            record = self.get(version)
            if record.status == "champion":
                raise RegistryError(f"{version} is already the champion")
            verify_artifact(record.adapter_dir, version=version)
            previous = self.champion()
            ts = now_ms()
            self._merge(self._promotion(record, ts), "promote")
        promoted = replace(record, status="champion", promoted_ts=ts, updated_ts=ts)
        self.announce(promoted, "promote", previous=previous.version if previous else None)
        return promoted

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
            self._merge(changes, "rollback")
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

    def import_adapter(self, adapter_dir: Path, base_model: Path, *, promote: bool,
                       note: str | None = None) -> ModelRecord:
        """Register an adapter trained elsewhere (e.g. the bootstrap SFT) as a new version:
        its files are copied into the artifact directory with a manifest. With `promote` it
        becomes champion and is announced. Its data range is empty, so the first refresh
        after it reads every sample."""
        adapter_dir = Path(adapter_dir)
        if not (adapter_dir / "adapter_config.json").is_file():
            raise AdapterError(
                f"no LoRA adapter at {adapter_dir} (adapter_config.json missing); pass the "
                "directory `save_pretrained` wrote"
            )
        with self.write_lock.held(timeout_s=60):
            seq = self.next_seq()
        version = f"v{seq}"
        tmp = self.artifact_dir / f"{TMP_PREFIX}{version}-import-{os.getpid()}"
        shutil.copytree(adapter_dir, tmp, ignore=shutil.ignore_patterns(MANIFEST, "*.tmp"))
        try:
            final = publish_artifact(tmp, self.artifact_path(version), info={
                "version": version, "imported_from": str(adapter_dir.resolve()),
                "base_model": str(base_model), "created_ts": now_ms(),
            })
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        previous = self.champion()
        record = ModelRecord(
            version=version, seq=seq, parent=previous.version if previous else None,
            base_model=str(base_model), adapter_path=str(final), data_version_from=None,
            data_version_to=None, metrics={"imported_from": str(adapter_dir.resolve())},
            decision={"promote": promote, "reasons": ["imported"]},
            status="candidate", note=note or f"imported from {adapter_dir}",
        )
        record = self.register(record, promote=promote)
        if record.status == "champion":
            self.announce(record, "promote", previous=previous.version if previous else None)
        return record

    def cleanup_orphans(self) -> list[Path]:
        """Remove temporary and unregistered artifact directories left by a killed refresh.
        Call it only while holding the refresh lock."""
        if not self.artifact_dir.is_dir():
            return []
        known = {r.version for r in self.records()}
        removed = []
        for path in self.artifact_dir.iterdir():
            orphan = path.is_dir() and path.name.startswith("v") and path.name not in known
            if path.is_dir() and (path.name.startswith(TMP_PREFIX) or orphan):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        if removed:
            log.warning("removed %d leftover artifact dirs: %s", len(removed),
                        [p.name for p in removed])
        return removed

    # ------------------------------------------------------------------ announcing

    def announce(
        self, record: ModelRecord | None, action: Action, *, previous: str | None = None
    ) -> dict[str, Any] | None:
        """Publish a champion change on toolrec.models (no-op without Kafka settings or
        when `announce` is off). Raises AnnounceError naming the broker on failure."""
        if self.kafka is None or not self.training.announce:
            return None
        message = {
            "schema": ANNOUNCEMENT_SCHEMA,
            "version": record.version if record else BASE_VERSION,
            "adapter_path": record.adapter_path if record else None,
            "base_model": record.base_model if record else None,
            "action": action,
            "previous": previous,
            "ts": now_ms(),
        }
        _send(self.kafka, self.kafka.topics.models, message)
        log.info("announced %s of %s on %s", action, message["version"], self.kafka.topics.models)
        return message

    def announce_champion(self) -> dict[str, Any] | None:
        """Re-announce the current champion (idempotent for followers): used at daemon start
        so a change whose announcement was lost in a crash still reaches serving."""
        champion = self.champion()
        return None if champion is None else self.announce(champion, "promote")


def _send(kafka: KafkaConfig, topic: str, message: dict[str, Any]) -> None:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    producer = None
    try:
        producer = KafkaProducer(**kafka.client_kwargs(), acks="all", max_block_ms=10_000,
                                 request_timeout_ms=10_000)
        producer.send(topic, key=b"champion", value=json.dumps(message).encode()).get(timeout=15)
        producer.flush(timeout=10)
    except KafkaError as exc:
        raise AnnounceError(
            f"could not announce {message['action']} of {message['version']} on {topic} via "
            f"{kafka.bootstrap_servers}: {exc!r}; the registry is updated — re-announce with "
            "`toolrec models announce` once the broker is reachable"
        ) from exc
    finally:
        if producer is not None:
            producer.close(timeout=5)
