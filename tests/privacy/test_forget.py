"""Forget a user: every Delta table (delete, vacuum, audit row), the spool and the stream
state's changelog (tombstones) — lake and spool on disk, the changelog on a real broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from contracts.events import pseudonymize
from lakehouse import read_table, write_events, write_samples
from lakehouse.config import LakeConfig
from lakehouse.privacy import AUDIT_TABLE, apply_retention, forget_user
from lakehouse.tables import table_uri
from tests.lakehouse.helpers import feedback, impression, sample
from toolrec.cli import cli
from toolrec.errors import LakeError
from toolrec.kafka import KafkaConfig

KEY = "k" * 32


def _lake(tmp_path: Path) -> LakeConfig:
    config = LakeConfig(root=str(tmp_path / "lake"))
    write_samples(config, [sample(i) for i in range(6)])
    write_samples(config, [sample(1, day=1)])
    write_events(config, [impression(1), feedback(1), impression(2)])
    return config


def _files_mention(config: LakeConfig, table: str, needle: bytes) -> list[Path]:
    return [p for p in Path(table_uri(config, table)).rglob("*.parquet")
            if needle in p.read_bytes()]


def test_forget_deletes_vacuums_and_audits(tmp_path: Path) -> None:
    config = _lake(tmp_path)
    assert _files_mention(config, "samples", b"p_user1")
    removed = forget_user(config, "p_user1")
    assert removed["samples"] == 2 and removed["events"] == 2 and removed["files_vacuumed"] > 0
    for table in ("samples", "events"):
        ids = read_table(config, table).column("user_id").to_pylist()
        assert "p_user1" not in ids and ids
        assert not _files_mention(config, table, b"p_user1"), table  # old files are gone
    audit = read_table(config, AUDIT_TABLE).to_pylist()
    assert [sorted(row) for row in audit] == [["forgotten_ts", "pseudonym", "rows"]]
    assert audit[0]["pseudonym"] == "p_user1" and audit[0]["rows"] == 4
    with pytest.raises(LakeError, match="not a pseudonym"):
        forget_user(config, "x' OR '1'='1")


def test_retention_per_table_drops_old_rows(tmp_path: Path) -> None:
    config = _lake(tmp_path)
    day_two = max(read_table(config, "samples").column("impression_ts").to_pylist())
    removed = apply_retention(config, {"samples": 1, "events": 0}, now=day_two + 86_400_000)
    assert removed == {"samples": 6}  # day 0 is older than one day; events kept (0 = keep)
    assert read_table(config, "samples").num_rows == 1


def test_cli_forgets_a_raw_user_id_in_the_lake_and_the_spool(tmp_path: Path) -> None:
    from serving.spool import OutRecord, Spool, read_spool

    pseudonym = pseudonymize("carol@example.net", KEY.encode())
    config = LakeConfig(root=str(tmp_path / "lake"))
    write_samples(config, [{**sample(0), "user_id": pseudonym}, sample(1)])
    spool = Spool(tmp_path / "spool", fsync=False)
    spool.append([OutRecord(id="e1", topic="toolrec.feedback", key=pseudonym, value="{}"),
                  OutRecord(id="e2", topic="toolrec.feedback", key="p_other", value="{}")])
    spool.close()
    env = {"TOOLREC_LAKE__ROOT": config.root, "TOOLREC_STREAMS__TELEMETRY__USER_ID_KEY": KEY,
           "TOOLREC_SERVING__SPOOL_DIR": str(tmp_path / "spool"),
           "TOOLREC_INFRA__STATE_DIR": str(tmp_path / "state")}
    result = CliRunner().invoke(cli, ["privacy", "forget", "--no-state", "carol@example.net"],
                                env=env)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["pseudonym"] == pseudonym and "carol" not in result.output.replace(
        "carol@example.net", "")
    assert answer["removed"]["samples"] == 1 and answer["removed"]["spool"] == 1
    assert any("trained" in line for line in answer["not_erased"])
    assert read_table(config, "samples").column("user_id").to_pylist() == ["p_user1"]
    assert [r.key for _, r in read_spool(tmp_path / "spool")] == ["", "p_other"]


def test_state_tombstones_through_the_changelog(kafka: KafkaConfig) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    from serving.privacy import tombstone_state

    app_id = "forget-test"
    changelog = f"{app_id}-state-changelog"
    admin = KafkaAdminClient(**kafka.client_kwargs())
    admin.create_topics([NewTopic(changelog, num_partitions=2, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(**kafka.client_kwargs())
    for key, partition in ((b'"p_carol"', 0), (b'"p_carol:r1"', 1), (b'"p_other"', 0)):
        producer.send(changelog, key=key, value=b'{"n": 1}', partition=partition)
    producer.flush()
    producer.close()
    assert tombstone_state(kafka, app_id, "p_carol", timeout_s=15) == 2
    consumer = KafkaConsumer(changelog, **kafka.client_kwargs(), auto_offset_reset="earliest",
                             group_id=None, consumer_timeout_ms=3000)
    latest = {m.key: m.value for m in consumer}
    consumer.close()
    assert latest == {b'"p_carol"': None, b'"p_carol:r1"': None, b'"p_other"': b'{"n": 1}'}
    assert tombstone_state(kafka, app_id, "p_carol", timeout_s=15) == 0  # already erased
