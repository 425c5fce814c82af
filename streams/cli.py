"""`toolrec streams worker|topics` and `toolrec telemetry send FILE.jsonl`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from toolrec.cli import pass_settings
from toolrec.config import Settings


@click.group()
def streams() -> None:
    """The Faust calibration worker."""


@streams.command("topics")
@pass_settings
def topics(settings: Settings) -> None:
    """Create the project's topics (idempotent) and print their partition counts."""
    from streams.app import ensure_worker_topics

    click.echo(json.dumps(ensure_worker_topics(settings.streams, settings.kafka)))


@streams.command("worker")
@click.option("--loglevel", default="warning", show_default=True)
@pass_settings
def worker(settings: Settings, loglevel: str) -> None:
    """Run one Faust worker (start more for scale-out; they share the partitions)."""
    import faust

    from contracts.events import settings_key
    from streams.app import create_app, ensure_worker_topics

    # First: a fleet without the shared key must not start (nor touch the broker).
    key = settings_key(settings) if settings.streams.protect_events else None
    ensure_worker_topics(settings.streams, settings.kafka)
    app = create_app(settings.streams, settings.kafka, user_id_key=key,
                     pii=settings.privacy.pii, loglevel=loglevel)
    runner = faust.Worker(app, loglevel=loglevel, quiet=True)
    # Faust's progress spinner installs its handler at DEBUG on the root logger: every
    # debug call then builds a record (15–26 % of a send-heavy worker's time, issue 12).
    runner.spinner = None
    runner.execute_from_commandline()


@click.group()
def telemetry() -> None:
    """Client telemetry (impressions and feedback)."""


@telemetry.command("send")
@click.argument(
    "path", type=click.Path(path_type=Path, exists=True, dir_okay=False, allow_dash=True)
)
@click.option("--pseudonymized", is_flag=True, help="user_id values are already pseudonyms.")
@pass_settings
def send(settings: Settings, path: Path, pseudonymized: bool) -> None:
    """Validate and send the events of a JSONL file (`-` for stdin)."""
    from contracts.events import settings_key
    from streams.producer import TelemetryProducer, send_jsonl

    key = settings_key(settings)
    lines = sys.stdin if str(path) == "-" else path.open()
    with TelemetryProducer(settings.kafka, settings.streams.telemetry, key=key) as producer:
        click.echo(json.dumps(send_jsonl(producer, lines, pseudonymized=pseudonymized)))
