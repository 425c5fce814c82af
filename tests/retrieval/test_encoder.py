"""The encoder's two engines run the same weights: CTranslate2 (default) must give PyTorch's
embeddings, in batches of mixed lengths too, and fall back to PyTorch when it cannot
convert; int8 is a different encoder, near float32's and named apart. Real model files
from the installed package; nothing is mocked."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from retrieval.config import RetrievalConfig
from retrieval.encoder import Encoder, converted_encoder, default_model_dir
from toolrec.errors import RetrievalError

TEXTS = [
    "wifi off",
    "turn the volume all the way down on my headphones please",
    "why fi",
    "",
    "what's the weather like in paris tomorrow morning, and should I take an umbrella " * 8,
]


@pytest.fixture(scope="module")
def torch_encoder() -> Encoder:
    return Encoder(cache_size=0, engine="torch", threads=1)


def test_engines_give_the_same_embeddings(torch_encoder: Encoder, tmp_path: Path) -> None:
    fast = Encoder(cache_size=0, engine="ctranslate2", engine_cache=tmp_path, threads=1)
    texts = [t or " " for t in TEXTS]  # encode() sends " " for empty texts the same way
    reference = torch_encoder.encode(texts)
    for batch_size in (1, 2, 64):  # alone, and padded beside longer texts
        fast.batch_size = batch_size
        got = fast.encode(texts)
        assert fast.engine == "ctranslate2"
        assert got.shape == reference.shape and got.dtype == np.float32
        assert np.abs(got - reference).max() < 1e-5
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_conversion_is_cached_by_model_identity(tmp_path: Path) -> None:
    first = converted_encoder(default_model_dir(), tmp_path)
    stamp = (first / "model.bin").stat().st_mtime_ns
    again = converted_encoder(default_model_dir(), tmp_path)
    assert again == first and (again / "model.bin").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary left


def test_failed_conversion_falls_back_to_torch(torch_encoder: Encoder, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the engine cache should be")
    encoder = Encoder(cache_size=0, engine="ctranslate2", engine_cache=blocked, threads=1)
    with caplog.at_level(logging.WARNING, logger="retrieval.encoder"):
        got = encoder.encode(["bluetooth on"])
    assert encoder.engine == "torch"
    assert "using PyTorch" in caplog.text
    assert np.abs(got - torch_encoder.encode(["bluetooth on"])).max() < 1e-6


def test_int8_is_near_float32_and_named_apart(torch_encoder: Encoder, tmp_path: Path) -> None:
    fast = Encoder(cache_size=0, engine="ctranslate2", engine_cache=tmp_path, threads=1,
                   precision="int8")
    texts = [t or " " for t in TEXTS]
    got, reference = fast.encode(texts), torch_encoder.encode(texts)
    assert fast.engine == "ctranslate2" and fast.precision == "int8"
    cosines = (got * reference).sum(axis=1)
    # spoken rows: 0.991 on average, 0.985 at least; the blank text moves most (0.970)
    assert np.median(cosines) > 0.99 and cosines.min() > 0.95
    assert np.abs(got - reference).max() > 1e-4  # quantized: not float32's embeddings
    assert fast.identity == f"{torch_encoder.identity}:int8"


def test_int8_runs_on_ctranslate2_only() -> None:
    with pytest.raises(ValueError, match="ctranslate2"):
        Encoder(engine="torch", precision="int8")
    with pytest.raises(ValueError, match="ctranslate2"):
        RetrievalConfig(encoder_engine="torch", encoder_precision="int8")


def test_int8_falls_back_to_float32_torch(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the engine cache should be")
    encoder = Encoder(cache_size=0, engine="ctranslate2", engine_cache=blocked, threads=1,
                      precision="int8")
    assert encoder.identity.endswith(":seq128")  # what the index gets: float32's vectors
    assert (encoder.engine, encoder.precision) == ("torch", "float32")


def test_another_architecture_and_width_encodes(tiny_mpnet_dir: Path, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """`retrieval.model_dir` may name another mean-pooled model: its width comes from its
    config, a forward without token type ids gets none, and an architecture CTranslate2
    cannot convert runs on PyTorch (with a warning), giving the same vectors."""
    torch_run = Encoder(tiny_mpnet_dir, cache_size=0, engine="torch", threads=1)
    assert torch_run.dim == 48
    vectors = torch_run.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 48)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    # padding a short text beside a long one leaves its vector as encoded alone
    assert np.allclose(torch_run.encode(["wifi off"])[0], vectors[0], atol=1e-5)
    with caplog.at_level(logging.WARNING, logger="retrieval.encoder"):
        fallback = Encoder(tiny_mpnet_dir, cache_size=0, engine="ctranslate2",
                           engine_cache=tmp_path, threads=1)
        assert np.allclose(fallback.encode(TEXTS), vectors, atol=1e-5)
    assert fallback.engine == "torch" and "using PyTorch" in caplog.text


def test_a_model_dir_without_a_width_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(RetrievalError, match=r"hidden_size.*config\.json"):
        _ = Encoder(tmp_path).dim
