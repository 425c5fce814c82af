"""The PII policy on free text and the verifiable pseudonyms (pure functions, fast)."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.config import PrivacyConfig
from contracts.events import (
    is_local_endpoint,
    is_pseudonym,
    pseudonymize,
    pseudonymize_ids,
    require_shared_key,
)
from contracts.privacy import PiiPolicy, find_pii, redact
from streams.config import TelemetryConfig
from toolrec.errors import ConfigError

POLICY = PiiPolicy()
KEY = b"k" * 32

PII = {
    "email": ("mail alice.smith@example.com please", "alice.smith@example.com"),
    "us phone": ("call me at (415) 555-0132", "555-0132"),
    "uk phone": ("or +44 20 7946 0958 tonight", "7946 0958"),
    "card": ("card 4111 1111 1111 1111 thanks", "4111 1111"),
    "ssn": ("my ssn is 123-45-6789", "123-45-6789"),
    "uk nino": ("NI number AB 12 34 56 C", "12 34 56"),
    "iban": ("iban GB82 WEST 1234 5698 7654 32", "GB82"),
    "full address": ("I live at 1600 Amphitheatre Parkway, Mountain View, CA 94043",
                     "Amphitheatre"),
    "street line": ("send it to 12 Elm Street tomorrow", "Elm Street"),
}

NOT_PII = ["set an alarm for 7:30 tomorrow", "turn brightness to 50%", "call mom",
           "remind me at 10 on 2026-12-02", "order 3 pizzas for 19.99", "set volume to 7",
           "timer 25 minutes", "card 4111 1111 1111 1112 is not a valid number"]


@pytest.mark.parametrize("case", sorted(PII))
def test_each_kind_of_personal_data_is_redacted(case: str) -> None:
    text, needle = PII[case]
    out = redact(text, POLICY)
    assert needle not in out and "[" in out, out


@pytest.mark.parametrize("text", NOT_PII)
def test_ordinary_assistant_text_is_left_alone(text: str) -> None:
    assert redact(text, POLICY) == text


def test_the_policy_narrows_kinds_and_reports_spans() -> None:
    text = "mail bob@example.com or call (415) 555-0132"
    assert redact(text, PiiPolicy(kinds=("email",))) == "mail [email] or call (415) 555-0132"
    assert redact(text, PiiPolicy(kinds=())) == text
    assert [kind for _, _, kind in find_pii(text, POLICY)] == ["email", "phone"]
    assert PrivacyConfig().pii == POLICY


def test_pseudonyms_are_verified_not_trusted() -> None:
    alice = pseudonymize("alice", KEY)
    assert is_pseudonym(alice, KEY) and not is_pseudonym(alice, b"x" * 32)
    assert pseudonymize(alice, KEY) == alice  # idempotent under the same key
    forged = "p_" + "0" * 32
    assert not is_pseudonym(forged, KEY) and pseudonymize(forged, KEY) != forged
    assert pseudonymize(alice, b"x" * 32) != alice  # another key's pseudonym is hashed again
    assert len(alice) == 34


def test_every_identifier_of_a_payload_is_pseudonymized() -> None:
    payload = {"user_id": "carol@example.net", "session_id": "carol@example.net:session-3",
               "request_id": "r1", "context": {"device_id": "imei-1", "battery": 5},
               "query": "hi"}
    out = pseudonymize_ids(payload, KEY)
    assert all(is_pseudonym(out[f], KEY) for f in ("user_id", "session_id", "request_id"))
    assert is_pseudonym(out["context"]["device_id"], KEY) and out["context"]["battery"] == 5
    assert pseudonymize_ids(out, KEY) == out and out["query"] == "hi"


def test_a_client_request_id_is_scoped_to_its_user() -> None:
    """Two users who pick the same request id get different pseudonyms (a request is (user,
    request id) downstream); the same user's impression and feedback still join; a
    pseudonym serving assigned is kept whoever quotes it."""
    def request_of(user: str, request_id: str) -> str:
        return str(pseudonymize_ids({"user_id": user, "request_id": request_id}, KEY)
                   ["request_id"])

    assert request_of("alice", "shared-1") != request_of("bob", "shared-1")
    assert request_of("alice", "shared-1") == request_of(pseudonymize("alice", KEY), "shared-1")
    assigned = pseudonymize("fresh-uuid", KEY)
    assert request_of("alice", assigned) == assigned


def test_a_fleet_refuses_to_start_without_a_shared_key() -> None:
    local = {"kafka": "127.0.0.1:9092", "lake": "file:///tmp/lake", "bind": "127.0.0.1"}
    require_shared_key(TelemetryConfig(), replicas=1, endpoints=local)
    with pytest.raises(ConfigError, match="2 replicas"):
        require_shared_key(TelemetryConfig(), replicas=2, endpoints=local)
    with pytest.raises(ConfigError, match="kafka=broker:9092"):
        require_shared_key(TelemetryConfig(), replicas=1,
                           endpoints={**local, "kafka": "broker:9092"})
    require_shared_key(TelemetryConfig(user_id_key="s" * 20), replicas=3,
                       endpoints={"lake": "s3://bucket/lake"})
    assert not is_local_endpoint("0.0.0.0") and is_local_endpoint("[::1]:8080")


def test_protect_event_pseudonymizes_and_redacts_whatever_the_caller_claims() -> None:
    from contracts.events import new_feedback, new_impression, protect_event

    impression = new_impression(
        request_id="carol-req-1", user_id="carol@example.net",
        session_id="carol@example.net:session-3", model_version="v", template_version="t",
        prompt="User: call me at (415) 555-0132\nAssistant:", query="call me at (415) 555-0132",
        suggestions=[{"position": 1, "text": "mail carol@example.net"}],
        context={"device_id": "imei-35-209900-176148-1"})
    safe = protect_event(impression, KEY)
    text = safe.model_dump_json()
    for raw in ("carol", "555-0132", "imei-35", "carol-req-1"):
        assert raw not in text, raw
    assert is_pseudonym(safe.user_id, KEY) and protect_event(safe, KEY) is safe
    click = new_feedback(request_id=safe.request_id, user_id="carol@example.net",
                         type="click", position=1)
    protected = protect_event(click, KEY)
    assert (protected.user_id, protected.request_id) == (safe.user_id, safe.request_id)


def test_serving_refuses_to_start_a_fleet_without_a_shared_key(tmp_path: Any) -> None:
    from serving.config import ServingConfig
    from serving.main import create_app
    from toolrec.config import Settings
    from toolrec.kafka import KafkaConfig

    spool = {"spool_dir": tmp_path / "spool"}
    with pytest.raises(ConfigError, match="2 replicas"):
        create_app(Settings(serving=ServingConfig(replicas=2, **spool)))
    with pytest.raises(ConfigError, match="kafka.bootstrap_servers=broker:9092"):
        create_app(Settings(serving=ServingConfig(**spool),
                            kafka=KafkaConfig(bootstrap_servers="broker:9092")))
    with pytest.raises(ConfigError, match="serving.host=0.0.0.0"):
        create_app(Settings(serving=ServingConfig(host="0.0.0.0", **spool)))


@pytest.mark.parametrize("command", [["streams", "worker"], ["lake", "sink"],
                                     ["telemetry", "send", "-"]])
def test_stream_sink_and_telemetry_refuse_a_remote_broker_without_a_shared_key(
        command: list[str], tmp_path: Any) -> None:
    """Every process that pseudonymizes checks the key before it touches the broker."""
    from click.testing import CliRunner

    from toolrec.cli import cli

    env = {"TOOLREC_KAFKA__BOOTSTRAP_SERVERS": "broker.invalid:9092",
           "TOOLREC_INFRA__STATE_DIR": str(tmp_path / "state"),
           "TOOLREC_LAKE__ROOT": str(tmp_path / "lake")}
    result = CliRunner().invoke(cli, command, env=env, input="")
    assert result.exit_code != 0
    assert "no shared pseudonymization key" in (result.output + repr(result.exception))
