"""Bounded hostile load on the API: N clients for S seconds, a mix of valid and hostile
requests, zero 5xx allowed (503 `overloaded` is the documented back-pressure and is counted
on its own).

    python -m bench.api_load [--clients 20] [--seconds 60] [--feedback-rate 100000]

One process: the API in a thread (a tiny Llama so the load is on the API rather than on
generation, full SysToolKit retrieval, no broker — events stay in the spool), and `clients`
httpx threads. Each client loops over a weighted mix: valid feedback and recommend calls,
strict-schema violations (`"battery": "50"`, a query of zero-width spaces, `ts: 0`, a
far-future `ts`), a 1 MB body, invalid UTF-8, 1,000-deep JSON, unknown paths and wrong
methods. Prints per-kind counts by status and p50 / p99 latency, the API process's CPU
seconds and the machine's load; exits 1 on any 500/502/504 or a refusal that is not in the
ErrorBody shape. `--feedback-rate` sets serving.feedback_rate_per_s (all clients share
127.0.0.1, so the default per-client limit would answer most feedback 429).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

VALID_RECOMMEND = {"user_id": "bench-user", "session_id": "bench-s", "query": "my battery is low",
                   "response": "Your battery is at 12%.", "context": {"battery": 12}, "n": 2}


def _mix(rng: random.Random, client: int) -> tuple[str, str, str, bytes | None]:
    """(kind, method, path, body) of the next request."""
    now = int(time.time() * 1000)
    feedback = {"user_id": f"bench-{client}", "request_id": f"r-{rng.randrange(10**6)}",
                "type": "click", "position": 1}
    choices: list[tuple[float, str, str, str, Any]] = [
        (0.30, "feedback", "POST", "/v1/feedback", feedback),
        (0.05, "feedback_zero_ts", "POST", "/v1/feedback", {**feedback, "ts": 0}),
        (0.05, "feedback_future_ts", "POST", "/v1/feedback", {**feedback, "ts": now + 10**10}),
        (0.05, "feedback_string_position", "POST", "/v1/feedback",
         {**feedback, "position": "1"}),
        (0.10, "recommend", "POST", "/v1/recommend", VALID_RECOMMEND),
        (0.10, "recommend_battery_string", "POST", "/v1/recommend",
         {**VALID_RECOMMEND, "context": {"battery": "50"}}),
        (0.05, "recommend_zero_width", "POST", "/v1/recommend",
         {**VALID_RECOMMEND, "query": "\u200b\u200b"}),
        (0.05, "body_1mb", "POST", "/v1/recommend", b"{" * 1_000_000),
        (0.05, "invalid_utf8", "POST", "/v1/feedback", b'{"user_id": "\xff"}'),
        (0.05, "deep_json", "POST", "/v1/feedback", b"[" * 1000 + b"]" * 1000),
        (0.05, "admin_1mb", "POST", "/v1/admin/reload", b" " * 1_000_000),
        (0.05, "not_found", "GET", "/v2/nothing", None),
        (0.05, "wrong_method", "GET", "/v1/feedback", None),
    ]
    roll, acc = rng.random() * sum(c[0] for c in choices), 0.0
    for weight, kind, method, path, body in choices:
        acc += weight
        if roll <= acc:
            raw = body if isinstance(body, bytes | None) else json.dumps(body).encode()
            return kind, method, path, raw
    raise AssertionError("unreachable")


def _client(url: str, seed: int, stop: threading.Event,
            results: list[tuple[str, int, float, bool]]) -> None:
    import httpx

    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=120) as http:
        while not stop.is_set():
            kind, method, path, body = _mix(rng, seed)
            started = time.perf_counter()
            try:
                response = http.request(method, path, content=body,
                                        headers={"content-type": "application/json"})
            except httpx.HTTPError:
                results.append((kind, 0, time.perf_counter() - started, False))
                continue
            shaped = response.status_code < 400 or set(response.json()) == {
                "error", "message", "fields"}
            results.append((kind, response.status_code, time.perf_counter() - started, shaped))


def _settings(tmp: Path, feedback_rate: float) -> Any:
    from generator.config import GeneratorConfig
    from infra.config import InfraConfig
    from retrieval import RetrievalConfig
    from serving.config import ServingConfig
    from toolrec.config import Settings
    from toolrec.kafka import KafkaConfig
    from trainer.config import TrainerConfig
    from trainer.models import build_tiny_model

    model = build_tiny_model(tmp / "tiny", seed=0)
    base = Settings()
    generator = GeneratorConfig(**{**base.trainer.generator.model_dump(), "model_dir": model})
    serving: dict[str, Any] = {
        "follow": "static", "spool_dir": tmp / "spool", "feedback_rate_per_s": feedback_rate,
        "feedback_burst": 1000, "max_pending": 64, "registry_poll_s": 0.0,
        "drain_timeout_s": 0.5, "send_timeout_s": 0.5, "torch_threads": 1,
    }
    if "engine" in ServingConfig.model_fields:  # the tiny model runs on the PyTorch path
        serving["engine"] = "torch"
    return base.model_copy(update={
        "kafka": KafkaConfig(bootstrap_servers="127.0.0.1:1"),
        "serving": ServingConfig(**serving), "infra": InfraConfig(state_dir=tmp / "state"),
        "retrieval": RetrievalConfig(cache_dir=tmp / "retrieval-cache"),
        "trainer": TrainerConfig(generator=generator, training=base.trainer.training),
    })


def _report(results: list[tuple[str, int, float, bool]], wall_s: float) -> int:
    by_kind: dict[str, list[tuple[int, float, bool]]] = defaultdict(list)
    for kind, status, latency, shaped in results:
        by_kind[kind].append((status, latency, shaped))
    bad = 0
    for kind in sorted(by_kind):
        rows = by_kind[kind]
        latencies = sorted(r[1] for r in rows)
        statuses = Counter(r[0] for r in rows)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"{kind:28s} n={len(rows):6d} p50={statistics.median(latencies) * 1000:8.1f} ms "
              f"p99={p99 * 1000:8.1f} ms  statuses={dict(sorted(statuses.items()))}")
        bad += sum(n for s, n in statuses.items() if s in (0, 500, 502, 504))
        bad += sum(1 for r in rows if not r[2])
    print(f"requests={len(results)} in {wall_s:.0f} s = {len(results) / wall_s:.0f}/s; "
          f"server errors or unshaped refusals: {bad}")
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--feedback-rate", type=float, default=100_000.0)
    args = parser.parse_args(argv)

    import logging

    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    from infra.processes import free_port
    from serving.main import create_app
    from serving.server import ThreadedServer
    from serving.services import Services

    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(Path(tmp), args.feedback_rate)
        services = Services.build(settings)
        server = ThreadedServer(create_app(settings, services=services), port=free_port())
        server.start()
        try:
            _wait_ready(server.url)
            results: list[tuple[str, int, float, bool]] = []
            stop = threading.Event()
            threads = [threading.Thread(target=_client, args=(server.url, i, stop, results))
                       for i in range(args.clients)]
            cpu0, started = time.process_time(), time.perf_counter()
            for thread in threads:
                thread.start()
            time.sleep(args.seconds)
            stop.set()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - started
            cpu = time.process_time() - cpu0
        finally:
            server.stop()
    print(f"load average before/after: {os.getloadavg()}; process CPU {cpu:.1f} s "
          f"(server and clients share the process)")
    bad = _report(results, wall)
    return 1 if bad else 0


def _wait_ready(url: str, timeout_s: float = 600) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/readyz", timeout=10).status_code == 200:
            return
        time.sleep(0.5)
    raise SystemExit(f"the API was not ready within {timeout_s} s")


if __name__ == "__main__":
    sys.exit(main())
