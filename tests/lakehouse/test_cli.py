"""`toolrec lake ...` commands and SQL over the lake (real Delta tables, no broker)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lakehouse import read_table, write_events, write_samples
from lakehouse.config import LakeConfig
from lakehouse.sql import sql
from tests.lakehouse.helpers import feedback, impression, sample
from toolrec.cli import cli
from toolrec.errors import LakeError


@pytest.fixture
def lake(tmp_path: Path) -> LakeConfig:
    config = LakeConfig(root=str(tmp_path / "lake"))
    write_samples(config, [sample(i) for i in range(12)])
    write_samples(config, [sample(i, day=1) for i in range(12, 20)])
    write_events(config, [impression(1), feedback(1), feedback(2)])
    return config


def _run(lake: LakeConfig, *args: str) -> str:
    result = CliRunner().invoke(cli, ["lake", *args], env={"TOOLREC_LAKE__ROOT": lake.root})
    if result.exception is not None:
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def test_sql_queries_tables_by_name(lake: LakeConfig) -> None:
    result = sql(lake, "SELECT date, count(*) AS n, sum(clicked::INT) AS clicks "
                       "FROM samples GROUP BY date ORDER BY date")  # fmt: skip
    assert result.to_pylist() == [
        {"date": "2025-10-09", "n": 12, "clicks": sum(sample(i)["clicked"] for i in range(12))},
        {"date": "2025-10-10", "n": 8, "clicks": sum(sample(i)["clicked"] for i in range(12, 20))},
    ]
    joined = sql(lake, "SELECT count(*) AS n FROM events e JOIN events f "
                       "ON e.request_id = f.request_id AND e.kind = 'impression' "
                       "AND f.kind = 'feedback'")  # fmt: skip
    assert joined.to_pylist() == [{"n": 1}]


def test_sql_time_travel_and_errors(lake: LakeConfig) -> None:
    assert sql(lake, "SELECT count(*) AS n FROM samples", versions={"samples": 1}).to_pylist() == [
        {"n": 12}
    ]
    with pytest.raises(LakeError, match="tables: events, samples"):
        sql(lake, "SELECT * FROM nope")


def test_cli_sql_formats(lake: LakeConfig) -> None:
    table = _run(lake, "sql", "SELECT sample_id, weight FROM samples ORDER BY sample_id LIMIT 2")
    lines = table.splitlines()
    assert lines[0].split() == ["sample_id", "weight"] and lines[-1] == "(2 rows)"
    rows = _run(lake, "sql", "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind",
                "--format", "json").splitlines()  # fmt: skip
    assert [json.loads(r) for r in rows] == [{"kind": "feedback", "n": 2},
                                             {"kind": "impression", "n": 1}]  # fmt: skip
    csv = _run(lake, "sql", "SELECT count(*) AS n FROM samples", "--at", "samples=1",
               "--format", "csv")  # fmt: skip
    assert csv.split() == ['"n"', "12"]


def test_cli_maintenance_and_history(lake: LakeConfig) -> None:
    tables = _run(lake, "tables")
    assert "samples" in tables and "events" in tables
    assert "samples: 0 files compacted into 0" in _run(lake, "optimize", "samples")  # 1 per date
    write_samples(lake, [sample(i) for i in range(100, 103)])
    assert "samples: 2 files compacted into 1" in _run(lake, "optimize", "samples")
    assert "samples: 2 files would be deleted" in _run(
        lake, "vacuum", "samples", "--retention-hours", "0", "--dry-run"
    )
    assert "samples: 2 files deleted" in _run(lake, "vacuum", "samples", "--retention-hours", "0")
    history = _run(lake, "history", "samples", "--limit", "3").splitlines()
    assert [line.split()[3] for line in history] == ["VACUUM", "VACUUM", "OPTIMIZE"]
    assert read_table(lake, "samples").num_rows == 23
