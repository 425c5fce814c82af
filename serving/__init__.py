"""serving: the recommendation API (`toolrec serve`).

Owns the FastAPI app (`serving.main.create_app(settings)`), the recommend pipeline behind a
bounded queue (`serving.engine`), model hot-swap following the registry and `toolrec.models`
(`serving.hotswap`, `serving.follower`), the durable event spool and its Kafka sender
(`serving.spool`, `serving.publisher`), Prometheus metrics and the admin endpoints, the
request guard (`serving.guard`: body size / UTF-8 / JSON depth before parsing, the
per-client feedback rate limit) and forget-a-user across the lake, the spool and the
stream state (`serving.privacy`, behind `toolrec privacy` and `POST /v1/admin/forget`).

May import: `contracts` (events and their factories, the pseudonymization, model
announcements, the registry record and the adapter manifest check), `generator` (the
Generator, prompt, loading lock, settings), `retrieval`'s public API (Retriever,
DeviceContext), `lakehouse`'s public API (`ModelsTable`: the registry table, the source of
truth for the champion, and the admin rollback; `forget_user` / `apply_retention` for
erasure) and the `toolrec` core (config, errors,
kafka, durable). Never `trainer`, `streams` or `loop`.
Only the CLI and benchmarks import serving.
`serving.main` pulls in FastAPI, so it is not imported here (`toolrec.config` imports
`serving.config`).
"""

from serving.config import ServingConfig

__all__ = ["ServingConfig"]
