"""toolrec: the shared core of the closed loop.

Owns what every stage needs and nothing stage-specific: the one typed configuration
(`toolrec.config`), Kafka client settings and topic names (`toolrec.kafka`), the exception
tree (`toolrec.errors`), durability helpers (`toolrec.durable`: `now_ms`, `FileLock`,
`fsync_dir`, `atomic_write_text`) and the `toolrec` CLI (`toolrec.cli`), which only wires
the stages' own command groups together.

`contracts` and the stage packages (`infra`, `streams`, `lakehouse`, `retrieval`,
`generator`, `trainer`, `serving`, `loop`) may import `toolrec.errors`, `toolrec.durable`
and `toolrec.kafka`; only the CLI and `toolrec.config` (the aggregators) import the stages.
The rest of the core imports nothing but the standard library, pydantic and click.
"""

__version__ = "0.1.0"
