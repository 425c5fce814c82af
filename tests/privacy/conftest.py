"""The privacy tests reuse the serving fixtures (tiny model, catalog subset, server) and the
streams fixtures (worker and sink subprocesses on the test broker)."""

from tests.serving.conftest import (  # noqa: F401  (fixtures)
    catalog_path,
    model_dir,
    retriever,
    serve,
    settings_factory,
)
from tests.streams.conftest import start_sink, start_worker  # noqa: F401  (fixtures)
