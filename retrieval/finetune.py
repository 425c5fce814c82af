"""Hard-negative contrastive fine-tuning of the sentence encoder on the catalog's own text.

all-MiniLM-L6-v2 was trained on general sentence pairs. This fits its weights to
SysToolKit (issue 14): every training triple is (anchor, positive, hard negative) where

- anchor   = a catalog example, or an example put in a spoken frame ("can you …",
             `retrieval.adapter.SPOKEN_FRAMES`) — how a user asks;
- positive = another phrasing of the same tool (name, description or another example);
- negative = the phrasing nearest the anchor of one of the `hard_pool` tools whose centroid
             the *base* encoder puts nearest the anchor (its own tool excluded): the tools it
             confuses with it.

The loss is a masked multiple-negatives ranking loss: each anchor's softmax runs over every
positive and negative of its batch (scaled cosines), the own positive is the target, and
the batch's other phrasings of the anchor's own tool are masked out (they are not
negatives); batches never hold two anchors of one tool. Optionally texts that need no tool
(the no-tool side of the linker's training-only contrast pairs) join every batch as
negatives of every anchor, so the fit keeps them apart from the catalog. Only catalog and
training-only text is read, never an evaluation row, so every evaluation utterance stays
out of sample.

What ships is an update of the base weights (`encoder_update.npz`, `merge_update`): a full
fit compacted to a rank-64 product per linear, the embedding rows it moved and its
LayerNorms and biases (`compact_update`, ≈ 8 MB in float16 against 91 MB of weights), or a
LoRA fit's factors. The retriever merges it into the base once (`update_model_dir`).

Pure pieces (`mine_triples`, `pack_batches`, `finetune_key`, `compact_update`,
`merge_update`) are separate from the torch loop (`train`); torch and transformers are
imported inside it. Imports `retrieval.adapter` (frames, the fitted-file check),
`retrieval.catalog`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.adapter import TextEncoder, load_fitted, spoken_frames
from retrieval.catalog import Catalog
from toolrec.errors import RetrievalError

# files of the base model directory the fine-tuned one shares (the weights are written new)
MODEL_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
               "vocab.txt", "modules.json", "sentence_bert_config.json",
               "config_sentence_transformers.json")
FINETUNE_DIR_PREFIX = "encoder-ft-"
UPDATE_DIR_PREFIX = "encoder-update-"
UPDATE_RESOURCE = "encoder_update.npz"
RECORD_FILE = "finetune.json"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneSettings:
    """One fit's settings (part of its key and recorded beside the weights)."""

    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 2e-5
    warmup: float = 0.1  # share of the steps with a linear learning-rate warm-up
    scale: float = 20.0  # cosine scale inside the softmax (sentence-transformers' MNRL)
    hard_pool: int = 3  # the negative's tool is drawn from the base's top-n confusions
    framed: bool = True  # spoken frames of the examples join the anchors
    lora_rank: int = 0  # 0: every weight is trained; r: low-rank updates of the layers' linears
    lora_alpha: int = 16  # LoRA's update scale is lora_alpha / lora_rank
    update_rank: int = 64  # a full fit ships as a rank-r update of each linear (compact_update)
    row_tolerance: float = 1e-3  # embedding rows that moved less (relative) are left out
    no_tool_per_batch: int = 0  # no-tool texts joining each batch as negatives of every anchor
    seed: int = 0


@dataclass(frozen=True)
class Triple:
    """One training row: the anchor's tool position and three texts."""

    tool: int
    anchor: str
    positive: str
    negative: str


def catalog_anchors(catalog: Catalog, *, framed: bool) -> list[tuple[int, str]]:
    """(tool position, text) of every example, plus its spoken frames when `framed`."""
    examples = [(t, e) for t, tool in enumerate(catalog.tools) for e in tool.examples]
    return examples + (spoken_frames(examples) if framed else [])


def catalog_phrasings(catalog: Catalog) -> list[tuple[int, str]]:
    """(tool position, text) of every phrasing the index embeds."""
    return [(t, text) for t, tool in enumerate(catalog.tools) for text in tool.texts()]


def mine_triples(anchors: Sequence[tuple[int, str]], anchor_vecs: np.ndarray,
                 phrasings: Sequence[tuple[int, str]], phrase_vecs: np.ndarray,
                 *, hard_pool: int, seed: int) -> list[Triple]:
    """One triple per anchor (see the module docstring); deterministic for a seed. Anchors
    whose tool has no other phrasing are skipped. Vectors are L2-normalised rows."""
    rng = random.Random(seed)
    owner = np.array([t for t, _ in phrasings])
    n_tools = int(owner.max()) + 1
    centroids = np.zeros((n_tools, phrase_vecs.shape[1]), dtype=np.float64)
    np.add.at(centroids, owner, phrase_vecs)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    by_tool: list[list[int]] = [[] for _ in range(n_tools)]
    for i, t in enumerate(owner):
        by_tool[int(t)].append(i)
    triples = []
    for (tool, text), vec in zip(anchors, anchor_vecs, strict=True):
        own = [i for i in by_tool[tool] if phrasings[i][1] != text]
        if not own:
            continue
        sims = centroids @ vec
        sims[tool] = -np.inf
        confused = np.argsort(-sims, kind="stable")[:hard_pool]
        other = by_tool[int(confused[rng.randrange(len(confused))])]
        negative = other[int(np.argmax(phrase_vecs[other] @ vec))]
        triples.append(Triple(tool, text, phrasings[rng.choice(own)][1],
                              phrasings[negative][1]))
    return triples


def pack_batches(tools: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Indexes of the triples in shuffled batches of at most `batch_size` where no tool
    appears twice (a second anchor of the same tool would be a false in-batch negative);
    every index lands in exactly one batch."""
    rng = random.Random(seed)
    order = list(range(len(tools)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    open_batches: list[tuple[list[int], set[int]]] = []
    for i in order:
        slot = next((b for b in open_batches if tools[i] not in b[1]), None)
        if slot is None:
            slot = ([], set())
            open_batches.append(slot)
        slot[0].append(i)
        slot[1].add(tools[i])
        if len(slot[0]) == batch_size:
            batches.append(slot[0])
            open_batches.remove(slot)
    return batches + [b for b, _ in open_batches]


def finetune_key(catalog_hash: str, base_identity: str, settings: FinetuneSettings,
                 no_tool: Sequence[str] = ()) -> str:
    """Digest of what determines the fitted weights: the catalog, the base model, the fit
    settings and the no-tool texts. Names the output directory, hence the encoder identity
    of the index."""
    trained = {k: v for k, v in asdict(settings).items()  # not how the result is shipped
               if k not in ("update_rank", "row_tolerance")}
    fields: dict[str, Any] = {"catalog": catalog_hash, "base": base_identity,
                              "settings": trained, "version": 1}
    if settings.no_tool_per_batch and no_tool:
        fields["no_tool"] = hashlib.sha256("\n".join(no_tool).encode()).hexdigest()
    blob = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def catalog_triples(catalog: Catalog, encoder: TextEncoder,
                    settings: FinetuneSettings) -> list[Triple]:
    """Mine the triples of a catalog with the base encoder."""
    anchors = catalog_anchors(catalog, framed=settings.framed)
    phrasings = catalog_phrasings(catalog)
    anchor_vecs = encoder.encode([t for _, t in anchors])
    phrase_vecs = encoder.encode([t for _, t in phrasings])
    return mine_triples(anchors, anchor_vecs, phrasings, phrase_vecs,
                        hard_pool=settings.hard_pool, seed=settings.seed)


def fit_catalog_update(catalog: Catalog, encoder: TextEncoder, base_dir: Path,
                       settings: FinetuneSettings, cache_dir: Path, max_seq_length: int = 128,
                       *, no_tool: Sequence[str] = ()) -> tuple[bytes, dict[str, Any]]:
    """Mine the catalog's triples with the base encoder, fine-tune (the tuned model is kept
    under `cache_dir`, keyed by `finetune_key`) and return the update file's bytes and its
    JSON record (digest, settings, catalog hash, base identity, size). A full fit ships as
    `compact_update` of the tuned weights, a LoRA fit as its low-rank factors."""
    from safetensors.numpy import load_file

    from retrieval.encoder import encoder_identity

    base_id = encoder_identity(base_dir, max_seq_length)
    key = finetune_key(catalog.hash, base_id, settings, no_tool)
    work = Path(cache_dir) / f"{FINETUNE_DIR_PREFIX}{key}"
    if (work / RECORD_FILE).is_file():
        record = json.loads((work / RECORD_FILE).read_text(encoding="utf-8"))
        log.info("fine-tuned model %s exists; reusing it", work)
    else:
        record = train(base_dir, catalog_triples(catalog, encoder, settings), settings, work,
                       no_tool=no_tool, max_seq_length=max_seq_length)
    if settings.lora_rank:
        blob = (work / UPDATE_RESOURCE).read_bytes()
    else:
        blob = update_bytes(compact_update(
            load_file(str(base_dir / "model.safetensors")),
            load_file(str(work / "model.safetensors")),
            rank=settings.update_rank, row_tolerance=settings.row_tolerance))
    shipped = ({"lora_rank": settings.lora_rank} if settings.lora_rank else
               {"update_rank": settings.update_rank, "row_tolerance": settings.row_tolerance})
    meta = {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob), "shipped": shipped,
            "catalog_hash": catalog.hash, "base": base_id, **record,
            "fitted_on": "catalog text only (examples as anchors; names, descriptions, "
                         "examples as positives and hard negatives)"
                         + (", and the no-tool side of the linker's contrast pairs as "
                            "negatives" if record.get("no_tool_texts") else "")
                         + "; no evaluation rows"}
    return blob, meta


def train(base_dir: Path, triples: Sequence[Triple], settings: FinetuneSettings,
          out_dir: Path, *, no_tool: Sequence[str] = (), max_seq_length: int = 128,
          log_every: int = 0) -> dict[str, Any]:
    """Fine-tune the base model on the triples (see the module docstring) and write a model
    directory the `Encoder` loads (weights, config, the base's tokenizer files); returns
    the fit's record (also written as `finetune.json`).

    `no_tool`: texts that need no tool; `settings.no_tool_per_batch` of them (drawn anew for
    every batch, seeded) join each batch as negatives of every anchor. Without them the fit
    only learns which tool, and pulls every text towards some tool: no-tool texts end up as
    near the catalog as requests, and the linker links more of them."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel

    torch.manual_seed(settings.seed)
    tokenizer = Tokenizer.from_file(str(base_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_seq_length)
    tokenizer.enable_padding()
    model = AutoModel.from_pretrained(str(base_dir), local_files_only=True)
    if settings.lora_rank:
        model = _with_lora(model, settings)
    model.train()
    batches = [b for _ in range(settings.epochs)
               for b in pack_batches([t.tool for t in triples], settings.batch_size,
                                     settings.seed + _)]
    opt = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate)
    warm = max(1, int(settings.warmup * len(batches)))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (len(batches) - s) / len(batches)))
    losses = []
    draw = random.Random(settings.seed)
    per_batch = min(settings.no_tool_per_batch, len(no_tool))
    for step, batch in enumerate(batches):
        extra = draw.sample(list(no_tool), per_batch) if per_batch else []
        loss = _batch_loss(model, tokenizer, [triples[i] for i in batch], settings.scale,
                           extra)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}/{len(batches)} loss {np.mean(losses[-log_every:]):.4f}",
                  flush=True)
    record = {"settings": asdict(settings), "triples": len(triples), "steps": len(batches),
              "no_tool_texts": len(no_tool) if per_batch else 0,
              "loss_first": losses[0], "loss_last": losses[-1]}
    lora = lora_arrays(model) if settings.lora_rank else None
    merged = model.merge_and_unload() if settings.lora_rank else model

    def write(tmp: Path) -> None:
        merged.eval().save_pretrained(str(tmp), safe_serialization=True)
        if lora is not None:
            (tmp / UPDATE_RESOURCE).write_bytes(update_bytes(lora))

    _write_model_dir(base_dir, out_dir, record, write)
    return record


# every linear layer of the transformer blocks (not the unused pooler)
LORA_TARGETS = (r".*encoder\.layer\.\d+\.(attention\.self\.(query|key|value)"
                r"|attention\.output\.dense|intermediate\.dense|output\.dense)")


def _with_lora(model: Any, settings: FinetuneSettings) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=settings.lora_rank, lora_alpha=settings.lora_alpha,
                        lora_dropout=0.0, target_modules=LORA_TARGETS)
    return get_peft_model(model, config)


def lora_arrays(model: Any) -> dict[str, np.ndarray]:
    """The fitted low-rank updates as `{"<weight>:A": (r, in), "<weight>:B": (out, r)}`,
    B pre-scaled, so the merged weight is W + B·A (`merge_update`)."""
    out = {}
    for name, module in model.named_modules():
        if "default" not in getattr(module, "lora_A", {}):
            continue
        key = name.removeprefix("base_model.model.") + ".weight"
        out[f"{key}:A"] = module.lora_A["default"].weight.detach().numpy().astype(np.float32)
        out[f"{key}:B"] = (module.lora_B["default"].weight.detach().numpy()
                           * module.scaling["default"]).astype(np.float32)
    return out


def merge_update(weights: dict[str, np.ndarray],
                 update: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The base weights with the update added, by the kind its keys name:
    `<w>:A` (r, in) and `<w>:B` (out, r), a low-rank product (W + B·A); `<w>:D`, a dense
    difference; `<w>:rows` and `<w>:R`, the changed rows of an embedding (W[rows] += R).
    Every named weight must exist, every factor have its mate."""
    merged = dict(weights)
    for name, array in update.items():
        key, _, kind = name.rpartition(":")
        if key not in weights:
            raise RetrievalError(f"encoder update {name!r} has no base weight")
        mate = {"A": "B", "B": "A", "rows": "R", "R": "rows"}.get(kind)
        if mate and f"{key}:{mate}" not in update:
            raise RetrievalError(f"encoder update {name!r} has no {key}:{mate}")
        if kind == "A":
            change = update[f"{key}:B"].astype(np.float32) @ array.astype(np.float32)
        elif kind == "D":
            change = array.astype(np.float32)
        elif kind == "rows":
            change = np.zeros_like(weights[key], dtype=np.float32)
            change[array.astype(np.int64)] = update[f"{key}:R"].astype(np.float32)
        elif kind in ("B", "R"):
            continue  # read with its mate
        else:
            raise RetrievalError(f"encoder update {name!r}: unknown kind {kind!r}")
        merged[key] = (merged[key] + change).astype(weights[key].dtype)
    return merged


def compact_update(base: dict[str, np.ndarray], tuned: dict[str, np.ndarray], *,
                   rank: int, row_tolerance: float) -> dict[str, np.ndarray]:
    """The tuned weights as a small update of the base (`merge_update`'s keys), float16:
    each transformer linear's difference truncated to its best rank-`rank` product (SVD;
    rank 64 keeps 72-99 % of each difference's energy and, in `toolrec tools cv`, the full
    fit's linking to ±0.006), the word embeddings' rows that moved by more than
    `row_tolerance` of their norm (the tokens the catalog holds; the rest only decayed), and
    every other changed weight (LayerNorms, biases, position embeddings) whole. Weights the
    fit left exactly as they were (the unused pooler) are not in it."""
    linear = re.compile(LORA_TARGETS + r"\.weight$")
    out: dict[str, np.ndarray] = {}
    for key, weight in base.items():
        if key not in tuned:
            continue
        change = tuned[key].astype(np.float64) - weight.astype(np.float64)
        if not change.any():
            continue
        if linear.fullmatch(key) and rank < min(change.shape):
            u, singular, vt = np.linalg.svd(change, full_matrices=False)
            out[f"{key}:B"] = (u[:, :rank] * singular[:rank]).astype(np.float16)
            out[f"{key}:A"] = vt[:rank].astype(np.float16)
        elif key.endswith("word_embeddings.weight"):
            moved = (np.linalg.norm(change, axis=1)
                     > row_tolerance * np.linalg.norm(weight, axis=1))
            out[f"{key}:rows"] = np.flatnonzero(moved).astype(np.int32)
            out[f"{key}:R"] = change[moved].astype(np.float16)
        else:
            out[f"{key}:D"] = change.astype(np.float16)
    return out


def _batch_loss(model: Any, tokenizer: Any, batch: list[Triple], scale: float,
                no_tool: Sequence[str] = ()) -> Any:
    """Masked MNRL of one batch: anchors against every positive and negative, and against
    the batch's no-tool texts (negatives of every anchor)."""
    import torch
    import torch.nn.functional as nnf

    texts = ([t.anchor for t in batch] + [t.positive for t in batch]
             + [t.negative for t in batch] + list(no_tool))
    emb = _embed(model, tokenizer, texts)
    n = len(batch)
    anchors, others = emb[:n], emb[n:]
    logits = scale * anchors @ others.T  # (n, 2n + no-tool texts)
    tools = torch.tensor([t.tool for t in batch])
    owners = torch.cat([tools, torch.full((n + len(no_tool),), -1, dtype=tools.dtype)])
    same = owners[None, :] == tools[:, None]
    same[torch.arange(n), torch.arange(n)] = False  # the own positive stays the target
    return nnf.cross_entropy(logits.masked_fill(same, float("-inf")), torch.arange(n))


def _embed(model: Any, tokenizer: Any, texts: list[str]) -> Any:
    """Mean-pooled, L2-normalised embeddings with gradients (as `Encoder` pools)."""
    import torch
    import torch.nn.functional as nnf

    enc = tokenizer.encode_batch(texts)
    ids = torch.tensor([e.ids for e in enc])
    mask = torch.tensor([e.attention_mask for e in enc])
    hidden = model(input_ids=ids, attention_mask=mask,
                   token_type_ids=torch.zeros_like(ids)).last_hidden_state
    pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    return nnf.normalize(pooled, dim=-1)


def _write_model_dir(base_dir: Path, out_dir: Path, record: dict[str, Any],
                     write_weights: Callable[[Path], None]) -> None:
    """A model directory the `Encoder` loads, written to a temp directory and renamed (a
    process loading it at the same time never sees half a model). `finetune.json` holds
    the record; `retrieval.encoder.encoder_identity` reads it."""
    tmp = out_dir.with_name(f".{out_dir.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write_weights(tmp)
        for name in ("config.json", *MODEL_FILES):
            if (base_dir / name).is_file() and not (tmp / name).is_file():
                shutil.copy2(base_dir / name, tmp / name)
        if (base_dir / "1_Pooling").is_dir():
            shutil.copytree(base_dir / "1_Pooling", tmp / "1_Pooling")
        (tmp / RECORD_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        try:
            tmp.rename(out_dir)
        except OSError:  # another process finished first (or a stale copy): keep one
            if not (out_dir / "model.safetensors").is_file():
                shutil.rmtree(out_dir, ignore_errors=True)
                tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------- the shipped update file
def update_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The update file's bytes (what its digest covers); arrays keep their dtype."""
    buffer = io.BytesIO()
    named: dict[str, Any] = dict(sorted(arrays.items()))
    np.savez(buffer, **named)
    return buffer.getvalue()


def load_update(path: Path | None = None) -> tuple[dict[str, np.ndarray], str]:
    """The fitted update and its SHA-256 (`path` to an .npz with its .json beside it;
    default: the packaged files), after checking the digest the record holds."""
    arrays, _, digest = load_fitted(path, UPDATE_RESOURCE, "encoder update",
                                    "toolrec tools fit-encoder")
    return arrays, digest


def update_model_dir(base_dir: Path, update_path: Path | None, cache_dir: Path) -> Path:
    """The base model with the update merged in, as a model directory under `cache_dir`
    named by the update file's digest (merged now if missing, ≈ 1 s, numpy only)."""
    from safetensors.numpy import load_file, save_file

    arrays, digest = load_update(update_path)
    out = Path(cache_dir) / f"{UPDATE_DIR_PREFIX}{digest[:12]}"
    if (out / "model.safetensors").is_file():
        return out
    merged = merge_update(load_file(str(base_dir / "model.safetensors")), arrays)
    record = {"update_sha256": digest, "base": str(base_dir.name)}
    _write_model_dir(base_dir, out, record, lambda tmp: save_file(
        merged, str(tmp / "model.safetensors"), metadata={"format": "pt"}))
    log.info("encoder update %s merged into %s", digest[:12], out)
    return out
