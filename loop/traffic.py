"""Simulated users against the real API: N users × R requests, feedback through the real
telemetry path, progress with rate and ETA (`toolrec simulate`, and each demo round).

Each user runs their turns in order (sessions stay sessions); up to `concurrency` users are
in flight at once. Turns and reactions are deterministic for the simulator's seed whatever
the concurrency; only what the model generates may differ.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from loop.client import ApiClient, FeedbackSink
from loop.errors import ApiError, LoopError
from loop.metrics import Record, summarize
from loop.simulator import Simulator

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """A periodic log line: done/total, rate, ETA and the running metrics."""

    total: int
    label: str = "simulate"
    every_s: float = 10.0
    emit: Callable[[str], None] = field(default=lambda line: log.info("%s", line))
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    _last: float = 0.0

    def line(self, extra: str = "") -> str:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        return (f"{self.label}: {self.done}/{self.total} requests, {rate:.2f} req/s, "
                f"elapsed {elapsed:.0f}s, ETA {eta:.0f}s{extra}")

    def update(self, n: int = 1, extra: str = "", *, force: bool = False) -> None:
        self.done += n
        now = time.monotonic()
        if force or self.done >= self.total or now - self._last >= self.every_s:
            self._last = now
            self.emit(self.line(extra))


@dataclass
class TrafficResult:
    records: list[Record]
    failures: list[str]
    seconds: float

    def summary(self) -> dict[str, Any]:
        return {**summarize(self.records), "failures": len(self.failures),
                "seconds": round(self.seconds, 1)}


def _metrics_suffix(records: Sequence[Record]) -> str:
    if not records:
        return ""
    s = summarize(records)
    versions = sorted({r.model_version for r in records[-20:]})
    return (f" | obs CTR {s['obs_ctr']:.2f} gt CTR {s['gt_ctr']:.3f} "
            f"version {','.join(versions)}")


class TrafficRunner:
    """Runs users' turns through one API and one feedback sink."""

    def __init__(self, sim: Simulator, client: ApiClient, feedback: FeedbackSink, *,
                 concurrency: int = 1, max_failures: int = 10) -> None:
        self.sim = sim
        self.client = client
        self.feedback = feedback
        self.concurrency = concurrency
        self.max_failures = max_failures
        self._lock = threading.Lock()

    def one(self, user: int, index: int, round_no: int) -> Record:
        turn = self.sim.turn(user, index)
        served = self.client.recommend(turn.request)
        with self._lock:  # the encoder behind judge() is shared
            judgement = self.sim.judge(turn, served.shown)
        reaction = self.sim.react(turn, served.shown, judgement)
        if reaction.events:
            self.feedback.send(turn.request.raw_user_id, served.request_id, reaction.events)
        return Record(round_no, turn, served.request_id, served.model_version, served.shown,
                      judgement, reaction, served.latency_s)

    def _user(self, user: int, first: int, count: int, round_no: int,
              sink: Callable[[Record | str], None], stop: threading.Event) -> None:
        for index in range(first, first + count):
            if stop.is_set():  # the run was interrupted: no new requests
                return
            try:
                sink(self.one(user, index, round_no))
            except ApiError as exc:
                sink(f"user {user} turn {index}: {exc}")

    def run(self, users: Sequence[int], requests_per_user: int, *, first_index: int = 0,
            round_no: int = 0, progress: Progress | None = None) -> TrafficResult:
        """Every user in `users` makes `requests_per_user` requests (turns first_index…)."""
        started = time.monotonic()
        records: list[Record] = []
        failures: list[str] = []
        progress = progress or Progress(len(users) * requests_per_user)

        def sink(item: Record | str) -> None:
            with self._lock:
                if isinstance(item, str):
                    failures.append(item)
                    log.warning("request failed: %s", item)
                else:
                    records.append(item)
                progress.update(1, _metrics_suffix(records))
            if len(failures) > self.max_failures:
                raise LoopError(f"{len(failures)} requests failed (more than "
                                f"{self.max_failures}); last: {failures[-1]}")

        stop = threading.Event()
        with ThreadPoolExecutor(max_workers=self.concurrency,
                                thread_name_prefix="sim-user") as pool:
            futures = [pool.submit(self._user, u, first_index, requests_per_user, round_no,
                                   sink, stop) for u in users]
            try:
                for future in as_completed(futures):
                    future.result()
            except BaseException:
                # Ctrl-C / SIGTERM / a failure: leaving the pool waits for its threads, so
                # they must stop after their request in flight, not finish the round
                stop.set()
                for future in futures:
                    future.cancel()
                raise
        records.sort(key=lambda r: (r.turn.user.index, r.turn.index))
        return TrafficResult(records, failures, time.monotonic() - started)
