"""toolrec: the shared core of the closed loop.

Owns what every stage needs and nothing stage-specific: the one typed configuration
(`toolrec.config`), Kafka client settings and topic names (`toolrec.kafka`), the exception
tree (`toolrec.errors`), progress reporting (`toolrec.progress`) and the `toolrec` CLI
(`toolrec.cli`), which only wires the stages' own command groups together.

Stage packages (`infra`, `streams`, `lakehouse`, `retrieval`, `trainer`, `serving`) may
import `toolrec.errors`, `toolrec.kafka` and `toolrec.progress`; only the CLI and
`toolrec.config` import the stages.
"""

__version__ = "0.1.0"
