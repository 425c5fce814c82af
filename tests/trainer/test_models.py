"""Model files: tiny model build, loading from local files only, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from generator.loading import ModelFilesError, apply_adapter, load_model
from trainer.models import (
    atomic_output_dir,
    bootstrap_smollm2,
    build_tiny_model,
    find_smollm2_gguf,
)


def test_tiny_model_loads_and_generates(tiny_model_dir: Path) -> None:
    model, tokenizer = load_model(tiny_model_dir)
    params = sum(p.numel() for p in model.parameters())
    assert 200_000 < params < 2_000_000
    assert tokenizer.eos_token == "<|im_end|>"
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "turn on battery saver"}], add_generation_prompt=True
    )
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert tokenizer.convert_ids_to_tokens(ids)[0] == "<|im_start|>"
    out = model.generate(torch.tensor([ids]), max_new_tokens=5, do_sample=False)
    assert out.shape[1] > len(ids)


def test_tiny_model_is_deterministic(tmp_path: Path, tiny_model_dir: Path) -> None:
    other = build_tiny_model(tmp_path / "again", seed=0)
    a = json.loads((tiny_model_dir / "tokenizer.json").read_text())["model"]["vocab"]
    b = json.loads((other / "tokenizer.json").read_text())["model"]["vocab"]
    assert a == b
    model_a, _ = load_model(tiny_model_dir)
    model_b, _ = load_model(other)
    for (name, pa), (_, pb) in zip(
        model_a.state_dict().items(), model_b.state_dict().items(), strict=True
    ):
        assert torch.equal(pa, pb), name


def test_build_is_idempotent(tiny_model_dir: Path) -> None:
    before = (tiny_model_dir / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_model(tiny_model_dir, seed=0) == tiny_model_dir
    assert (tiny_model_dir / "model.safetensors").stat().st_mtime_ns == before


def test_load_missing_model_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ModelFilesError, match=str(tmp_path / "nope")):
        load_model(tmp_path / "nope")


def test_load_corrupt_model_names_the_path(tmp_path: Path, tiny_model_dir: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_model_dir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelFilesError, match="corrupt"):
        load_model(broken)


def test_missing_and_corrupt_adapter(tmp_path: Path, tiny_model_dir: Path) -> None:
    model, _ = load_model(tiny_model_dir)
    with pytest.raises(ModelFilesError, match="no LoRA adapter"):
        apply_adapter(model, tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "adapter_config.json").write_text("{not json")
    with pytest.raises(ModelFilesError, match=str(bad)):
        apply_adapter(model, bad)


def test_smollm2_gguf_is_installed() -> None:
    gguf = find_smollm2_gguf()
    assert gguf.suffix == ".gguf" and gguf.stat().st_size > 50_000_000


def test_foreign_directory_is_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "someone-elses-checkpoint"
    target.mkdir()
    (target / "config.json").write_text("{}")
    with pytest.raises(ModelFilesError, match="not written by toolrec"):
        build_tiny_model(target, seed=1)
    with pytest.raises(ModelFilesError, match="not written by toolrec"):
        bootstrap_smollm2(target)
    assert (target / "config.json").read_text() == "{}"


def test_atomic_output_dir_keeps_the_old_version_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "adapter"
    with atomic_output_dir(target) as staging:
        (staging / "a.txt").write_text("v1")
    assert (target / "a.txt").read_text() == "v1"
    with pytest.raises(RuntimeError), atomic_output_dir(target) as staging:
        (staging / "a.txt").write_text("half-written v2")
        raise RuntimeError("killed")
    assert (target / "a.txt").read_text() == "v1"
    with atomic_output_dir(target) as staging:
        (staging / "b.txt").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no leftovers


def test_concurrent_loads_give_identical_models(tiny_model_dir: Path) -> None:
    import threading

    loaded: list[object] = []
    threads = [threading.Thread(target=lambda: loaded.append(load_model(tiny_model_dir)[0]))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    reference, _ = load_model(tiny_model_dir)
    assert len(loaded) == 3
    for model in loaded:
        for (name, a), (_, b) in zip(reference.state_dict().items(),  # type: ignore[attr-defined]
                                     model.state_dict().items(), strict=True):
            assert torch.equal(a, b), name
