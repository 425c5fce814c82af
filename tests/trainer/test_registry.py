"""The model registry on a real Delta table, artifacts with manifests, announcements on a real
broker."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from contracts.models import version_name
from lakehouse.config import LakeConfig
from toolrec.durable import FileLock, LockBusyError
from toolrec.kafka import KafkaConfig
from trainer.config import TrainingConfig
from trainer.registry import (
    AdapterError,
    ModelRecord,
    Registry,
    RegistryError,
    publish_artifact,
    verify_artifact,
)


def read_announcements(kafka: KafkaConfig, *, expect: int, timeout_s: float = 20.0) -> list[Any]:
    """Every message on toolrec.models from the beginning (no consumer group)."""
    from kafka import KafkaConsumer, TopicPartition

    topic = kafka.topics.models
    consumer = KafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False,
                             consumer_timeout_ms=500)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        messages: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(messages) < expect and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                messages.extend(json.loads(m.value) for m in batch)
        return sorted(messages, key=lambda m: m["ts"])
    finally:
        consumer.close()


def _registry(tmp_path: Path, kafka: KafkaConfig | None = None) -> Registry:
    training = TrainingConfig(artifact_dir=tmp_path / "artifacts")
    return Registry(LakeConfig(root=str(tmp_path / "lake")), training, kafka)


def _publish(registry: Registry, version: str) -> Path:
    tmp = registry.artifact_dir / f".tmp-{version}"
    tmp.mkdir(parents=True)
    (tmp / "adapter_config.json").write_text('{"r": 8}')
    (tmp / "adapter_model.safetensors").write_bytes(version.encode() * 100)
    return publish_artifact(tmp, registry.artifact_path(version), info={"version": version})


def _record(registry: Registry, parent: str | None, **kw: Any) -> ModelRecord:
    seq = registry.next_seq()
    version = version_name(seq)
    path = _publish(registry, version)
    return ModelRecord(version=version, seq=seq, parent=parent, base_model="models/base",
                       adapter_path=str(path), data_version_from=None, data_version_to=seq,
                       metrics={"reward_margin": 0.1 * seq}, **kw)


def _statuses(registry: Registry) -> dict[str, str]:
    return {r.version: r.status for r in registry.records()}


def test_register_promote_rollback_keep_exactly_one_champion(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    assert registry.records() == [] and registry.champion() is None
    v1 = registry.register(_record(registry, None), promote=True)
    v2 = registry.register(_record(registry, "v1"), promote=True)
    v3 = registry.register(_record(registry, "v2", status="rejected"), promote=False)
    assert (v1.status, v2.status, v3.status) == ("champion", "champion", "rejected")
    assert _statuses(registry) == {"v1": "retired", "v2": "champion", "v3": "rejected"}
    assert registry.champion().metrics == {"reward_margin": pytest.approx(0.2)}  # type: ignore[union-attr]
    assert registry.champion().data_version_to == 2  # type: ignore[union-attr]

    back = registry.rollback()
    assert back is not None and back.version == "v1"
    assert _statuses(registry) == {"v1": "champion", "v2": "rolled_back", "v3": "rejected"}
    registry.promote("v2")
    assert _statuses(registry) == {"v1": "retired", "v2": "champion", "v3": "rejected"}
    with pytest.raises(RegistryError, match="rejected by the gate"):
        registry.rollback(to="v3")
    assert registry.rollback(to="base") is None
    assert registry.champion() is None
    # every two-row change was one Delta commit: create + 3 registers + rollback, promote,
    # rollback-to-base
    history = DeltaTable(registry.uri).history()
    assert len(history) == 1 + 3 + 3
    actions = [h.get("toolrec.action") for h in history]
    assert "register+promote" in actions and actions.count("rollback") == 2


def test_registration_does_not_override_a_champion_changed_meanwhile(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    registry.register(_record(registry, None), promote=True)
    registry.register(_record(registry, "v1"), promote=True)
    late = registry.register(_record(registry, "v1"), promote=True)  # evaluated against v1
    assert late.status == "candidate" and "changed from v1 to v2" in (late.note or "")
    assert registry.champion().version == "v2"  # type: ignore[union-attr]


@pytest.mark.parametrize("damage", ["delete", "corrupt", "no-manifest"])
def test_missing_or_corrupt_adapter_fails_clearly_and_champion_keeps_serving(
    tmp_path: Path, damage: str
) -> None:
    registry = _registry(tmp_path)
    registry.register(_record(registry, None), promote=True)
    registry.register(_record(registry, "v1"), promote=True)
    registry.rollback()
    path = registry.artifact_path("v2")
    if damage == "delete":
        for f in path.iterdir():
            f.unlink()
        path.rmdir()
    elif damage == "corrupt":
        (path / "adapter_model.safetensors").write_bytes(b"garbage")
    else:
        (path / "manifest.json").unlink()
    before = registry.records()
    with pytest.raises(AdapterError, match=r"v2.*(missing|corrupt|lacks)"):
        registry.promote("v2")
    with pytest.raises(AdapterError):
        registry.rollback(to="v2")  # v2 is rolled_back; explicit target must still verify
    assert registry.records() == before
    assert registry.champion().version == "v1"  # type: ignore[union-attr]
    verify_artifact(registry.artifact_path("v1"), version="v1")


def test_orphans_of_a_killed_refresh_are_cleaned_and_never_reused(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    registry.register(_record(registry, None), promote=True)
    _publish(registry, "v2")  # published but never registered (killed before the row)
    (registry.artifact_dir / ".tmp-v3-123").mkdir()
    assert registry.next_seq() == 3
    removed = registry.cleanup_orphans()
    assert sorted(p.name for p in removed) == [".tmp-v3-123", "v2"]
    assert sorted(p.name for p in registry.artifact_dir.iterdir() if not p.name.startswith(".r")) \
        == ["v1"]


def test_file_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    import subprocess
    import sys

    lock_path = tmp_path / "trainer.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys,time; from toolrec.durable import FileLock; "
         f"l=FileLock(__import__('pathlib').Path({str(lock_path)!r})); l.acquire(); "
         "print('held', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockBusyError, match=f"pid {holder.pid}"):
            FileLock(lock_path).acquire(timeout_s=0.2)
        holder.kill()  # SIGKILL: the OS releases the lock
        holder.wait()
        with FileLock(lock_path).held(timeout_s=5):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_promotions_and_rollbacks_are_announced_on_a_real_broker(
    tmp_path: Path, kafka: KafkaConfig
) -> None:
    registry = _registry(tmp_path, kafka)
    registry.register(_record(registry, None), promote=True)  # refresh announces, not register
    registry.register(_record(registry, "v1"), promote=True)
    registry.rollback()
    registry.promote("v2")
    messages = read_announcements(kafka, expect=2)
    assert [(m["action"], m["version"], m["previous"]) for m in messages] == [
        ("rollback", "v1", "v2"), ("promote", "v2", "v1"),
    ]
    assert messages[1]["adapter_path"] == str(registry.artifact_path("v2"))
    assert messages[1]["schema"] == "model-announcement/1"


def test_models_cli_lists_shows_promotes_and_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from click.testing import CliRunner

    from toolrec.cli import cli

    registry = _registry(tmp_path)
    registry.register(_record(registry, None), promote=True)
    gated = replace(_record(registry, "v1"), metrics={
        "candidate": {"reward_margin": 0.31, "format_valid_rate": 1.0},
        "reference": {"reward_margin": 0.12, "format_valid_rate": 0.9},
        "baseline": {"reward_margin": 0.0, "format_valid_rate": 0.9},
        "reference_version": "v1", "baseline_version": "v1", "train_loss": 0.69,
        "train_weights": {"clicked": {"n": 2, "min": 10.0, "median": 10.0, "p90": 10.0,
                                      "max": 10.0, "mean": 10.0, "sum": 20.0, "ess": 2.0},
                          "not_clicked": {"n": 3, "min": 1.0, "median": 1.0, "p90": 1.0,
                                          "max": 1.0, "mean": 1.0, "sum": 3.0, "ess": 3.0},
                          "all": {"n": 5, "ess": 2.8}, "ratio": 6.67}},
        decision={"outcome": "promote", "promote": True, "reasons": [],
                  "checks": {"reward_margin": {"candidate": 0.31, "reference": 0.12,
                                               "tolerance": 0.0, "ok": True}},
                  "baseline_checks": {},
                  "evidence": {"heldout_clicks": 12, "heldout_nonclicks": 40,
                               "min_heldout_clicks": 10, "min_heldout_nonclicks": 30,
                               "enough": True}})
    registry.register(gated, promote=True)
    monkeypatch.setenv("TOOLREC_LAKE__ROOT", str(tmp_path / "lake"))
    monkeypatch.setenv("TOOLREC_TRAINER__TRAINING__ARTIFACT_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("TOOLREC_TRAINER__TRAINING__ANNOUNCE", "false")
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    listing = run("models", "list").splitlines()
    assert [line.split()[:2] for line in listing] == [["v1", "retired"], ["v2", "champion"]]
    assert '"version": "v2"' in run("models", "show", "--json")
    shown = run("models", "show")
    assert "gate: promote" in shown
    assert "evidence: 12 held-out clicks (min 10), 40 non-clicks (min 30): enough" in shown
    margin_row = next(line.split() for line in shown.splitlines() if "reward_margin" in line)
    assert margin_row == ["reward_margin", "0.31", "0.12", "0", "0", "yes", "-"]
    assert "training weights: clicked: n=2 min=10 median=10 p90=10 max=10 ess=2.0" in shown
    assert "champion: v1" in run("models", "rollback")
    assert "v2 is the champion" in run("models", "promote", "v2")
    with pytest.raises(RegistryError, match="'v9' is not in the registry"):
        runner.invoke(cli, ["models", "promote", "v9"], catch_exceptions=False)
    assert _statuses(registry) == {"v1": "retired", "v2": "champion"}


def test_the_sft_baseline_is_the_first_imported_version_unless_configured(
    tmp_path: Path,
) -> None:
    from lakehouse.tables import MODELS_SCHEMA

    registry = _registry(tmp_path)
    assert registry.baseline() is None  # nothing registered: the base model
    registry.register(_record(registry, None), promote=True)  # trained here, not imported
    assert registry.baseline() is None
    sft = tmp_path / "sft"
    sft.mkdir()
    (sft / "adapter_config.json").write_text('{"r": 8}')
    (sft / "adapter_model.safetensors").write_bytes(b"sft" * 100)
    v2 = registry.import_adapter(sft, Path("models/base"), promote=True)
    registry.register(_record(registry, "v2"), promote=True)
    v4 = registry.import_adapter(sft, Path("models/base"), promote=False)
    baseline = registry.baseline()
    assert baseline is not None and baseline.version == v2.version == "v2"  # the first one
    pinned = Registry(registry.lake, registry.training.model_copy(
        update={"baseline_version": v4.version}))
    assert pinned.baseline().version == "v4"  # type: ignore[union-attr]
    # the registry's table has the schema the lake declares for it
    assert DeltaTable(registry.uri).schema().to_arrow() == MODELS_SCHEMA


def _fake_conversion(base_dir: Path, adapter_dir: Path | None, out_dir: Path, **_: Any) -> Path:
    """Stands in for the CTranslate2 conversion (20-35 s for SmolLM2; the real one on the
    tiny model: the next test): writes what `generator.fast.is_converted` looks for."""
    out_dir.mkdir(parents=True)
    for name in ("model.bin", "config.json", "engine.json"):
        (out_dir / name).write_text(f"{adapter_dir} {name}")
    return out_dir


def test_engines_of_older_former_champions_are_pruned_at_each_promotion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each promotion adds a ≈134 MB conversion: only the champion's and the `keep_engines`
    most recent former champions' stay; the rows forget the rest, the adapters stay, and a
    pruned version reinstated is converted again."""
    from click.testing import CliRunner

    import generator.fast
    from toolrec.cli import cli

    monkeypatch.setattr(generator.fast, "convert_model", _fake_conversion)
    registry = Registry(LakeConfig(root=str(tmp_path / "lake")),
                        TrainingConfig(artifact_dir=tmp_path / "artifacts", keep_engines=1))
    for parent in (None, "v1", "v2", "v3"):
        registry.register(_record(registry, parent), promote=True)
    rows = {r.version: r for r in registry.records()}
    assert {v: (r.status, r.engine_path is not None) for v, r in rows.items()} == {
        "v1": ("retired", False), "v2": ("retired", False), "v3": ("retired", True),
        "v4": ("champion", True)}
    engines = {v: (registry.artifact_path(v) / "engine").is_dir() for v in rows}
    assert engines == {"v1": False, "v2": False, "v3": True, "v4": True}
    for version in rows:  # the adapters (the audit trail and rollback targets) all stay
        verify_artifact(registry.artifact_path(version), version=version)

    monkeypatch.setenv("TOOLREC_LAKE__ROOT", str(tmp_path / "lake"))
    monkeypatch.setenv("TOOLREC_TRAINER__TRAINING__ARTIFACT_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("TOOLREC_TRAINER__TRAINING__ANNOUNCE", "false")
    result = CliRunner().invoke(cli, ["models", "prune-engines", "--keep", "0", "--dry-run"],
                                catch_exceptions=False)
    assert "would prune 1 engine conversion(s): v3" in result.output
    assert (registry.artifact_path("v3") / "engine").is_dir()  # a dry run deletes nothing

    back = registry.rollback(to="v1")
    assert back is not None and back.version == "v1" and back.engine_path is not None
    verify_artifact(Path(back.engine_path), version="v1 (engine)")
    assert _statuses(registry)["v1"] == "champion"

    # a damaged conversion (a prune killed halfway) is made again, not served broken
    (registry.artifact_path("v3") / "engine" / "model.bin").unlink()
    promoted = registry.promote("v3")
    verify_artifact(Path(promoted.engine_path or ""), version="v3 (engine)")
    assert registry.champion().engine_sha256 == promoted.engine_sha256  # type: ignore[union-attr]


def test_a_rollback_to_a_pruned_version_converts_it_again(
    tmp_path: Path, tiny_model_dir: Path, tiny_sft: Any
) -> None:
    training = TrainingConfig(artifact_dir=tmp_path / "artifacts", keep_engines=0,
                              announce=False)
    registry = Registry(LakeConfig(root=str(tmp_path / "lake")), training)
    v1 = registry.import_adapter(tiny_sft.adapter_dir, tiny_model_dir, promote=True)
    assert v1.engine_path is not None
    registry.import_adapter(tiny_sft.adapter_dir, tiny_model_dir, promote=True)
    assert registry.get("v1").engine_path is None and not Path(v1.engine_path).exists()

    back = registry.rollback()
    assert back is not None and back.version == "v1" and back.engine_path == v1.engine_path
    verify_artifact(Path(back.engine_path), version="v1 (engine)")
    assert registry.champion().engine_sha256 == back.engine_sha256  # type: ignore[union-attr]
