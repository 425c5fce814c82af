"""A low-rank linear adapter on the sentence encoder's embeddings, fitted on the catalog.

all-MiniLM-L6-v2 was trained on general sentence pairs; it does not know that "quieter"
and "turn the music down" name one tool while "quieter" and "lower the ringer" name two.
The adapter reshapes its space for SysToolKit (this project's design):

    a(x) = normalize(x + U·(Vᵀ·x))          U, V: (384, rank), a(x) ≈ x when U·Vᵀ ≈ 0

It is fitted by hard-negative contrastive learning on the catalog's own phrasings, never
on an evaluation set: each phrasing (name, description, example, plus the examples put
in spoken frames, `SPOKEN_FRAMES` — "can you …", "… please") must be nearer its own tool's
centroid (leave-one-out: the phrasing itself is taken out of it, as a user's words are
not in the catalog) than every other tool's centroid; the softmax over all tools makes
the most confusable tools the heaviest negatives. The L2 penalty keeps a(x) near x.
The retriever applies a(x) to queries and to the index's phrasings alike.

The fitted matrices are data (`retrieval/data/adapter.npz`) with their SHA-256 and fit
settings in `adapter.json`; loading checks the digest. `toolrec tools fit-adapter` refits
(≈ 15 CPU-seconds; torch imported inside the fit). Imports `retrieval.catalog` and
`toolrec.errors`.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from retrieval.catalog import Catalog
from toolrec.errors import RetrievalError

ADAPTER_RESOURCE = "adapter.npz"
# how people put a request to an assistant; each example gets every FRAME_EVERY-th frame
SPOKEN_FRAMES = ("can you {}", "please {}", "{} please", "i want to {}", "hey {}",
                 "could you {} for me")
FRAME_EVERY = 3


class TextEncoder(Protocol):
    """What the index and retriever need of an encoder."""

    model_dir: Path | None

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray: ...


@dataclass(frozen=True)
class EmbeddingAdapter:
    """The fitted matrices and their digest (part of the index's encoder identity)."""

    u: np.ndarray
    v: np.ndarray
    digest: str
    meta: dict[str, Any]

    def apply(self, x: np.ndarray) -> np.ndarray:
        """a(x) row-wise: (n, 384) -> (n, 384), L2-normalised, float32."""
        y = x + (x @ self.v) @ self.u.T
        norm = np.linalg.norm(y, axis=-1, keepdims=True)
        out: np.ndarray = (y / np.maximum(norm, 1e-12)).astype(np.float32)
        return out


class AdaptedEncoder:
    """An encoder whose outputs pass through the adapter (the raw encoder keeps its cache,
    so several retrievers can share one)."""

    def __init__(self, encoder: TextEncoder, adapter: EmbeddingAdapter) -> None:
        self.raw = encoder
        self.adapter = adapter
        self.model_dir = encoder.model_dir

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        return self.adapter.apply(self.raw.encode(texts, progress=progress))


def npz_bytes(u: np.ndarray, v: np.ndarray) -> bytes:
    """The adapter file's bytes (what the digest covers)."""
    buffer = io.BytesIO()
    np.savez(buffer, u=u.astype(np.float32), v=v.astype(np.float32))
    return buffer.getvalue()


def load_fitted(path: Path | None, resource: str, what: str, command: str
                ) -> tuple[dict[str, np.ndarray], dict[str, Any], str]:
    """A fitted .npz and its .json record (`path`, its .json beside it; default: the
    packaged `resource`), after checking the file's SHA-256 against the recorded one:
    (arrays, record, digest). `what` and `command` name it in errors."""
    if path is None:
        data = resources.files("retrieval.data")
        blob = data.joinpath(resource).read_bytes()
        meta_text = data.joinpath(Path(resource).with_suffix(".json").name).read_text("utf-8")
        source = f"package:{resource}"
    else:
        meta_path = path.with_suffix(".json")
        if not path.is_file() or not meta_path.is_file():
            raise RetrievalError(f"{what} {path} or its {meta_path.name} does not exist; "
                                 f"fit one with `{command}`")
        blob, meta_text, source = path.read_bytes(), meta_path.read_text("utf-8"), str(path)
    digest = hashlib.sha256(blob).hexdigest()
    try:
        meta = json.loads(meta_text)
        recorded = meta["sha256"]
        arrays = dict(np.load(io.BytesIO(blob)))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, OSError) as exc:
        raise RetrievalError(f"{what} {source} is malformed ({exc}); refit with "
                             f"`{command}`") from exc
    if digest != recorded:
        raise RetrievalError(f"{what} {source} has SHA-256 {digest[:12]}…, its record says "
                             f"{str(recorded)[:12]}…; refit with `{command}`")
    return arrays, meta, digest


def load_adapter(path: Path | None = None) -> EmbeddingAdapter:
    """The fitted adapter (`path` to an .npz with its .json beside it; default: the packaged
    files), after checking the file's SHA-256 against the recorded one."""
    arrays, meta, digest = load_fitted(path, ADAPTER_RESOURCE, "adapter",
                                       "toolrec tools fit-adapter")
    source = str(path) if path is not None else f"package:{ADAPTER_RESOURCE}"
    if "u" not in arrays or "v" not in arrays:
        raise RetrievalError(f"adapter {source} is malformed (no 'u'/'v' arrays); refit "
                             "with `toolrec tools fit-adapter`")
    u, v = arrays["u"], arrays["v"]
    if u.shape != v.shape or u.ndim != 2:
        raise RetrievalError(f"adapter {source} has matrices {u.shape} and {v.shape}")
    return EmbeddingAdapter(u, v, digest, meta)


def spoken_frames(examples: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
    """(tool position, example) -> the examples put in spoken frames, deterministically
    every `FRAME_EVERY`-th frame of each example."""
    return [(tool, frame.format(text)) for n, (tool, text) in enumerate(examples)
            for k, frame in enumerate(SPOKEN_FRAMES) if (n + k) % FRAME_EVERY == 0]


@dataclass(frozen=True)
class AdapterFit:
    """Settings of one fit (recorded in the adapter's JSON)."""

    rank: int = 64
    epochs: int = 40
    learning_rate: float = 5e-3
    l2: float = 2e-2  # 1e-2 pulled "make the screen darker" to extra dim (one catalog example)
    temperature: float = 20.0  # scale of the cosines inside the softmax
    seed: int = 0


def fit_adapter(phrases: np.ndarray, owner: np.ndarray, framed: np.ndarray,
                framed_owner: np.ndarray, settings: AdapterFit) -> tuple[np.ndarray, np.ndarray]:
    """Fit U, V (full-batch Adam) so every phrasing and framed example is nearest its own
    tool's centroid among all tools (the phrasing left out of its own centroid)."""
    import torch
    import torch.nn.functional as nnf

    gen = torch.Generator().manual_seed(settings.seed)
    p, own = torch.from_numpy(phrases.astype(np.float32)), torch.from_numpy(owner).long()
    a, a_own = torch.from_numpy(framed.astype(np.float32)), torch.from_numpy(framed_owner).long()
    n_tools, dim = int(own.max()) + 1, p.shape[1]
    u = torch.zeros(dim, settings.rank, requires_grad=True)
    v = (torch.randn(dim, settings.rank, generator=gen) * 0.01).requires_grad_()
    opt = torch.optim.Adam([u, v], lr=settings.learning_rate)
    for _ in range(settings.epochs):
        x = nnf.normalize(p + (p @ v) @ u.T, dim=-1)
        sums = torch.zeros(n_tools, dim).index_add_(0, own, x)
        centroids = nnf.normalize(sums, dim=-1)
        own_loo = nnf.normalize(sums[own] - x, dim=-1)  # own centroid without the phrasing
        logits = (x @ centroids.T).scatter(1, own[:, None], (x * own_loo).sum(-1)[:, None])
        xa = nnf.normalize(a + (a @ v) @ u.T, dim=-1)
        loss = (nnf.cross_entropy(settings.temperature * logits, own)
                + nnf.cross_entropy(settings.temperature * xa @ centroids.T, a_own)
                + settings.l2 * ((u ** 2).sum() + (v ** 2).sum()))
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    return u.detach().numpy(), v.detach().numpy()


def fit_catalog_adapter(catalog: Catalog, encoder: TextEncoder,
                        settings: AdapterFit) -> tuple[bytes, dict[str, Any]]:
    """Fit the adapter on a catalog's phrasings with the raw encoder; the file's bytes and
    its JSON record (digest, settings, catalog hash)."""
    texts = [(t, text) for t, tool in enumerate(catalog.tools) for text in tool.texts()]
    framed = spoken_frames([(t, e) for t, tool in enumerate(catalog.tools)
                            for e in tool.examples])
    phrases = encoder.encode([text for _, text in texts])
    framed_vecs = encoder.encode([text for _, text in framed])
    u, v = fit_adapter(phrases, np.array([t for t, _ in texts]), framed_vecs,
                       np.array([t for t, _ in framed]), settings)
    blob = npz_bytes(u, v)
    meta = {"sha256": hashlib.sha256(blob).hexdigest(), "settings": asdict(settings),
            "catalog_hash": catalog.hash, "phrasings": len(texts), "framed": len(framed),
            "fitted_on": "catalog phrasings only (names, descriptions, examples, framed "
                         "examples); no evaluation rows"}
    return blob, meta
