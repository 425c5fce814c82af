"""`toolrec models …` (bootstrap, registry) and `toolrec trainer …` (refresh, daemon)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from toolrec.cli import pass_settings


@click.group()
def models() -> None:
    """Local model files and the model registry."""


@click.group()
def trainer() -> None:
    """Weighted-KTO refreshes and the retraining daemon."""


# ------------------------------------------------------------------ model files and bootstrap
# (trainer.models, trainer.sft; heavy imports inside the command)


def _sft_overrides(settings: Any, overrides: dict[str, Any]) -> Any:
    """The generator config with the command line's SFT sizes (validated like the config)."""
    from generator.config import BootstrapSFTConfig

    generator = settings.trainer.generator
    given = {k: v for k, v in overrides.items() if v is not None}
    sft = BootstrapSFTConfig(**{**generator.sft.model_dump(), **given})
    return generator.model_copy(update={"sft": sft})


def _catalog_and_retriever(settings: Any) -> tuple[Any, Any]:
    """(tools, retriever) — retriever None, with a warning, when it cannot load."""
    try:
        from retrieval import Retriever

        retriever = Retriever(settings.retrieval)
        return retriever.catalog.tools, retriever.warm()
    except Exception as exc:  # the SFT data then falls back to catalog neighbours
        from retrieval import load_catalog

        click.echo(f"warning: retriever unavailable ({exc}); SFT prompts show catalog "
                   "neighbours instead of retrieved tools", err=True)
        return load_catalog().tools, None


@models.command("bootstrap")
@click.option("--sft/--no-sft", default=True, show_default=True,
              help="Also train the bootstrap SFT LoRA adapter (the first champion).")
@click.option("--examples", type=int, default=None,
              help="SFT examples generated from SysToolKit (default: trainer.generator.sft).")
@click.option("--epochs", type=int, default=None, help="Passes over the examples.")
@click.option("--steps", "max_steps", type=int, default=None,
              help="Optimizer steps, overriding --epochs.")
@click.option("--batch-size", type=int, default=None, help="Examples per optimizer step.")
@click.option("--force", is_flag=True, help="Retrain the adapter even if one exists.")
@click.option("--check", "check_n", type=int, default=4, show_default=True,
              help="Held-out prompts generated after the SFT to report its format (0: skip).")
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's).")
@pass_settings
def models_bootstrap(settings: Any, sft: bool, examples: int | None, epochs: int | None,
                     max_steps: int | None, batch_size: int | None, force: bool, check_n: int,
                     threads: int | None) -> None:
    """Write SmolLM2-135M-Instruct as a local fp32 checkpoint (once), then train the
    bootstrap SFT adapter on lists generated from SysToolKit (idempotent)."""
    import torch

    from generator.generator import Generator
    from trainer.sft import bootstrap, format_check, reusable_adapter
    from trainer.sft_data import build_sft_examples, retriever_search

    if threads:
        torch.set_num_threads(threads)
    config = _sft_overrides(settings, {"examples": examples, "epochs": epochs,
                                       "max_steps": max_steps, "batch_size": batch_size})
    training = sft and (force or reusable_adapter(config.bootstrap_adapter_dir, config.sft)
                        is None)
    needs_tools = training or (sft and check_n > 0)
    tools, retriever = _catalog_and_retriever(settings) if needs_tools else ((), None)
    result = bootstrap(config, sft=sft, tools=tools, force=force,
                       search=retriever_search(retriever) if retriever else None)
    click.echo(f"base model: {result.model_dir} (ready in {result.model_seconds} s)")
    if result.report is None:
        return
    verb = "reused" if result.reused_adapter else "trained"
    click.echo(f"bootstrap SFT adapter {verb}: {result.adapter_dir}\n  {result.report}")
    if check_n > 0:
        generator = Generator.load(result.model_dir, result.adapter_dir, config=config,
                                   linker=retriever, model_version="bootstrap-sft")
        held_out = build_sft_examples(tools, check_n, config=config, seed=config.sft.seed + 1,
                                      search=retriever_search(retriever) if retriever else None)
        click.echo(f"  held-out check ({check_n} prompts): {format_check(generator, held_out)}")
    click.echo(f"make it the first champion: toolrec models register {result.adapter_dir}")


# ------------------------------------------------------------------ registry and refreshes
# (trainer.registry, trainer.refresh, trainer.daemon; heavy imports inside the commands)


def _registry(settings: Any) -> Any:
    from trainer.registry import Registry

    return Registry(settings.lake, settings.trainer.training, settings.kafka)


def _refresher(settings: Any) -> Any:
    from trainer.refresh import Refresher, retrieval_parts

    parts = {}
    if settings.trainer.training.gate_retrieval:
        parts = retrieval_parts(settings.retrieval,
                                max_tools=settings.trainer.generator.max_tools)
    cap, w_max = settings.trainer.training.weight_max, settings.streams.calibration.w_max
    if cap != w_max:  # DESIGN.md §4: the trainer's renormalisation respects the calibration's cap
        click.echo(f"warning: trainer.training.weight_max ({cap}) differs from "
                   f"streams.calibration.w_max ({w_max}); training weights are capped at "
                   f"{cap}", err=True)
    return Refresher(settings.lake, settings.trainer, settings.kafka, **parts)


def _echo_record(record: Any, *, full: bool = False) -> None:
    import json
    from dataclasses import asdict

    if full:
        click.echo(json.dumps(asdict(record), indent=2, sort_keys=True, default=str))
        return
    margin = (record.metrics.get("candidate") or {}).get("reward_margin")
    shown = "-" if margin is None else f"{margin:.4f}"
    outcome = record.decision.get("outcome") or "-"
    click.echo(f"{record.version:>6}  {record.status:<11}  parent={record.parent or '-':<6} "
               f"data=({record.data_version_from},{record.data_version_to}]  "
               f"n_train={record.n_train:<6} margin={shown:<8} gate={outcome}")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def describe_record(record: Any) -> list[str]:
    """A registry row for people: the gate's outcome, its evidence, every metric of the
    candidate, the champion and the SFT baseline with each check, the training weights."""
    m, d = record.metrics, record.decision
    lines = [
        f"{record.version}  status={record.status}  parent={record.parent or '-'}  "
        f"adapter={record.adapter_path}",
        f"data: samples versions ({record.data_version_from}, {record.data_version_to}]; "
        f"train {record.n_train} (new {record.n_new}, replay {record.n_replay}; "
        f"{record.n_desirable} clicked, {record.n_undesirable} not); held out {record.n_holdout}",
    ]
    if record.note:
        lines.append(f"note: {record.note}")
    if "outcome" in d:
        lines.append(f"gate: {d['outcome']}")
    lines += [f"  reason: {r}" for r in d.get("reasons", [])]
    ev = d.get("evidence") or {}
    if ev:
        lines.append(f"  evidence: {ev.get('heldout_clicks')} held-out clicks (min "
                     f"{ev.get('min_heldout_clicks')}), {ev.get('heldout_nonclicks')} non-clicks "
                     f"(min {ev.get('min_heldout_nonclicks')}): "
                     f"{'enough' if ev.get('enough') else 'NOT enough'}")
    lines += _metric_table(m, d)
    weights = m.get("train_weights")
    if weights:
        from trainer.data import format_weight_summary

        lines.append(f"training weights: {format_weight_summary(weights)}")
    for key in ("train_loss", "timings", "imported_from"):
        if key in m:
            value = m[key]
            shown = (", ".join(f"{a}={_fmt(b)}" for a, b in value.items())
                     if isinstance(value, dict) else _fmt(value))
            lines.append(f"{key}: {shown}")
    return lines


def _metric_table(m: dict[str, Any], d: dict[str, Any]) -> list[str]:
    sides = [s for s in ("candidate", "reference", "baseline") if isinstance(m.get(s), dict)]
    if not sides:
        return []
    titles = {"candidate": "candidate", "reference": f"champion {m.get('reference_version', '')}",
              "baseline": f"SFT baseline {m.get('baseline_version', '')}"}
    checks, base_checks = d.get("checks") or {}, d.get("baseline_checks") or {}
    names = list(dict.fromkeys(k for s in sides for k in m[s]))
    names += [n for n in checks if n not in names]
    header = f"  {'metric':<24}" + "".join(f"{titles[s]:>20}" for s in sides)
    lines = [header + f"{'tolerance':>11}{'ok vs champ':>13}{'ok vs base':>12}"]
    for name in names:
        row = f"  {name:<24}" + "".join(f"{_fmt(m[s].get(name)):>20}" for s in sides)
        check = checks.get(name) or base_checks.get(name)
        if check:
            row += (f"{_fmt(check.get('tolerance')):>11}"
                    f"{_fmt((checks.get(name) or {}).get('ok')):>13}"
                    f"{_fmt((base_checks.get(name) or {}).get('ok')):>12}")
        lines.append(row)
    return lines


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per version.")
@pass_settings
def models_list(settings: Any, as_json: bool) -> None:
    """Every registered version, oldest first."""
    records = _registry(settings).records()
    if not records:
        click.echo("no registered models (serving the base model)")
    for record in records:
        _echo_record(record, full=as_json)


@models.command("show")
@click.argument("version", required=False)
@click.option("--json", "as_json", is_flag=True, help="The whole registry row as JSON.")
@pass_settings
def models_show(settings: Any, version: str | None, as_json: bool) -> None:
    """One version with its gate decision, evidence, every metric and its training weights
    (default: the champion)."""
    registry = _registry(settings)
    record = registry.get(version) if version else registry.champion()
    if record is None:
        click.echo("no champion: serving the base model")
        return
    if as_json:
        _echo_record(record, full=True)
        return
    click.echo("\n".join(describe_record(record)))


@models.command("promote")
@click.argument("version")
@pass_settings
def models_promote(settings: Any, version: str) -> None:
    """Make VERSION the champion (adapter verified first) and announce it."""
    record = _registry(settings).promote(version)
    click.echo(f"{record.version} is the champion (announced on "
               f"{settings.kafka.topics.models})")


@models.command("rollback")
@click.option("--to", "target", default=None,
              help="Version to reinstate, or 'base' (default: the previous champion).")
@pass_settings
def models_rollback(settings: Any, target: str | None) -> None:
    """Demote the champion and reinstate the previous one (or --to); announce it."""
    record = _registry(settings).rollback(to=target)
    click.echo(f"rolled back; champion: {record.version if record else 'base'}")


@models.command("announce")
@pass_settings
def models_announce(settings: Any) -> None:
    """Re-announce the current champion on toolrec.models (after a broker outage)."""
    message = _registry(settings).announce_champion()
    click.echo(f"announced: {message.model_dump(by_alias=True)}" if message else
               "nothing announced (no champion or announcements off)")


@models.command("prune-engines")
@click.option("--keep", type=click.IntRange(0, 1000), default=None,
              help="Former champions whose conversion stays, most recent first "
              "[default: trainer.training.keep_engines].")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@pass_settings
def models_prune_engines(settings: Any, keep: int | None, dry_run: bool) -> None:
    """Delete the serving-engine conversions of older former champions (the champion's and
    the rollback targets' stay); a pruned version is converted again if reinstated."""
    pruned = _registry(settings).prune_engines(keep, dry_run=dry_run)
    verb = "would prune" if dry_run else "pruned"
    click.echo(f"{verb} {len(pruned)} engine conversion(s)"
               + (f": {', '.join(r.version for r in pruned)}" if pruned else ""))


@models.command("register")
@click.argument("adapter_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--promote/--no-promote", default=True, show_default=True,
              help="Make it the champion (and announce it).")
@click.option("--note", default=None, help="Free text stored with the version.")
@pass_settings
def models_register(settings: Any, adapter_dir: Path, promote: bool, note: str | None) -> None:
    """Register a LoRA adapter trained elsewhere (e.g. the bootstrap SFT) as a new version."""
    record = _registry(settings).import_adapter(
        adapter_dir, settings.trainer.generator.model_dir, promote=promote, note=note
    )
    click.echo(f"registered {record.version} ({record.status}) from {adapter_dir}")


@trainer.command("refresh")
@click.option("--min-new", type=int, default=None,
              help="Refresh only with at least this many new samples (default: M from config).")
@click.option("--force", is_flag=True, help="Refresh with any new samples (--min-new 1).")
@click.option("--max-steps", type=int, default=None, help="Cap optimizer steps of this run.")
@click.option("--wait", "wait_s", type=float, default=0.0, show_default=True,
              help="Seconds to wait for a running refresh to finish.")
@pass_settings
def trainer_refresh(settings: Any, min_new: int | None, force: bool, max_steps: int | None,
                    wait_s: float) -> None:
    """Run one incremental refresh now (single-flight with the daemon)."""
    result = _refresher(settings).run(
        min_new_samples=1 if force else min_new, lock_timeout_s=wait_s, max_steps=max_steps
    )
    click.echo(f"refresh {result.outcome}: {result.version or '-'} ({result.reason}); "
               f"{result.new_samples} new samples; announced={result.announced}")


@trainer.command("daemon")
@click.option("--interval", "interval_s", type=float, default=None,
              help="Seconds between checks (default: trainer.training.interval_s).")
@click.option("--min-new", type=int, default=None,
              help="M: refresh when at least this many new samples (default from config).")
@pass_settings
def trainer_daemon(settings: Any, interval_s: float | None, min_new: int | None) -> None:
    """Refresh on an interval when enough new samples exist; stop with SIGTERM / Ctrl-C."""
    from trainer.daemon import TrainerDaemon

    TrainerDaemon(_refresher(settings), interval_s=interval_s, min_new_samples=min_new).run()
