"""Several recommend workers (`serving.workers`): with two, two batches generate at the same
time on the ctranslate2 engine (one is the control: the second batch waits for the first);
Retry-After counts the batches the workers run at once. Hot-swap under concurrent clients
with two workers: tests/serving/test_hotswap.py."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from tests.serving.conftest import BASE_REQUEST


def _at_once(url: str, bodies: list[dict[str, Any]]) -> list[int]:
    """POST the bodies to /v1/recommend from one thread each; their status codes."""
    statuses = [0] * len(bodies)

    def post(i: int) -> None:
        statuses[i] = httpx.post(f"{url}/v1/recommend", json=bodies[i], timeout=120).status_code

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return statuses


@pytest.mark.parametrize(("workers", "met"), [(2, [True, True]), (1, [False, False])])
def test_two_workers_generate_two_batches_at_once(
        settings_factory: Any, serve: Any, workers: int, met: list[bool]) -> None:
    from generator.fast import FastGenerator
    from tests.generator.meeting import Meeting

    # one request per batch, so two requests are two batches (two generate_batch calls)
    server = serve(settings_factory(workers=workers, max_batch=1, explore_share=0.0))
    generator = server.services.manager.snapshot()
    assert isinstance(generator, FastGenerator)
    generator.model = meeting = Meeting(generator.model, wait_s=30.0 if workers > 1 else 2.0)
    try:
        bodies = [{**BASE_REQUEST, "user_id": f"user-{i}"} for i in range(2)]
        assert _at_once(server.url, bodies) == [200, 200]
    finally:
        generator.model = meeting.model
    assert meeting.met == met


@pytest.mark.parametrize(("workers", "retry_after_s"), [(1, 6), (2, 3)])
def test_retry_after_counts_the_batches_the_workers_run_at_once(
        settings_factory: Any, workers: int, retry_after_s: int) -> None:
    from serving.engine import RecommendEngine
    from serving.hotswap import ModelManager
    from serving.metrics import Metrics

    settings = settings_factory(workers=workers, max_batch=4)
    metrics = Metrics()
    manager = ModelManager(settings.serving, settings.trainer.generator, metrics=metrics)
    engine = RecommendEngine(settings.serving, settings.trainer.generator, manager=manager,
                             retriever=None, metrics=metrics)  # type: ignore[arg-type]
    engine._pending = 7  # 7 admitted + the one asking: 8 jobs, batches of 4 at 3 s each
    assert engine.retry_after() == retry_after_s
