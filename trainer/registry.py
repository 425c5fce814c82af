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
one writer per Delta table, DESIGN.md §5). Delta's own history is the audit log. Reading
the table, the MERGE, rollback and announcing live in `lakehouse.models.ModelsTable` (serving
uses it too); `Registry` adds what training needs: registering, promoting, importing.

Artifacts: `<artifact_dir>/<version>/` holds the adapter files and `manifest.json` (sizes
and SHA-256 of every file), published by an atomic rename of a finished temporary
directory (`publish_artifact`). `verify_artifact` re-checks the manifest; a missing or
corrupt adapter raises `AdapterError` and no row changes, so the champion keeps serving.
The manifest check and the typed row (`ModelRecord`) are contracts (`contracts.models`).
The row keeps the SHA-256 of the manifest (`artifact_sha256`); serving refuses a directory
whose manifest does not have it, or that lies outside the artifact directory.

Serving engine (issue 13): when a version becomes champion (`register(promote=True)`,
`promote`, a promoting import) its LoRA is merged into the base and converted once for
serving's fast engine (`generator.fast`, CTranslate2 `training.engine_quantization`) into
`<artifact_dir>/<version>/engine/` with its own manifest; the row records `engine_path`
and `engine_sha256`. The conversion runs before the registry lock is taken; if it fails
the version is still promoted and serving runs it on PyTorch (logged). Only the champion's and
the `training.keep_engines` most recent former champions' conversions are kept
(`prune_engines`, after each promotion): a version whose row has none is converted again
when it is promoted or rolled back to.

Announcements (`contracts.models.ModelAnnouncement` as JSON on
`settings.kafka.topics.models`, key `champion`, one partition so order holds):
{"schema": "model-announcement/1", "version", "adapter_path", "action":
"promote" | "rollback", "ts" (ms), "base_model", "previous"}. A version of "base" with a
null adapter means: serve the base model. Serving follows the topic and, at start, asks
`Registry.champion()`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.models import (
    MANIFEST,
    ModelAnnouncement,
    ModelRecord,
    Status,
    file_sha256,
    manifest_sha256,
    verify_artifact,
    version_name,
)
from lakehouse.models import ModelsTable
from toolrec.durable import fsync_dir, now_ms
from toolrec.errors import AdapterError, AnnounceError, RegistryError

if TYPE_CHECKING:
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

STATUSES: tuple[str, ...] = ("candidate", "champion", "rejected", "retired", "rolled_back")
TMP_PREFIX = ".tmp-"
ENGINE_DIR = "engine"  # <artifact_dir>/<version>/engine/: the serving-engine conversion


# ------------------------------------------------------------------------- artifacts


def publish_artifact(tmp_dir: Path, final_dir: Path, *, info: dict[str, Any]) -> Path:
    """Write `manifest.json` (file sizes + SHA-256, `info`) into the finished `tmp_dir`,
    flush it to disk and rename it to `final_dir` atomically. Returns `final_dir`."""
    files = sorted(p for p in tmp_dir.rglob("*") if p.is_file() and p.name != MANIFEST)
    if not any(p.name == "adapter_config.json" for p in files):
        raise AdapterError(f"{tmp_dir} holds no adapter_config.json; nothing to publish")
    return _publish(tmp_dir, final_dir, files, info)


def _publish(tmp_dir: Path, final_dir: Path, files: list[Path], info: dict[str, Any]) -> Path:
    manifest = {
        **info,
        "files": {
            str(p.relative_to(tmp_dir)): {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
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


def publish_engine(record: ModelRecord, quantization: str) -> ModelRecord:
    """Convert `record`'s model for serving's fast engine (LoRA merged into the base, then
    CTranslate2 `quantization`) into `<adapter dir>/engine/` with its own manifest, and return
    the record with `engine_path` and `engine_sha256`. Idempotent: an existing, intact
    conversion is kept. Raises ModelFilesError / AdapterError when the conversion fails."""
    from generator.fast import convert_model

    final = record.adapter_dir / ENGINE_DIR
    if (final / MANIFEST).is_file():
        if _intact(final, record.version):  # kept (e.g. a prune killed before deleting it)
            return replace(record, engine_path=str(final), engine_sha256=manifest_sha256(final))
        log.warning("the engine conversion of %s is damaged (e.g. a prune interrupted); "
                    "converting it again", record.version)
        shutil.rmtree(final)
    tmp = record.adapter_dir.parent / f"{TMP_PREFIX}{record.version}-engine-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        convert_model(Path(record.base_model), record.adapter_dir, tmp,
                      quantization=quantization)  # type: ignore[arg-type]
        files = sorted(p for p in tmp.rglob("*") if p.is_file() and p.name != MANIFEST)
        _publish(tmp, final, files, {"version": record.version, "engine": "ctranslate2",
                                      "quantization": quantization, "created_ts": now_ms()})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    verify_artifact(final, version=f"{record.version} (engine)")
    return replace(record, engine_path=str(final), engine_sha256=manifest_sha256(final))


def _intact(engine_dir: Path, version: str) -> bool:
    """Whether `engine_dir` matches its manifest (every file there, sizes and digests)."""
    try:
        verify_artifact(engine_dir, version=f"{version} (engine)")
    except AdapterError:
        return False
    return True


# -------------------------------------------------------------------------- registry


class Registry(ModelsTable):
    """Read and change the registry; announce champion changes. Cheap to construct.
    Reading, rollback and announcing come from `ModelsTable`; announcements are off without
    Kafka settings or with `training.announce` false."""

    def __init__(
        self, lake: LakeConfig, training: TrainingConfig, kafka: KafkaConfig | None = None
    ) -> None:
        super().__init__(lake, training.registry_table, Path(training.artifact_dir),
                         kafka if training.announce else None)
        self.training = training

    # ------------------------------------------------------------------ reading

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

    def with_engine(self, record: ModelRecord) -> ModelRecord:
        """`record` with its serving-engine conversion (made now unless it exists) and the
        adapter checksum. A failed conversion is logged and the record kept without one:
        serving then runs this version on PyTorch (slower, same suggestions)."""
        record = replace(record, artifact_sha256=manifest_sha256(record.adapter_dir))
        quantization = self.training.engine_quantization
        if quantization == "none" or (record.engine_path and record.engine_sha256
                                      and _intact(Path(record.engine_path), record.version)):
            return record
        try:
            return publish_engine(record, quantization)
        except Exception as exc:  # the champion must still be promotable
            log.warning("could not convert %s for the fast serving engine (%s: %s); it "
                        "will serve on PyTorch", record.version, type(exc).__name__, exc)
            return record

    # ------------------------------------------------------------------ writing

    def register(self, record: ModelRecord, *, promote: bool) -> ModelRecord:
        """Write a new version's row (the last step of a refresh). With `promote`, it
        becomes champion in the same commit, unless the champion changed since the
        candidate was evaluated against it (`record.parent`): then it stays a candidate."""
        verify_artifact(record.adapter_dir, version=record.version)
        record = (self.with_engine(record) if promote else
                  replace(record, artifact_sha256=manifest_sha256(record.adapter_dir)))
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
            if not promote:
                self.merge([record], f"register:{record.status}")
                return record
            self.merge(self.promotion(record, ts), "register+promote")
        self._prune_engines_after_promotion()
        return replace(record, status="champion", promoted_ts=ts)

    def promote(self, version: str) -> ModelRecord:
        """Make `version` the champion (its adapter is verified first) and announce it."""
        record = self.get(version)
        if record.status == "champion":
            raise RegistryError(f"{version} is already the champion")
        verify_artifact(record.adapter_dir, version=version)
        record = self.with_engine(record)  # converted outside the lock (≈20–35 s)
        with self.write_lock.held(timeout_s=60):
            if self.get(version).status == "champion":
                raise RegistryError(f"{version} is already the champion")
            previous = self.champion()
            ts = now_ms()
            self.merge(self.promotion(record, ts), "promote")
        self._prune_engines_after_promotion()
        promoted = replace(record, status="champion", promoted_ts=ts, updated_ts=ts)
        self.announce(promoted, "promote", previous=previous.version if previous else None)
        return promoted

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
        version = version_name(seq)
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

    def rollback(self, to: str | None = None) -> ModelRecord | None:
        """`ModelsTable.rollback`, with the target's engine conversion made first when its
        row has none (pruned by `prune_engines`, or a failed conversion), so serving runs
        the reinstated version on the fast engine."""
        current = self.champion()
        target = self._rollback_target(current, to) if current is not None else None
        if target is not None:
            self._record_engine(target)
        return super().rollback(to=to)

    def _record_engine(self, record: ModelRecord) -> None:
        """Convert `record` for the fast engine if its row has no intact conversion (pruned,
        damaged, or a failed conversion), and record the new one."""
        if self.training.engine_quantization == "none":
            return
        verify_artifact(record.adapter_dir, version=record.version)
        converted = self.with_engine(record)
        if converted.engine_path and converted.engine_sha256 != record.engine_sha256:
            with self.write_lock.held(timeout_s=60):
                current = self.get(record.version)
                self.merge([replace(current, engine_path=converted.engine_path,
                                    engine_sha256=converted.engine_sha256,
                                    artifact_sha256=converted.artifact_sha256,
                                    updated_ts=now_ms())], "record-engine")

    def _prune_engines_after_promotion(self) -> None:
        """`prune_engines`, never failing the promotion that called it (logged instead)."""
        try:
            self.prune_engines()
        except Exception as exc:  # disk or lake trouble must not undo a promotion
            log.warning("could not prune old engine conversions (%s: %s); `toolrec models "
                        "prune-engines` retries", type(exc).__name__, exc)

    def prune_engines(self, keep: int | None = None, *,
                      dry_run: bool = False) -> list[ModelRecord]:
        """Delete the engine conversions of former champions beyond the `keep` most recently
        promoted (default `training.keep_engines`); the champion's always stays. The rows
        forget them first (one Delta commit), then the directories go, so a crash between
        leaves only a directory no row names. Returns the versions pruned (or, with
        `dry_run`, that would be)."""
        keep = self.training.keep_engines if keep is None else keep
        with self.write_lock.held(timeout_s=60):
            holders = sorted((r for r in self.records()
                              if r.status != "champion" and r.engine_path),
                             key=lambda r: r.promoted_ts or 0, reverse=True)
            pruned = holders[keep:]
            if dry_run or not pruned:
                return pruned
            ts = now_ms()
            self.merge([replace(r, engine_path=None, engine_sha256=None, updated_ts=ts)
                        for r in pruned], "prune-engines")
        for record in pruned:
            engine = Path(record.engine_path or "")
            if engine == record.adapter_dir / ENGINE_DIR:  # never a path outside the artifact
                shutil.rmtree(engine, ignore_errors=True)
        log.info("pruned the engine conversions of %s (keeping %d former champions')",
                 [r.version for r in pruned], keep)
        return pruned

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

    def announce_champion(self) -> ModelAnnouncement | None:
        """Re-announce the current champion (idempotent for followers): used at daemon start
        so a change whose announcement was lost in a crash still reaches serving. A champion
        registered before rows held checksums gets them (and its engine conversion) first."""
        champion = self.champion()
        if champion is None:
            return None
        return self.announce(self.complete_champion(champion), "promote")

    def complete_champion(self, champion: ModelRecord) -> ModelRecord:
        """Record the artifact checksum and the engine conversion of a champion that lacks
        them (registered by an older version); its files are verified first."""
        if champion.artifact_sha256 and (champion.engine_sha256 or
                                         self.training.engine_quantization == "none"):
            return champion
        verify_artifact(champion.adapter_dir, version=champion.version)
        completed = self.with_engine(champion)
        with self.write_lock.held(timeout_s=60):
            current = self.champion()
            if current is None or current.version != champion.version:
                return champion  # the champion changed meanwhile: its promotion recorded them
            self.merge([replace(completed, updated_ts=now_ms())], "record-checksums")
        log.info("recorded the checksums%s of champion %s", " and engine conversion"
                 if completed.engine_path else "", champion.version)
        return completed
