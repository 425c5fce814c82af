"""serving: the recommendation API (`toolrec serve`).

Owns the FastAPI app (`serving.main.create_app(settings)`), the recommend pipeline behind a
bounded queue (`serving.engine`), model hot-swap following the registry and `toolrec.models`
(`serving.hotswap`, `serving.follower`), the durable event spool and its Kafka sender
(`serving.spool`, `serving.publisher`), Prometheus metrics and the admin endpoints.

May import: `toolrec` (config, errors, kafka), `retrieval` (Retriever, DeviceContext),
`trainer` (generator, prompt, config, registry), `streams` (event schemas and the
pseudonymization of the telemetry library). Only the CLI and benchmarks import serving.
`serving.main` pulls in FastAPI, so it is not imported here (`toolrec.config` imports
`serving.config`).
"""

from serving.config import ServingConfig

__all__ = ["ServingConfig"]
