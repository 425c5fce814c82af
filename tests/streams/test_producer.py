"""The telemetry producer library and `toolrec telemetry send`."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from contracts.events import load_user_id_key, pseudonymize
from streams.config import TelemetryConfig
from streams.producer import TelemetryProducer, send_jsonl
from tests.streams.conftest import read_topic, toolrec_env
from toolrec.errors import ConfigError, StreamError, ValidationError
from toolrec.kafka import KafkaConfig

KEY = b"k" * 32


def test_pseudonyms_are_stable_keyed_and_not_the_raw_id() -> None:
    alice = pseudonymize("alice", KEY)
    assert alice == pseudonymize("alice", KEY) != pseudonymize("alice", b"x" * 32)
    assert alice.startswith("p_") and "alice" not in alice and len(alice) == 34
    with pytest.raises(ValidationError):
        pseudonymize("", KEY)


def test_key_from_config_or_created_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    made = load_user_id_key(TelemetryConfig(), tmp_path)
    assert made == load_user_id_key(TelemetryConfig(), tmp_path) and len(made) == 64
    assert (tmp_path / "secrets" / "user_id_key").stat().st_mode & 0o777 == 0o600
    assert load_user_id_key(TelemetryConfig(user_id_key="s" * 20), tmp_path) == b"s" * 20
    with pytest.raises(ConfigError, match="16 bytes"):
        load_user_id_key(TelemetryConfig(user_id_key="short"), tmp_path)


def _load_key_after(barrier: Any, state_dir: Path, out: Any) -> None:
    barrier.wait()
    out.put(load_user_id_key(TelemetryConfig(), state_dir))


def test_processes_starting_at_once_share_one_complete_key(tmp_path: Path) -> None:
    """The worker, the sink and the server create the per-machine key at the same moment (a
    closed-loop CI run lost its worker to FileExistsError): one creates it, all read it whole."""
    spawn = multiprocessing.get_context("fork")
    for attempt in range(10):
        state_dir, out, barrier = tmp_path / str(attempt), spawn.Queue(), spawn.Barrier(6)
        procs = [spawn.Process(target=_load_key_after, args=(barrier, state_dir, out))
                 for _ in range(6)]
        for proc in procs:
            proc.start()
        keys = {out.get(timeout=30) for _ in procs}
        for proc in procs:
            proc.join(timeout=30)
        assert [proc.exitcode for proc in procs] == [0] * 6
        assert len(keys) == 1 and len(keys.pop()) == 64
        assert [p.name for p in (state_dir / "secrets").iterdir()] == ["user_id_key"]


def test_send_validates_first_and_keys_by_pseudonym(kafka: KafkaConfig) -> None:
    lines = [
        json.dumps(
            {
                "schema": "feedback/1",
                "request_id": "r1",
                "user_id": "alice",
                "type": "click",
                "position": 1,
            }
        ),
        "",
        json.dumps(
            {
                "schema": "feedback/1",
                "request_id": "r1",
                "user_id": "alice",
                "type": "like",
                "position": 1,
            }
        ),
        "{broken",
    ]
    with TelemetryProducer(kafka, TelemetryConfig(), key=KEY) as producer:
        with pytest.raises(StreamError, match=r"sent 1, rejected 2: line 3: type.*line 4"):
            send_jsonl(producer, lines)
        event = producer.feedback(
            raw_user_id="bob", request_id="r2", type="execute", position=2, success=True
        )
    messages = read_topic(kafka, kafka.topics.feedback, until=lambda m: len(m) >= 2)
    assert {m.key.decode() for m in messages} == {pseudonymize("alice", KEY), event.user_id}
    assert all(b"alice" not in m.value and b"bob" not in m.value for m in messages)


def test_cli_sends_a_jsonl_file(kafka: KafkaConfig, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "events.jsonl"
    path.write_text(
        json.dumps(
            {
                "schema": "feedback/1",
                "request_id": "r9",
                "user_id": "carol",
                "type": "dismiss",
                "position": 3,
            }
        )
        + "\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "toolrec", "telemetry", "send", str(path)],
        env=toolrec_env(kafka, tmp_path, "streams"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"sent": 1, "invalid": 0}
    message = read_topic(kafka, kafka.topics.feedback, until=lambda m: len(m) >= 1)[0]
    assert json.loads(message.value)["type"] == "dismiss"
