"""The recommend pipeline behind a bounded queue: retrieval → prompt → generator → parser.

Generation on this CPU takes seconds (DESIGN.md §5), so it never runs on the event loop:
requests become `Job`s in a bounded queue served by `serving.workers` worker threads.
A worker takes the oldest job plus up to `max_batch - 1` queued jobs with the same `n`
and decoding arm and generates them as one padded batch (`Generator.generate_batch`).

Threads: the workers run their generations side by side (the ctranslate2 engine holds one
replica per worker; a PyTorch generator serializes its calls itself), and nothing else in
parallel: a search holds `ModelManager.retrieval_lock`, which the generators' tool linking
takes too (the retriever's encoder serves one thread at a time), and a generator's
tokenizing and parsing stay under its own lock (`generator.fast`, "Threads").

Admission control instead of silent timeouts: a request arriving when `max_pending` jobs
are admitted, or still queued after `queue_timeout_s`, fails with `Overloaded`, which the
API answers with 503 and a Retry-After estimated from the recent batch time and how many
batches the workers run at once.

Exploration: each job draws its arm (explore with probability `explore_share`) at
submission; the explore arm samples with the decoding's `explore_temperature` and
`explore_candidates`. The decoding recorded for the impression says which arm, the share
(the propensity of that arm) and where the suggestions came from.

Hot-swap: a batch takes `ModelManager.snapshot()` once and finishes on that generator, so
its requests are answered — and their impressions tagged — by the model that served them.

Fallback: when the model yields no usable suggestion, the top retrieved tools' own example
utterances are shown (`source = "retrieval_fallback"` in the decoding), so a request is
never answered with an empty list while retrieval has something to offer.
"""

from __future__ import annotations

import collections
import logging
import math
import random
import threading
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from generator.loading import MODEL_LOAD_LOCK
from serving.config import ServingConfig
from serving.hotswap import ModelManager
from serving.metrics import Metrics
from toolrec.errors import ServingError

if TYPE_CHECKING:
    from generator.config import DecodingConfig, GeneratorConfig
    from generator.generator import GenerationResult
    from retrieval import DeviceContext, Retriever

__all__ = ["Job", "NotReady", "Overloaded", "RecommendEngine", "Served"]

log = logging.getLogger(__name__)

Arm = Literal["exploit", "explore"]
Source = Literal["model", "retrieval_fallback", "none"]


class Overloaded(ServingError):
    """Too many requests: answer 503 with Retry-After."""

    def __init__(self, message: str, *, retry_after_s: int, reason: str) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.reason = reason


class NotReady(ServingError):
    """No model (or retrieval) is loaded yet: answer 503."""

    def __init__(self, message: str, *, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass
class Job:
    """One recommend request waiting for the worker."""

    query: str
    response: str
    recent: tuple[str, ...]
    context: DeviceContext
    n: int
    arm: Arm
    enqueued: float = field(default_factory=time.perf_counter)
    future: Future[Served] = field(default_factory=Future)

    @property
    def key(self) -> tuple[int, Arm]:
        return (self.n, self.arm)


@dataclass(frozen=True)
class Served:
    """What the worker produced for one job (everything the response and impression need)."""

    suggestions: list[dict[str, Any]]
    model_version: str
    template_version: str
    prompt: str
    decoding: dict[str, Any]
    source: Source
    timings: dict[str, float]


class RecommendEngine:
    """The queue and its worker threads; see the module docstring."""

    def __init__(
        self,
        config: ServingConfig,
        generator_config: GeneratorConfig,
        *,
        manager: ModelManager,
        retriever: Retriever,
        metrics: Metrics,
        fallback: bool = True,
    ) -> None:
        self.config = config
        self.generator_config = generator_config
        self.manager = manager
        self.retriever = retriever
        self.metrics = metrics
        self.fallback = fallback
        self.base_decoding = config.decoding or generator_config.decoding
        self.decodings = _arms(self.base_decoding)
        seed = self.base_decoding.seed
        self._rng = random.Random(seed) if seed is not None else random.Random()
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._pending = 0
        self._batch_s = 3.0  # moving average of one batch's duration (Retry-After estimate)
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self.retrieval_ready = threading.Event()
        self.retrieval_error: str | None = None
        metrics.queue_depth.set_function(lambda: self._pending)

    @property
    def pending(self) -> int:
        """Jobs admitted and not finished (queued + running)."""
        return self._pending

    # ------------------------------------------------------------------ submitting
    def draw_arm(self) -> Arm:
        share = self.config.explore_share
        with self._cond:
            return "explore" if share > 0 and self._rng.random() < share else "exploit"

    def retry_after(self) -> int:
        per_wave = self.config.batch_limit * self.config.worker_count  # batches run at once
        waves = math.ceil((self._pending + 1) / per_wave)
        return max(1, math.ceil(waves * self._batch_s))

    def submit(self, job: Job) -> Future[Served]:
        """Queue a job; raises Overloaded (queue full) or NotReady (nothing loaded)."""
        if self.manager.current is None or not self.retrieval_ready.is_set():
            raise NotReady("the model is still loading; retry shortly")
        with self._cond:
            if self._stopping:
                raise NotReady("the server is shutting down")
            if self._pending >= self.config.max_pending:
                self.metrics.rejected.labels("queue_full").inc()
                raise Overloaded(f"{self._pending} requests are already admitted (max_pending="
                                 f"{self.config.max_pending})", retry_after_s=self.retry_after(),
                                 reason="queue_full")
            self._pending += 1
            self._queue.append(job)
            self._cond.notify()
        return job.future

    # ------------------------------------------------------------------ worker
    def start(self) -> None:
        if not self._threads:
            self._threads = [threading.Thread(target=self._run, name=f"recommend-worker-{i}",
                                              daemon=True)
                             for i in range(self.config.worker_count)]
            for thread in self._threads:
                thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the running batches, fail what is still queued, stop the workers."""
        with self._cond:
            self._stopping = True
            dropped = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for job in dropped:
            self._finish(job, error=NotReady("the server is shutting down"))
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._threads = []

    def _run(self) -> None:
        wait = 1.0
        while not self._warm_retrieval():  # retried: the index may be fixed meanwhile
            with self._cond:
                if self._cond.wait_for(lambda: self._stopping, timeout=wait):
                    return
            wait = min(wait * 2, 60.0)
        while True:
            batch = self._take()
            if batch is None:
                return
            self._process(batch)

    def _warm_retrieval(self) -> bool:
        try:
            # lock order as in a search that loads the encoder lazily: retrieval_lock, then
            # MODEL_LOAD_LOCK; the first worker warms, the others find retrieval ready
            with self.manager.retrieval_lock, MODEL_LOAD_LOCK:
                if self.retrieval_ready.is_set():
                    return True
                self.retriever.warm()
        except Exception as exc:  # the API stays up and /readyz says why
            self.retrieval_error = f"{type(exc).__name__}: {exc}"
            log.error("retrieval failed to load: %s; retrying", self.retrieval_error)
            return False
        self.retrieval_error = None
        self.retrieval_ready.set()
        return True

    def _take(self) -> list[Job] | None:
        """The oldest job and up to max_batch - 1 queued jobs with the same key."""
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            first = self._queue.popleft()
            batch = [first]
            for job in list(self._queue):
                if len(batch) >= self.config.batch_limit:
                    break
                if job.key == first.key:
                    self._queue.remove(job)
                    batch.append(job)
        return self._drop_expired(self._drop_cancelled(batch))

    def _drop_cancelled(self, batch: list[Job]) -> list[Job]:
        """Jobs whose client went away are not generated (they free their slot now)."""
        live = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if len(live) < len(batch):
            with self._cond:
                self._pending -= len(batch) - len(live)
        return live

    def _drop_expired(self, batch: list[Job]) -> list[Job]:
        now, live = time.perf_counter(), []
        for job in batch:
            if now - job.enqueued > self.config.queue_timeout_s:
                self.metrics.rejected.labels("queue_timeout").inc()
                self._finish(job, error=Overloaded(
                    f"queued {now - job.enqueued:.1f} s > queue_timeout_s="
                    f"{self.config.queue_timeout_s}", retry_after_s=self.retry_after(),
                    reason="queue_timeout"))
            else:
                live.append(job)
        return live

    def _finish(self, job: Job, *, result: Served | None = None,
                error: BaseException | None = None) -> None:
        with self._cond:
            self._pending -= 1
        try:
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)  # type: ignore[arg-type]
        except InvalidStateError:
            pass  # the client went away and its request was cancelled

    def _process(self, batch: list[Job]) -> None:
        if not batch:
            return
        started = time.perf_counter()
        try:
            served = self._serve(batch, started)
        except NotReady as exc:
            for job in batch:
                self._finish(job, error=exc)
            return
        except Exception as exc:  # reported per request as a 500 with the message
            log.exception("generation failed for a batch of %d", len(batch))
            for job in batch:
                self._finish(job, error=ServingError(f"generation failed: {exc}"))
            return
        for job, result in zip(batch, served, strict=True):
            self._finish(job, result=result)
        elapsed = time.perf_counter() - started
        with self._cond:
            self._batch_s = 0.8 * self._batch_s + 0.2 * elapsed
        self.metrics.batch_size.observe(len(batch))

    def _serve(self, batch: list[Job], started: float) -> list[Served]:
        from generator.prompt import PromptInputs, prompt_tools

        generator = self.manager.snapshot()  # this batch finishes on this model
        if generator is None:
            raise NotReady("no model is loaded")
        k = self.generator_config.max_tools
        hits, inputs = [], []
        for job in batch:
            context = job.context.model_dump(exclude_none=True)
            with self.manager.retrieval_lock:
                found = self.retriever.search(job.query, response=job.response,
                                              recent=job.recent, context=job.context,
                                              k=max(k, job.n))
            hits.append(found)
            inputs.append(PromptInputs(query=job.query, response=job.response,
                                       recent=job.recent, tools=prompt_tools(found[:k]),
                                       context=context))
        retrieved = time.perf_counter()
        first = batch[0]
        results = generator.generate_batch(inputs, n=first.n, decoding=self.decodings[first.arm])
        timing = {
            "retrieval_ms": round((retrieved - started) * 1000, 2),
            "batch_size": float(len(batch)),
        }
        self.metrics.stage.labels("retrieval").observe(retrieved - started)
        self.metrics.stage.labels("generate").observe(results[0].timings["generate_ms"] / 1000)
        self.metrics.stage.labels("parse").observe(results[0].timings["parse_ms"] / 1000)
        return [self._served(job, result, found, started, timing)
                for job, result, found in zip(batch, results, hits, strict=True)]

    def _served(self, job: Job, result: GenerationResult, hits: list[Any], started: float,
                timing: dict[str, float]) -> Served:
        suggestions = result.shown()
        source: Source = "model"
        if not suggestions and self.fallback:
            suggestions = _fallback(hits, job)
            source = "retrieval_fallback" if suggestions else "none"
        elif not suggestions:
            source = "none"
        self.metrics.suggestions.labels(source).inc(len(suggestions))
        self.metrics.explored.labels(job.arm).inc()
        queue_s = started - job.enqueued
        self.metrics.stage.labels("queue").observe(queue_s)
        decoding = {
            **result.decoding,
            "explore": job.arm == "explore",
            "explore_share": self.config.explore_share,
            "arm": job.arm,
            "source": source,
            "batch_size": int(timing["batch_size"]),
            "format_valid": result.format_valid,
        }
        timings = {
            "queue_ms": round(queue_s * 1000, 2),
            "retrieval_ms": timing["retrieval_ms"],
            "generate_ms": result.timings.get("generate_ms", 0.0),
            "parse_ms": result.timings.get("parse_ms", 0.0),
        }
        return Served(suggestions, result.model_version, result.template_version, result.prompt,
                      decoding, source, timings)


def _arms(base: DecodingConfig) -> dict[Arm, DecodingConfig]:
    """The concrete decoding of each arm (serving draws the arm itself)."""
    exploit = base.model_copy(update={"explore_rate": 0.0})
    explore = base.model_copy(update={
        "explore_rate": 0.0,
        "temperature": base.explore_temperature,
        "num_candidates": base.explore_candidates,
    })
    return {"exploit": exploit, "explore": explore}


def _fallback(hits: list[Any], job: Job) -> list[dict[str, Any]]:
    """The first example utterance of each retrieved tool, skipping the query itself and
    the session's recent queries."""
    seen = {job.query.strip().lower(), *(r.strip().lower() for r in job.recent)}
    out: list[dict[str, Any]] = []
    for hit in hits:
        examples = list(getattr(hit.tool, "examples", None) or [])
        text = next((e for e in examples if e.strip().lower() not in seen), None)
        if text is None:
            continue
        seen.add(text.strip().lower())
        out.append({"position": len(out) + 1, "text": text, "tool_id": hit.tool_id})
        if len(out) >= job.n:
            break
    return out
