"""serving: the recommendation API (`toolrec serve`).

Owns the FastAPI app (`serving.main.create_app(settings)`), the recommend pipeline behind a
bounded queue (`serving.engine`), model hot-swap following the registry and `toolrec.models`
(`serving.hotswap`, `serving.follower`), the durable event spool and its Kafka sender
(`serving.spool`, `serving.publisher`), Prometheus metrics and the admin endpoints.

May import: `contracts` (events and their factories, the pseudonymization, model
announcements), `generator` (the Generator, prompt, loading lock, settings), `retrieval`'s
public API (Retriever, DeviceContext) and the `toolrec` core (config, errors, kafka,
durable). One edge still runs to another stage, lazily imported: `trainer.registry` (the
champion lookup, artifact verification and rollback; the registry is the source of truth).
Only the CLI and benchmarks import serving.
`serving.main` pulls in FastAPI, so it is not imported here (`toolrec.config` imports
`serving.config`).
"""

from serving.config import ServingConfig

__all__ = ["ServingConfig"]
