"""Contract tests of every endpoint on one running API (tiny model, real broker): shapes,
impressions and feedback on Kafka with the documented schemas, each bad-input case, the
pinned OpenAPI schema, health, readiness and metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from contracts.events import Feedback, Impression, is_pseudonym, parse_event, pseudonymize
from generator.prompt import TEMPLATE_VERSION
from tests.serving.conftest import (
    BASE_REQUEST,
    ids_of,
    make_settings,
    read_topic,
    wait_ready_version,
)

OPENAPI_SNAPSHOT = Path(__file__).with_name("openapi.json")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, catalog_path: Path,
        retriever: Any) -> Iterator[SimpleNamespace]:
    """One API for the module: static tiny model, a real broker with the topics."""
    from infra.broker import LocalStack
    from infra.processes import free_port
    from infra.topics import ensure_topics
    from serving.main import create_app
    from serving.server import ThreadedServer
    from serving.services import Services

    tmp = tmp_path_factory.mktemp("api")
    with LocalStack(tmp / "broker") as stack:
        kafka = stack.kafka_config()
        ensure_topics(kafka)
        settings = make_settings(tmp, model_dir, catalog_path, kafka=kafka, model_version="t1")
        services = Services.build(settings, retriever=retriever)
        with ThreadedServer(create_app(settings, services=services), port=free_port()) as srv:
            wait_ready_version(srv.url, "t1")
            with httpx.Client(base_url=srv.url, timeout=60) as client:
                yield SimpleNamespace(client=client, services=services, kafka=kafka,
                                      settings=settings)


def post(api: SimpleNamespace, body: Any, path: str = "/v1/recommend") -> httpx.Response:
    return api.client.post(path, json=body)


def test_recommend_answers_with_the_documented_shape(api: SimpleNamespace) -> None:
    response = post(api, BASE_REQUEST)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"request_id", "model_version", "suggestions", "timing"}
    # the request id is a pseudonym serving issued, so feedback quoting it verifies
    assert is_pseudonym(body["request_id"], api.services.user_key)
    assert body["model_version"] == "t1"
    assert 1 <= len(body["suggestions"]) <= 3
    assert [s["position"] for s in body["suggestions"]] == list(
        range(1, len(body["suggestions"]) + 1))
    catalog_ids = {t.id for t in api.services.retriever.catalog.tools}
    for suggestion in body["suggestions"]:
        assert suggestion["text"].strip()
        assert suggestion["tool_id"] is None or suggestion["tool_id"] in catalog_ids
    timing = body["timing"]
    assert set(timing) == {"total_ms", "queue_ms", "retrieval_ms", "generate_ms", "parse_ms",
                           "spool_ms"}
    assert timing["total_ms"] >= timing["generate_ms"] > 0 and timing["spool_ms"] > 0


def test_n_defaults_and_bounds(api: SimpleNamespace) -> None:
    one = post(api, {**BASE_REQUEST, "n": 1}).json()
    assert len(one["suggestions"]) == 1
    default = post(api, {k: v for k, v in BASE_REQUEST.items() if k != "n"})
    assert default.status_code == 200 and len(default.json()["suggestions"]) <= 3


def test_impressions_arrive_on_the_broker_with_the_documented_schema(
        api: SimpleNamespace) -> None:
    answers = [post(api, {**BASE_REQUEST, "query": q}).json()
               for q in ("set an alarm for 7", "make the screen darker")]
    key = api.services.user_key
    wanted = {a["request_id"]: a for a in answers}
    messages = read_topic(api.kafka, api.kafka.topics.impressions,
                          until=lambda ms: set(wanted) <= set(ids_of(ms)))
    found = {}
    for message in messages:
        event = parse_event(message.value)
        assert isinstance(event, Impression)
        assert message.key.decode() == event.user_id  # keyed by the pseudonymous user
        if event.request_id in wanted:
            found[event.request_id] = event
    assert set(found) == set(wanted)
    for request_id, event in found.items():
        answer = wanted[request_id]
        assert event.user_id == pseudonymize("alice", key) != "alice"
        assert event.session_id == pseudonymize("s-1", key) != "s-1"
        assert event.model_version == answer["model_version"]
        assert event.template_version == TEMPLATE_VERSION
        assert event.query in event.prompt
        assert [s.model_dump() for s in event.suggestions] == answer["suggestions"]
        assert event.context == BASE_REQUEST["context"]
        decoding = event.decoding
        for name in ("temperature", "top_p", "num_candidates", "max_new_tokens", "explore",
                     "explore_share", "arm", "source", "do_sample"):
            assert name in decoding, name
        assert decoding["source"] in ("model", "retrieval_fallback")
        assert decoding["explore"] == (decoding["arm"] == "explore")


def test_feedback_is_validated_and_sent_like_the_telemetry_library(
        api: SimpleNamespace) -> None:
    rid = post(api, BASE_REQUEST).json()["request_id"]
    response = post(api, {"user_id": "alice", "request_id": rid, "type": "execute",
                          "position": 2, "success": True}, "/v1/feedback")
    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]
    messages = read_topic(api.kafka, api.kafka.topics.feedback,
                          until=lambda ms: event_id in ids_of(ms, "event_id"))
    events = [parse_event(m.value) for m in messages]
    mine = [e for e in events if e.event_id == event_id]
    assert len(mine) == 1 and isinstance(mine[0], Feedback)
    assert mine[0].user_id == pseudonymize("alice", api.services.user_key)
    assert (mine[0].request_id, mine[0].type, mine[0].position, mine[0].success) == (
        rid, "execute", 2, True)


LONG = "x" * 501
BAD_RECOMMEND = {
    "missing user_id": ({k: v for k, v in BASE_REQUEST.items() if k != "user_id"}, "user_id"),
    "missing query": ({k: v for k, v in BASE_REQUEST.items() if k != "query"}, "query"),
    "empty query": ({**BASE_REQUEST, "query": ""}, "query"),
    "blank query": ({**BASE_REQUEST, "query": "   "}, "query"),
    "over-long query": ({**BASE_REQUEST, "query": LONG}, "query"),
    "over-long response": ({**BASE_REQUEST, "response": "y" * 2001}, "response"),
    "over-long user id": ({**BASE_REQUEST, "user_id": "u" * 129}, "user_id"),
    "too many recent": ({**BASE_REQUEST, "recent_queries": ["a"] * 11}, "recent_queries"),
    "over-long recent": ({**BASE_REQUEST, "recent_queries": [LONG]}, "recent_queries.0"),
    "n zero": ({**BASE_REQUEST, "n": 0}, "n"),
    "absurd n": ({**BASE_REQUEST, "n": 1000}, "n"),
    "n as string": ({**BASE_REQUEST, "n": "3"}, "n"),
    "n as float": ({**BASE_REQUEST, "n": 2.5}, "n"),
    "query as number": ({**BASE_REQUEST, "query": 42}, "query"),
    "recent as string": ({**BASE_REQUEST, "recent_queries": "turn on wifi"}, "recent_queries"),
    "unknown field": ({**BASE_REQUEST, "debug": True}, "debug"),
    "battery over 100": ({**BASE_REQUEST, "context": {"battery": 150}}, "context.battery"),
    "unknown network": ({**BASE_REQUEST, "context": {"network": "5g"}}, "context.network"),
    "bad package": ({**BASE_REQUEST, "context": {"foreground_app": "not a package"}},
                    "context.foreground_app"),
    "unknown context key": ({**BASE_REQUEST, "context": {"mood": "happy"}}, "context.mood"),
    "hour contradicts time_of_day": (
        {**BASE_REQUEST, "context": {"hour": 3, "time_of_day": "morning"}}, "context"),
    "context not an object": ({**BASE_REQUEST, "context": "battery low"}, "context"),
    "body not an object": (["my battery is low"], "<body>"),
    "battery as string": ({**BASE_REQUEST, "context": {"battery": "50"}}, "context.battery"),
    "charging as string": ({**BASE_REQUEST, "context": {"charging": "true"}},
                           "context.charging"),
    "hour as float": ({**BASE_REQUEST, "context": {"hour": 7.0}}, "context.hour"),
    "query of zero-width spaces": ({**BASE_REQUEST, "query": "\u200b\u200b\u200b"}, "query"),
    "query of a BOM and a joiner": ({**BASE_REQUEST, "query": "\ufeff\u200d "}, "query"),
    "recent query of spaces": ({**BASE_REQUEST, "recent_queries": ["\u3000 \t"]},
                               "recent_queries.0"),
    "user id with a space": ({**BASE_REQUEST, "user_id": "alice smith"}, "user_id"),
    "session id with a zero-width space": ({**BASE_REQUEST, "session_id": "s\u200b1"},
                                           "session_id"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECOMMEND))
def test_recommend_refuses_bad_input_with_a_clear_422(api: SimpleNamespace, case: str) -> None:
    body, field = BAD_RECOMMEND[case]
    response = post(api, body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "invalid_request" and error["message"]
    assert field in [p["field"] for p in error["fields"]], error
    assert all(p["message"] and p["type"] for p in error["fields"])


def test_malformed_json_and_oversized_bodies(api: SimpleNamespace) -> None:
    broken = api.client.post("/v1/recommend", content=b'{"user_id": "a",',
                             headers={"content-type": "application/json"})
    assert broken.status_code == 422 and broken.json()["fields"][0]["type"] == "json_invalid"
    huge = api.client.post("/v1/recommend", content=b"{" + b" " * 70_000 + b"}",
                           headers={"content-type": "application/json"})
    assert huge.status_code == 413 and huge.json()["error"] == "body_too_large"


ERROR_BODY_KEYS = {"error", "message", "fields"}


@pytest.mark.parametrize("case", ["invalid utf-8", "1000-deep json", "10 MB malformed",
                                  "chunked 10 MB", "admin 1 MB", "unknown path",
                                  "wrong method", "unknown admin path"])
def test_every_refusal_has_the_error_body_shape(api: SimpleNamespace, case: str) -> None:
    """Each refusal comes before parsing where it can, with a specific status and code, in
    the one ErrorBody shape (Starlette's own 404/405 included)."""
    json_type = {"content-type": "application/json"}
    sends: dict[str, tuple[str, str, Any, int, str]] = {
        "invalid utf-8": ("POST", "/v1/recommend", b'{"user_id": "\xff\xfe"}', 400,
                          "invalid_body"),
        "1000-deep json": ("POST", "/v1/feedback", b"[" * 1000 + b"]" * 1000, 400,
                           "invalid_body"),
        "10 MB malformed": ("POST", "/v1/recommend", b"{" * 10_000_000, 413, "body_too_large"),
        "chunked 10 MB": ("POST", "/v1/feedback", iter([b"{" * 1_000_000] * 10), 413,
                          "body_too_large"),
        "admin 1 MB": ("POST", "/v1/admin/reload", b"{" + b" " * 1_000_000 + b"}", 413,
                       "body_too_large"),
        "unknown path": ("GET", "/v2/nothing", None, 404, "not_found"),
        "wrong method": ("GET", "/v1/recommend", None, 405, "method_not_allowed"),
        "unknown admin path": ("POST", "/v1/admin/nothing", b"{}", 404, "not_found"),
    }
    method, path, content, status, code = sends[case]
    response = api.client.request(method, path, content=content, headers=json_type)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ERROR_BODY_KEYS and body["error"] == code and body["message"], body


def test_no_refusal_is_a_server_error(api: SimpleNamespace) -> None:
    """A few hostile bodies at once: every answer is a 4xx in the ErrorBody shape."""
    hostile = [b"", b"null", b"[]", b'"x"', b"{}", b'{"user_id": 1e999}', b"\x00" * 100,
               b'{"user_id": "a", "user_id": "b"}', b'{"query": "\ud800"}',
               json.dumps({**BASE_REQUEST, "context": {"battery": 1e308}}).encode()]
    for path in ("/v1/recommend", "/v1/feedback", "/v1/admin/rollback"):
        for content in hostile:
            response = api.client.post(path, content=content,
                                       headers={"content-type": "application/json"})
            assert 400 <= response.status_code < 500, (path, content, response.text)
            assert set(response.json()) == ERROR_BODY_KEYS


BAD_FEEDBACK = {
    "unknown type": ({"type": "like"}, "type"),
    "position zero": ({"position": 0}, "position"),
    "position as string": ({"position": "2"}, "position"),
    "success as string": ({"success": "yes"}, "success"),
    "missing request_id": ({"request_id": None}, "request_id"),
    "empty user": ({"user_id": ""}, "user_id"),
    "negative ts": ({"ts": -5}, "ts"),
    "zero ts": ({"ts": 0}, "ts"),
    "ts in the year 5138": ({"ts": 99999999999999}, "ts"),
    "ts a day ahead": ({"ts": int(time.time() * 1000) + 86_400_000}, "ts"),
    "ts a year old": ({"ts": int(time.time() * 1000) - 365 * 86_400_000}, "ts"),
    "ts as string": ({"ts": "1700000000000"}, "ts"),
    "user id of zero-width spaces": ({"user_id": "\u200b\u200b"}, "user_id"),
    "unknown field": ({"clicked": True}, "clicked"),
}


@pytest.mark.parametrize("case", sorted(BAD_FEEDBACK))
def test_feedback_refuses_bad_input(api: SimpleNamespace, case: str) -> None:
    change, field = BAD_FEEDBACK[case]
    body = {"user_id": "alice", "request_id": "r1", "type": "click", "position": 1, **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = post(api, body, "/v1/feedback")
    assert response.status_code == 422, response.text
    assert field in [p["field"] for p in response.json()["fields"]]


def test_health_readiness_and_metrics(api: SimpleNamespace) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    state = ready.json()
    assert state["ready"] and state["model_version"] == "t1" and state["retrieval_ready"]
    assert post(api, BASE_REQUEST).status_code == 200
    post(api, {**BASE_REQUEST, "n": 0})
    text = api.client.get("/metrics").text
    for needle in (
        'toolrec_serving_requests_total{method="POST",route="/v1/recommend",status="200"}',
        'toolrec_serving_requests_total{method="POST",route="/v1/recommend",status="422"}',
        'toolrec_serving_request_seconds_bucket{le="0.5",route="/v1/recommend"}',
        'toolrec_serving_stage_seconds_count{stage="generate"}',
        'toolrec_serving_model_info{version="t1"} 1.0',
        "toolrec_serving_spool_depth", "toolrec_serving_swaps_total 1.0",
        "toolrec_serving_swap_failures_total 0.0", "toolrec_serving_queue_depth",
    ):
        assert needle in text, needle


def test_openapi_schema_is_pinned(tmp_path: Path, model_dir: Path, catalog_path: Path) -> None:
    """The published contract: regenerate with
    `toolrec serve --print-openapi > tests/serving/openapi.json` when changing it on purpose."""
    from serving.config import ServingConfig
    from serving.main import openapi_schema
    from toolrec.config import Settings

    schema = openapi_schema(Settings(serving=ServingConfig(spool_dir=tmp_path / "spool")))
    pinned = json.loads(OPENAPI_SNAPSHOT.read_text())
    assert schema == pinned, "the OpenAPI schema changed; see this test's docstring"
    paths = schema["paths"]
    assert set(paths) == {"/v1/recommend", "/v1/feedback", "/healthz", "/readyz", "/metrics",
                          "/v1/admin/reload", "/v1/admin/rollback", "/v1/admin/forget"}
    request = schema["components"]["schemas"]["RecommendRequest"]
    assert request["properties"]["query"]["maxLength"] == 500
    assert request["properties"]["n"]["maximum"] == 8 and request["additionalProperties"] is False
    assert set(paths["/v1/recommend"]["post"]["responses"]) == {"200", "400", "413", "422",
                                                                "503"}
    assert {"400", "413", "422", "429"} <= set(paths["/v1/feedback"]["post"]["responses"])
    assert {"400", "413", "422"} <= set(paths["/v1/admin/reload"]["post"]["responses"])
    props = request["properties"]
    assert props["user_id"]["pattern"] == "^[!-~]+$" and props["query"]["pattern"]
    context = schema["components"]["schemas"]["StrictDeviceContext"]["properties"]
    assert "pattern" in context["foreground_app"]["anyOf"][0]
    ts = schema["components"]["schemas"]["FeedbackRequest"]["properties"]["ts"]["anyOf"][0]
    assert ts["minimum"] > 0 and "ts_out_of_range" in \
        schema["components"]["schemas"]["FeedbackRequest"]["properties"]["ts"]["description"]


def test_cli_prints_the_pinned_schema() -> None:
    from click.testing import CliRunner

    from toolrec.cli import cli

    result = CliRunner().invoke(cli, ["serve", "--print-openapi"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == json.loads(OPENAPI_SNAPSHOT.read_text())
