"""The ``torch-tiles`` strategy of the exact engine: what a CUDA device runs (also on the CPU, for tests).

Tiles of distances become int64 keys ``(order-preserving integer image of the float32 distance)
<< 32 | row``; each tile's own top k (``torch.topk``) is merged into a running top-k, which is
exact in any tile order because keys are unique. Hamming is a +-1 matrix product in fp16 for codes
of up to 2048 bits (exact: every partial sum is an integer of magnitude <= 2048; longer codes use
fp32), ranked by int32 keys ``hamming * rows + row`` where they fit; floats are fp32 matrix
products (l2, cosine, dot; full fp32 unless the caller enabled TF32) or ``torch.cdist`` (l1; on the
CPU faiss's L1). A CUDA tile holds about ``_CUDA_TILE_ELEMENTS`` distances (about 2 GB).

See :mod:`rsir_cli.search.exact` for the ranking rule and the dispatcher.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rsir_cli.progress import ProgressTask
from rsir_cli.search.cpu_tiles import MAX_KEY, QUERY_BLOCK, ROW_MASK, TILE_ROWS, ordinal_to_float

# CUDA: elements of one distance tile (queries x database rows); 2**27 keeps a tile near 2 GB.
_CUDA_TILE_ELEMENTS = 1 << 27


def _float_ordinal(values: Any) -> Any:
    """float32 tensor -> int32 tensor with the same order (NaN as +inf, -0.0 as +0.0)."""
    import torch

    values = torch.nan_to_num(values, nan=float("inf"), posinf=float("inf"), neginf=float("-inf"))
    bits = values.view(torch.int32)
    ordinal = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    return torch.where(ordinal == -1, torch.zeros_like(ordinal), ordinal)  # -1 is -0.0


class _RunningTopK:
    """The k smallest int64 keys ``(ordinal << 32) | row`` seen so far for a block of queries."""

    def __init__(self, n_queries: int, k: int, device: str) -> None:
        import torch

        self.k = k
        self.keys = torch.full((n_queries, k), MAX_KEY, dtype=torch.int64, device=device)

    def add(self, ordinals: Any, first_row: int) -> None:
        """Merge a tile of ordinals (Q, T) whose rows are ``first_row ... first_row + T - 1``: the
        tile's own top k by key, then a merge (keys are unique, so this is exact in any tile order)."""
        import torch

        keys = (ordinals.to(torch.int64) << 32) | _row_ids(ordinals, first_row)
        self.merge(torch.topk(keys, min(self.k, keys.shape[1]), dim=1, largest=False, sorted=True).values)

    def merge(self, keys: Any) -> None:
        """Merge a (Q, m) block of global keys (any order; keys are unique)."""
        import torch

        merged = torch.cat([self.keys, keys], dim=1)
        self.keys = torch.topk(merged, self.k, dim=1, largest=False, sorted=True).values


def _row_ids(like: Any, first_row: int) -> Any:
    import torch

    return torch.arange(first_row, first_row + like.shape[1], device=like.device, dtype=torch.int64)


def tiled_search(
    database: np.ndarray,
    queries: np.ndarray,
    k: int,
    distance: str,
    device: str,
    block_size: int | None,
    task: ProgressTask,
    tile_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Tiles of distances -> int64 keys -> each tile's top k merged into a running top-k (what CUDA
    runs; on the CPU too, for tests)."""
    import torch

    on_cuda = device != "cpu"
    n = database.shape[0]
    prepared = _Prepared(database, distance, device)
    if on_cuda:
        tile = n
        query_block = block_size or max(1, min(8192, _CUDA_TILE_ELEMENTS // max(1, n)))
        if query_block * n > 4 * _CUDA_TILE_ELEMENTS:  # a huge database: tile it too
            tile = max(1, _CUDA_TILE_ELEMENTS // query_block)
    else:
        query_block = block_size or QUERY_BLOCK
        tile = TILE_ROWS[distance]
    tile = tile_rows or tile
    out_keys = np.empty((queries.shape[0], k), dtype=np.int64)
    with torch.inference_mode():
        for start in range(0, queries.shape[0], query_block):
            block = prepared.queries(queries[start : start + query_block])
            top = _RunningTopK(block.shape[0], k, device)
            for first in range(0, n, tile):
                stop = min(n, first + tile)
                if prepared.small_keys(stop - first):
                    top.merge(prepared.hamming_top(block, first, stop, k))
                else:
                    top.add(prepared.ordinals(block, first, stop), first)
            out_keys[start : start + block.shape[0]] = top.keys.cpu().numpy()
            task.advance(block.shape[0])
    ordinal = out_keys >> 32
    indices = out_keys & ROW_MASK
    if distance == "hamming":
        values = ordinal.astype(np.float64)
    else:
        values = ordinal_to_float(ordinal)
        if distance == "l2":
            values = np.sqrt(values)
        elif distance == "cosine":
            values = 1.0 + values  # ranked by -cos: 1 - cos
    return indices, values


class _Prepared:
    """The database on the device in the form its distance needs, and tile -> ordinals."""

    def __init__(self, database: np.ndarray, distance: str, device: str) -> None:
        import torch

        self.distance = distance
        self.device = device
        if distance == "hamming":
            self.bits = database.shape[1] * 8
            # fp16 holds every integer up to 2048 exactly, so a +-1 product of up to 2048 bits is exact.
            self.dtype = torch.float16 if (device != "cpu" and self.bits <= 2048) else torch.float32
            self.data = self._plus_minus(database)
        else:
            data = torch.from_numpy(database).to(device)
            if distance == "cosine":
                data = _normalise(data)
            self.data = data
            self.norms = (data * data).sum(dim=1) if distance == "l2" else None

    def _plus_minus(self, codes: np.ndarray) -> Any:
        import torch

        unpacked = torch.from_numpy(np.unpackbits(codes, axis=1)).to(self.device)
        return (unpacked.to(self.dtype) * 2 - 1).contiguous()

    def queries(self, block: np.ndarray) -> Any:
        import torch

        if self.distance == "hamming":
            return self._plus_minus(block)
        data = torch.from_numpy(block).to(self.device)
        return _normalise(data) if self.distance == "cosine" else data

    def small_keys(self, rows: int) -> bool:
        """Hamming keys ``distance * rows + row`` of a tile fit in int32 (half the memory traffic)."""
        return self.distance == "hamming" and (self.bits + 1) * rows < 2**31

    def hamming_top(self, queries: Any, first: int, stop: int, k: int) -> Any:
        """The k best global keys of one database tile, through int32 keys ``hamming * rows + row``."""
        import torch

        rows = stop - first
        keys = torch.matmul(queries, self.data[first:stop].T).to(torch.int32)  # exact +-1 dot products
        keys.neg_().add_(self.bits).div_(2, rounding_mode="floor")  # Hamming = (bits - dot) / 2
        keys.mul_(rows).add_(torch.arange(rows, device=keys.device, dtype=torch.int32))
        top = torch.topk(keys, min(k, rows), dim=1, largest=False, sorted=True).values
        return ((top // rows).to(torch.int64) << 32) | ((top % rows).to(torch.int64) + first)

    def ordinals(self, queries: Any, first: int, stop: int) -> Any:
        import torch

        data = self.data[first:stop]
        if self.distance == "hamming":
            dot = torch.matmul(queries, data.T).float()
            return ((self.bits - dot) * 0.5).round().to(torch.int32)
        if self.distance == "l1":
            if self.device == "cpu":
                import faiss

                values = torch.from_numpy(faiss.pairwise_distances(queries.numpy(), data.numpy(), faiss.METRIC_L1))
            else:
                values = torch.cdist(queries, data, p=1)
        elif self.distance == "l2":
            q_norms = (queries * queries).sum(dim=1, keepdim=True)
            values = (q_norms + self.norms[first:stop][None, :] - 2.0 * torch.matmul(queries, data.T)).clamp_min_(0.0)
        else:  # dot and cosine: rank by the negated product
            return _float_ordinal(torch.matmul(queries, data.T).neg_())
        # l1 and l2 are >= 0: the float32 bit pattern is already the order; clearing the sign bit
        # maps -0.0 to +0.0 (and ranks a NaN after +inf), in one pass.
        return values.contiguous().view(torch.int32).bitwise_and_(0x7FFFFFFF)


def _normalise(data: Any) -> Any:
    import torch

    norms = torch.linalg.vector_norm(data, dim=1, keepdim=True)
    return data / torch.where(norms > 0, norms, torch.ones_like(norms))
