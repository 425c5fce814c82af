"""`toolrec demo`: the whole closed loop on one machine, end to end, then a report.

1. the start model: SmolLM2 + its bootstrap SFT adapter (`toolrec models bootstrap` once),
   or the tiny Llama (`--model tiny`, tests and quick looks);
2. a fresh run directory (`loop.demo.state_dir`): broker (tansu, memory engine) with the
   topics, the bootstrap adapter registered as champion v1, then the Faust worker, the
   Delta sink, the retraining daemon and the API server as subprocesses owned by PID
   (`loop.stack`), all configured through `TOOLREC_*` variables of this run;
3. rounds of simulated traffic (`loop.traffic`): every user makes `requests_per_user`
   requests against the API, clicks go back through the telemetry producer;
4. between rounds the daemon refreshes and the API hot-swaps: the demo holds the trainer's
   refresh lock (`TrainingConfig.lock_path`, the daemon's own single-flight lock) while a
   round's traffic runs and until its samples are in Delta, then lets go — the daemon's
   next check trains on the round, the gate decides, a promotion is announced on
   `toolrec.models` and the API swaps; the next round runs on whatever is served;
5. everything is stopped (also on Ctrl-C, SIGTERM or a failure), then a round table and an
   HTML report (`loop.report`) are written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loop.config import DemoConfig
from loop.errors import LoopError
from loop.metrics import Record, mean_interval, summarize
from loop.models import StartModel
from loop.stack import OFFLINE_ENV, LoopStack, settings_env, thread_env

log = logging.getLogger(__name__)
MARKER = ".toolrec-loop-run"


@dataclass
class RoundResult:
    round: int
    records: list[Record]
    samples: int
    seconds: float
    failures: int
    refresh: dict[str, Any] | None = None

    @property
    def versions(self) -> list[str]:
        return sorted({r.model_version for r in self.records})

    def row(self) -> dict[str, Any]:
        s = summarize(self.records)
        _, low, high = gt_ctr_interval(self.records)
        return {"round": self.round, "model_version": ",".join(self.versions),
                "requests": s["requests"], "samples": self.samples,
                "obs_ctr": s["obs_ctr"], "gt_ctr": s["gt_ctr"],
                "gt_ctr_lo": low, "gt_ctr_hi": high,
                "gt_right_tool_share": s["gt_right_tool_share"],
                "tool_query_share": s["tool_query_share"], "relevance": s["relevance"],
                "seconds": round(self.seconds, 1), "failures": self.failures,
                "refresh": self.refresh}


def gt_ctr_interval(records: Sequence[Record]) -> tuple[float | None, float | None,
                                                       float | None]:
    """Ground-truth CTR of these requests with a 95 % Student-t interval over requests (each
    request's reference-user P(any click) is one value; a user's requests are treated as
    independent, so with few users the interval is somewhat too narrow)."""
    values = [r.judgement.ref_ctr for r in records]
    if len(values) < 2:
        return (values[0] if values else None, None, None)
    return mean_interval(values)


@dataclass
class DemoResult:
    config: dict[str, Any]
    start_model: str
    rounds: list[RoundResult] = field(default_factory=list)
    samples: Any = None  # pyarrow Table of the samples table (weights, labels, ids)
    registry: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def records(self) -> list[Record]:
        return [r for round_ in self.rounds for r in round_.records]


# ------------------------------------------------------------------------- run directory


def fresh_dir(path: Path) -> Path:
    """Empty `path` for a new run — only if it is empty or an earlier run's directory."""
    path = Path(path).resolve()
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).exists():
            raise LoopError(f"{path} is not empty and was not made by `toolrec demo`; pass "
                            "another --state-dir or empty it yourself")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("made by toolrec demo / experiment; wiped at the next run\n")
    return path


def run_overrides(state: Path, *, servers: str, api_port: int, cfg: DemoConfig,
                  start: StartModel, min_new: int) -> dict[str, Any]:
    """The settings of one demo run, as nested overrides (→ TOOLREC_* variables)."""
    run = uuid.uuid4().hex[:8]
    return {
        "kafka": {"bootstrap_servers": servers, "flavor": "tansu"},
        "infra": {"state_dir": state / "state"},
        "streams": {"app_id": f"toolrec-demo-{run}", "data_dir": state / "faust",
                    "attribution_window_s": cfg.attribution_window_s,
                    "allowed_lateness_s": cfg.allowed_lateness_s, "stats_interval_s": 5},
        "lake": {"root": state / "lake", "batch_max_seconds": 1.0,
                 "group_id": f"toolrec-demo-sink-{run}"},
        "trainer": {
            "generator": {"model_dir": start.model_dir,
                          "bootstrap_adapter_dir": start.adapter_dir,
                          **start.generator_overrides},
            "training": {"artifact_dir": state / "artifacts", "lock_path": state / "trainer.lock",
                         "max_steps": cfg.max_steps, "epochs": cfg.epochs,
                         "holdout_share": cfg.holdout_share,
                         "max_eval_samples": cfg.max_eval_samples,
                         "eval_prompts": cfg.eval_prompts,
                         "min_new_samples": min_new, "interval_s": cfg.daemon_interval_s,
                         "gate": {"reward_margin": cfg.gate_reward_margin},
                         **start.training_overrides},
        },
        "serving": {"host": "127.0.0.1", "port": api_port, "spool_dir": state / "spool",
                    "registry_poll_s": 5.0, "torch_threads": threads(cfg, start)["api"]},
    }


def threads(cfg: DemoConfig, start: StartModel) -> dict[str, int]:
    """torch threads per component. The tiny model gains nothing from a second thread, and
    four processes spinning two threads each on 2 cores cost several times the CPU."""
    if start.kind == "tiny":
        return {"api": 1, "daemon": 1, "other": 1}
    return {"api": cfg.api_threads, "daemon": cfg.trainer_threads, "other": 1}


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for this block (subprocesses inherit them), then restore."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ------------------------------------------------------------------------- the demo


class Demo:
    """One demo run. `run()` returns the result; `loop.report` renders it."""

    def __init__(self, settings: Any, cfg: DemoConfig, start: StartModel, *,
                 echo: Callable[[str], None] = print, simulator_config: Any = None,
                 extra_overrides: Mapping[str, Any] | None = None) -> None:
        self.base_settings = settings
        self.cfg = cfg
        self.extra_overrides = dict(extra_overrides or {})
        self.start_model = start
        self.echo = echo
        sim_cfg = simulator_config or settings.loop.simulator
        n = start.generator_overrides.get("n_suggestions", sim_cfg.n_suggestions)
        self.sim_config = sim_cfg.model_copy(update={"users": cfg.users, "n_suggestions": n})
        self.expected_per_round = cfg.users * cfg.requests_per_user * n

    def run(self) -> DemoResult:
        from infra.processes import free_port

        started = time.monotonic()
        state = fresh_dir(self.cfg.state_dir)
        result = DemoResult(config={"demo": self.cfg.model_dump(mode="json"),
                                    "simulator": self.sim_config.model_dump(mode="json")},
                            start_model=f"{self.start_model.kind}: {self.start_model.adapter_dir}")
        with LoopStack(state, {}) as stack:
            servers = stack.start_broker()
            min_new = max(1, self.expected_per_round // 4)
            overrides = run_overrides(state, servers=servers, api_port=free_port(),
                                      cfg=self.cfg, start=self.start_model, min_new=min_new)
            overrides = deep_merge(overrides, self.extra_overrides)
            with patched_environ({**settings_env(overrides), **OFFLINE_ENV}):
                settings = _load_settings()
                self.echo(f"demo: run directory {state}; broker {servers}; "
                          f"API port {settings.serving.port}")
                self._start(stack, settings, result)
                result.timings["startup_s"] = time.monotonic() - started
                self._rounds(stack, settings, result)
                result.samples = self._samples(settings)
                result.registry = [_record_row(r) for r in self._registry(settings).records()]
        result.timings["wall_s"] = time.monotonic() - started
        return result

    # ---------------------------------------------------------------- start-up
    def _start(self, stack: LoopStack, settings: Any, result: DemoResult) -> None:
        from streams.app import ensure_worker_topics

        ensure_worker_topics(settings.streams, settings.kafka)
        v1 = self._registry(settings).import_adapter(
            self.start_model.adapter_dir, self.start_model.model_dir, promote=True,
            note="bootstrap SFT (demo start)")
        self.echo(f"demo: registered the bootstrap SFT adapter as champion {v1.version}")
        # all four start at once (their imports and model loads overlap), then each is awaited
        n = threads(self.cfg, self.start_model)
        waits = [
            (stack.launch("worker", ["streams", "worker", "--loglevel", "warning"],
                          env=thread_env(n["other"])),
             stack.log_matches(r"streams: partitions=\[\d"), 300),
            (stack.launch("sink", ["lake", "sink"], env=thread_env(n["other"])),
             stack.log_matches(r"resumes at"), 300),
            (stack.launch("daemon", ["trainer", "daemon"], stop_timeout_s=60,
                          env=thread_env(n["daemon"])),
             stack.log_matches(r"trainer daemon started"), 600),
            (stack.launch("api", ["serve"], env=thread_env(n["api"])),
             lambda c: self._api_ready(settings), 900),
        ]
        for component, ready, timeout_s in waits:
            stack.wait_ready(component, ready, timeout_s=timeout_s)
        self.echo("demo: worker, sink, daemon and API are up "
                  f"({', '.join(f'{c.name} pid {c.proc.pid}' for c, _, _ in waits)})")

    def _api_ready(self, settings: Any) -> bool:
        from loop.client import ApiClient

        client = ApiClient(_url(settings), timeout_s=5.0)
        try:
            return client.ready() is not None
        finally:
            client.close()

    # ---------------------------------------------------------------- rounds
    def _rounds(self, stack: LoopStack, settings: Any, result: DemoResult) -> None:
        from loop.client import ApiClient, ApiFeedback, KafkaFeedback
        from loop.simulator import build_simulator
        from loop.traffic import TrafficRunner
        from toolrec.durable import FileLock

        sim = build_simulator(self.sim_config, settings.retrieval)
        client = ApiClient(_url(settings), timeout_s=self.cfg.request_timeout_s)
        feedback: Any = (ApiFeedback(client) if self.cfg.feedback == "api" else
                         KafkaFeedback(settings.kafka, settings.streams.telemetry,
                                       settings.infra.state_dir))
        lock = FileLock(Path(settings.trainer.training.lock_path), what="refresh lock")
        lock.acquire(timeout_s=None)  # refreshes run between rounds (see the module doc)
        try:
            runner = TrafficRunner(sim, client, feedback, concurrency=self.cfg.concurrency)
            for number in range(1, self.cfg.rounds + 1):
                round_ = self._round(number, runner, stack, settings, client)
                if number < self.cfg.rounds:
                    round_.refresh = self._refresh(stack, settings, client, lock)
                result.rounds.append(round_)
                self.echo(_round_line(round_))
        finally:
            # the daemon goes before the lock does: no refresh starts after the last round
            stack.stop("daemon")
            lock.release()
            feedback.close()
            client.close()

    def _round(self, number: int, runner: Any, stack: LoopStack, settings: Any,
               client: Any) -> RoundResult:
        from loop.traffic import Progress

        rpu = self.cfg.requests_per_user
        progress = Progress(self.cfg.users * rpu, label=f"round {number}", every_s=15.0,
                            emit=self.echo)
        started = time.monotonic()
        traffic = runner.run(range(self.cfg.users), rpu, first_index=(number - 1) * rpu,
                             round_no=number, progress=progress)
        stack.check_alive()
        expected = sum(len(r.shown) for r in traffic.records)
        ids = {r.request_id for r in traffic.records}
        samples = self._wait_samples(stack, settings, ids, expected)
        return RoundResult(number, traffic.records, samples, time.monotonic() - started,
                           len(traffic.failures))

    def _wait_samples(self, stack: LoopStack, settings: Any, ids: set[str],
                      expected: int) -> int:
        """Wait until every shown suggestion of the round is a sample in Delta."""
        deadline = time.monotonic() + 120 + self.cfg.attribution_window_s * 4
        count = 0
        while time.monotonic() < deadline:
            count = _count_samples(settings, ids)
            if count >= expected:
                return count
            stack.check_alive()
            time.sleep(1.0)
        self.echo(f"demo: only {count} of {expected} samples reached Delta in time; going on")
        return count

    def _refresh(self, stack: LoopStack, settings: Any, client: Any, lock: Any) -> dict[str, Any]:
        """Let the daemon refresh once, then wait for the API to serve a promoted version."""
        registry = self._registry(settings)
        known = {r.version for r in registry.records()}
        daemon_log = _component(stack, "daemon").log_path
        offset = daemon_log.stat().st_size
        lock.release()
        started = time.monotonic()
        self.echo("demo: samples are in Delta; the daemon may refresh now")
        record = self._wait_new_record(stack, registry, known, started, daemon_log, offset)
        if isinstance(record, dict):  # the daemon checked and did not refresh
            lock.acquire(timeout_s=self.cfg.refresh_timeout_s)
            self.echo(f"demo: no refresh after this round: {record['status']} "
                      f"({'; '.join(record['reasons'])})")
            return {**record, "refresh_s": round(time.monotonic() - started, 1)}
        refresh = {"version": record.version, "status": record.status,
                   "reasons": record.decision.get("reasons", []),
                   "refresh_s": round(time.monotonic() - started, 1),
                   "n_train": record.n_train}
        if record.status == "champion":
            swapped = time.monotonic()
            self._wait_served(stack, client, record.version)
            refresh["swap_s"] = round(time.monotonic() - swapped, 1)
        lock.acquire(timeout_s=self.cfg.refresh_timeout_s)
        return refresh

    def _wait_new_record(self, stack: LoopStack, registry: Any, known: set[str],
                         started: float, daemon_log: Path, offset: int) -> Any:
        """The new registry record, or {status, reasons} when the daemon's next check
        decided not to refresh (too few samples or a class missing, or it failed)."""
        last_echo = started
        while time.monotonic() - started < self.cfg.refresh_timeout_s:
            new = [r for r in registry.records() if r.version not in known]
            if new:
                return new[-1]
            declined = _declined(daemon_log, offset)
            if declined is not None:
                return declined
            stack.check_alive()
            if time.monotonic() - last_echo > 20:
                last_echo = time.monotonic()
                self.echo(f"demo: refreshing ({time.monotonic() - started:.0f}s): "
                          f"{_last_line(stack, 'daemon')}")
            time.sleep(1.0)
        raise LoopError(f"no refresh finished within {self.cfg.refresh_timeout_s:.0f} s; see "
                        f"{stack.state_dir / 'logs' / 'daemon.log'}")

    def _wait_served(self, stack: LoopStack, client: Any, version: str) -> None:
        deadline = time.monotonic() + self.cfg.refresh_timeout_s
        while time.monotonic() < deadline:
            if served_version(client) == version:
                self.echo(f"demo: the API now serves {version}")
                return
            stack.check_alive()
            time.sleep(0.5)
        raise LoopError(f"the API did not swap to {version} within "
                        f"{self.cfg.refresh_timeout_s:.0f} s; see {stack.state_dir}/logs/api.log")

    # ---------------------------------------------------------------- lake and registry
    @staticmethod
    def _registry(settings: Any) -> Any:
        from trainer.registry import Registry

        return Registry(settings.lake, settings.trainer.training, settings.kafka)

    @staticmethod
    def _samples(settings: Any) -> Any:
        from lakehouse.tables import read_table, table_exists

        if not table_exists(settings.lake, "samples"):
            return None
        return read_table(settings.lake, "samples", columns=[
            "request_id", "user_id", "position", "clicked", "executed", "is_tool_query",
            "model_version", "user_ctr", "w_activity", "w_tool", "w_position", "weight",
            "completion"])


def _load_settings() -> Any:
    from toolrec.config import load_settings

    return load_settings()


def _url(settings: Any) -> str:
    return f"http://{settings.serving.host}:{settings.serving.port}"


def served_version(client: Any) -> str | None:
    """The model version the API reports serving (from /readyz)."""
    body = client.ready() or {}
    version = body.get("model_version")
    return str(version) if version is not None else None


def _count_samples(settings: Any, ids: set[str]) -> int:
    from lakehouse.tables import read_table, table_exists

    if not table_exists(settings.lake, "samples"):
        return 0
    column = read_table(settings.lake, "samples", columns=["request_id"]).column("request_id")
    return sum(1 for rid in column.to_pylist() if rid in ids)


def _component(stack: LoopStack, name: str) -> Any:
    for component in stack.components:
        if component.name == name:
            return component
    raise LoopError(f"no component {name!r} was started")


def _last_line(stack: LoopStack, name: str) -> str:
    """The newest meaningful log line of a component (scheduler chatter left out)."""
    noise = ("apscheduler", "check finished: busy", "another refresh is running",
             "warnings.warn(")  # the source line Python prints under a library's warning
    lines = [ln for ln in _component(stack, name).log().splitlines()
             if ln.strip() and not ln.lstrip().startswith("{")  # TRL's metric dicts
             and not any(n in ln for n in noise)]
    return lines[-1][-160:] if lines else ""


_DECLINED = re.compile(r"check finished: (skipped|failed|waiting) \((.*)\) in [\d.]+s")


def _declined(daemon_log: Path, offset: int) -> dict[str, Any] | None:
    """A daemon check after `offset` in its log that ended without a refresh."""
    with daemon_log.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    match = _DECLINED.search(text)
    if match is None:
        return None
    return {"version": None, "status": match.group(1), "reasons": [match.group(2)]}


def _record_row(record: Any) -> dict[str, Any]:
    candidate = (record.metrics or {}).get("candidate") or {}
    return {"version": record.version, "status": record.status, "parent": record.parent,
            "n_train": record.n_train, "reward_margin": candidate.get("reward_margin"),
            "reasons": (record.decision or {}).get("reasons", [])}


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _round_line(round_: RoundResult) -> str:
    row = round_.row()
    refresh = round_.refresh
    after = ""
    if refresh and refresh.get("version") is None:
        after = f"; no refresh ({refresh['status']})"
    elif refresh:
        after = (f"; refresh → {refresh['version']} {refresh['status']} in "
                 f"{refresh['refresh_s']}s" + (f", swap {refresh['swap_s']}s"
                                               if "swap_s" in refresh else ""))
    return (f"round {row['round']}: version {row['model_version']}, {row['requests']} requests, "
            f"{row['samples']} samples, observed CTR {_fmt(row['obs_ctr'])}, ground-truth CTR "
            f"{_ci(row)}, right-tool click share {_fmt(row['gt_right_tool_share'])}, "
            f"{row['seconds']}s{after}")


def _ci(row: Mapping[str, Any]) -> str:
    """'0.312 [0.270, 0.354]': the round's ground-truth CTR with its 95 % interval."""
    if row.get("gt_ctr_lo") is None:
        return _fmt(row.get("gt_ctr"))
    return f"{_fmt(row['gt_ctr'])} [{_fmt(row['gt_ctr_lo'])}, {_fmt(row['gt_ctr_hi'])}]"


def round_table(result: DemoResult) -> str:
    """The round table printed at the end (plain text): the learning curve of the run —
    each round's ground-truth CTR (reference user) with its 95 % interval over requests."""
    header = (f"{'round':>5} {'version':>8} {'requests':>8} {'samples':>7} {'obs CTR':>8} "
              f"{'GT CTR [95% interval]':>22} {'tool-click':>10} {'tool-q':>7} "
              f"{'refresh after':<28}")
    lines = [header, "-" * len(header)]
    for round_ in result.rounds:
        row = round_.row()
        refresh = row["refresh"]
        after = f"{refresh['version'] or '-'} {refresh['status']}" if refresh else ""
        lines.append(
            f"{row['round']:>5} {row['model_version']:>8} {row['requests']:>8} "
            f"{row['samples']:>7} {_fmt(row['obs_ctr']):>8} {_ci(row):>22} "
            f"{_fmt(row['gt_right_tool_share']):>10} {_fmt(row['tool_query_share']):>7} "
            f"{after:<28}")
    return "\n".join(lines)
