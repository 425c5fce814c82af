"""Hot-swap on a real broker and registry: two promotions under 20 concurrent clients with
zero failed requests and every impression tagged with the version that served it; failed
loads keep the current model; admin rollback through the registry."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.serving.conftest import (
    BASE_REQUEST,
    ids_of,
    make_lora,
    metric,
    read_topic,
    wait_ready_version,
)

KEY = "admin-key-0123456789"
CLIENTS = 20


@dataclass(frozen=True)
class Result:
    status: int
    version: str | None
    request_id: str | None
    started: float
    finished: float


def _registry(settings: Any) -> Any:
    from trainer.registry import Registry

    return Registry(settings.lake, settings.trainer.training, settings.kafka)


def _promote_new(registry: Any, model_dir: Path, tmp_path: Path, seed: int,
                 base_model: Path | None = None) -> str:
    adapter = make_lora(model_dir, tmp_path / f"adapter-{seed}", seed)
    record = registry.import_adapter(adapter, base_model or model_dir, promote=True)
    assert record.status == "champion"
    return str(record.version)


def _clients(url: str, stop: threading.Event, results: list[Result]) -> list[threading.Thread]:
    def loop(index: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            i = 0
            while not stop.is_set():
                body = {**BASE_REQUEST, "user_id": f"user-{index}",
                        "query": f"turn the volume down {index}-{i}"}
                started = time.monotonic()
                try:
                    response = client.post("/v1/recommend", json=body)
                    data = response.json() if response.status_code == 200 else {}
                    status = response.status_code
                except httpx.HTTPError:
                    data, status = {}, -1
                results.append(Result(status, data.get("model_version"),
                                      data.get("request_id"), started, time.monotonic()))
                i += 1

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    return threads


def test_two_swaps_under_20_concurrent_clients_fail_no_request(
        kafka: Any, settings_factory: Any, serve: Any, model_dir: Path, tmp_path: Path) -> None:
    settings = settings_factory(kafka=kafka, follow="registry", max_pending=64, max_batch=4,
                                workers=2)  # two batches in flight, each on its snapshot
    registry = _registry(settings)
    v1 = _promote_new(registry, model_dir, tmp_path, 1)
    server = serve(settings)
    wait_ready_version(server.url, v1)

    stop, results = threading.Event(), []
    threads = _clients(server.url, stop, results)
    swaps: list[tuple[str, float, float]] = []  # (version, promoted at, serving seen at)
    try:
        time.sleep(2.0)
        for seed in (2, 3):
            promoted = time.monotonic()
            version = _promote_new(registry, model_dir, tmp_path, seed)  # announced
            wait_ready_version(server.url, version, timeout_s=60)
            swaps.append((version, promoted, time.monotonic()))
            time.sleep(2.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)

    (v2, v2_promoted, v2_seen), (v3, v3_promoted, v3_seen) = swaps
    failures = [r for r in results if r.status != 200]
    assert not failures, f"{len(failures)} of {len(results)} requests failed: {failures[:3]}"
    # Requests were in flight at each swap: one served by the new model started before one
    # served by the old model finished. Whenever the swap fell, one of the two was running
    # then (the new one's snapshot is after it, the old one's before). Not "one request spans
    # promote → seen": that window includes building the adapter, longer than a request.
    for old, new in ((v1, v2), (v2, v3)):
        last_old = max(r.finished for r in results if r.version == old)
        assert any(r.started < last_old for r in results if r.version == new), (old, new)
    rank = {v1: 1, v2: 2, v3: 3}
    assert {r.version for r in results} == {v1, v2, v3}
    for r in results:  # the version that served is the one current when the request ran
        if r.finished < v2_promoted:
            assert r.version == v1
        if r.started > v2_seen:
            assert rank[r.version] >= 2, r
        if r.finished < v3_promoted:
            assert rank[r.version] <= 2, r
        if r.started > v3_seen:
            assert r.version == v3, r
    # versions go back only where a batch started on the older model ended after one on the
    # newer (two workers), never for longer than the clients' requests in flight
    by_finish = sorted(results, key=lambda r: r.finished)
    ranks = [rank[r.version] for r in by_finish]
    assert sum(1 for a, b in zip(ranks, ranks[1:], strict=False) if b < a) <= CLIENTS

    answered = {r.request_id: r.version for r in results}
    messages = read_topic(kafka, kafka.topics.impressions,
                          until=lambda ms: set(answered) <= set(ids_of(ms)), timeout_s=60)
    logged = [json.loads(m.value) for m in messages]
    assert sorted(e["request_id"] for e in logged) == sorted(answered)  # once each
    assert all(e["model_version"] == answered[e["request_id"]] for e in logged)

    assert metric(server.url, "toolrec_serving_swaps_total") == 3
    assert metric(server.url, f'toolrec_serving_model_info{{version="{v3}"}}') == 1


def test_failed_loads_keep_the_current_model_and_rollback_goes_through_the_registry(
        kafka: Any, settings_factory: Any, serve: Any, model_dir: Path, tmp_path: Path) -> None:
    settings = settings_factory(kafka=kafka, follow="registry", admin_api_key=KEY)
    registry = _registry(settings)
    v1 = _promote_new(registry, model_dir, tmp_path, 1)
    server = serve(settings)
    wait_ready_version(server.url, v1)
    client = httpx.Client(base_url=server.url, timeout=120, headers={"X-API-Key": KEY})

    # 1. an announced champion whose base model is missing: load fails, v1 keeps serving
    broken = _promote_new(registry, model_dir, tmp_path, 2, base_model=tmp_path / "missing")
    deadline = time.monotonic() + 30
    while metric(server.url, "toolrec_serving_swap_failures_total") < 1:
        assert time.monotonic() < deadline, "the failed load was not reported"
        time.sleep(0.2)
    state = client.get("/readyz").json()
    assert state["ready"] and state["model_version"] == v1
    assert "missing" in state["last_error"] and broken != v1
    assert client.post("/v1/recommend", json=BASE_REQUEST).json()["model_version"] == v1

    # 2. an admin reload of the same broken champion fails the same way, answered as 500
    reload = client.post("/v1/admin/reload", json={"force": True})
    assert reload.status_code == 500 and reload.json()["action"] == "failed"
    assert reload.json()["version"] == v1 and "missing" in reload.json()["error"]

    # 3. a valid promotion is followed; an admin rollback goes back through the registry
    v3 = _promote_new(registry, model_dir, tmp_path, 3)
    wait_ready_version(server.url, v3)
    rollback = client.post("/v1/admin/rollback", json={"to": v1})
    assert rollback.status_code == 200, rollback.text
    assert rollback.json()["action"] == "swapped" and rollback.json()["version"] == v1
    assert registry.champion().version == v1
    assert client.post("/v1/recommend", json=BASE_REQUEST).json()["model_version"] == v1
    nothing = client.post("/v1/admin/reload", json={})
    assert nothing.status_code == 200 and nothing.json()["action"] == "unchanged"
    client.close()


def _manager(settings: Any, registry: Any) -> Any:
    from serving.hotswap import ModelManager
    from serving.metrics import Metrics

    return ModelManager(settings.serving, settings.trainer.generator, metrics=Metrics(),
                        registry=registry)


def test_an_unreadable_registry_keeps_the_current_model_whatever_is_announced(
        kafka: Any, settings_factory: Any, model_dir: Path, tmp_path: Path) -> None:
    """Issue 16: a path in a Kafka announcement is never loaded, even when the registry is
    unreadable; the current model keeps serving and the reason is recorded."""
    from serving.follower import ModelFollower

    settings = settings_factory(kafka=kafka, follow="registry", warmup_tokens=0)
    registry = _registry(settings)
    v1 = _promote_new(registry, model_dir, tmp_path, 1)
    v2 = registry.import_adapter(make_lora(model_dir, tmp_path / "a2", 2), model_dir,
                                 promote=False)
    manager = _manager(settings, registry)
    assert manager.reconcile().version == v1
    follower = ModelFollower(kafka, manager, poll_timeout_s=0.2)
    manager.start()
    follower.start()
    try:
        deadline = time.monotonic() + 30
        while not follower.connected or manager.last_outcome is None or (
                manager.last_outcome.reason != "follower subscribed"):
            assert time.monotonic() < deadline, "the follower did not subscribe"
            time.sleep(0.1)
        for log_file in (Path(registry.uri) / "_delta_log").glob("*.json"):
            log_file.write_text("not a delta log")
        registry.announce(v2, "promote", previous=v1)  # a fresh announcement of another path
        while manager.last_outcome.reason != "announcement":
            assert time.monotonic() < deadline, "the announcement was not followed"
            time.sleep(0.1)
        assert manager.last_outcome.action == "failed"
        assert manager.version == v1 and follower.seen >= 1
        assert "cannot read the model registry" in (manager.last_error or "")
    finally:
        follower.stop()
        manager.stop()
    assert manager.version is None  # stop released the model


def test_model_paths_only_under_the_artifact_dir_and_with_the_registry_checksum(
        settings_factory: Any, model_dir: Path, tmp_path: Path) -> None:
    import dataclasses
    import json as jsonlib

    settings = settings_factory(follow="registry", warmup_tokens=0)
    registry = _registry(settings.model_copy(update={"kafka": None}))
    v1 = _promote_new(registry, model_dir, tmp_path, 1)
    manager = _manager(settings, registry)
    assert manager.reconcile().version == v1
    record = registry.champion()

    def serve_row(**changes: Any) -> Any:
        registry.merge([dataclasses.replace(record, **changes)], "test")
        return manager.reconcile(force=True)

    outside = make_lora(model_dir, tmp_path / "outside", 5)  # not under the artifact dir
    (outside / "manifest.json").write_text((record.adapter_dir / "manifest.json").read_text())
    cases: list[tuple[str, dict[str, Any]]] = [
        ("outside the artifact directory", dict(adapter_path=str(outside))),
        ("outside the artifact directory",
         dict(adapter_path=str(registry.artifact_dir / ".." / "outside"))),
        ("no artifact checksum", dict(artifact_sha256=None)),
        ("SHA-256", dict(artifact_sha256="0" * 64)),
        ("not the configured base model", dict(base_model=str(tmp_path))),
        ("no checksum for", dict(engine_sha256=None)),
    ]
    for expected, changes in cases:
        outcome = serve_row(**changes)
        assert outcome.action == "failed" and manager.version == v1, (expected, outcome)
        assert expected in (outcome.error or ""), (expected, outcome.error)

    # files replaced together with a manifest that matches them: the registry's checksum
    # of the manifest still tells
    registry.merge([record], "test")
    manifest = jsonlib.loads((record.adapter_dir / "manifest.json").read_text())
    manifest["note"] = "rewritten"
    (record.adapter_dir / "manifest.json").write_text(jsonlib.dumps(manifest))
    outcome = manager.reconcile(force=True)
    assert outcome.action == "failed" and "the files were replaced" in (outcome.error or "")
    assert manager.version == v1


def test_a_swap_holds_current_and_new_only_and_uses_the_fast_engine(
        settings_factory: Any, model_dir: Path, tmp_path: Path) -> None:
    import gc
    import weakref

    from generator.fast import FastGenerator
    from generator.generator import Generator

    settings = settings_factory(follow="registry", warmup_tokens=0)
    registry = _registry(settings.model_copy(update={"kafka": None}))
    _promote_new(registry, model_dir, tmp_path, 1)
    manager = _manager(settings, registry)
    manager.reconcile()
    assert registry.champion().engine_path and registry.champion().engine_sha256
    assert isinstance(manager.snapshot(), FastGenerator)
    loaded = [weakref.ref(manager.snapshot())]
    for seed in (2, 3):
        _promote_new(registry, model_dir, tmp_path, seed)
        assert manager.reconcile().action == "swapped"
        loaded.append(weakref.ref(manager.snapshot()))
    gc.collect()
    # neither the first model nor a "previous" one is kept: only the one serving
    assert [ref() is not None for ref in loaded] == [False, False, True]

    torch_settings = settings_factory(follow="registry", warmup_tokens=0, engine="torch")
    torch_manager = _manager(torch_settings, registry)
    assert torch_manager.reconcile().action == "swapped"
    assert type(torch_manager.snapshot()) is Generator


def test_an_admin_rollback_reports_its_own_swap_when_its_announcement_is_followed_at_once(
        settings_factory: Any, model_dir: Path, tmp_path: Path) -> None:
    """The race behind a flaky 'unchanged' rollback answer: the rollback's own announcement
    woke the background reconcile, which could load v1 between the registry change and the
    admin's reconcile; the admin then found v1 serving and answered 'unchanged'. The admin
    rollback now holds the reconcile lock across both steps, so the announcement's
    reconcile waits and finds nothing to do."""
    settings = settings_factory(follow="registry", warmup_tokens=0)
    registry = _registry(settings.model_copy(update={"kafka": None}))
    v1 = _promote_new(registry, model_dir, tmp_path, 1)
    v2 = _promote_new(registry, model_dir, tmp_path, 2)
    manager = _manager(settings, registry)
    manager.start()
    deadline = time.monotonic() + 60
    while manager.version != v2:
        assert time.monotonic() < deadline, manager.last_outcome
        time.sleep(0.1)
    rollback = registry.rollback

    def rollback_announced_and_followed(to: str | None = None) -> Any:
        reinstated = rollback(to=to)
        manager.request("announcement")  # what the follower does with the message
        time.sleep(1.5)  # the background reconcile gets every chance to run first
        return reinstated

    registry.rollback = rollback_announced_and_followed
    try:
        outcome = manager.rollback(to=v1)
        assert (outcome.action, outcome.version, outcome.previous) == ("swapped", v1, v2)
        deadline = time.monotonic() + 30
        while manager.last_outcome is outcome:  # then the announcement's reconcile runs
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert manager.last_outcome.action == "unchanged" and manager.version == v1
        assert manager.swaps == 2
    finally:
        manager.stop()


def test_a_champion_registered_before_checksums_serves_once_the_trainer_records_them(
        settings_factory: Any, model_dir: Path, tmp_path: Path) -> None:
    import dataclasses

    from generator.fast import FastGenerator

    settings = settings_factory(follow="registry", warmup_tokens=0)
    registry = _registry(settings.model_copy(update={"kafka": None}))
    v1 = _promote_new(registry, model_dir, tmp_path, 1)
    legacy = dataclasses.replace(registry.champion(), artifact_sha256=None, engine_path=None,
                                 engine_sha256=None)
    registry.merge([legacy], "an older trainer's row")
    manager = _manager(settings, registry)
    refused = manager.reconcile()
    assert refused.action == "failed" and "toolrec models announce" in (refused.error or "")
    registry.announce_champion()  # what the daemon does at start
    assert registry.champion().artifact_sha256 and registry.champion().engine_sha256
    assert manager.reconcile().version == v1
    assert isinstance(manager.snapshot(), FastGenerator)
