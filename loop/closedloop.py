"""`toolrec experiment closed-loop`: the loop's own claim, raw clicks versus calibration.

For each arm (default: `raw`, then `full`) one whole demo run (`loop.demo.Demo`: real
broker, Faust worker, Delta sink, retraining daemon and API as subprocesses) from the same
start — the SFT adapter as champion v1 — and the same simulated population: the simulator
seed fixes the users and every turn (a turn depends only on seed, user and index), so in
round r both arms answer exactly the same requests. The arms differ only in the streams
worker's calibration (`loop.experiment.ARM_SWITCHES`, through `TOOLREC_STREAMS__
CALIBRATION__*`: `raw` turns the activity, tool and position terms off, so every weight is
1). Between rounds the daemon refreshes on what the round's served model produced, the
gate decides, a promotion is hot-swapped: each model trains on the traffic its predecessor
served, and a gate rejection or "not enough evidence" keeps the champion serving, as in
production.

Measured per arm and round (ground truth from the simulator only): the reference user's
ground-truth CTR with a 95 % Student-t interval over the round's requests, the right-tool
click share, relevance, observed CTR, the served version and the refresh that followed.
Per arm ≠ raw and round: the paired difference to raw over the same turns (same user and
turn index), with its 95 % interval, and the same pooled over the rounds after the first
refresh (round 1 is served by v1 in every arm: its difference is decoding noise only, a
check of the pairing). Written: `<out_dir>/closed_loop.json`, `<out_dir>/report.html`,
per arm `<out_dir>/<arm>/records.jsonl` (the simulator's log, with its hidden truth).
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from loop.config import ClosedLoopConfig, DemoConfig
from loop.demo import Demo, DemoResult, deep_merge, gt_ctr_interval, round_table
from loop.metrics import Record, mean_interval, record_json, summarize
from loop.models import StartModel

ROUND_METRICS = ("requests", "obs_ctr", "gt_ctr", "gt_right_tool_share", "relevance",
                 "tool_query_share")


def arm_overrides(arm: str) -> dict[str, Any]:
    """The settings that make a run one arm: the streams worker's calibration switches."""
    from loop.experiment import ARM_SWITCHES

    if arm not in ARM_SWITCHES:
        raise ValueError(f"unknown arm {arm!r}; use one of {sorted(ARM_SWITCHES)}")
    return {"streams": {"calibration": dict(ARM_SWITCHES[arm])}}


class ClosedLoop:
    """Runs the arms one after the other (2 cores: never two stacks at once)."""

    def __init__(self, settings: Any, cfg: ClosedLoopConfig, start: StartModel, *,
                 echo: Callable[[str], None] = print, simulator_config: Any = None,
                 demo_config: DemoConfig | None = None,
                 extra_overrides: Mapping[str, Any] | None = None) -> None:
        self.settings = settings
        self.cfg = cfg
        self.start = start
        self.echo = echo
        base = simulator_config or settings.loop.simulator
        self.sim_config = base.model_copy(update={"seed": cfg.seed})
        self.demo_config = demo_config or settings.loop.demo
        self.extra_overrides = dict(extra_overrides or {})
        self.results: dict[str, DemoResult] = {}
        self.wall_s = 0.0

    def demo_config_for(self, arm: str) -> DemoConfig:
        return self.demo_config.model_copy(update={
            "state_dir": Path(self.cfg.out_dir) / arm / "run", "rounds": self.cfg.rounds,
            "users": self.cfg.users, "requests_per_user": self.cfg.requests_per_user,
            "max_steps": self.cfg.max_steps})

    def _prefixed(self, arm: str) -> Callable[[str], None]:
        def echo(line: str) -> None:
            self.echo(f"[{arm}] {line}")

        return echo

    def run(self) -> dict[str, DemoResult]:
        started = time.monotonic()
        for arm in self.cfg.arms:
            self.echo(f"closed loop: arm {arm} ({self.cfg.rounds} rounds × {self.cfg.users} "
                      f"users × {self.cfg.requests_per_user} requests)")
            demo = Demo(self.settings, self.demo_config_for(arm), self.start,
                        echo=self._prefixed(arm),
                        simulator_config=self.sim_config,
                        extra_overrides=deep_merge(self.extra_overrides, arm_overrides(arm)))
            result = demo.run()
            self.results[arm] = result
            _write_records(Path(self.cfg.out_dir) / arm / "records.jsonl", result.records)
            self.echo(f"[{arm}] done in {result.timings['wall_s']:.0f} s\n"
                      + round_table(result))
        self.wall_s = time.monotonic() - started
        return self.results


def _write_records(path: Path, records: Sequence[Record]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        for record in records:
            handle.write(json.dumps(record_json(record)) + "\n")


# --------------------------------------------------------------------------- analysis


def _triple(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "lo": None, "hi": None}
    if len(values) < 2:
        return {"mean": float(values[0]), "lo": None, "hi": None}
    mean, low, high = mean_interval(values)
    return {"mean": mean, "lo": low, "hi": high}


def round_rows(result: DemoResult) -> list[dict[str, Any]]:
    """Per round: served version(s), the metrics of `ROUND_METRICS`, the ground-truth CTR's
    95 % interval over requests, and the refresh after the round."""
    rows = []
    for round_ in result.rounds:
        s = summarize(round_.records)
        _, low, high = gt_ctr_interval(round_.records)
        rows.append({"round": round_.round, "model_version": ",".join(round_.versions),
                     **{k: s[k] for k in ROUND_METRICS}, "gt_ctr_lo": low, "gt_ctr_hi": high,
                     "samples": round_.samples, "failures": round_.failures,
                     "refresh": round_.refresh})
    return rows


def _by_turn(records: Sequence[Record]) -> dict[tuple[int, int], float]:
    return {(r.turn.user.index, r.turn.index): r.judgement.ref_ctr for r in records}


def paired(arm: DemoResult, raw: DemoResult, *, from_round: int = 2) -> dict[str, Any]:
    """The arm's ground-truth CTR minus raw's on the same turns: per round, and pooled over
    rounds ≥ `from_round` (after the first refresh), each with a 95 % interval over turns,
    and relative to raw's mean on those turns."""
    raw_rounds = {r.round: _by_turn(r.records) for r in raw.rounds}
    per_round, pooled, pooled_raw = [], [], []
    for round_ in arm.rounds:
        mine, theirs = _by_turn(round_.records), raw_rounds.get(round_.round, {})
        keys = sorted(set(mine) & set(theirs))
        diffs = [mine[k] - theirs[k] for k in keys]
        base = [theirs[k] for k in keys]
        per_round.append({"round": round_.round, "pairs": len(keys), "abs": _triple(diffs),
                          "rel": _relative(diffs, base)})
        if round_.round >= from_round:
            pooled += diffs
            pooled_raw += base
    return {"rounds": per_round, "after_first_refresh": {
        "from_round": from_round, "pairs": len(pooled), "abs": _triple(pooled),
        "rel": _relative(pooled, pooled_raw)}}


def _relative(diffs: Sequence[float], base: Sequence[float]) -> float | None:
    """Mean difference over raw's mean CTR on the same turns (no interval: a ratio)."""
    total = sum(base)
    return sum(diffs) / total if diffs and total > 0 else None


def summary(results: Mapping[str, DemoResult], cfg: ClosedLoopConfig,
            wall_s: float | None) -> dict[str, Any]:
    """What `closed_loop.json` holds (see the module doc)."""
    arms = {arm: {"rounds": round_rows(r), "registry": r.registry,
                  "wall_s": round(r.timings.get("wall_s", 0.0), 1),
                  "start_model": r.start_model} for arm, r in results.items()}
    vs_raw = ({arm: paired(r, results["raw"]) for arm, r in results.items() if arm != "raw"}
              if "raw" in results else {})
    return {"config": cfg.model_dump(mode="json"),
            "demo_config": next(iter(results.values())).config if results else None,
            "wall_s": None if wall_s is None else round(wall_s, 1),
            "arms": arms, "vs_raw": vs_raw}


def findings(data: Mapping[str, Any]) -> list[str]:
    """Plain sentences: each arm's curve, and each paired difference with its interval."""
    lines = []
    for arm, entry in data["arms"].items():
        curve = "; ".join(
            f"round {r['round']} ({r['model_version']}) {_ci(r)}" for r in entry["rounds"])
        lines.append(f"{arm}: ground-truth CTR per round: {curve}")
    for arm, vs in data["vs_raw"].items():
        pooled = vs["after_first_refresh"]
        a, rel = pooled["abs"], pooled["rel"]
        if a["mean"] is None:
            lines.append(f"{arm} vs raw: no paired turns after the first refresh")
            continue
        interval = (f", 95 % interval [{a['lo']:+.4f}, {a['hi']:+.4f}]"
                    if a["lo"] is not None else "")
        verdict = ("above raw" if a["lo"] is not None and a["lo"] > 0 else
                   "below raw" if a["hi"] is not None and a["hi"] < 0 else
                   "not distinguishable from raw")
        rel_text = f" ({rel:+.1%} relative)" if rel is not None else ""
        lines.append(f"{arm} vs raw, rounds ≥ {pooled['from_round']} ({pooled['pairs']} paired "
                     f"turns): ground-truth CTR {a['mean']:+.4f}{rel_text}{interval} — "
                     f"{verdict} (one run per arm: the interval covers the turns' noise, "
                     "not the run-to-run spread of training)")
    return lines


def _ci(row: Mapping[str, Any]) -> str:
    if row.get("gt_ctr") is None:
        return "–"
    if row.get("gt_ctr_lo") is None:
        return f"{row['gt_ctr']:.4f}"
    return f"{row['gt_ctr']:.4f} [{row['gt_ctr_lo']:.4f}, {row['gt_ctr_hi']:.4f}]"


# --------------------------------------------------------------------------- outputs


def _refresh_cell(refresh: Mapping[str, Any] | None) -> str:
    if not refresh:
        return ""
    if refresh.get("version") is None:
        return f"none ({refresh.get('status')})"
    return f"{refresh['version']} {refresh.get('status')}"


def report_section(data: Mapping[str, Any]) -> list[str]:
    """The closed-loop section of an HTML report: learning curves of the arms, the per-round
    table and the paired differences to raw."""
    from loop.report import ARM_LABELS, fmt, round_curve_plot, table

    rows = [{"arm": ARM_LABELS.get(arm, arm), **r, "gt": _ci(r),
             "refresh_after": _refresh_cell(r.get("refresh"))}
            for arm, entry in data["arms"].items() for r in entry["rounds"]]
    diffs = []
    for arm, vs in data["vs_raw"].items():
        for r in [*vs["rounds"], {**vs["after_first_refresh"], "round": "pooled ≥ "
                                  f"{vs['after_first_refresh']['from_round']}"}]:
            a = r["abs"]
            diffs.append({"arm": ARM_LABELS.get(arm, arm), "round": r["round"],
                          "pairs": r["pairs"], "abs": fmt(a["mean"], 4),
                          "ci": (f"[{a['lo']:+.4f}, {a['hi']:+.4f}]" if a["lo"] is not None
                                 else "–"),
                          "rel": f"{r['rel']:+.1%}" if r["rel"] is not None else "–"})
    return [
        "<h2>Closed loop: each model trains on the traffic its predecessor served</h2>",
        "<p class='note'>One run per arm from the same SFT champion v1 and the same simulated "
        "population and turns; the arms differ only in the streams worker's calibration. "
        "Intervals: 95 % Student-t over the round's requests (paired: over the same turns). "
        "They cover the noise of the turns, not the run-to-run spread of training (one run "
        "per arm).</p>",
        "<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in findings(data)) + "</ul>",
        round_curve_plot({ARM_LABELS.get(arm, arm): entry["rounds"]
                          for arm, entry in data["arms"].items()}),
        table(rows, [("arm", "arm"), ("round", "round"), ("model_version", "served version"),
                     ("requests", "requests"), ("gt", "ground-truth CTR [95 %]"),
                     ("gt_right_tool_share", "right-tool click share"),
                     ("relevance", "relevance"), ("obs_ctr", "observed CTR"),
                     ("refresh_after", "refresh after")],
              left=("arm", "model_version", "gt", "refresh_after")),
        "<h3>Paired difference to raw (same turns)</h3>",
        table(diffs, [("arm", "arm"), ("round", "round"), ("pairs", "paired turns"),
                      ("abs", "GT CTR − raw"), ("ci", "95 % interval"),
                      ("rel", "relative to raw")], left=("arm", "round")),
    ]


def write_outputs(data: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    from loop.report import page, write

    out_dir = Path(out_dir)
    paths = {"json": write(out_dir / "closed_loop.json",
                           json.dumps(data, indent=2, default=str) + "\n"),
             "report": write(out_dir / "report.html", page(
                 "toolrec experiment: the closed loop, raw clicks vs calibration", [
                     *report_section(data), "<h2>Configuration</h2>",
                     f"<pre>{html.escape(json.dumps(data['config'], indent=2))}</pre>"]))}
    return paths
