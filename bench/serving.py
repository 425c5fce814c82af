"""Benchmark of the recommendation API with SmolLM2 on this CPU, both inference engines.

    python -m bench.serving [--model models/smollm2-135m-instruct] [--adapter DIR |
                            --no-adapter] [--pairs 8] [--concurrency 1,4,8]
                            [--requests 8,16,24] [--engines ctranslate2,torch]
                            [--batch-probe 4] [--workers N] [--workers-probe 1]
                            [--swap-steady-s 20] [--skip-swap]

One process, one run: one API per engine (uvicorn in threads, real tansu broker for
impressions, real retrieval over the full SysToolKit, shared), and their clients (httpx
threads), on the same prompts. It serves the bootstrap SFT adapter when `toolrec models
bootstrap --sft` has written it (the first champion), else the base model; the fast engine
converts it once at start (LoRA merged, CTranslate2 int8: what promotion does). Exits 2
when SmolLM2 is not at --model.

1. Quality on the gate's prompts (`trainer.evaluate`, greedy): format-valid rate,
   relevance, suggestions per request, identical lists; CPU seconds of each engine.
2. API overhead of the default engine at concurrency 1, interleaved: the *bare* call —
   `Retriever.search` + `Generator.generate` on the generator the server holds — then the
   same query through `POST /v1/recommend`, alternating which goes first.
3. Each concurrency level (1, 4, 8), the engines alternating level by level, so drifting
   load hits both alike: p50 / p99 / requests/s, then the ratio fast / PyTorch.
4. Dynamic batching probe (`--batch-probe N`): the fast engine at the highest concurrency
   with the other `serving.max_batch` (1 against its default 4, or N against 1).
   Workers probe (`--workers-probe N`): the same level with the other `serving.workers`
   (2 against the default 1, or N against it): batches generated at once.
5. A swap under load on the default engine (`--swap-steady-s`): concurrency 4 while
   `POST /v1/admin/reload {"force": true}` loads, warms up and swaps a fresh copy.

The last three lines are the default engine's `recommend_p50_s_c1 <s>`,
`recommend_rps_c8 <r>` and `api_overhead_ratio <x>`. Every answer carries its server-side
timing (queue, retrieval, generate, parse, spool); the rest is HTTP + JSON + event loop.
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
    print(f"  same suggestions from the bare call and the API: {same}/{pairs} pairs (seeded "
          "decoding repeats on PyTorch; the fast engine's sampler ignores the seed)",
          flush=True)
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


def phase_concurrency(url: str, concurrency: int, total: int, *,
                      label: str | None = None) -> dict[str, Any]:
    label = label or f"c={concurrency}"
    cpu = time.process_time()
    samples, wall = _load(url, concurrency, total)
    row = _summary(f"POST /v1/recommend {label}", samples, wall)
    # CPU seconds of this process (the API under test, its clients, the idle other API) per
    # answered request: less sensitive to the machine's load than wall-clock time
    row["cpu_s_per_request"] = (time.process_time() - cpu) / max(1, len(samples))
    print(f"  CPU per request ({label}): {row['cpu_s_per_request']:.3f} s", flush=True)
    row["breakdown"] = _breakdown(label, samples)
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


def _settings(args: argparse.Namespace, tmp: Path, kafka: Any, *, engine: str,
              **probe: int) -> Any:
    """The API's settings; `probe` overrides max_batch or workers (a probe's other value)."""
    from generator.config import GeneratorConfig
    from infra.config import InfraConfig
    from serving.config import ServingConfig
    from toolrec.config import Settings
    from trainer.config import TrainerConfig

    base = Settings()
    decoding = base.trainer.generator.decoding.model_copy(update={"seed": 0})
    generator = GeneratorConfig(**{**base.trainer.generator.model_dump(),
                                   "model_dir": args.model, "decoding": decoding})
    serving = ServingConfig(**{
        **base.serving.model_dump(exclude={"admin_api_key"}),
        "follow": "static", "model_dir": args.model, "adapter_dir": args.adapter,
        "explore_share": 0.0, "engine": engine, "engine_cache_dir": tmp / "engines",
        "spool_dir": tmp / _spool_name(engine, probe), "admin_api_key": ADMIN_KEY,
        "max_pending": 64, "queue_timeout_s": 600, "request_timeout_s": 1800,  # shed nothing
        "max_batch": args.max_batch or base.serving.max_batch,  # None: per engine
        "workers": args.workers or base.serving.workers,
        **probe,
    })
    return base.model_copy(update={
        "kafka": kafka, "serving": serving, "infra": InfraConfig(state_dir=tmp / "state"),
        "trainer": TrainerConfig(generator=generator, training=base.trainer.training),
    })


def _spool_name(engine: str, probe: dict[str, int]) -> str:
    return "-".join([f"spool-{engine}", *(f"{k}{v}" for k, v in sorted(probe.items()))])


def _wait_ready(url: str, timeout_s: float = 1800) -> dict[str, Any]:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = httpx.get(f"{url}/readyz", timeout=10)
        if response.status_code == 200:
            return dict(response.json())
        time.sleep(1.0)
    raise SystemExit(f"the API was not ready within {timeout_s} s: {response.text}")


@dataclass
class Api:
    """One running API of the benchmark."""

    name: str
    services: Any
    url: str
    server: Any


def _start(name: str, settings: Any, retriever: Any) -> Api:
    from infra.processes import free_port
    from serving.main import create_app
    from serving.server import ThreadedServer
    from serving.services import Services

    services = Services.build(settings, retriever=retriever)
    server = ThreadedServer(create_app(settings, services=services), port=free_port()).start()
    started = time.perf_counter()
    state = _wait_ready(server.url)
    serving = settings.serving
    print(f"{name}: ready in {time.perf_counter() - started:.1f}s (model "
          f"{state['model_version']}, workers {serving.worker_count}, max_batch "
          f"{serving.batch_limit})", flush=True)
    return Api(name, services, server.url, server)


def phase_quality(apis: dict[str, Api]) -> dict[str, Any]:
    """The gate's generation metrics of each engine's serving generator, greedy."""
    from trainer.config import TrainingConfig
    from trainer.evaluate import ModelEvaluator

    first = next(iter(apis.values())).services
    evaluator = ModelEvaluator(TrainingConfig(), first.generator_config,
                               linker=first.retriever, encoder=first.retriever.encode)
    rows: dict[str, Any] = {}
    lists: dict[str, list[list[str]]] = {}
    for name, api in apis.items():
        cpu = time.process_time()
        metrics, results = evaluator.score_generator(api.services.manager.snapshot())
        metrics["cpu_s"] = time.process_time() - cpu
        lists[name] = [[s.text for s in r.suggestions] for r in results]
        rows[name] = metrics
        print(f"quality {name:<12} format_valid={metrics['format_valid_rate']:.3f} "
              f"relevance={metrics['relevance'] or float('nan'):.4f} "
              f"suggestions/request={metrics['suggestions_per_request']:.2f} "
              f"cpu={metrics['cpu_s']:.2f}s", flush=True)
    names = list(apis)
    if len(names) == 2:
        a, b = (rows[n] for n in names)
        same = sum(x == y for x, y in zip(lists[names[0]], lists[names[1]], strict=True))
        rows["format_valid_diff"] = a["format_valid_rate"] - b["format_valid_rate"]
        rows["relevance_diff"] = (a["relevance"] or 0.0) - (b["relevance"] or 0.0)
        rows["identical_lists"] = f"{same}/{len(lists[names[0]])}"
        print(f"quality {names[0]} - {names[1]}: format_valid {rows['format_valid_diff']:+.3f}, "
              f"relevance {rows['relevance_diff']:+.4f} (parity: within 0.01), identical "
              f"greedy lists {rows['identical_lists']}; CPU ratio "
              f"{a['cpu_s'] / max(b['cpu_s'], 1e-9):.2f}", flush=True)
    return rows


def phase_levels(apis: dict[str, Api], levels: list[int], totals: list[int]) -> dict[str, Any]:
    """Each level on every engine, alternating engines level by level."""
    rows: dict[str, Any] = {}
    for level, total in zip(levels, totals, strict=True):
        for name, api in apis.items():
            row = phase_concurrency(api.url, level, total, label=f"{name} c={level}")
            rows[f"{name}/c{level}"] = row
        names = list(apis)
        if len(names) == 2:
            a, b = (rows[f"{n}/c{level}"] for n in names)
            print(f"ratio {names[0]}/{names[1]} c={level}: p50 {a['p50_s'] / b['p50_s']:.3f}, "
                  f"requests/s {a['req_per_s'] / b['req_per_s']:.2f}, CPU per request "
                  f"{a['cpu_s_per_request'] / b['cpu_s_per_request']:.2f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--adapter", type=Path, default=None,
                        help=f"LoRA adapter to serve (default: {DEFAULT_ADAPTER} if present).")
    parser.add_argument("--no-adapter", action="store_true", help="Serve the base model.")
    parser.add_argument("--pairs", type=int, default=8, help="Interleaved c=1 overhead pairs.")
    parser.add_argument("--engines", default="ctranslate2,torch",
                        help="Engines to compare; the first is the default engine.")
    parser.add_argument("--swap-steady-s", type=float, default=20.0,
                        help="Seconds of load before the swap (half as long after it).")
    parser.add_argument("--concurrency", default="1,4,8", help="Concurrency levels.")
    parser.add_argument("--requests", default="8,16,24", help="Requests per level.")
    parser.add_argument("--max-batch", type=int, default=None,
                        help="serving.max_batch (default: the configured one).")
    parser.add_argument("--batch-probe", type=int, default=None,
                        help="Also run the highest level on the first engine with this "
                        "max_batch (default: 1 if the engine batches by default, else 4; "
                        "0: skip).")
    parser.add_argument("--workers", type=int, default=None,
                        help="serving.workers (default: the configured one).")
    parser.add_argument("--workers-probe", type=int, default=None,
                        help="Also run the highest level on the first engine with this many "
                        "workers (default: 1 if the engine runs more by default, else 2; 0: "
                        "skip).")
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
    engines = [e for e in args.engines.split(",") if e]
    levels = [int(c) for c in args.concurrency.split(",") if c]
    totals = [int(n) for n in args.requests.split(",") if n]
    if len(totals) != len(levels):
        parser.error("--requests needs one number per --concurrency level")

    import torch

    print(f"bench.serving: model {args.model} + adapter {args.adapter}, engines {engines}, "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    results = _run(args, engines, levels, totals)
    print("RESULT " + json.dumps(results, default=float, sort_keys=True), flush=True)
    default = engines[0]
    c1 = results["levels"].get(f"{default}/c1", {}).get("p50_s", float("nan"))
    top = results["levels"].get(f"{default}/c8", {}).get("req_per_s", float("nan"))
    print(f"load average at the end {os.getloadavg()[0]:.1f} (a loaded machine: the ratios "
          "hold, the absolute numbers are upper bounds)", flush=True)
    print(f"default engine {default}: workers {results['workers']}, max_batch "
          f"{results['max_batch']}")
    print(f"recommend_p50_s_c1 {c1:.3f}")
    print(f"recommend_rps_c8 {top:.2f}")
    print(f"api_overhead_ratio {results['overhead']['overhead_ratio_own']:.4f}")
    return 0


def _run(args: argparse.Namespace, engines: list[str], levels: list[int],
         totals: list[int]) -> dict[str, Any]:
    from infra.broker import LocalStack
    from infra.topics import ensure_topics
    from retrieval import Retriever
    from toolrec.config import Settings

    results: dict[str, Any] = {"load_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmpdir:
        tmp = Path(tmpdir)
        with LocalStack(tmp / "broker") as stack:
            kafka = stack.kafka_config()
            ensure_topics(kafka)
            retriever = Retriever(Settings().retrieval).warm()
            apis: dict[str, Api] = {}
            try:
                for engine in engines:
                    apis[engine] = _start(engine, _settings(args, tmp, kafka, engine=engine),
                                          retriever)
                results["quality"] = phase_quality(apis)
                default = apis[engines[0]]
                results["overhead"] = phase_interleaved(default.services, default.url,
                                                        args.pairs)
                results["levels"] = phase_levels(apis, levels, totals)
                main = _settings(args, tmp, kafka, engine=engines[0]).serving
                results["workers"], results["max_batch"] = main.worker_count, main.batch_limit
                probes = {"max_batch": (args.batch_probe, main.batch_limit, 4),
                          "workers": (args.workers_probe, main.worker_count, 2)}
                for knob, (asked, current, more) in probes.items():
                    value = asked or (1 if current > 1 else more)
                    if asked != 0 and value != current:
                        results[f"{knob}_probe"] = _probe(
                            args, tmp, kafka, retriever, engines[0], levels[-1], totals[-1],
                            results["levels"], knob, value, current)
                if not args.skip_swap:
                    results["swap"] = phase_swap(default.url, 4, args.swap_steady_s)
                for api in apis.values():
                    api.services.publisher.wait_drained(60)
            finally:
                for api in apis.values():
                    api.server.stop()
            results["sources"] = {name: _sources(tmp / _spool_name(name, {}))
                                  for name in apis}
    results["load_end"] = os.getloadavg()[0]
    return results


def _probe(args: argparse.Namespace, tmp: Path, kafka: Any, retriever: Any, engine: str,
           level: int, total: int, levels: dict[str, Any], knob: str, value: int,
           current: int) -> dict[str, Any]:
    """The highest level on `engine` with `knob` (max_batch or workers) at `value` instead
    of `current`, side by side with the main run's row: the ratio of more against fewer."""
    api = _start(f"{engine} {knob}={value}",
                 _settings(args, tmp, kafka, engine=engine, **{knob: value}), retriever)
    try:
        row = phase_concurrency(api.url, level, total,
                                label=f"{engine} c={level} {knob}={value}")
    finally:
        api.server.stop()
    rows = {current: levels[f"{engine}/c{level}"], value: row}
    more, fewer = rows[max(rows)], rows[min(rows)]
    ratio = more["req_per_s"] / fewer["req_per_s"]
    print(f"{knob} probe ({engine}, c={level}): {knob}={max(rows)} gives {ratio:.2f}x the "
          f"requests/s of {knob}={min(rows)} and "
          f"{more['cpu_s_per_request'] / fewer['cpu_s_per_request']:.2f}x its CPU per "
          f"request (the default is {current})", flush=True)
    return {"row": row, knob: value, "rps_ratio_more_vs_fewer": ratio}


def _sources(spool_dir: Path) -> dict[str, int]:
    """How the logged answers were made: by the model, or the retrieval fallback."""
    from collections import Counter

    from serving.spool import read_spool

    if not spool_dir.is_dir():
        return {}
    counts = Counter(json.loads(r.value)["decoding"]["source"] for _, r in read_spool(spool_dir)
                     if r.topic == "toolrec.impressions")
    print(f"answers by source ({spool_dir.name}): {dict(counts)} (retrieval_fallback = the "
          "model wrote no usable line)", flush=True)
    return dict(counts)


if __name__ == "__main__":
    sys.exit(main())
