"""Context-aware tool retrieval and tool linking over SysToolKit.

Fusion (this project's design; weights in `RetrievalConfig`):

    sim(x, t)   = w_centroid·cos(x, centroid_t) + (1 − w_centroid)·max_p cos(x, phrasing_p)
    query       = w_query·sim(query, t)
    lexical     = w_lexical·bm25(query, t)                  normalized to [0, 1]
    polarity    = w_agreement·agree − w_polarity·contradict  (on/off, up/down, ... pairs)
    form        = w_answers·[the text is a question]·[the tool answers questions]
    response    = w_response·sim(response, t)               the assistant's answer
    recent      = w_recent·Σₖ decayᵏ·sim(recentₖ, t) / Σₖ decayᵏ   newest query k = 0
    text        = query + lexical + polarity + form + response + recent
    gate        = clip((text − gate_low) / (gate_high − gate_low), 0, 1)
    context     = gate·(w_context·max boost − w_context_penalty·max penalty)
    score       = text + context

A hint boost is the strength of an active hint the tool lists (`battery_low` at 8 % ≈
0.9); a penalty the strength of an active `!hint`. The gate lets context reorder tools the
text already makes plausible and keeps it from dragging unrelated tools up: battery 8 %
lifts battery saver for "make the screen darker" but not for "set an alarm for 7". With no
text at all (empty query, response and recent), the ranking is by context alone (gate 1),
which is how proactive suggestions are grounded.

The user's utterances — the query, the recent queries, the texts to link — are read in
their said form (`lexical.form_text`: without leading fillers or a final '?', which the
tuning rows do not have) before they are encoded, BM25-scored or tested for the question
form: "hey, could you turn on the lights?" ranks as "could you turn on the lights", a
polite request; a wh-question stays one by grammar. The assistant's response is not an
utterance and is read as written.

Every hit reports these parts; they sum to its score. Linking ranks with the text parts of
the query alone and asks the fitted logistic linker (`retrieval.linker`) for the
probability that the best tool is the one the text invokes; it links at or above the
linker's threshold. Questions are not penalised as such: the linker weighs the question
form against whether the best tool answers questions ("how much battery do I have" links,
"how tall is everest" does not).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from retrieval.adapter import AdaptedEncoder, TextEncoder, load_adapter
from retrieval.apps import AppNames
from retrieval.catalog import Catalog, Tool, load_catalog
from retrieval.config import RetrievalConfig
from retrieval.context import DeviceContext, active_hints, parse_hint
from retrieval.encoder import Encoder, default_model_dir
from retrieval.finetune import update_model_dir
from retrieval.index import IndexParams, ToolIndex
from retrieval.lexical import BM25, STOPWORDS, form_text, is_question
from retrieval.linker import LinkModel, Ranking, answers_questions, features, load_link_model
from retrieval.polarity import text_sides, tool_side
from retrieval.rerank import (
    RERANK_DEPTH,
    RERANK_FEATURES,
    RerankModel,
    load_rerank_model,
)
from retrieval.respell import Respeller
from toolrec.errors import RetrievalError, ValidationError

log = logging.getLogger(__name__)
MAX_TEXT_CHARS = 2000  # longer inputs are cut: the encoder keeps 128 tokens anyway
LEXICAL_CANDIDATES = 16


@dataclass(frozen=True)
class ToolHit:
    """One retrieved tool: its fused score and the parts that make it up."""

    tool_id: str
    score: float
    parts: dict[str, float]
    tool: Tool = field(repr=False)


@dataclass(frozen=True)
class LinkResult:
    """The tool a text invokes (None below the threshold), with the link confidence.

    `best_id` is the best-scoring tool even when it is not linked, `margin` its lead over
    the runner-up; both help debugging and calibration."""

    tool_id: str | None
    score: float
    best_id: str | None = None
    margin: float = 0.0


@dataclass
class _Signals:
    """Encoded inputs of one request."""

    query: str
    query_vec: np.ndarray | None
    response_vec: np.ndarray | None
    recent_vecs: list[np.ndarray]
    generic_vec: np.ndarray | None = None  # the query with its app name made generic
    generic: str | None = None
    respelled_vec: np.ndarray | None = None  # the query with sound-alike words respelled
    respelled: str | None = None

    @property
    def has_text(self) -> bool:
        return (self.query_vec is not None or self.response_vec is not None
                or bool(self.recent_vecs))


class Retriever:
    """Loads the catalog, encoder and index lazily (first use), then answers queries.

    Pass `catalog` / `encoder` to share them (tests reuse one loaded encoder)."""

    def __init__(
        self,
        config: RetrievalConfig | None = None,
        *,
        catalog: Catalog | None = None,
        encoder: Encoder | None = None,
    ) -> None:
        self.config = config or RetrievalConfig()
        self._catalog = catalog
        self._encoder = encoder
        self._embedder: TextEncoder | None = None
        self._index: ToolIndex | None = None
        self._bm25: BM25 | None = None
        self._sides: list[tuple[str, int] | None] = []
        self._hints: list[tuple[_Weighted, _Weighted]] = []
        self._takes_app = np.zeros(0, dtype=bool)
        self._boost: dict[str, np.ndarray] = {}
        self._penalty: dict[str, np.ndarray] = {}
        self._pair_code: dict[str, int] = {}
        self._tool_pair = np.zeros(0, dtype=np.int64)
        self._tool_sideval = np.zeros(0, dtype=np.int64)
        self._apps: AppNames | None = None
        self._respeller: Respeller | None = None
        self._answers = np.zeros(0, dtype=bool)
        self._linker: LinkModel | None = None
        self._reranker: RerankModel | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lazy state
    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = load_catalog(self.config.catalog_path)
        return self._catalog

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            cfg = self.config
            model_dir = cfg.model_dir
            if cfg.encoder_update:  # the fine-tuned weights (retrieval.finetune)
                model_dir = update_model_dir(model_dir or default_model_dir(),
                                             cfg.encoder_update_path, cfg.cache_dir)
            self._encoder = Encoder(model_dir, max_seq_length=cfg.max_seq_length,
                                    threads=cfg.encoder_threads,
                                    cache_size=cfg.encode_cache_size, batch_size=cfg.batch_size,
                                    engine=cfg.encoder_engine, engine_cache=cfg.cache_dir,
                                    precision=cfg.encoder_precision)
        return self._encoder

    @property
    def embedder(self) -> TextEncoder:
        """The encoder whose vectors the index holds: the raw encoder followed by the
        fitted adapter when `adapter` is on (retrieval.adapter)."""
        if self._embedder is None:
            adapter = load_adapter(self.config.adapter_path) if self.config.adapter else None
            if adapter is not None and adapter.u.shape[0] != self.encoder.dim:
                raise RetrievalError(
                    f"the adapter was fitted on {adapter.u.shape[0]}-d embeddings, the "
                    f"encoder gives {self.encoder.dim}-d; refit it with `toolrec tools "
                    "fit-adapter` or turn retrieval.adapter off")
            self._embedder = (AdaptedEncoder(self.encoder, adapter) if adapter is not None
                              else self.encoder)
        return self._embedder

    @property
    def adapter_id(self) -> str:
        """The adapter's digest prefix, or "off" (recorded by the linker's fit)."""
        embedder = self.embedder
        return embedder.adapter.digest[:12] if isinstance(embedder, AdaptedEncoder) else "off"

    @property
    def index(self) -> ToolIndex:
        """The tool index, loaded or (re)built on first access."""
        if self._index is None:
            with self._lock:
                if self._index is None:
                    self._prepare()
        assert self._index is not None
        return self._index

    def _prepare(self) -> None:
        cfg, catalog = self.config, self.catalog
        params = IndexParams(cfg.hnsw_m, cfg.hnsw_ef_construction, cfg.hnsw_ef_search)
        self._bm25 = BM25([" ".join(t.texts()) for t in catalog.tools])
        self._sides = [tool_side(t.id) for t in catalog.tools]
        self._takes_app = np.array([any(p.type == "app" for p in t.params)
                                    for t in catalog.tools])
        self._apps = AppNames.from_catalog(catalog)
        # how people phrase requests (names and examples), not the descriptions' prose:
        # "whether" in a description must not stop "what's the whether" becoming "weather"
        self._respeller = Respeller(text for t in catalog.tools for text in (t.name, *t.examples))
        self._answers = np.array([answers_questions(t.description) for t in catalog.tools])
        self._hints = [_split_hints(t.context) for t in catalog.tools]
        self._boost, self._penalty = _hint_matrices(self._hints)
        pairs = sorted({side[0] for side in self._sides if side is not None})
        self._pair_code = {p: i for i, p in enumerate(pairs)}
        self._tool_pair = np.array([self._pair_code[s[0]] if s else -1 for s in self._sides])
        self._tool_sideval = np.array([s[1] if s else -1 for s in self._sides])
        self._index = ToolIndex.open(catalog, self.embedder, cfg.cache_dir, params,
                                     encoder_id=self.encoder_id)

    @property
    def encoder_id(self) -> str:
        """What the index's vectors depend on: the encoder's weights and settings (a
        fine-tuned model's digest included) and the adapter's digest when it is on."""
        adapter = self.adapter_id
        return self.encoder.identity + (f":adapter-{adapter}" if adapter != "off" else "")

    @property
    def linker(self) -> LinkModel:
        """The fitted linker, loaded on first use (fitting one needs only `ranking`)."""
        if self._linker is None:
            self._linker = load_link_model(self.config.linker_path)
            # Its features were of one ranking; warn when this retriever's differs (a
            # linker fitted before the encoder was recorded says nothing of it).
            current = {"adapter": self.adapter_id, "encoder": self.encoder_id}
            fitted = {"adapter": "off", "encoder": current["encoder"]} | self._linker.meta
            for part, used in current.items():
                if fitted[part] != used:
                    log.warning("the linker was fitted with %s %s, this retriever uses %s; "
                                "refit with `toolrec tools fit-linker`", part, fitted[part], used)
        return self._linker

    @property
    def reranker(self) -> RerankModel | None:
        """The fitted reranker (None when `rerank` is off), loaded on first use."""
        if not self.config.rerank:
            return None
        if self._reranker is None:
            self._reranker = load_rerank_model(self.config.reranker_path)
        return self._reranker

    @property
    def link_threshold(self) -> float:
        """The link probability threshold in effect (configured, else the linker's)."""
        configured = self.config.link_threshold
        return configured if configured is not None else self.linker.threshold

    def warm(self) -> Retriever:
        """Load everything now (and run one encode) instead of on the first request."""
        _ = self.index
        self.embedder.encode(["warm up"])
        return self

    # ------------------------------------------------------------------ public API
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 384) L2-normalized embeddings of the texts (all-MiniLM-L6-v2, adapted)."""
        return self.embedder.encode([_clip(t) for t in texts])

    def search(
        self,
        query: str,
        *,
        response: str = "",
        recent: Sequence[str] = (),
        context: DeviceContext | Mapping[str, object] | None = None,
        k: int = 5,
    ) -> list[ToolHit]:
        """Top-k tools for the query in its conversational and device context.

        `recent` holds the session's earlier queries in chronological order (newest last).
        Empty inputs give an empty list unless the context alone suggests tools."""
        if not isinstance(query, str):
            raise ValidationError("query", "invalid_query",
                                  f"must be a string, got {type(query).__name__}")
        if k < 1:
            raise ValidationError("k", "invalid_k", f"must be at least 1, got {k}")
        ctx = DeviceContext.parse(context)
        signals = self._signals(query, response, recent)
        hints = active_hints(ctx, battery_low_threshold=self.config.battery_low_threshold)
        if not signals.has_text:
            return self._context_only(hints, k)
        index = self.index
        cand = self.candidates(signals, hints)
        parts = self.text_parts(signals, cand)
        text = cast(np.ndarray, sum(parts.values()))
        ctx_part = self._context_part(cand, hints, text)
        score = text + ctx_part
        parts["rerank"] = self._rerank(signals, cand, parts, score)
        score = score + parts["rerank"]
        order = np.argsort(-score, kind="stable")[: min(k, len(cand))]
        tools = self.catalog.tools
        return [
            ToolHit(tools[cand[i]].id, round(float(score[i]), 6),
                    {**{n: round(float(v[i]), 6) for n, v in parts.items()},
                     "context": round(float(ctx_part[i]), 6)},
                    tools[cand[i]])
            for i in order
        ] if index is not None else []

    def link(self, text: str) -> LinkResult:
        """The tool this text invokes, or None (see `link_many`)."""
        return self.link_many([text])[0]

    def link_many(self, texts: Sequence[str]) -> list[LinkResult]:
        """Link several texts with one batched encoder call (the serving path)."""
        said = [_utterance(t) for t in texts]
        live = [i for i, t in enumerate(said) if t]  # filler-only texts link nothing
        results = [LinkResult(None, 0.0) for _ in said]
        if not live:
            return results
        for i, signals in zip(live, self.link_signals([said[i] for i in live]),
                              strict=True):
            results[i] = self._link_one(signals)
        return results

    # ------------------------------------------------------------------ internals
    def _signals(self, query: str, response: str, recent: Sequence[str]) -> _Signals:
        """Encode query, response and recent queries in one batch (cached texts are free);
        the query and the recent queries in their said form (`form_text`)."""
        query, response = _utterance(query), _clip(response or "")
        history = [said for said in map(_utterance, recent) if said]
        history = history[-self.config.max_recent:] if self.config.max_recent else []
        generic = self._generic(query)
        respelled = self._respell(query)
        texts = [t for t in (query, generic or "", respelled or "", response)
                 if t.strip()] + history
        vecs = list(self.embedder.encode(texts)) if texts else []
        q = vecs.pop(0) if query.strip() else None
        g = vecs.pop(0) if generic else None
        rs = vecs.pop(0) if respelled else None
        r = vecs.pop(0) if response.strip() else None
        return _Signals(query, q, r, vecs, g, generic, rs, respelled)

    def _generic(self, query: str) -> str | None:
        _ = self.index
        assert self._apps is not None
        return self._apps.generic(query) if query.strip() else None

    def _respell(self, query: str) -> str | None:
        """The query with sound-alike words respelled (None: nothing to respell or off)."""
        _ = self.index
        assert self._respeller is not None
        if self.config.w_respelled <= 0 or not query.strip():
            return None
        return self._respeller.respell(query)

    def candidates(self, s: _Signals, hints: Mapping[str, float] | None = None) -> np.ndarray:
        """Tool positions worth scoring: everything (exact) or the union of ANN neighbours,
        lexical matches and tools whose context hints are active."""
        index = self.index
        if self.config.search_mode == "exact":
            return np.arange(index.n_tools)
        vectors = [v for v in (s.query_vec, s.respelled_vec, s.response_vec)
                   if v is not None] + s.recent_vecs
        mat = np.stack(vectors)
        k_phr = min(self.config.candidates, len(index.phrases))
        k_cen = min(max(self.config.candidates // 2, 5), index.n_tools)
        phr, _ = index.phrase_ann.knn_query(mat, k=k_phr)  # type: ignore[attr-defined]
        cen, _ = index.centroid_ann.knn_query(mat, k=k_cen)  # type: ignore[attr-defined]
        found = [index.owner[phr.ravel()], cen.ravel()]
        for text in (s.query, s.respelled):
            if text:
                lex = self._lexical(text)
                best = np.argsort(-lex)[:LEXICAL_CANDIDATES]
                found.append(best[lex[best] > 0])
        for hint in hints or {}:
            for table in (self._boost, self._penalty):
                if hint in table:
                    found.append(np.flatnonzero(table[hint]))
        return np.unique(np.concatenate(found).astype(np.int64))

    def sims(self, vectors: Sequence[np.ndarray], cand: np.ndarray) -> list[np.ndarray]:
        """sim(x, t) of every vector x for the candidate tools: centroid cosine blended with
        the best phrasing. One gather and one matrix product serve all the vectors."""
        if not vectors:
            return []
        index, a = self.index, self.config.w_centroid
        mat = np.stack(vectors, axis=1)  # (DIM, m)
        centroid = index.centroids[cand] @ mat
        lo, lengths = index.starts[cand], index.starts[cand + 1] - index.starts[cand]
        offsets = np.r_[0, np.cumsum(lengths)[:-1]]
        rows = np.arange(lengths.sum()) + np.repeat(lo - offsets, lengths)
        best = np.maximum.reduceat(index.phrases[rows] @ mat, offsets, axis=0)
        blended = a * centroid + (1 - a) * best
        return [blended[:, j] for j in range(blended.shape[1])]

    def sim(self, vec: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """sim(x, t) of one vector for the candidate tools."""
        return self.sims([vec], cand)[0]

    def text_parts(self, s: _Signals, cand: np.ndarray) -> dict[str, np.ndarray]:
        cfg, zeros = self.config, np.zeros(len(cand), dtype=np.float32)
        parts: dict[str, np.ndarray] = {"query": zeros, "lexical": zeros, "polarity": zeros,
                                        "form": zeros, "response": zeros, "recent": zeros}
        named = {"query": s.query_vec, "generic": s.generic_vec,
                 "respelled": s.respelled_vec, "response": s.response_vec}
        present = [n for n, v in named.items() if v is not None]
        vectors = [named[n] for n in present] + list(s.recent_vecs)
        computed = self.sims([v for v in vectors if v is not None], cand)
        sim_of = dict(zip(present, computed, strict=False))
        recent_sims = computed[len(present):]
        if "query" in sim_of:
            sim = sim_of["query"]
            if "generic" in sim_of:  # tools taking an app: match "<verb> this app"
                generic = sim_of["generic"] - cfg.generic_discount
                sim = np.where(self._takes_app[cand], np.maximum(sim, generic), sim)
            if "respelled" in sim_of:  # the better of heard and respelled, discounted
                sim = np.maximum(sim, cfg.w_respelled * sim_of["respelled"])
            parts["query"] = cfg.w_query * sim
            lexical = self._lexical(s.query)[cand]
            if s.respelled is not None:
                lexical = np.maximum(lexical, cfg.w_respelled * self._lexical(s.respelled)[cand])
            if s.generic is not None:
                generic_lex = self._lexical(s.generic)[cand] - cfg.generic_discount
                lexical = np.where(self._takes_app[cand], np.maximum(lexical, generic_lex),
                                   lexical)
            parts["lexical"] = cfg.w_lexical * lexical
            parts["polarity"] = self._polarity(s.query, cand)
            if is_question(s.query):  # questions lean to tools that answer them
                parts["form"] = cfg.w_answers * self._answers[cand].astype(np.float32)
        if "response" in sim_of:
            parts["response"] = cfg.w_response * sim_of["response"]
        if recent_sims:
            weights = cfg.recent_decay ** np.arange(len(recent_sims))[::-1]  # newest = 1
            mixed = np.sum([w * r for w, r in zip(weights, recent_sims, strict=True)], axis=0)
            parts["recent"] = cfg.w_recent * mixed / weights.sum()
        return parts

    def _lexical(self, query: str) -> np.ndarray:
        assert self._bm25 is not None
        return self._bm25.scores(query)

    def _polarity(self, query: str, cand: np.ndarray) -> np.ndarray:
        """+w_agreement where the text asks for the tool's side, −w_polarity for the other."""
        out = np.zeros(len(cand), dtype=np.float32)
        for pair, side in text_sides(query).items():
            code = self._pair_code.get(pair)
            if code is None:
                continue
            mine = self._tool_pair[cand] == code
            agree = self._tool_sideval[cand] == side
            out[mine & agree] = self.config.w_agreement
            out[mine & ~agree] = -self.config.w_polarity
        return out

    def _context_part(self, cand: np.ndarray, hints: dict[str, float],
                      text: np.ndarray | None) -> np.ndarray:
        """gate · (w_context·max boost − w_context_penalty·max penalty); gate 1 if no text."""
        cfg, n = self.config, len(cand)
        up, down = np.zeros(n, dtype=np.float32), np.zeros(n, dtype=np.float32)
        for hint, strength in hints.items():
            if hint in self._boost:
                np.maximum(up, strength * self._boost[hint][cand], out=up)
            if hint in self._penalty:
                np.maximum(down, strength * self._penalty[hint][cand], out=down)
        out = cfg.w_context * up - cfg.w_context_penalty * down
        if text is not None:
            out *= np.clip((text - cfg.gate_low) / (cfg.gate_high - cfg.gate_low), 0.0, 1.0)
        return out

    def _context_only(self, hints: dict[str, float], k: int) -> list[ToolHit]:
        """No text: rank the tools whose hints are active by context alone."""
        if not hints:
            return []
        _ = self.index
        cand = np.arange(len(self.catalog))
        ctx = self._context_part(cand, hints, None)
        order = [i for i in np.argsort(-ctx, kind="stable") if ctx[i] > 0][:k]
        tools = self.catalog.tools
        empty = {"query": 0.0, "lexical": 0.0, "polarity": 0.0, "form": 0.0, "response": 0.0,
                 "recent": 0.0, "rerank": 0.0}
        return [ToolHit(tools[i].id, round(float(ctx[i]), 6),
                        {**empty, "context": round(float(ctx[i]), 6)}, tools[i])
                for i in order]

    def _link_one(self, signals: _Signals) -> LinkResult:
        ranking, best_id, margin = self.ranking(signals)
        prob = self.linker.probability(features(signals.query, ranking))
        linked = best_id if prob >= self.link_threshold else None
        return LinkResult(linked, round(prob, 6), best_id, round(margin, 6))

    def ranking(self, signals: _Signals) -> tuple[Ranking, str, float]:
        """The linker's view of the query-only ranking: best tool, its parts, its lead."""
        cand = self.candidates(signals)
        parts = self.text_parts(signals, cand)
        score = cast(np.ndarray, sum(parts.values()))
        score = score + self._rerank(signals, cand, parts, score)
        top = np.argsort(-score)[:2]
        b = int(top[0])
        runner_up = float(score[top[1]]) if len(top) > 1 else 0.0
        ranking = Ranking(best=float(score[b]), runner_up=runner_up,
                          query_sim=float(parts["query"][b]), lexical=float(parts["lexical"][b]),
                          polarity=float(parts["polarity"][b]),
                          answers=bool(self._answers[cand[b]]),
                          respelled=signals.respelled is not None,
                          unknown_share=self._unknown_share(signals.query))
        return ranking, self.catalog.tools[cand[b]].id, float(score[b]) - runner_up

    def rerank_features(self, signals: _Signals, cand: np.ndarray,
                        parts: dict[str, np.ndarray],
                        score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions (into cand) of the top candidates and their `RERANK_FEATURES` rows."""
        assert signals.query_vec is not None
        top = np.argsort(-score, kind="stable")[:RERANK_DEPTH]
        tools, index, q = cand[top], self.index, signals.query_vec
        lo, hi = index.starts[tools], index.starts[tools + 1]
        phrase = np.array([float((index.phrases[a:b] @ q).max()) for a, b in
                           zip(lo, hi, strict=True)])
        answers = self._answers[tools].astype(float)
        question = float(is_question(signals.query))
        cols = {"score": score[top], "gap": score[top] - score[top[0]],
                "query": parts["query"][top], "lexical": parts["lexical"][top],
                "polarity": parts["polarity"][top], "centroid": index.centroids[tools] @ q,
                "phrase": phrase, "name": index.phrases[lo] @ q,
                "description": index.phrases[lo + 1] @ q, "answers": answers,
                "question_x_answers": question * answers}
        return top, np.stack([np.asarray(cols[n], dtype=np.float64) for n in RERANK_FEATURES],
                             axis=1)

    def _rerank(self, signals: _Signals, cand: np.ndarray, parts: dict[str, np.ndarray],
                score: np.ndarray) -> np.ndarray:
        """The reranker's correction of the top candidates' scores (zeros elsewhere)."""
        delta = np.zeros(len(cand), dtype=np.float32)
        model = self.reranker
        if model is None or signals.query_vec is None or not len(cand):
            return delta
        top, x = self.rerank_features(signals, cand, parts, score)
        # reorder within the top only: the top scores are handed out again in the
        # reranked order, so nothing below the top moves and R@depth is unchanged
        order = top[np.argsort(-model.correction(x) - score[top], kind="stable")]
        delta[order] = score[top] - score[order]
        return delta

    def _unknown_share(self, text: str) -> float:
        """Share of the text's content words that no catalog text uses."""
        assert self._respeller is not None
        words = tokenize_words(text)
        return sum(w not in self._respeller.known for w in words) / len(words) if words else 0.0

    def link_signals(self, texts: Sequence[str]) -> list[_Signals]:
        """Encoded query-only signals of several texts (one batched encoder call), each
        read in its said form (`form_text`)."""
        texts = [_utterance(t) for t in texts]
        generic = [self._generic(t) for t in texts]
        respelled = [self._respell(t) for t in texts]
        extra = [g for g in generic if g] + [r for r in respelled if r]
        vectors = list(self.embedder.encode(list(texts) + extra))
        base, rest = vectors[:len(texts)], iter(vectors[len(texts):])
        gvecs = [next(rest) if g else None for g in generic]
        rvecs = [next(rest) if r else None for r in respelled]
        return [_Signals(t, v, None, [], gv, g, rv, r)
                for t, v, gv, g, rv, r in zip(texts, base, gvecs, generic, rvecs, respelled,
                                              strict=True)]


_Weighted = tuple[tuple[str, float], ...]


def _split_hints(context: Sequence[str]) -> tuple[_Weighted, _Weighted]:
    """A tool's hints as ((name, weight) boosts, (name, weight) penalties)."""
    parsed = [parse_hint(h) for h in context]
    return (tuple((n, w) for n, w, neg in parsed if not neg),
            tuple((n, w) for n, w, neg in parsed if neg))


def _hint_matrices(
    hints: list[tuple[_Weighted, _Weighted]],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per hint, the weight of every tool listing it: {hint: (n_tools,)} for boosts and
    penalties, so the context part is a few vector maxima per request."""
    boost: dict[str, np.ndarray] = {}
    penalty: dict[str, np.ndarray] = {}
    for position, (ups, downs) in enumerate(hints):
        for table, pairs in ((boost, ups), (penalty, downs)):
            for name, weight in pairs:
                table.setdefault(name, np.zeros(len(hints), dtype=np.float32))[position] = weight
    return boost, penalty


def tokenize_words(text: str) -> list[str]:
    """Lower-case words without stopwords (unstemmed, as the respeller's vocabulary)."""
    return [w for w in re.findall(r"[a-z0-9']+", text.lower()) if w not in STOPWORDS]


def _clip(text: object) -> str:
    return text[:MAX_TEXT_CHARS] if isinstance(text, str) else ""


def _utterance(text: object) -> str:
    """A user's text as ranking reads it: clipped, in its said form (`form_text`)."""
    return form_text(_clip(text))
