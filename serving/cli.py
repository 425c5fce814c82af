"""`toolrec serve`: run the recommendation API with uvicorn."""

from __future__ import annotations

import json
from typing import Any

import click

from toolrec.cli import pass_settings


@click.command("serve")
@click.option("--host", default=None, help="Bind address (default: serving.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: serving.port).")
@click.option("--print-openapi", is_flag=True, help="Print the OpenAPI schema and exit.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@pass_settings
def serve(settings: Any, host: str | None, port: int | None, print_openapi: bool,
          log_level: str) -> None:
    """Serve /v1/recommend, /v1/feedback, /healthz, /readyz, /metrics and /v1/admin/*.

    Follows the registry champion (hot-swaps on toolrec.models announcements); impressions
    are spooled under serving.spool_dir and sent to Kafka in the background.
    """
    from serving.main import create_app, openapi_schema

    if print_openapi:
        click.echo(json.dumps(openapi_schema(settings), indent=2, sort_keys=True))
        return
    import logging

    import uvicorn

    if log_level != "debug":  # kafka-python logs every refused connection of an outage;
        logging.getLogger("kafka").setLevel(logging.CRITICAL)  # serving reports it, throttled
    config = settings.serving
    app = create_app(settings)
    uvicorn.run(app, host=host or config.host, port=port or config.port, log_level=log_level,
                log_config=None, timeout_graceful_shutdown=int(config.drain_timeout_s) + 5)


@click.group("privacy")
def privacy() -> None:
    """Erasure and retention of personal data (see the README's privacy policy)."""


@privacy.command("forget")
@click.argument("user_id")
@click.option("--no-state", is_flag=True, help="Skip the stream-state tombstones (no broker).")
@pass_settings
def forget_cmd(settings: Any, user_id: str, no_state: bool) -> None:
    """Erase USER_ID (raw id or its pseudonym) from every Delta table (delete, vacuum, audit
    row), the serving spool (stop the server first, or use POST /v1/admin/forget) and the
    stream state. Prints what was removed and what cannot be erased."""
    from contracts.events import load_user_id_key
    from serving.privacy import forget

    key = load_user_id_key(settings.streams.telemetry, settings.infra.state_dir)
    click.echo(json.dumps(forget(settings, user_id, key, state=not no_state), indent=2))


@privacy.command("retention")
@pass_settings
def retention_cmd(settings: Any) -> None:
    """Delete rows older than each table's retention ([privacy.retention]), then vacuum."""
    from lakehouse import apply_retention

    days = settings.privacy.retention
    removed = apply_retention(settings.lake, {"events": days.events_days,
                                              "samples": days.samples_days,
                                              "privacy_audit": days.privacy_audit_days})
    click.echo(json.dumps(removed))
