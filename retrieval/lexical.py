"""A small BM25 index over tool phrasings: the exact-word signal that embeddings blur.

Sentence embeddings place "turn on wifi" and "turn off wifi" close together and rarely
key on app names; word overlap separates them. Scores are normalized by the query's own
maximum attainable score, so `lexical ∈ [0, 1]` reads as "share of the query's
information found in the tool's text" and is comparable across queries.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

_TOKEN = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    [
        "a", "an", "the", "my", "me", "i", "i'm", "im", "to", "for", "of", "is", "are",
        "be", "it", "its", "this", "that", "these", "please", "can", "you", "could",
        "would", "will", "and", "or", "with", "at", "by", "from", "so", "just", "now",
        "some", "any", "your", "our", "we", "us", "do", "does", "did", "want", "wanna",
        "need", "let", "lets", "make", "get"
    ]
)
_SUFFIXES = ("ing", "ies", "es", "ed", "s")
_QUESTION = re.compile(
    r"^\s*(what|whats|what's|who|whos|who's|how|hows|how's|why|when|where|which|is|are|do|"
    r"does|did|should)\b|\?\s*$",
    re.IGNORECASE,
)


def is_question(text: str) -> bool:
    """Phrased as a question (wh-word, auxiliary first, or '?'). Polite requests ("can you
    ...", "could you ...") are not questions here: they usually ask for an action."""
    return bool(_QUESTION.search(text))


def stem(word: str) -> str:
    """Crude suffix stripping so 'alarms'/'alarm' and 'photos'/'photo' match."""
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed word tokens without stopwords ('on'/'off' are kept)."""
    return [stem(w) for w in _TOKEN.findall(text.lower()) if w not in STOPWORDS]


class BM25:
    """Okapi BM25 over one document per tool, as a dense (vocab × tools) weight matrix."""

    def __init__(self, documents: Sequence[str], *, k1: float = 1.2, b: float = 0.75) -> None:
        tokenized = [tokenize(d) for d in documents]
        vocab = sorted({w for doc in tokenized for w in doc})
        self.vocab = {w: i for i, w in enumerate(vocab)}
        n_docs = len(documents)
        lengths = np.array([len(doc) for doc in tokenized], dtype=np.float32)
        avg = float(lengths.mean()) if n_docs else 1.0
        df = Counter(w for doc in tokenized for w in set(doc))
        self.idf = np.array(
            [math.log(1 + (n_docs - df[w] + 0.5) / (df[w] + 0.5)) for w in vocab], np.float32
        )
        self.k1 = k1
        weights = np.zeros((len(vocab), n_docs), dtype=np.float32)
        for j, doc in enumerate(tokenized):
            norm = k1 * (1 - b + b * lengths[j] / avg)
            for w, tf in Counter(doc).items():
                weights[self.vocab[w], j] = self.idf[self.vocab[w]] * tf * (k1 + 1) / (tf + norm)
        self.weights = weights
        self.n_docs = n_docs

    def scores(self, query: str) -> np.ndarray:
        """Normalized BM25 of the query against every tool, in [0, 1]."""
        rows = [self.vocab[w] for w in tokenize(query) if w in self.vocab]
        if not rows:
            return np.zeros(self.n_docs, dtype=np.float32)
        ceiling = float(sum(self.idf[r] for r in rows)) * (self.k1 + 1)
        summed: np.ndarray = self.weights[rows].sum(axis=0)
        return summed / ceiling
