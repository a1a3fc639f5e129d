"""Helpers shared by several test modules (test modules import from here, never from each other)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rsir_cli.store import EmbeddingStore
from rsir_cli.stored_codes import hash_store

# the store that tests/test_cli_index.py and tests/test_milvus_server.py search
VAL, TEST, DIM = 12, 300, 64


def write_split(
    root: Path,
    model: str,
    dataset: str,
    split: str,
    embeddings: np.ndarray,
    labels: np.ndarray,
    random_weights: bool = False,
    overwrite: bool = False,
) -> None:
    """Write one complete store file directly (what `rsir embed` leaves behind)."""
    writer = EmbeddingStore(root).writer(
        model,
        dataset,
        split,
        attrs={"random_weights": random_weights, "label_names": [f"l{i}" for i in range(labels.shape[1])]},
        dim=embeddings.shape[1],
        n_labels=labels.shape[1],
        rows_expected=len(embeddings),
        overwrite=overwrite,
    )
    writer.append(embeddings.astype(np.float32), [f"{split}-{i}" for i in range(len(embeddings))], labels)
    writer.finish()


def brute_force(distances: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of a full (Q, N) float64 distance matrix: sort by distance, then by row (numpy lexsort)."""
    n = distances.shape[1]
    rows = np.broadcast_to(np.arange(n), distances.shape)
    order = np.lexsort((rows, distances), axis=1)[:, :k]
    indices = np.full((distances.shape[0], k), -1, dtype=np.int64)
    values = np.full((distances.shape[0], k), np.inf)
    indices[:, : order.shape[1]] = order
    values[:, : order.shape[1]] = np.take_along_axis(distances, order, axis=1)
    return indices, values


def reference_distances(distance: str, queries: np.ndarray, database: np.ndarray) -> np.ndarray:
    """Distances in float64 straight from their definitions (no shared code with the engine)."""
    if distance == "hamming":
        q = np.unpackbits(queries, axis=1)[:, None, :]
        x = np.unpackbits(database, axis=1)[None, :, :]
        return (q != x).sum(axis=2).astype(np.float64)
    q = queries.astype(np.float64)[:, None, :]
    x = database.astype(np.float64)[None, :, :]
    if distance == "l1":
        return np.abs(q - x).sum(axis=2)
    if distance == "l2":
        return np.sqrt(((q - x) ** 2).sum(axis=2))
    if distance == "dot":
        return -(q * x).sum(axis=2)
    cos = (q * x).sum(axis=2) / (np.linalg.norm(q, axis=2) * np.linalg.norm(x, axis=2))
    return 1.0 - cos


TINY = {
    "name": "tiny-prithvi",
    "description": "test",
    "architecture": "prithvi_vit",
    "bands": ["B02", "B03", "B04", "B8A", "B11", "B12"],
    "mean": [0.0] * 6,
    "std": [1.0] * 6,
    "input_size": 32,
    "pooling": "mean_patch",
    "embed_dim": 64,
    "depth": 2,
    "num_heads": 4,
    "patch_size": 8,
    "norm_eps": 1e-6,
}


def random_checkpoint(cfg: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Encoder weights in the 2023 layout, plus decoder keys and a 3-frame pos_embed to be dropped."""
    g = torch.Generator().manual_seed(seed)
    d, p, c = cfg["embed_dim"], cfg["patch_size"], len(cfg["bands"])
    hidden = int(d * 4)

    def r(*shape: int, scale: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    sd = {
        "patch_embed.proj.weight": r(d, c, 1, p, p, scale=0.05),
        "patch_embed.proj.bias": r(d),
        "cls_token": r(1, 1, d),
        "pos_embed": r(1, 1 + 3 * (cfg["input_size"] // p) ** 2, d),  # junk: must be recomputed
        "norm.weight": 1 + r(d),
        "norm.bias": r(d),
        "mask_token": r(1, 1, 32),
        "decoder_embed.weight": r(32, d),
        "decoder_pos_embed": r(1, 5, 32),
        "decoder_blocks.0.norm1.weight": r(32),
    }
    for i in range(cfg["depth"]):
        sd.update(
            {
                f"blocks.{i}.norm1.weight": 1 + r(d),
                f"blocks.{i}.norm1.bias": r(d),
                f"blocks.{i}.attn.qkv.weight": r(3 * d, d, scale=0.1),
                f"blocks.{i}.attn.qkv.bias": r(3 * d),
                f"blocks.{i}.attn.proj.weight": r(d, d, scale=0.1),
                f"blocks.{i}.attn.proj.bias": r(d),
                f"blocks.{i}.norm2.weight": 1 + r(d),
                f"blocks.{i}.norm2.bias": r(d),
                f"blocks.{i}.mlp.fc1.weight": r(hidden, d, scale=0.1),
                f"blocks.{i}.mlp.fc1.bias": r(hidden),
                f"blocks.{i}.mlp.fc2.weight": r(d, hidden, scale=0.1),
                f"blocks.{i}.mlp.fc2.bias": r(d),
            }
        )
    return sd


def make_store(root: Path, seed: int = 0, dim: int = DIM, overwrite: bool = False) -> Path:
    """A store of Gaussian embeddings (continuous: no float ties) with trivial-32 and binary codes."""
    store = EmbeddingStore(root)
    rng = np.random.default_rng(seed)
    for split, n in (("val", VAL), ("test", TEST)):
        writer = store.writer(
            "m", "d", split, attrs={"label_names": ["a", "b"], "weights_sha256": f"w{seed}"}, dim=dim,
            n_labels=2, rows_expected=n, overwrite=overwrite,
        )  # fmt: skip
        labels = rng.integers(0, 2, (n, 2)).astype(np.uint8)
        writer.append(rng.standard_normal((n, dim)).astype(np.float32), [f"{split}_{i}" for i in range(n)], labels)
        writer.finish()
    hash_store(store, "trivial", 32, [None])
    hash_store(store, "binary", None, [None])
    return root


def assert_same_up_to_ties(exact: list[dict], found: list[dict]) -> None:
    """Equal distances rank by rank; equal ids wherever a distance is unique, and ties in row order."""
    assert [m["distance"] for m in found] == [m["distance"] for m in exact]
    assert [m["rank"] for m in found] == list(range(1, len(exact) + 1))
    distances = [m["distance"] for m in exact]
    kth = distances[-1]
    for mine, truth in zip(found, exact, strict=True):
        if distances.count(truth["distance"]) == 1 and truth["distance"] != kth:
            assert (mine["id"], mine["row"]) == (truth["id"], truth["row"])
    below = sorted(m["row"] for m in exact if m["distance"] < kth)
    assert sorted(m["row"] for m in found if m["distance"] < kth) == below
    rows = [(m["distance"], m["row"]) for m in found]
    assert rows == sorted(rows)
