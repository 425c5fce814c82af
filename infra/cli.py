"""`toolrec infra broker up|down|status`: a local broker for development and the demo."""

from __future__ import annotations

import json

import click

from infra.broker import LocalStack
from infra.topics import ensure_topics
from toolrec.cli import pass_settings
from toolrec.config import Settings
from toolrec.errors import InfraError


@click.group()
def infra() -> None:
    """Local infrastructure (tansu broker, SeaweedFS)."""


@infra.group()
def broker() -> None:
    """The local Kafka-compatible broker."""


@broker.command("up")
@click.option(
    "--storage", type=click.Choice(["memory", "s3"]), default=None, help="Override infra.storage."
)
@pass_settings
def broker_up(settings: Settings, storage: str | None) -> None:
    """Start the broker (and SeaweedFS for s3) in the background and create the topics."""
    existing = LocalStack.from_state(settings.infra.state_dir)
    if existing is not None and existing.status()["broker_up"]:
        raise InfraError(
            f"a broker already runs: {existing.status()}; `toolrec infra broker down` first"
        )
    host, _, port = settings.kafka.bootstrap_servers.partition(",")[0].rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        raise InfraError(
            f"kafka.bootstrap_servers={settings.kafka.bootstrap_servers!r} is not local; "
            "`infra broker up` only starts a broker on 127.0.0.1"
        )
    stack = LocalStack(
        settings.infra.state_dir,
        storage=storage or settings.infra.storage,  # type: ignore[arg-type]
        broker_port=int(port),
        s3_port=settings.infra.s3_port,
    )
    stack.start()
    stack.save_state()
    ensure_topics(settings.kafka)
    click.echo(json.dumps(stack.status()))


@broker.command("down")
@pass_settings
def broker_down(settings: Settings) -> None:
    """Stop what `up` started (by its recorded PIDs)."""
    stack = LocalStack.from_state(settings.infra.state_dir)
    if stack is None:
        click.echo("no local broker recorded")
        return
    stack.stop()
    stack.state_file.unlink(missing_ok=True)
    click.echo("stopped")


@broker.command("status")
@pass_settings
def broker_status(settings: Settings) -> None:
    """Print whether the local broker (and store) run, as JSON."""
    stack = LocalStack.from_state(settings.infra.state_dir)
    click.echo(json.dumps(stack.status() if stack else {"broker_up": False}))
