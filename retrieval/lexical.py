"""How the retriever and the linker read a text: the said form of an utterance, its
question form, and a small BM25 index over tool phrasings.

`form_text` is the one reading of a user's utterance that ranking and linking share: the
text without leading spoken fillers or a final '?', which the tuning rows (transcribed
speech) do not have. BM25 is the exact-word signal that embeddings blur: sentence
embeddings place "turn on wifi" and "turn off wifi" close together and rarely key on app
names; word overlap separates them. Scores are normalized by the query's own maximum
attainable score, so `lexical ∈ [0, 1]` reads as "share of the query's information found
in the tool's text" and is comparable across queries.
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


# Spoken fillers before the request ("hey", "um", "ok", "so,"): the linker's form features
# read the start of the text, and a filler there hid the form — with "hey, " before every
# tuning row the out-of-fold false links of the hand-written negatives went 6.1 -> 19.5 %,
# of the spoken no-tool rows 1.8 -> 7.5 % (`toolrec tools cv --perturb filler`; 3.4 / 1.0 %
# reading `form_text`). A filler is a whole word followed by a space, a comma, '.', '!',
# '?' or the end: "hi-fi mode" and "uh-oh, ..." keep their first word; "so" and "well"
# only with a comma ("so cold in here" is a statement). A wake name after a filler stays
# ("ok google, set a timer" is read "google, set a timer"): the catalog has no wake words,
# and "google" can name the app the request is about.
_FILLER = re.compile(r"^\s*(((hey|hi|hello|ok|okay|um+|uh+|erm+|oh|alright|yeah|and)"
                     r"(?=[\s,.!?]|$)|(so|well)\s*,)[\s,.!]*)+", re.IGNORECASE)


def form_text(text: str) -> str:
    """The said form of an utterance: without leading fillers, a final '?' or surrounding
    whitespace (empty for a filler-only text such as "um, ok"). The tuning rows are
    transcribed speech and hold almost no '?' (one spoken row), so the question form is
    grammar (a wh-word or an auxiliary first): a typed '?' made "could you turn on the
    lights?" a question — with a '?' after every tuning row, out-of-fold link recall fell
    0.708 -> 0.558 on the spoken rows, 0.745 -> 0.559 on the catalog's (`toolrec tools cv
    --perturb question-mark`, the linker reading the raw text). Idempotent."""
    return _FILLER.sub("", text).strip().rstrip("?").rstrip()


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
