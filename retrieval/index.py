"""The persisted vector index of SysToolKit.

Every tool contributes its phrasings (name, description, examples) and one centroid
(the normalized mean of its phrasings). Both sets live in hnswlib cosine indexes, saved
under `cache_dir/systoolkit-index/<key>/` with a `meta.json` that records the catalog
hash, the encoder identity and the index parameters; the key is a digest of those, so a
changed catalog gets a new index built (atomically, via a temp directory) while processes
still serving the old catalog keep theirs; processes that start together build it once,
under a file lock. Vectors of unchanged phrasings are reused from
the previous index, and only the three most recent indexes are kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.adapter import TextEncoder
from retrieval.catalog import Catalog
from toolrec.durable import FileLock
from toolrec.errors import RetrievalError

log = logging.getLogger(__name__)
FORMAT = 1
INDEX_DIRNAME = "systoolkit-index"
KEEP_INDEXES = 3


@dataclass(frozen=True)
class IndexParams:
    m: int = 16
    ef_construction: int = 200
    ef_search: int = 128


@dataclass
class ToolIndex:
    """Phrase and centroid vectors of every tool, with their hnswlib indexes."""

    phrases: np.ndarray  # (n_phrases, encoder width) normalized
    owner: np.ndarray  # (n_phrases,) tool position of each phrase
    starts: np.ndarray  # (n_tools + 1,) phrase slice of tool t = starts[t]:starts[t+1]
    centroids: np.ndarray  # (n_tools, encoder width) normalized
    phrase_ann: object
    centroid_ann: object
    meta: dict[str, Any]
    rebuilt: bool = False

    @property
    def n_tools(self) -> int:
        return int(self.centroids.shape[0])

    @classmethod
    def open(
        cls, catalog: Catalog, encoder: TextEncoder, cache_dir: Path, params: IndexParams,
        *, encoder_id: str,
    ) -> ToolIndex:
        """Load the persisted index if it matches this catalog and encoder, else rebuild."""
        want = {"format": FORMAT, "catalog_hash": catalog.hash, "encoder": encoder_id,
                "m": params.m, "ef_construction": params.ef_construction}
        key = hashlib.sha256(json.dumps(want, sort_keys=True).encode()).hexdigest()[:16]
        directory = cache_dir / INDEX_DIRNAME / key
        index = cls._load_if_current(directory, params, want)
        if index is not None:
            return index
        # Processes starting together (the worker and the API) build one index, not two
        # racing ones: the first builds under the lock, the others then load its result.
        lock = FileLock(directory.with_name(f".{key}.lock"), what="tool index build")
        try:
            lock.acquire(timeout_s=None)
        except OSError as exc:
            raise _unwritable(directory, exc) from exc
        try:
            index = cls._load_if_current(directory, params, want, quiet=True)
            if index is not None:
                return index
            return cls._build(catalog, encoder, directory, params, want)
        finally:
            lock.release()

    @classmethod
    def _load_if_current(cls, directory: Path, params: IndexParams, want: dict[str, Any],
                         *, quiet: bool = False) -> ToolIndex | None:
        """The index under `directory` if it is whole and built for `want`, else None."""
        meta = _read_meta(directory)
        if meta is not None and all(meta.get(k) == v for k, v in want.items()):
            try:
                return cls._load(directory, meta, params)
            except (OSError, RuntimeError, ValueError, KeyError) as exc:
                log.warning("index under %s unreadable (%s); rebuilding", directory, exc)
        elif meta is not None and not quiet:
            log.info("catalog or encoder changed (index %s, catalog %s); rebuilding index",
                     meta.get("catalog_hash"), want["catalog_hash"])
        return None

    @classmethod
    def _load(cls, directory: Path, meta: dict[str, Any], params: IndexParams) -> ToolIndex:
        data = np.load(directory / "vectors.npz")
        phrases, owner, starts = data["phrases"], data["owner"], data["starts"]
        centroids = data["centroids"]
        phrase_ann = _load_ann(directory / "phrases.hnsw", phrases.shape, params)
        centroid_ann = _load_ann(directory / "centroids.hnsw", centroids.shape, params)
        return cls(phrases, owner, starts, centroids, phrase_ann, centroid_ann, meta)

    @classmethod
    def _build(
        cls, catalog: Catalog, encoder: TextEncoder, directory: Path, params: IndexParams,
        want: dict[str, Any],
    ) -> ToolIndex:
        started = time.perf_counter()
        texts, owner, starts = _phrasings(catalog)
        phrases = _reuse_or_encode(texts, encoder, directory, want["encoder"])
        centroids = np.zeros((len(catalog), phrases.shape[1]), dtype=np.float32)
        np.add.at(centroids, owner, phrases)
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        phrase_ann = _build_ann(phrases, params)
        centroid_ann = _build_ann(centroids, params)
        meta = {**want, "n_tools": len(catalog), "n_phrases": len(texts),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "build_seconds": round(time.perf_counter() - started, 2)}
        _persist(directory, phrases, owner, starts, centroids, phrase_ann, centroid_ann, meta,
                 texts)
        log.info("tool index built in %.1f s -> %s", meta["build_seconds"], directory)
        return cls(phrases, owner, starts, centroids, phrase_ann, centroid_ann, meta, True)


def _reuse_or_encode(texts: list[str], encoder: TextEncoder, directory: Path,
                     encoder_id: str) -> np.ndarray:
    """Embed the phrasings, reusing vectors of unchanged texts from the most recent other
    index of the same encoder, so editing a few tools does not re-encode thousands."""
    previous: dict[str, np.ndarray] = {}
    for other in _siblings(directory):
        meta = _read_meta(other)
        if meta is None or meta.get("encoder") != encoder_id:
            continue
        try:
            old_texts = json.loads((other / "texts.json").read_text())
            old_vectors = np.load(other / "vectors.npz")["phrases"]
            previous = dict(zip(old_texts, old_vectors, strict=True))
            break
        except (OSError, ValueError, KeyError):
            continue
    todo = [t for t in dict.fromkeys(texts) if t not in previous]
    log.info("building tool index: %d phrasings, %d to encode (%d reused)", len(texts),
             len(todo), len(texts) - len(todo))
    if todo:
        previous.update(zip(todo, encoder.encode(todo, progress=True), strict=True))
    return np.stack([previous[t] for t in texts]).astype(np.float32)


def _siblings(directory: Path) -> list[Path]:
    """Other index directories under the same cache, newest first."""
    parent = directory.parent
    if not parent.is_dir():
        return []
    others = [p for p in parent.iterdir() if p.is_dir() and p != directory
              and not p.name.startswith(".") and ".old-" not in p.name]
    return sorted(others, key=lambda p: p.stat().st_mtime, reverse=True)


def _prune(directory: Path, keep: int = KEEP_INDEXES) -> None:
    """Drop all but the `keep` most recent other indexes (one per catalog version)."""
    for old in _siblings(directory)[keep - 1:]:
        shutil.rmtree(old, ignore_errors=True)
        old.with_name(f".{old.name}.lock").unlink(missing_ok=True)


def _phrasings(catalog: Catalog) -> tuple[list[str], np.ndarray, np.ndarray]:
    texts: list[str] = []
    owner: list[int] = []
    starts = [0]
    for position, tool in enumerate(catalog.tools):
        phrases = tool.texts()
        texts.extend(phrases)
        owner.extend([position] * len(phrases))
        starts.append(len(texts))
    return texts, np.asarray(owner, dtype=np.int32), np.asarray(starts, dtype=np.int64)


def _build_ann(vectors: np.ndarray, params: IndexParams) -> object:
    import hnswlib

    index = hnswlib.Index(space="cosine", dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), M=params.m,
                     ef_construction=params.ef_construction, random_seed=13)
    index.add_items(vectors, np.arange(len(vectors)), num_threads=1)
    index.set_ef(params.ef_search)
    return index


def _load_ann(path: Path, shape: tuple[int, ...], params: IndexParams) -> object:
    """The hnswlib index of `shape[0]` vectors of width `shape[1]` (the stored arrays')."""
    import hnswlib

    size, width = shape
    index = hnswlib.Index(space="cosine", dim=width)
    index.load_index(str(path), max_elements=size)
    if index.get_current_count() != size:
        raise ValueError(f"{path} holds {index.get_current_count()} vectors, expected {size}")
    index.set_ef(params.ef_search)
    return index


def _read_meta(directory: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return meta if isinstance(meta, dict) else None  # not an object: as if missing, rebuilt


def _persist(directory: Path, phrases: np.ndarray, owner: np.ndarray, starts: np.ndarray,
             centroids: np.ndarray, phrase_ann: object, centroid_ann: object,
             meta: dict[str, Any], texts: list[str]) -> None:
    """Write into a temp dir, then swap it in, so readers never see half an index."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=directory.parent))
    try:
        np.savez(tmp / "vectors.npz", phrases=phrases, owner=owner, starts=starts,
                 centroids=centroids)
        phrase_ann.save_index(str(tmp / "phrases.hnsw"))  # type: ignore[attr-defined]
        centroid_ann.save_index(str(tmp / "centroids.hnsw"))  # type: ignore[attr-defined]
        (tmp / "texts.json").write_text(json.dumps(texts, ensure_ascii=False))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        old = directory.with_name(directory.name + f".old-{os.getpid()}")
        if directory.exists():
            directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old, ignore_errors=True)
        _prune(directory)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _unwritable(directory, exc) from exc


def _unwritable(directory: Path, exc: OSError) -> RetrievalError:
    return RetrievalError(f"cannot write the tool index under {directory}: {exc}; "
                          "set retrieval.cache_dir to a writable directory")

