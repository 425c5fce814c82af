"""Benchmark of the recommendation API with SmolLM2 on this CPU.

    python -m bench.serving [--model models/smollm2-135m-instruct] [--adapter DIR |
                            --no-adapter] [--pairs 10] [--concurrency 4,16]
                            [--requests 12,32] [--max-batch N] [--skip-swap]

One process, one run: the API (uvicorn in a thread, real tansu broker for impressions,
real retrieval over the full SysToolKit) and its clients (httpx threads). It serves the
bootstrap SFT adapter when `toolrec models bootstrap --sft` has written it (the first
champion), else the base model. Exits 2 when SmolLM2 is not at --model.

1. Concurrency 1, interleaved: for each query, the *bare* call — `Retriever.search` +
   `Generator.generate` on the very generator the server holds — then the same query
   through `POST /v1/recommend`, alternating which goes first, so drifting load on a
   shared machine hits both alike. Decoding is seeded, so both generate the same tokens.
   Prints p50 / p99 / requests/s of each and the serving overhead ratio (target <= 1.10).
2. Concurrency 4 and 16 (default): p50 / p99 latency and requests/s through the API
   (requests queue and are batched up to `serving.max_batch`).
3. A swap under load (`--swap-steady-s`): concurrency 4 while `POST /v1/admin/reload
   {"force": true}` loads, warms up and swaps a fresh copy of the model; latency of the
   requests overlapping the swap against the steady-state ones, and failures (target 0).

Where the time goes: every answer carries its server-side timing (queue, retrieval,
generate, parse, spool); the rest of the client-measured latency is HTTP + JSON + the
event loop. The means are printed per phase.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_MODEL = Path("models/smollm2-135m-instruct")
DEFAULT_ADAPTER = Path("models/smollm2-135m-instruct-sft")  # `toolrec models bootstrap --sft`
ADMIN_KEY = "bench-admin-key-0123456789"
QUERIES = [
    ("my battery is low", "Your battery is at 12%.", {"battery": 12, "charging": False}),
    ("set an alarm for 7", "Alarm set for 7:00 tomorrow.", {"hour": 22}),
    ("it's too bright", "I lowered the brightness a bit.", {"hour": 23}),
    ("play some music", "Playing your liked songs.", {"headset": True}),
    ("what's the wifi password", "I can't read saved passwords.", {"network": "cellular"}),
    ("turn on do not disturb", "Do not disturb is on until 7.", {"hour": 21}),
    ("how do I get home", "Starting navigation home.", {"driving": True}),
    ("take a screenshot", "Screenshot saved.", {"foreground_app": "com.android.chrome"}),
]


@dataclass
class Sample:
    latency_s: float
    ok: bool
    status: int = 200
    timing: dict[str, float] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0
    texts: tuple[str, ...] = ()


def _body(i: int) -> dict[str, Any]:
    query, response, context = QUERIES[i % len(QUERIES)]
    return {"user_id": f"bench-{i % 7}", "session_id": f"s-{i % 5}", "query": query,
            "response": response, "recent_queries": [QUERIES[(i + 3) % len(QUERIES)][0]],
            "context": context}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _summary(name: str, samples: list[Sample], wall_s: float) -> dict[str, Any]:
    lat = [s.latency_s for s in samples if s.ok]
    row = {"phase": name, "n": len(samples), "failed": sum(not s.ok for s in samples),
           "p50_s": _pct(lat, 0.5), "p99_s": _pct(lat, 0.99),
           "mean_s": statistics.fmean(lat) if lat else float("nan"),
           "req_per_s": len(lat) / wall_s if wall_s else float("nan"),
           "rejected": sum(s.status == 503 for s in samples)}
    print(f"{name:<28} n={row['n']:<3} failed={row['failed']:<2} p50={row['p50_s']:.3f}s "
          f"p99={row['p99_s']:.3f}s mean={row['mean_s']:.3f}s "
          f"throughput={row['req_per_s']:.2f} req/s", flush=True)
    return row


def _breakdown(name: str, samples: list[Sample]) -> dict[str, float]:
    """Mean ms per phase: server stages from the answers, the rest is HTTP / event loop."""
    ok = [s for s in samples if s.ok and s.timing]
    if not ok:
        return {}
    keys = ("queue_ms", "retrieval_ms", "generate_ms", "parse_ms", "spool_ms", "total_ms")
    means = {k: statistics.fmean(s.timing.get(k, 0.0) for s in ok) for k in keys}
    client = statistics.fmean(s.latency_s * 1000 for s in ok)
    means["http_and_loop_ms"] = client - means["total_ms"]
    means["client_ms"] = client
    parts = "  ".join(f"{k.removesuffix('_ms')}={v:.0f}" for k, v in means.items())
    print(f"  where the time goes ({name}, mean ms): {parts}", flush=True)
    return means


# ---------------------------------------------------------------------------- phases


def _bare_call(services: Any, i: int) -> Sample:
    """Retrieval + generation exactly as the worker does it, without queue, HTTP or spool."""
    from generator.prompt import PromptInputs, prompt_tools
    from retrieval import DeviceContext

    body = _body(i)
    generator = services.manager.snapshot()
    k = services.generator_config.max_tools
    started = time.perf_counter()
    context = DeviceContext.parse(body["context"])
    hits = services.retriever.search(body["query"], response=body["response"],
                                     recent=body["recent_queries"], context=context, k=k)
    inputs = PromptInputs(query=body["query"], response=body["response"],
                          recent=tuple(body["recent_queries"]), tools=prompt_tools(hits),
                          context=context.model_dump(exclude_none=True))
    result = generator.generate(inputs, n=services.n_default,
                                decoding=services.engine.decodings["exploit"])
    texts = tuple(s.text for s in result.suggestions)
    return Sample(time.perf_counter() - started, True, texts=texts)


def _served_call(client: Any, i: int) -> Sample:
    started = time.perf_counter()
    try:
        response = client.post("/v1/recommend", json=_body(i))
        ok = response.status_code == 200
        body = response.json() if ok else {}
        status = response.status_code
    except Exception:  # a transport error is a failed request
        ok, body, status = False, {}, -1
    finished = time.perf_counter()
    texts = tuple(s["text"] for s in body.get("suggestions", []))
    return Sample(finished - started, ok, status, body.get("timing", {}), started, finished,
                  texts)


def phase_interleaved(services: Any, url: str, pairs: int) -> dict[str, Any]:
    import httpx

    bare, served = [], []
    with httpx.Client(base_url=url, timeout=300) as client:
        _served_call(client, 0)  # first request pays lazy imports and caches
        _bare_call(services, 0)
        wall_bare = wall_served = 0.0
        for i in range(pairs):
            order = ("bare", "served") if i % 2 == 0 else ("served", "bare")
            for which in order:
                if which == "bare":
                    sample = _bare_call(services, i)
                    bare.append(sample)
                    wall_bare += sample.latency_s
                else:
                    sample = _served_call(client, i)
                    served.append(sample)
                    wall_served += sample.latency_s
            print(f"  pair {i + 1}/{pairs}: bare {bare[-1].latency_s:.2f}s, "
                  f"served {served[-1].latency_s:.2f}s", flush=True)
    rows: dict[str, Any] = {
        "bare": _summary("bare retrieval+generate c=1", bare, wall_bare),
        "served": _summary("POST /v1/recommend c=1", served, wall_served),
    }
    rows["breakdown"] = _breakdown("c=1", served)
    same = sum(b.texts == s.texts for b, s in zip(bare, served, strict=True))
    print(f"  same suggestions from the bare call and the API (seeded decoding): "
          f"{same}/{pairs} pairs", flush=True)
    ratio_p50 = rows["served"]["p50_s"] / rows["bare"]["p50_s"]
    ratio_mean = rows["served"]["mean_s"] / rows["bare"]["mean_s"]
    pair_ratio = statistics.median(s.latency_s / b.latency_s
                                   for b, s in zip(bare, served, strict=True))
    # the API's own cost, from its timings: everything but retrieval + generation + parse
    own_ms = [s.latency_s * 1000 - s.timing["retrieval_ms"] - s.timing["generate_ms"]
              - s.timing["parse_ms"] for s in served if s.ok]
    work_s = statistics.fmean(s.latency_s for s in served) - statistics.fmean(own_ms) / 1000
    own_ratio = statistics.fmean(s.latency_s for s in served) / work_s
    print(f"serving overhead at concurrency 1 (target <= 1.10): p50 ratio {ratio_p50:.3f}, "
          f"mean ratio {ratio_mean:.3f}, median pair ratio {pair_ratio:.3f}; the API's own "
          f"time per request {statistics.fmean(own_ms):.1f} ms -> ratio {own_ratio:.4f}",
          flush=True)
    rows.update(overhead_ratio_p50=ratio_p50, overhead_ratio_mean=ratio_mean,
                overhead_ratio_pair_median=pair_ratio, own_ms=statistics.fmean(own_ms),
                overhead_ratio_own=own_ratio, same_suggestions=same)
    return rows


def _load(url: str, concurrency: int, total: int | None, *, stop: threading.Event | None = None,
          offset: int = 0) -> tuple[list[Sample], float]:
    """`concurrency` client threads sending `total` requests (or until `stop`)."""
    import httpx

    samples: list[Sample] = []
    counter = iter(range(offset, offset + 10**9))
    lock = threading.Lock()

    def next_index() -> int | None:
        with lock:
            i = next(counter)
            if total is not None and i - offset >= total:
                return None
            return None if stop is not None and stop.is_set() else i

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=600) as client:
            while (i := next_index()) is not None:
                sample = _served_call(client, i)
                with lock:
                    samples.append(sample)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples, time.perf_counter() - started


def phase_concurrency(url: str, concurrency: int, total: int) -> dict[str, Any]:
    samples, wall = _load(url, concurrency, total)
    row = _summary(f"POST /v1/recommend c={concurrency}", samples, wall)
    row["breakdown"] = _breakdown(f"c={concurrency}", samples)
    return row


def phase_swap(url: str, concurrency: int, steady_s: float) -> dict[str, Any]:
    import httpx

    stop = threading.Event()
    result: dict[str, Any] = {}
    box: dict[str, Any] = {}

    def run_load() -> None:
        box["samples"], box["wall"] = _load(url, concurrency, None, stop=stop, offset=1000)

    loader = threading.Thread(target=run_load)
    loader.start()
    time.sleep(steady_s)  # steady state first
    swap_start = time.perf_counter()
    answer = httpx.post(f"{url}/v1/admin/reload", json={"force": True},
                        headers={"X-API-Key": ADMIN_KEY}, timeout=900).json()
    swap_end = time.perf_counter()
    time.sleep(steady_s / 2)  # and after
    stop.set()
    loader.join()
    samples: list[Sample] = box["samples"]
    during = [s for s in samples if s.finished > swap_start and s.started < swap_end]
    steady = [s for s in samples if s not in during]
    print(f"swap: {answer.get('action')} in {swap_end - swap_start:.2f}s "
          f"(load + warm-up {answer.get('load_s') or 0:.2f}s)", flush=True)
    result["steady"] = _summary(f"steady c={concurrency}", steady, box["wall"])
    result["during_swap"] = _summary(f"overlapping the swap c={concurrency}", during, 0.0)
    result["swap_s"], result["answer"] = swap_end - swap_start, answer
    result["failed"] = sum(not s.ok for s in samples)
    if result["steady"]["p50_s"]:
        ratio = result["during_swap"]["p50_s"] / result["steady"]["p50_s"]
        result["swap_p50_ratio"] = ratio
        print(f"latency during the swap vs steady state: p50 ratio {ratio:.2f}; failed "
              f"requests {result['failed']}", flush=True)
    return result


# ---------------------------------------------------------------------------- set-up


def _settings(model_dir: Path, adapter: Path | None, tmp: Path, kafka: Any,
              max_batch: int | None) -> Any:
    from generator.config import GeneratorConfig
    from infra.config import InfraConfig
    from serving.config import ServingConfig
    from toolrec.config import Settings
    from trainer.config import TrainerConfig

    base = Settings()
    decoding = base.trainer.generator.decoding.model_copy(update={"seed": 0})
    generator = GeneratorConfig(**{**base.trainer.generator.model_dump(),
                                   "model_dir": model_dir, "decoding": decoding})
    serving = ServingConfig(**{
        **base.serving.model_dump(exclude={"admin_api_key"}),
        "follow": "static", "model_dir": model_dir, "adapter_dir": adapter,
        "explore_share": 0.0,
        "spool_dir": tmp / "spool", "admin_api_key": ADMIN_KEY, "max_pending": 64,
        "queue_timeout_s": 600, "request_timeout_s": 1800,  # measure latency, shed nothing
        "max_batch": max_batch or base.serving.max_batch,
    })
    return base.model_copy(update={
        "kafka": kafka, "serving": serving, "infra": InfraConfig(state_dir=tmp / "state"),
        "trainer": TrainerConfig(generator=generator, training=base.trainer.training),
    })


def _wait_ready(url: str, timeout_s: float = 1800) -> dict[str, Any]:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = httpx.get(f"{url}/readyz", timeout=10)
        if response.status_code == 200:
            return dict(response.json())
        time.sleep(1.0)
    raise SystemExit(f"the API was not ready within {timeout_s} s: {response.text}")


def _run(
    args: argparse.Namespace, on_ready: Callable[[Any, str], dict[str, Any]]
) -> dict[str, Any]:
    from infra.broker import LocalStack
    from infra.processes import free_port
    from infra.topics import ensure_topics
    from serving.main import create_app
    from serving.server import ThreadedServer
    from serving.services import Services

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmpdir:
        tmp = Path(tmpdir)
        with LocalStack(tmp / "broker") as stack:
            kafka = stack.kafka_config()
            ensure_topics(kafka)
            settings = _settings(args.model, args.adapter, tmp, kafka, args.max_batch)
            services = Services.build(settings)
            print("starting the API (loads SmolLM2; the first run also builds the tool "
                  "index)…", flush=True)
            started = time.perf_counter()
            with ThreadedServer(create_app(settings, services=services),
                                port=free_port()) as server:
                state = _wait_ready(server.url)
                print(f"ready in {time.perf_counter() - started:.1f}s: {state}", flush=True)
                results = on_ready(services, server.url)
                drained = services.publisher.wait_drained(60)
                results["impressions_drained"] = drained
            results["sources"] = _sources(tmp / "spool")
            return results


def _sources(spool_dir: Path) -> dict[str, int]:
    """How the logged answers were made: by the model, or the retrieval fallback."""
    from collections import Counter

    from serving.spool import read_spool

    counts = Counter(json.loads(r.value)["decoding"]["source"] for _, r in read_spool(spool_dir)
                     if r.topic == "toolrec.impressions")
    print(f"answers by source: {dict(counts)} (retrieval_fallback = the model wrote no "
          "usable line)", flush=True)
    return dict(counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--adapter", type=Path, default=None,
                        help=f"LoRA adapter to serve (default: {DEFAULT_ADAPTER} if present).")
    parser.add_argument("--no-adapter", action="store_true", help="Serve the base model.")
    parser.add_argument("--pairs", type=int, default=10, help="Interleaved c=1 pairs.")
    parser.add_argument("--swap-steady-s", type=float, default=60.0,
                        help="Seconds of load before the swap (half as long after it).")
    parser.add_argument("--concurrency", default="4,16", help="Concurrency levels above 1.")
    parser.add_argument("--requests", default="12,32", help="Requests per level above 1.")
    parser.add_argument("--max-batch", type=int, default=None,
                        help="serving.max_batch (default: the configured one).")
    parser.add_argument("--skip-swap", action="store_true")
    args = parser.parse_args(argv)
    if not (args.model / "config.json").is_file():
        print(f"SmolLM2 is not at {args.model} (no config.json): run `toolrec models "
              "bootstrap` first, or pass --model DIR", file=sys.stderr)
        return 2
    if args.adapter is None and not args.no_adapter and (
            DEFAULT_ADAPTER / "adapter_config.json").is_file():
        args.adapter = DEFAULT_ADAPTER
    if args.no_adapter:
        args.adapter = None
    levels = [int(c) for c in args.concurrency.split(",") if c]
    totals = [int(n) for n in args.requests.split(",") if n]
    if len(totals) != len(levels):
        parser.error("--requests needs one number per --concurrency level")

    def phases(services: Any, url: str) -> dict[str, Any]:
        results: dict[str, Any] = {"c1": phase_interleaved(services, url, args.pairs)}
        for level, total in zip(levels, totals, strict=True):
            results[f"c{level}"] = phase_concurrency(url, level, total)
        if not args.skip_swap:
            results["swap"] = phase_swap(url, 4, args.swap_steady_s)
        return results

    import torch

    print(f"bench.serving: model {args.model} + adapter {args.adapter}, torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    results = _run(args, phases)
    print("RESULT " + json.dumps(results, default=float, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
