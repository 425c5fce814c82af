"""Retrieval benchmark: `python -m bench.retrieval`.

Measures, single-threaded on this machine:
- per-request latency p50/p99 including query encoding (encoder cache off), for a plain
  query, a full request (query + response + two recent queries + device context) and one
  link; the target is p99 ≤ 25 ms. Queries alternate between both eval sets (the spoken
  set's misrecognised words add a respelled text to encode);
- the cost of respelling and the fitted linker: search and link with respelling on and
  off, interleaved call by call so machine load hits both alike;
- the encoders (CTranslate2 float32 and int8, PyTorch) on the same searches, interleaved
  the same way, as ratios to the configured one (`--precision`);
- batch throughput: link_many over batches of suggestions, and sequential searches;
- hnswlib against exact numpy search in the same run: raw index latency and recall@10 of
  ANN vs exact (centroid index, and tools via the phrase index), and the full ranking in
  `ann` vs `exact` mode (top-10 overlap, scoring latency); the target is recall@10 ≥ 0.99.
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from collections.abc import Callable, Sequence

import numpy as np

from retrieval.config import RetrievalConfig
from retrieval.encoder import Encoder, EncoderEngine, Precision
from retrieval.evaluate import load_eval_set
from retrieval.retriever import Retriever

say = functools.partial(print, flush=True)
P99_TARGET_MS = 25.0
RECALL_TARGET = 0.99


def timed(fn: Callable[[str], object], items: Sequence[str],
          warmup: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Wall-clock and process-CPU milliseconds per call, after a few warm-up calls. CPU time
    is what the request costs; wall time adds the wait for a core on a shared machine."""
    for item in items[:warmup]:
        fn(item)
    wall, cpu = [], []
    for item in items:
        w0, c0 = time.perf_counter(), time.process_time()
        fn(item)
        wall.append((time.perf_counter() - w0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return np.array(wall), np.array(cpu)


def summary(name: str, measured: tuple[np.ndarray, np.ndarray]) -> str:
    wall, cpu = measured
    p50, p99 = np.percentile(wall, 50), np.percentile(wall, 99)
    c50, c99 = np.percentile(cpu, 50), np.percentile(cpu, 99)
    flag = "ok" if p99 <= P99_TARGET_MS else "OVER TARGET"
    return (f"  {name:<44} n={len(wall):<4} wall p50 {p50:6.2f} p99 {p99:6.2f} ms [{flag}: "
            f"p99 <= {P99_TARGET_MS:g}] | cpu p50 {c50:6.2f} p99 {c99:6.2f} ms")


def recall_at(ann: Sequence[Sequence[object]] | np.ndarray,
              exact: Sequence[Sequence[object]] | np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(ann, exact, strict=True)]))


def latency_section(retriever: Retriever, queries: list[str]) -> None:
    say("per-request latency, single-threaded, encoding included (query and response are "
        "new texts each request; recent queries were seen before, as in a session):")
    responses = ["Sure, here is what I found for you.", "Your battery is at 12 percent.",
                 "It's 23 degrees and sunny in Paris today.", "I set that up for you."]
    contexts: list[dict[str, object]] = [{"battery": 12, "hour": 22}, {"headset": True,
                 "foreground_app": "com.spotify.music"}, {"driving": True, "network": "cellular"}]
    encoder = retriever.encoder
    counter = iter(range(10**9))

    def full(q: str) -> object:
        i = next(counter)
        return retriever.search(q, response=f"{responses[i % 4]} (#{i})",
                                recent=queries[i % 50: i % 50 + 2], context=contexts[i % 3], k=5)

    def fresh() -> None:
        encoder.clear_cache()
        encoder.cache_size = 0

    fresh()
    say(summary("search(query)", timed(lambda q: retriever.search(q, k=5), queries)))
    encoder.cache_size = 4096
    encoder.encode(queries[:52])  # earlier queries of the session: already encoded
    say(summary("search(query, response, 2 recent, context)", timed(full, queries)))
    fresh()
    say(summary("link(text)", timed(retriever.link, queries)))


def interleaved(title: str, variants: dict[str, Retriever],
                call: Callable[[Retriever, str], object], queries: list[str]) -> None:
    """Time `call` on each variant, alternating variant by query so machine load hits all
    alike; print each variant's latency and the p50/p99 ratio to the first."""
    say(title)
    results: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {name: [] for name in variants}
    for q in queries:
        for name, r in variants.items():
            results[name].append(timed(functools.partial(call, r), [q], warmup=0))
    walls: dict[str, np.ndarray] = {}
    for name, got in results.items():
        walls[name] = np.concatenate([w for w, _ in got])
        say(summary(name, (walls[name], np.concatenate([c for _, c in got]))))
    first, *others = walls
    for name in others:
        ratio = [np.percentile(walls[name], q) / np.percentile(walls[first], q)
                 for q in (50, 99)]
        say(f"  {name} / {first}: p50 {ratio[0]:.2f}x, p99 {ratio[1]:.2f}x")


def respelling_section(retriever: Retriever, queries: list[str]) -> None:
    """search + link with respelling on vs off (encoder cache off)."""
    off = Retriever(retriever.config.model_copy(update={"w_respelled": 0.0}),
                    catalog=retriever.catalog, encoder=retriever.encoder).warm()
    interleaved("respelling cost, interleaved per call (encoder cache off):",
                {"search + link, respelling on": retriever,
                 "search + link, respelling off": off},
                lambda r, text: (r.search(text, k=5), r.link(text)), queries)


ENCODERS: list[tuple[EncoderEngine, Precision]] = [
    ("ctranslate2", "float32"), ("ctranslate2", "int8"), ("torch", "float32")]


def engine_section(retriever: Retriever, queries: list[str]) -> None:
    """The encoders on the same requests, the configured one first: each with its own index
    (int8 embeddings are a different encoder's)."""
    current = (retriever.encoder.engine, retriever.encoder.precision)
    engines: dict[str, Retriever] = {}
    for engine, precision in sorted(ENCODERS, key=lambda e: e != current):
        encoder = Encoder(cache_size=0, threads=retriever.encoder.threads, engine=engine,
                          precision=precision)
        config = retriever.config.model_copy(
            update={"encoder_engine": engine, "encoder_precision": precision})
        engines[f"search(query), {engine} {precision}"] = Retriever(
            config, catalog=retriever.catalog, encoder=encoder).warm()
    interleaved("encoders, interleaved per call (encoder cache off):",
                engines, lambda r, text: r.search(text, k=5), queries)


def throughput_section(retriever: Retriever, queries: list[str]) -> None:
    say("batch throughput:")
    for size in (8, 64):
        batches = [queries[i:i + size] for i in range(0, len(queries) - size + 1, size)]
        retriever.encoder.clear_cache()
        start = time.perf_counter()
        for batch in batches:
            retriever.link_many(batch)
        elapsed = time.perf_counter() - start
        n = sum(len(b) for b in batches)
        say(f"  link_many, batches of {size:<3}  {n / elapsed:8.1f} texts/s  "
              f"({elapsed / len(batches) * 1000:.1f} ms per batch)")
    retriever.encoder.clear_cache()
    start = time.perf_counter()
    for q in queries:
        retriever.search(q, k=5)
    elapsed = time.perf_counter() - start
    say(f"  search, sequential            {len(queries) / elapsed:8.1f} requests/s")


def ann_section(retriever: Retriever, queries: list[str]) -> None:
    say("hnswlib (ANN) vs exact numpy search, same queries:")
    index = retriever.index
    vectors = retriever.encode(queries)
    k = 10

    ann_c, t_ann = _ann(index.centroid_ann, vectors, k)
    start = time.perf_counter()
    exact_c = np.stack([np.argsort(-(index.centroids @ v))[:k] for v in vectors])
    t_exact = (time.perf_counter() - start) / len(vectors) * 1000
    say(f"  centroid index ({index.n_tools} tools)   ANN {t_ann:.3f} ms/query, exact "
          f"{t_exact:.3f} ms/query (ANN/exact = {t_ann / t_exact:.2f}x), recall@10 "
          f"{recall_at(ann_c, exact_c):.4f}")

    ann_p, t_ann = _ann(index.phrase_ann, vectors, 64)
    start = time.perf_counter()
    exact_p = np.stack([np.argsort(-(index.phrases @ v))[:64] for v in vectors])
    t_exact = (time.perf_counter() - start) / len(vectors) * 1000
    ann_tools = [_first_tools(index.owner[row], k) for row in ann_p]
    exact_tools = [_first_tools(index.owner[row], k) for row in exact_p]
    say(f"  phrase index ({len(index.phrases)} phrasings) ANN {t_ann:.3f} ms/query, exact "
          f"{t_exact:.3f} ms/query (ANN/exact = {t_ann / t_exact:.2f}x), tool recall@10 "
          f"{recall_at(ann_tools, exact_tools):.4f}")

    exact = Retriever(retriever.config.model_copy(update={"search_mode": "exact"}),
                      catalog=retriever.catalog, encoder=retriever.encoder)
    # isolate scoring from encoding: every text a search encodes (the query, its respelled
    # and app-generic forms) is cached by a first search
    retriever.encoder.cache_size = 4 * len(queries) + 10
    for q in queries:
        retriever.search(q, k=k)
    top_ann = [[h.tool_id for h in retriever.search(q, k=k)] for q in queries]
    top_exact = [[h.tool_id for h in exact.search(q, k=k)] for q in queries]
    ms_ann, _ = timed(lambda q: retriever.search(q, k=k), queries)
    ms_exact, _ = timed(lambda q: exact.search(q, k=k), queries)
    rec = recall_at(top_ann, top_exact)
    flag = "ok" if rec >= RECALL_TARGET else "BELOW TARGET"
    say(f"  full ranking, ann vs exact mode: recall@10 {rec:.4f} [{flag}: >= "
          f"{RECALL_TARGET}], top-1 agreement "
          f"{np.mean([a[0] == e[0] for a, e in zip(top_ann, top_exact, strict=True)]):.4f}; "
          f"scoring without encoding p50 {np.median(ms_ann):.2f} ms (ann) vs "
          f"{np.median(ms_exact):.2f} ms (exact)")


def _ann(ann: object, vectors: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    rows = [ann.knn_query(v, k=k)[0][0] for v in vectors]  # type: ignore[attr-defined]
    return np.stack(rows), (time.perf_counter() - start) / len(vectors) * 1000


def _first_tools(owners: np.ndarray, k: int) -> list[int]:
    return list(dict.fromkeys(owners.tolist()))[:k]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="queries to time")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads for encoding (0 = torch's default); one "
                             "short query gains little from more, and spinning threads on a "
                             "busy machine cost a lot")
    parser.add_argument("--precision", choices=["float32", "int8"],
                        default=RetrievalConfig().encoder_precision,
                        help="the CTranslate2 encoder's precision [default: the config's]")
    args = parser.parse_args()
    import torch

    sets = [[r.text for r in load_eval_set(name)] for name in ("spoken", "catalog")]
    queries = [q for pair in zip(*sets, strict=False) for q in pair][: args.n]
    encoder = Encoder(cache_size=0, threads=args.threads, precision=args.precision)
    config = RetrievalConfig(encode_cache_size=0, encoder_threads=args.threads,
                             encoder_precision=args.precision)
    retriever = Retriever(config, encoder=encoder).warm()
    say(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}, torch "
          f"threads {torch.get_num_threads()}; catalog {len(retriever.catalog)} tools, "
          f"{len(retriever.index.phrases)} phrasings; {len(queries)} queries")
    latency_section(retriever, queries)
    respelling_section(retriever, queries[:200])
    engine_section(retriever, queries[:200])
    throughput_section(retriever, queries)
    ann_section(retriever, queries)


if __name__ == "__main__":
    main()
