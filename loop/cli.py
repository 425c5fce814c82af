"""`toolrec simulate`, `toolrec demo`, `toolrec experiment calibration` and `toolrec experiment
closed-loop`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from toolrec.cli import pass_settings

log = logging.getLogger(__name__)


def _api_url(settings: Any, url: str | None) -> str:
    if url:
        return url
    serving = settings.serving
    return f"http://{getattr(serving, 'host', '127.0.0.1')}:{getattr(serving, 'port', 8080)}"


@click.command("simulate")
@click.option("--url", default=None, help="API base URL (default: serving.host:port).")
@click.option("--users", type=int, default=None, help="Simulated users (default: "
              "loop.simulator.users).")
@click.option("--requests", "requests_per_user", type=int, default=3, show_default=True,
              help="Requests per user.")
@click.option("--first-turn", type=int, default=0, show_default=True,
              help="Index of each user's first turn (continue a population where it stopped).")
@click.option("--seed", type=int, default=None, help="Simulator seed (default: "
              "loop.simulator.seed).")
@click.option("--concurrency", type=int, default=2, show_default=True,
              help="Users in flight at once.")
@click.option("--feedback", type=click.Choice(["kafka", "api"]), default="kafka",
              show_default=True, help="kafka: the telemetry producer; api: POST /v1/feedback.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the simulator's log (with its hidden truth) as JSONL here.")
@pass_settings
def simulate(settings: Any, url: str | None, users: int | None, requests_per_user: int,
             first_turn: int, seed: int | None, concurrency: int, feedback: str,
             out: Path | None) -> None:
    """Simulated users against a running API; clicks go back through the telemetry path.

    Prints the ground-truth and observed metrics per model version as JSON at the end."""
    from loop.client import ApiClient
    from loop.metrics import group, record_json, summarize
    from loop.simulator import build_simulator
    from loop.traffic import Progress, TrafficRunner

    overrides = {k: v for k, v in {"users": users, "seed": seed}.items() if v is not None}
    config = settings.loop.simulator.model_copy(update=overrides)
    sim = build_simulator(config, settings.retrieval)
    client = ApiClient(_api_url(settings, url), timeout_s=settings.loop.demo.request_timeout_s)
    sink = _feedback_sink(settings, client, feedback)
    total = config.users * requests_per_user
    progress = Progress(total, emit=lambda line: click.echo(line, err=True))
    try:
        client.wait_ready(60.0)
        runner = TrafficRunner(sim, client, sink, concurrency=concurrency)
        result = runner.run(range(config.users), requests_per_user, first_index=first_turn,
                            progress=progress)
    finally:
        sink.close()
        client.close()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w") as handle:
            for record in result.records:
                handle.write(json.dumps(record_json(record)) + "\n")
    by_version = {v: summarize(rs) for v, rs in
                  group(result.records, lambda r: r.model_version).items()}
    click.echo(json.dumps({"total": result.summary(), "by_version": by_version}, indent=2))


def _feedback_sink(settings: Any, client: Any, kind: str) -> Any:
    from loop.client import ApiFeedback, KafkaFeedback

    if kind == "api":
        return ApiFeedback(client)
    if kind == "kafka":
        return KafkaFeedback(settings.kafka, settings.streams.telemetry, settings.infra.state_dir)
    raise click.BadParameter(f"unknown feedback path {kind!r}; use kafka or api")


@click.command("demo")
@click.option("--rounds", type=int, default=None, help="Rounds of traffic (default: "
              "loop.demo.rounds).")
@click.option("--users", type=int, default=None, help="Simulated users.")
@click.option("--requests", "requests_per_user", type=int, default=None,
              help="Requests per user per round.")
@click.option("--max-steps", type=int, default=None, help="KTO steps per refresh.")
@click.option("--concurrency", type=int, default=None, help="Users in flight at once.")
@click.option("--model", "model_kind", type=click.Choice(["smollm2", "tiny"]),
              default="smollm2", show_default=True,
              help="smollm2: the real generator; tiny: the tiny test Llama (quick look).")
@click.option("--state-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Run directory, wiped first (default: loop.demo.state_dir).")
@click.option("--feedback", type=click.Choice(["kafka", "api"]), default=None,
              help="Feedback path (default: loop.demo.feedback).")
@click.option("--seed", type=int, default=None, help="Simulator seed.")
@click.option("--report", "report_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="HTML report (default: <state-dir>/../demo-report.html).")
@pass_settings
def demo(settings: Any, rounds: int | None, users: int | None, requests_per_user: int | None,
         max_steps: int | None, concurrency: int | None, model_kind: str,
         state_dir: Path | None, feedback: str | None, seed: int | None,
         report_path: Path | None) -> None:
    """The closed loop end to end: broker, Faust worker, Delta sink, API and retraining
    daemon; rounds of simulated users with refreshes and hot-swaps in between; a report."""
    from loop.demo import Demo, round_table
    from loop.models import start_model
    from loop.report import demo_report, write

    given = {"rounds": rounds, "users": users, "requests_per_user": requests_per_user,
             "max_steps": max_steps, "concurrency": concurrency, "state_dir": state_dir,
             "feedback": feedback}
    cfg = settings.loop.demo.model_copy(update={k: v for k, v in given.items() if v is not None})
    sim_cfg = settings.loop.simulator
    if seed is not None:
        sim_cfg = sim_cfg.model_copy(update={"seed": seed})
    echo = _echo_err
    echo(f"demo: {cfg.rounds} rounds × {cfg.users} users × {cfg.requests_per_user} requests, "
         f"{cfg.max_steps} KTO steps per refresh, model {model_kind}")
    start = start_model(model_kind, settings.trainer.generator,  # type: ignore[arg-type]
                        Path(settings.infra.state_dir) / "loop-models")
    import torch

    # this process only simulates users (MiniLM on short texts): one thread leaves the
    # cores to the API and the trainer daemon
    torch.set_num_threads(1)
    result = Demo(settings, cfg, start, echo=echo, simulator_config=sim_cfg).run()
    text = round_table(result)
    path = report_path or Path(cfg.state_dir).resolve().parent / "demo-report.html"
    write(path, demo_report(result, text))
    click.echo(text)
    click.echo(f"wall time {result.timings['wall_s']:.0f} s; report: {path}")


def _echo_err(line: str) -> None:
    click.echo(line, err=True)


@click.group("experiment")
def experiment() -> None:
    """Offline experiments on simulated traffic."""


QUICK = {"model": "tiny", "users": 12, "requests_per_user": 6, "eval_turns": 16,
         "max_steps": 20, "seeds": (0, 1, 2)}


@experiment.command("calibration")
@click.option("--model", type=click.Choice(["smollm2", "tiny"]), default=None,
              help="Generator (default: loop.experiment.model).")
@click.option("--seeds", default=None, help="Comma-separated simulator seeds (≥ 3 for "
              "intervals; default: loop.experiment.seeds).")
@click.option("--arms", default=None, help="Comma-separated arms (default: all seven: "
              "sft,raw,activity,tool,full,full_position,full_toolrec).")
@click.option("--users", type=int, default=None, help="Users of the logged traffic.")
@click.option("--requests", "requests_per_user", type=int, default=None,
              help="Logged requests per user.")
@click.option("--eval-turns", type=int, default=None, help="Fixed evaluation turns.")
@click.option("--max-steps", type=int, default=None, help="KTO steps per arm.")
@click.option("--eval-every", type=int, default=None,
              help="Evaluate every this many KTO steps (learning curve; 0: final only).")
@click.option("--batch-size", type=int, default=None, help="KTO batch size.")
@click.option("--publish", is_flag=True, help="Also write loop/results/calibration.json and "
              "the experiment section of loop/RESULTS.md (the committed record).")
@click.option("--learning-rate", type=float, default=None, help="KTO LoRA learning rate.")
@click.option("--beta", type=float, default=None, help="KTO β (default: the trainer's).")
@click.option("--undesirable-weight", type=float, default=None,
              help="KTO class weight of non-clicked samples (0: train on clicks only).")
@click.option("--objective", type=click.Choice(["clicks", "reward"]), default=None,
              help="clicks: KTO on each shown suggestion's click; reward: GQR's CTR "
              "alignment (a CTR model on the arm's weighted clicks picks the best and worst "
              "of sampled lists per prompt).")
@click.option("--candidates", type=int, default=None,
              help="reward objective: lists sampled per logged prompt beside the logged one.")
@click.option("--engine", type=click.Choice(["torch", "ctranslate2"]), default=None,
              help="Generation engine of the experiment (ctranslate2: int8, as serving).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="Results directory (default: loop.experiment.out_dir).")
@click.option("--quick", is_flag=True, help="Tiny model, 12 users × 6 requests, 16 eval "
              "turns, 20 steps: minutes, for a smoke run (explicit flags still win).")
@click.option("--threads", type=int, default=None,
              help="torch threads (default: torch's; 1 helps on a crowded machine).")
@pass_settings
def calibration(settings: Any, model: str | None, seeds: str | None, arms: str | None,
                users: int | None, requests_per_user: int | None, eval_turns: int | None,
                max_steps: int | None, eval_every: int | None, batch_size: int | None,
                publish: bool, learning_rate: float | None, beta: float | None,
                undesirable_weight: float | None, objective: str | None,
                candidates: int | None, engine: str | None, out_dir: Path | None,
                quick: bool, threads: int | None) -> None:
    """Same simulated traffic and seeds, seven arms: SFT; KTO on raw clicks; activity only;
    tool only; full dual-level; full + position; full in the ToolRec form. Paired
    differences to raw (Holm), learning curves, HTML report, calibration.json."""
    from loop.experiment import Experiment, aggregate, findings, write_outputs
    from loop.models import start_model

    if threads:
        import torch

        torch.set_num_threads(threads)

    given: dict[str, Any] = dict(QUICK) if quick else {}
    given |= {k: v for k, v in {
        "model": model, "users": users, "requests_per_user": requests_per_user,
        "eval_turns": eval_turns, "max_steps": max_steps, "learning_rate": learning_rate,
        "beta": beta, "undesirable_weight": undesirable_weight, "objective": objective,
        "candidates": candidates, "engine": engine, "out_dir": out_dir,
        "eval_every": eval_every, "batch_size": batch_size,
        "publish": publish or None,
        "seeds": tuple(int(s) for s in seeds.split(",")) if seeds else None,
        "arms": tuple(a.strip() for a in arms.split(",")) if arms else None,
    }.items() if v is not None}
    cfg = type(settings.loop.experiment).model_validate(
        {**settings.loop.experiment.model_dump(), **given})
    _echo_err(f"experiment: {len(cfg.seeds)} seeds × {len(cfg.arms)} arms on {cfg.model}; "
              f"{cfg.users}×{cfg.requests_per_user} logged requests, {cfg.eval_turns} eval "
              f"turns, {cfg.max_steps} KTO steps per arm")
    start = start_model(cfg.model, settings.trainer.generator,
                        Path(settings.infra.state_dir) / "loop-models")
    experiment = Experiment(settings, cfg, start, echo=_echo_err)
    results = experiment.run()
    paths = write_outputs(results, cfg, experiment.wall_s)
    for line in findings(aggregate(results, cfg.arms)):
        click.echo(line)
    click.echo("written: " + ", ".join(str(p) for p in paths.values())
               + f"; raw results: {cfg.out_dir / 'results.json'}")


@experiment.command("report")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="Results directory (default: loop.experiment.out_dir).")
@click.option("--publish", is_flag=True, help="Also write loop/results/calibration.json and "
              "the experiment section of loop/RESULTS.md.")
@click.option("--merge", "merge_dirs", multiple=True,
              type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="Results directories of runs over other seeds (same settings otherwise), "
              "e.g. seeds split across processes; merged into --out's results.json first.")
@pass_settings
def experiment_report_cmd(settings: Any, out_dir: Path | None, publish: bool,
                          merge_dirs: tuple[Path, ...]) -> None:
    """Re-render report.html, results.md and calibration.json from an experiment's
    results.json (also a partial one); --publish also writes the committed record."""
    from loop.experiment import aggregate, findings, load_results, merge_results, write_outputs

    out = out_dir or settings.loop.experiment.out_dir
    if merge_dirs:
        merge_results([d / "results.json" for d in merge_dirs], out / "results.json")
    data = json.loads((out / "results.json").read_text())
    results = load_results(out / "results.json")
    cfg = type(settings.loop.experiment).model_validate(
        {**data["config"], "out_dir": out, "publish": publish})
    paths = write_outputs(results, cfg, data.get("wall_s"))
    for line in findings(aggregate(results, [a for a in cfg.arms
                                             if any(r.arm == a for r in results)])):
        click.echo(line)
    click.echo("written: " + ", ".join(str(p) for p in paths.values()))


@experiment.command("closed-loop")
@click.option("--model", type=click.Choice(["smollm2", "tiny"]), default=None,
              help="Generator (default: loop.closed_loop.model).")
@click.option("--arms", default=None, help="Comma-separated calibration arms, raw first "
              "(default: raw,full).")
@click.option("--rounds", type=int, default=None, help="Rounds of traffic per arm (≥ 2).")
@click.option("--users", type=int, default=None, help="Simulated users.")
@click.option("--requests", "requests_per_user", type=int, default=None,
              help="Requests per user per round.")
@click.option("--max-steps", type=int, default=None, help="KTO steps per refresh.")
@click.option("--seed", type=int, default=None, help="Simulator seed (same in every arm).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="Results directory (default: loop.closed_loop.out_dir).")
@pass_settings
def closed_loop(settings: Any, model: str | None, arms: str | None, rounds: int | None,
                users: int | None, requests_per_user: int | None, max_steps: int | None,
                seed: int | None, out_dir: Path | None) -> None:
    """Raw clicks vs calibration in the running loop: per arm the demo's whole stack from
    the same SFT champion and simulated population, rounds of traffic → refresh →
    hot-swap; ground-truth CTR per round with 95 % intervals, paired differences to raw;
    closed_loop.json and report.html."""
    from loop.closedloop import ClosedLoop, findings, summary, write_outputs
    from loop.models import start_model

    given = {k: v for k, v in {
        "model": model, "rounds": rounds, "users": users,
        "requests_per_user": requests_per_user, "max_steps": max_steps, "seed": seed,
        "out_dir": out_dir,
        "arms": tuple(a.strip() for a in arms.split(",")) if arms else None,
    }.items() if v is not None}
    cfg = type(settings.loop.closed_loop).model_validate(
        {**settings.loop.closed_loop.model_dump(), **given})
    _echo_err(f"closed loop: arms {', '.join(cfg.arms)} on {cfg.model}; {cfg.rounds} rounds × "
              f"{cfg.users} users × {cfg.requests_per_user} requests, {cfg.max_steps} KTO "
              "steps per refresh")
    start = start_model(cfg.model, settings.trainer.generator,
                        Path(settings.infra.state_dir) / "loop-models")
    import torch

    torch.set_num_threads(1)  # this process only simulates users (see `toolrec demo`)
    loop = ClosedLoop(settings, cfg, start, echo=_echo_err)
    results = loop.run()
    data = summary(results, cfg, loop.wall_s)
    paths = write_outputs(data, cfg.out_dir)
    for line in findings(data):
        click.echo(line)
    click.echo(f"wall time {loop.wall_s:.0f} s; written: "
               + ", ".join(str(p) for p in paths.values()))
