"""The `toolrec` command line: `toolrec <stage> <verb>`.

This module only wires: each stage owns its click group in `<stage>/cli.py`, loaded lazily
so that `toolrec lake sql` never imports torch. Settings are built once from
`--config FILE` / the environment and handed to commands through `click` context.
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from toolrec.errors import ToolrecError

# command name -> "module:attribute" of a click command or group
STAGE_COMMANDS: dict[str, str] = {
    "config": "toolrec.cli:config_group",
    "infra": "infra.cli:infra",
    "streams": "streams.cli:streams",
    "telemetry": "streams.cli:telemetry",
    "lake": "lakehouse.cli:lake",
    "tools": "retrieval.cli:tools",
    "models": "trainer.cli:models",
    "trainer": "trainer.cli:trainer",
    "serve": "serving.cli:serve",
    "privacy": "serving.cli:privacy",
    "simulate": "loop.cli:simulate",
    "demo": "loop.cli:demo",
    "experiment": "loop.cli:experiment",
}

F = TypeVar("F", bound=Callable[..., Any])


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(STAGE_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = STAGE_COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                return None  # stage not built yet
            raise
        command = getattr(module, attr)
        assert isinstance(command, click.Command)
        return command


def get_settings(ctx: click.Context | None = None) -> Any:
    """The Settings of this invocation, built on first use."""
    from toolrec.config import load_settings

    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    if root.obj is None:
        root.obj = {}
    if "settings" not in root.obj:
        root.obj["settings"] = load_settings(root.obj.get("config_path"))
    return root.obj["settings"]


def pass_settings(func: F) -> F:
    """Decorator: call the command with the Settings as its first argument."""

    @click.pass_context
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        return ctx.invoke(func, get_settings(ctx), *args, **kwargs)

    return cast(F, functools.update_wrapper(wrapper, func))


@click.group(cls=LazyGroup)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML configuration file (also: TOOLREC_CONFIG).",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: bool) -> None:
    """toolrec: learn tool-grounded follow-up queries from calibrated clicks."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:  # client libraries log every connection at INFO
        for noisy in ("kafka", "aiokafka", "faust", "mode", "httpx", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    ctx.obj = {"config_path": config_path}


@click.group("config")
def config_group() -> None:
    """Inspect the effective configuration."""


@config_group.command("show")
@pass_settings
def config_show(settings: Any) -> None:
    """Print the effective configuration as JSON (secrets masked)."""
    click.echo(settings.model_dump_json(indent=2))


def main() -> None:
    try:
        cli(standalone_mode=False)
    except ToolrecError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
