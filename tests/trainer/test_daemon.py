"""The retraining daemon: M threshold, interval runs, single-flight, graceful shutdown."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

from bench.samples import synthetic_samples
from lakehouse.writer import write_samples
from trainer.daemon import TrainerDaemon
from trainer.refresh import Refresher

from .test_refresh import (
    LOOSE,
    _config,
    _env,
    _lake,
    _with_champion,
    start_toolrec,
    wait_for_line,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_daemon_refreshes_on_its_interval_once_m_samples_exist(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    config = _config(tmp_path, tiny_model_dir, max_steps=1, eval_prompts=1, gate=LOOSE,
                     min_new_samples=24)
    daemon = TrainerDaemon(Refresher(_lake(tmp_path), config), interval_s=1.0)
    write_samples(_lake(tmp_path), synthetic_samples(16, seed=5))
    assert daemon.tick().status == "waiting"  # 16 < M = 24
    write_samples(_lake(tmp_path), synthetic_samples(16, seed=6, start_ts=1_767_300_000_000))
    started = time.monotonic()
    daemon.run(install_signals=False, max_ticks=3)  # the manual tick above counts
    statuses = [t.status for t in daemon.history]
    assert statuses == ["promoted", "waiting"], statuses  # then no new samples: wait
    assert time.monotonic() - started < 120
    assert daemon.refresher.registry.champion().version == "v1"  # type: ignore[union-attr]


def test_a_tick_skips_while_another_refresh_holds_the_lock(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    config = _config(tmp_path, tiny_model_dir)
    write_samples(_lake(tmp_path), synthetic_samples(32, seed=7))
    daemon = TrainerDaemon(Refresher(_lake(tmp_path), config))
    with Refresher(_lake(tmp_path), config).lock.held():
        result = daemon.tick()
    assert result.status == "busy" and "refresh lock" in result.detail
    assert daemon.refresher.registry.records() == []


def test_sigterm_stops_the_daemon_mid_refresh_cleanly(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = _config(tmp_path, tiny_model_dir)
    registry = _with_champion(tmp_path, tiny_model_dir, config)
    write_samples(_lake(tmp_path), synthetic_samples(40, seed=8))
    before = registry.records()
    proc = start_toolrec(["trainer", "daemon", "--interval", "3600"],
                         _env(tmp_path, tiny_model_dir), tmp_path)
    try:
        wait_for_line(proc, "refresh step 1/")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, out
    assert "refresh cancelled" in out and "trainer daemon stopped" in out
    assert registry.records() == before
    assert not any(p.name.startswith(".tmp-") for p in registry.artifact_dir.iterdir())
    with Refresher(_lake(tmp_path), config).lock.held():  # released
        pass


def test_the_daemons_lake_upkeep_compacts_and_vacuums_without_changing_a_row(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from lakehouse.config import LakeConfig
    from lakehouse.tables import read_samples_since, read_table

    lake = LakeConfig(root=str(tmp_path / "lake"), vacuum_retention_hours=0)
    for seed in range(5):  # five commits on one day: five small files, as the sink leaves
        write_samples(lake, synthetic_samples(8, seed=seed))
    before = read_table(lake, "samples", columns=["sample_id"]).column("sample_id").to_pylist()
    table = tmp_path / "lake" / "samples"
    assert len(DeltaTable(str(table)).file_uris()) == 5
    daemon = TrainerDaemon(Refresher(lake, _config(tmp_path, tiny_model_dir)))
    # no events table here: skipped; the five compacted files are vacuumed (retention 0)
    assert daemon.lake_upkeep() == {"samples": {"compacted": 5, "expired": 5}}
    assert len(DeltaTable(str(table)).file_uris()) == 1
    assert len(list(table.rglob("*.parquet"))) == 1
    after = read_table(lake, "samples", columns=["sample_id"]).column("sample_id").to_pylist()
    assert sorted(after) == sorted(before)
    assert read_samples_since(lake, None)[0].num_rows == 40
    assert daemon.lake_upkeep()["samples"]["compacted"] == 0  # nothing small left to merge
    assert len(list(table.rglob("*.parquet"))) == 1


def test_the_running_daemon_schedules_the_lake_upkeep(tmp_path: Path,
                                                      tiny_model_dir: Path) -> None:
    """Not only callable: the daemon's scheduler runs it every `lake_upkeep_interval_s`."""
    lake = _lake(tmp_path)
    for seed in range(3):  # three small files, fewer samples than M: ticks only wait
        write_samples(lake, synthetic_samples(4, seed=seed))
    config = _config(tmp_path, tiny_model_dir, min_new_samples=1000, lake_upkeep_interval_s=10)
    daemon = TrainerDaemon(Refresher(lake, config), interval_s=1.0)
    daemon.run(install_signals=False, max_ticks=13)  # ≈ 12 s: the upkeep is due at 10 s
    assert {t.status for t in daemon.history} == {"waiting"}
    assert len(DeltaTable(str(tmp_path / "lake" / "samples")).file_uris()) == 1
