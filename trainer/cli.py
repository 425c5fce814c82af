"""`toolrec models …` (bootstrap, registry) and `toolrec trainer …` (refresh, daemon)."""

from __future__ import annotations

import click


@click.group()
def models() -> None:
    """Local model files and the model registry."""


@click.group()
def trainer() -> None:
    """Weighted-KTO refreshes and the retraining daemon."""
