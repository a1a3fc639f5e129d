"""Float embeddings -> binary codes, packed 8 bits per byte (``numpy.packbits``, big bit order).

Methods (every code bit is ``1`` where a projection is ``> 0``):

- ``binary``: the sign of every embedding dimension (bits = embedding dim); the paper's "Binary emb.".
- ``trivial``: the paper's strided group mean: dims ``j, j+bits, j+2*bits, ...`` are averaged (a float32
  torch mean, as the official code computes it), then thresholded. ``bits`` must divide the dim.
- ``lsh``: random-hyperplane LSH with one table, exactly as the official code runs lshashpy3: the
  planes are ``np.random.RandomState(seed).randn(bits, dim)`` (float64, the legacy Mersenne-Twister
  stream that ``np.random.seed(seed); np.random.randn(bits, dim)`` draws), a bit is
  ``dot(plane, x) > 0`` with ``x`` in float64. So rsir's LSH codes equal the official ones bit for bit.
- ``pca``: PCA-sign; the ``bits`` leading principal directions of the database, fitted on the
  database split, applied to ``x - mean``.
- ``itq``: iterative quantization (Gong & Lazebnik, CVPR 2011): PCA to ``bits`` dims, then an
  orthogonal rotation that minimises the quantisation error, learnt by alternating minimisation
  from a seeded random rotation. Known to beat LSH at short code lengths.

Learned hashers (pca, itq) are fitted on the database split only and applied unchanged to queries
and new tiles; their parameters (mean, projection) are stored with the codes so that a later query
is hashed identically (:func:`hasher_from_codes`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from rsir_cli.errors import StoreError, UsageError

if TYPE_CHECKING:
    from rsir_cli.store import Codes

log = logging.getLogger(__name__)

METHODS = ("binary", "trivial", "lsh", "pca", "itq")
#: methods whose codes depend on a seed (one code table per seed)
SEEDED_METHODS = ("lsh", "itq")
#: methods fitted on the database split
LEARNED_METHODS = ("pca", "itq")
#: the paper's seeds: 42, 84, 126, 168, 210 (``--seeds N`` gives the first N)
SEED_STEP = 42
DEFAULT_SEED = 42
HASHER_VERSION = 1
#: the longest codes rsir makes (beyond this, codes cost more than the float embeddings they replace)
MAX_BITS = 8192
ITQ_ITERATIONS = 50
# Rows hashed per step: bounds the float64 temporaries to ~100 MB at 768 dims.
_BLOCK_ROWS = 16384


def paper_seeds(count: int) -> list[int]:
    """The first ``count`` seeds of the paper's sequence 42, 84, 126, ... (42 * i)."""
    if count < 1:
        raise UsageError("--seeds must be at least 1")
    return [SEED_STEP * i for i in range(1, count + 1)]


@dataclass(frozen=True)
class CodeSpec:
    """Which code table: a method, its code length and (for seeded methods) its seed.

    Its :attr:`name` is the table's name in the store (``trivial-32``, ``binary-768``,
    ``lsh-32-s42``); :meth:`parse` reads one back. These two are the only places that spell it.
    """

    method: str
    bits: int
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.method not in SEEDED_METHODS:
            object.__setattr__(self, "seed", None)

    @property
    def name(self) -> str:
        return f"{self.method}-{self.bits}" + (f"-s{self.seed}" if self.seed is not None else "")

    @classmethod
    def parse(cls, name: str) -> CodeSpec | None:
        """``"lsh-32-s42"`` -> ``CodeSpec("lsh", 32, 42)``; None for a name that is not a code table's."""
        match = _CODE_NAME.fullmatch(name)
        if not match or match.group("method") not in METHODS:
            return None
        seed = match.group("seed")
        return cls(match.group("method"), int(match.group("bits")), int(seed) if seed is not None else None)

    @classmethod
    def of(cls, hasher: Hasher) -> CodeSpec:
        return cls(hasher.method, hasher.bits, hasher.seed)


_CODE_NAME = re.compile(r"(?P<method>[a-z]+)-(?P<bits>\d+)(?:-s(?P<seed>\d+))?")


def pack(bits: np.ndarray) -> np.ndarray:
    """(N, bits) bool/0-1 -> (N, bits // 8) uint8, ``numpy.packbits`` big bit order."""
    return np.packbits(np.asarray(bits, dtype=bool), axis=1)


def unpack(codes: np.ndarray, bits: int) -> np.ndarray:
    """(N, bits // 8) packed uint8 -> (N, bits) uint8 of 0/1."""
    return np.unpackbits(np.asarray(codes, dtype=np.uint8), axis=1, count=bits)


class Hasher:
    """Base class: turns (N, dim) float embeddings into (N, bits // 8) packed codes.

    Subclasses implement :meth:`_bits` (the unpacked boolean codes of one block of rows) and, when
    learned, :meth:`_fit` plus :meth:`params` / :meth:`_load_params`.
    """

    method: ClassVar[str] = ""
    learned: ClassVar[bool] = False

    def __init__(self, bits: int, dim: int, seed: int | None = None) -> None:
        self.bits = int(bits)
        self.dim = int(dim)
        self.seed = seed
        self.fitted_on = ""
        self.fit_rows = 0
        self.fit_source = ""
        self._fitted = not self.learned

    # ------------------------------------------------------------------------------- public API
    def fit(self, database: np.ndarray, fitted_on: str = "", fit_source: str = "") -> Hasher:
        """Fit on the database embeddings (a no-op for binary, trivial and lsh).

        Args:
            database: (N, dim) float embeddings of the database split.
            fitted_on: which split it was (recorded in :meth:`attrs`).
            fit_source: a digest of the data (:func:`fit_source`), recorded so that stale codes of a
                re-embedded split are recognised.
        """
        database = self._check(database)
        if not self.learned:  # nothing to learn: the codes do not depend on the database
            return self
        if database.shape[0] < 2:
            raise UsageError(f"{self.method} needs at least 2 database rows to fit, got {database.shape[0]}")
        if database.shape[0] < self.bits:
            log.warning(
                "%s: fitting %d bits on only %d rows; the trailing bits follow no data direction",
                self.method,
                self.bits,
                database.shape[0],
            )
        self.fitted_on, self.fit_rows, self.fit_source = fitted_on, int(database.shape[0]), fit_source
        self._fit(database)
        self._fitted = True
        return self

    def transform(self, embeddings: np.ndarray) -> np.ndarray:
        """Hash (N, dim) embeddings to packed codes (N, bits // 8) uint8."""
        if not self._fitted:
            raise UsageError(f"the {self.method} hasher must be fitted on the database before it hashes")
        embeddings = self._check(embeddings)
        out = np.empty((embeddings.shape[0], self.bits // 8), dtype=np.uint8)
        for start in range(0, embeddings.shape[0], _BLOCK_ROWS):
            stop = start + _BLOCK_ROWS
            out[start:stop] = pack(self._bits(embeddings[start:stop]))
        return out

    def params(self) -> dict[str, np.ndarray]:
        """Every array needed to rebuild this hasher (empty for the parameter-free methods)."""
        return {}

    def attrs(self) -> dict[str, Any]:
        """Method, bits, seed, dim and where it was fitted: with :meth:`params`, enough to rebuild it."""
        return {
            "method": self.method,
            "bits": self.bits,
            "seed": self.seed,
            "dim": self.dim,
            "fitted_on": self.fitted_on,
            "fit_rows": self.fit_rows,
            "fit_source": self.fit_source,
            "hasher_version": HASHER_VERSION,
        }

    @property
    def name(self) -> str:
        return CodeSpec.of(self).name

    # -------------------------------------------------------------------------- for subclasses
    def _check(self, embeddings: np.ndarray) -> np.ndarray:
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise UsageError(
                f"the {self.name} hasher takes {self.dim}-dimensional embeddings, got shape {embeddings.shape}; "
                "hash embeddings of the model it was fitted for"
            )
        return embeddings

    def _fit(self, database: np.ndarray) -> None:
        raise NotImplementedError

    def _bits(self, block: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _load_params(self, params: dict[str, np.ndarray]) -> None:
        self._fitted = True


class BinaryHasher(Hasher):
    """The sign of every dimension: ``x > 0`` (bits = dim)."""

    method = "binary"

    def _bits(self, block: np.ndarray) -> np.ndarray:
        return block > 0


class TrivialHasher(Hasher):
    """The paper's trivial hash: mean of dims ``j, j+bits, ...`` (float32, as torch computes it), ``> 0``."""

    method = "trivial"

    def _bits(self, block: np.ndarray) -> np.ndarray:
        import torch

        # Exactly the official expression, so that near-zero means round the same way.
        values = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32))
        return (values.reshape(-1, self.dim // self.bits, self.bits).mean(dim=1) > 0).numpy()


class LSHHasher(Hasher):
    """Random-hyperplane LSH, one table; the official (lshashpy3) hyperplanes for a given seed."""

    method = "lsh"

    def __init__(self, bits: int, dim: int, seed: int | None = None) -> None:
        super().__init__(bits, dim, DEFAULT_SEED if seed is None else int(seed))
        # np.random.seed(seed); np.random.randn(bits, dim) -- the same legacy stream.
        self.planes = np.random.RandomState(self.seed).randn(self.bits, self.dim)

    def _bits(self, block: np.ndarray) -> np.ndarray:
        return (np.asarray(block, dtype=np.float64) @ self.planes.T) > 0

    def params(self) -> dict[str, np.ndarray]:
        return {"planes": self.planes}

    def _load_params(self, params: dict[str, np.ndarray]) -> None:
        planes = np.asarray(params["planes"], dtype=np.float64)
        if planes.shape != (self.bits, self.dim):
            raise StoreError(f"stored LSH planes have shape {planes.shape}, expected {(self.bits, self.dim)}")
        self.planes = planes
        self._fitted = True


class _LinearHasher(Hasher):
    """Codes ``(x - mean) @ projection > 0`` with a learnt mean (dim,) and projection (dim, bits)."""

    learned = True

    def __init__(self, bits: int, dim: int, seed: int | None = None) -> None:
        super().__init__(bits, dim, seed)
        self.mean = np.zeros(self.dim)
        self.projection = np.zeros((self.dim, self.bits))

    def _bits(self, block: np.ndarray) -> np.ndarray:
        return ((np.asarray(block, dtype=np.float64) - self.mean) @ self.projection) > 0

    def params(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "projection": self.projection}

    def _load_params(self, params: dict[str, np.ndarray]) -> None:
        mean = np.asarray(params["mean"], dtype=np.float64)
        projection = np.asarray(params["projection"], dtype=np.float64)
        if mean.shape != (self.dim,) or projection.shape != (self.dim, self.bits):
            raise StoreError(
                f"stored {self.method} parameters have shapes {mean.shape} and {projection.shape}, "
                f"expected {(self.dim,)} and {(self.dim, self.bits)}: the code table is damaged; hash it again with --force"
            )
        self.mean, self.projection = mean, projection
        self._fitted = True

    def _principal_directions(self, database: np.ndarray) -> np.ndarray:
        """Fit the mean and return the ``bits`` leading principal directions (dim, bits), float64."""
        n = database.shape[0]
        total = np.zeros(self.dim)
        for start in range(0, n, _BLOCK_ROWS):
            total += np.asarray(database[start : start + _BLOCK_ROWS], dtype=np.float64).sum(axis=0)
        self.mean = total / n
        covariance = np.zeros((self.dim, self.dim))
        for start in range(0, n, _BLOCK_ROWS):
            centred = np.asarray(database[start : start + _BLOCK_ROWS], dtype=np.float64) - self.mean
            covariance += centred.T @ centred
        covariance /= n
        values, vectors = np.linalg.eigh(covariance)
        order = np.argsort(-values, kind="stable")[: self.bits]
        directions = vectors[:, order]
        # An eigenvector's sign is arbitrary: fix it (largest-magnitude entry positive) for reproducibility.
        pivots = np.argmax(np.abs(directions), axis=0)
        signs = np.sign(directions[pivots, np.arange(self.bits)])
        signs[signs == 0] = 1
        return directions * signs


class PCAHasher(_LinearHasher):
    """PCA-sign: the sign of the ``bits`` leading principal components of the database."""

    method = "pca"

    def _fit(self, database: np.ndarray) -> None:
        self.projection = self._principal_directions(database)


class ITQHasher(_LinearHasher):
    """Iterative quantization: PCA, then a learnt rotation (seeded start) that minimises ``||B - VR||``."""

    method = "itq"

    def __init__(self, bits: int, dim: int, seed: int | None = None, iterations: int = ITQ_ITERATIONS) -> None:
        super().__init__(bits, dim, DEFAULT_SEED if seed is None else int(seed))
        self.iterations = iterations

    def _fit(self, database: np.ndarray) -> None:
        directions = self._principal_directions(database)
        projected = np.empty((database.shape[0], self.bits))
        for start in range(0, database.shape[0], _BLOCK_ROWS):
            block = np.asarray(database[start : start + _BLOCK_ROWS], dtype=np.float64)
            projected[start : start + _BLOCK_ROWS] = (block - self.mean) @ directions
        rotation = _random_rotation(self.bits, int(self.seed or 0))
        for _ in range(self.iterations):
            codes = np.where(projected @ rotation >= 0, 1.0, -1.0)
            # argmax over orthogonal R of tr(B^T V R): R = U W^T with V^T B = U S W^T.
            u, _, wt = np.linalg.svd(projected.T @ codes)
            rotation = u @ wt
        self.projection = directions @ rotation

    def attrs(self) -> dict[str, Any]:
        return {**super().attrs(), "iterations": self.iterations}


def _random_rotation(size: int, seed: int) -> np.ndarray:
    """A seeded random orthogonal matrix (QR of a Gaussian matrix, signs fixed so it is unique)."""
    q, r = np.linalg.qr(np.random.RandomState(seed).randn(size, size))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


_CLASSES: dict[str, type[Hasher]] = {
    cls.method: cls for cls in (BinaryHasher, TrivialHasher, LSHHasher, PCAHasher, ITQHasher)
}


def make_hasher(method: str, bits: int | None, seed: int | None, dim: int) -> Hasher:
    """A hasher for ``method`` at ``bits`` bits over ``dim``-dimensional embeddings (not fitted yet).

    ``binary`` takes ``bits=None`` (or ``dim``); the seed matters only for lsh and itq (default 42).

    Raises:
        UsageError: an unknown method, or bits that the method or the storage cannot take.
    """
    key = method.strip().lower()
    if key not in _CLASSES:
        raise UsageError(f"unknown hash method {method!r}; choose one of {', '.join(METHODS)}")
    if key == "binary":
        if bits is not None and bits != dim:
            raise UsageError(f"binary codes have one bit per dimension: --bits must be {dim} (or left out), not {bits}")
        bits = dim
    if bits is None:
        raise UsageError(f"--bits is required for {key} (for example --bits 32)")
    if bits < 8 or bits % 8:
        raise UsageError(f"--bits {bits}: codes are stored in whole bytes, so bits must be a positive multiple of 8")
    if bits > MAX_BITS and key != "binary":
        raise UsageError(
            f"--bits {bits} is more than rsir takes ({MAX_BITS}): codes that long are larger than the float "
            f"embeddings they stand for; binary codes are short (32 to {4 * dim} bits)"
        )
    if key == "binary" and dim % 8:
        raise UsageError(f"binary codes need an embedding dimension that is a multiple of 8, got {dim}")
    if key == "trivial" and dim % bits:
        divisors = [b for b in range(8, dim + 1, 8) if dim % b == 0]
        raise UsageError(
            f"--bits {bits} does not divide the embedding dimension {dim} (the trivial hash averages dims "
            f"j, j+bits, ...); use one of {', '.join(map(str, divisors)) or 'none: no multiple of 8 divides it'}"
        )
    if key in LEARNED_METHODS and bits > dim:
        raise UsageError(f"{key} takes at most as many bits as the embedding has dimensions ({dim}), not {bits}")
    return _CLASSES[key](bits, dim, seed if key in SEEDED_METHODS else None)


def hasher_from_attrs(attrs: dict[str, Any], params: dict[str, np.ndarray]) -> Hasher:
    """Rebuild a hasher from its :meth:`Hasher.attrs` and :meth:`Hasher.params` (as stored)."""
    try:
        method = str(attrs["method"])
        bits, dim = int(attrs["bits"]), int(attrs["dim"])
    except (KeyError, TypeError, ValueError) as error:
        raise StoreError(
            f"stored hasher attributes are incomplete ({error}): the code table is damaged; hash it again with --force"
        ) from None
    seed = attrs.get("seed")
    seed = None if seed in (None, "") else int(seed)
    hasher = make_hasher(method, bits, seed, dim)
    hasher.fitted_on = str(attrs.get("fitted_on") or "")
    hasher.fit_rows = int(attrs.get("fit_rows") or 0)
    hasher.fit_source = str(attrs.get("fit_source") or "")
    if isinstance(hasher, ITQHasher):
        hasher.iterations = int(attrs.get("iterations") or ITQ_ITERATIONS)
    if hasher.learned or params:
        missing = [key for key in hasher.params() if key not in params]
        if missing:
            raise StoreError(
                f"stored {method} hasher lacks {', '.join(missing)}: the code table is damaged; hash it again with --force"
            )
        hasher._load_params(params)
    return hasher


def hasher_from_codes(codes: Codes) -> Hasher:
    """The hasher that made a stored code table, so a new query is hashed exactly like the database."""
    return hasher_from_attrs(codes.hasher_attrs, codes.hasher)


def same_hasher(a: Hasher, b: Hasher) -> bool:
    """True when two hashers produce the same codes (same attributes and identical parameters)."""
    keys = ("method", "bits", "seed", "dim")
    if any(a.attrs()[key] != b.attrs()[key] for key in keys):
        return False
    pa, pb = a.params(), b.params()
    return pa.keys() == pb.keys() and all(np.array_equal(pa[key], pb[key]) for key in pa)


def seeds_for(method: str, seed: int | None = None, seeds: int | None = None) -> list[int | None]:
    """The seeds to hash with: ``[None]`` for unseeded methods, else ``--seed`` or the paper's first ``--seeds``."""
    if seed is not None and seeds is not None:
        raise UsageError("give either --seed or --seeds, not both")
    if method not in SEEDED_METHODS:
        return [None]
    if seed is not None:
        return [seed]
    return list(paper_seeds(seeds)) if seeds is not None else [DEFAULT_SEED]
