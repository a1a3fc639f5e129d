"""Learned hashing (PCA-sign, ITQ) vs the paper's LSH and trivial hash on seeded clustered embeddings.

The data imitate foundation-model embeddings: classes are clusters in a low-dimensional,
anisotropic latent space, mixed into 768 dims, shifted by a common offset (real embeddings are
not centred) and blurred by isotropic noise. Queries and database are drawn independently; a
database image is relevant when it has the query's class. mAP@20 as the paper computes it, with
the exact engine (L1 on floats, Hamming on codes, ties by lower row).

Run:  .venv/bin/python benchmarks/hashing_synthetic.py [--queries 2000 --database 10000 --bits 32,64]
It writes benchmarks/results/hashing_synthetic.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rsir_cli import metrics  # noqa: E402
from rsir_cli.hashing import make_hasher, paper_seeds  # noqa: E402
from rsir_cli.search.exact import exact_search  # noqa: E402


def clustered_embeddings(
    seed: int = 0,
    n_queries: int = 2000,
    n_database: int = 10000,
    dim: int = 768,
    classes: int = 30,
    latent: int = 48,
    spread: float = 0.9,
    noise: float = 0.9,
    offset: float = 0.5,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((queries, labels), (database, labels)): float32 embeddings and one-hot class labels."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((latent, dim)) / np.sqrt(latent)
    scales = np.linspace(3.0, 0.3, latent)  # a few strong directions, many weak ones
    centres = rng.standard_normal((classes, latent)) * scales
    bias = offset * rng.standard_normal(dim)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, classes, n)
        z = centres[y] + rng.standard_normal((n, latent)) * scales * spread
        x = z @ mixing + bias + noise * rng.standard_normal((n, dim))
        labels = np.zeros((n, classes), dtype=np.uint8)
        labels[np.arange(n), y] = 1
        return x.astype(np.float32), labels

    return draw(n_queries), draw(n_database)


def compare(
    data: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    bits: int = 32,
    seeds: int = 5,
    methods: tuple[str, ...] = ("trivial", "lsh", "pca", "itq"),
    k: int = 20,
) -> dict[str, dict[str, object]]:
    """mAP@k x100 per method at ``bits`` bits (seeded methods: per seed, mean and 95% CI)."""
    (queries, q_labels), (database, db_labels) = data
    dim = database.shape[1]
    totals = metrics.total_relevant(q_labels, db_labels)
    out: dict[str, dict[str, object]] = {}

    def score(q: np.ndarray, db: np.ndarray, distance: str) -> float:
        ranking = exact_search(db, q, k, distance).indices
        return 100 * metrics.score_ranking(q_labels, db_labels, ranking, "any", totals).map

    for method in methods:
        began = time.perf_counter()
        if method == "none":
            values = [score(queries, database, "l1")]
        else:
            values = []
            for seed in paper_seeds(seeds) if method in ("lsh", "itq") else [None]:
                hasher = make_hasher(method, dim if method == "binary" else bits, seed, dim).fit(database)
                values.append(score(hasher.transform(queries), hasher.transform(database), "hamming"))
        mean, ci = metrics.mean_ci(values)
        out[method] = {"map": mean, "ci95": ci, "per_seed": values, "seconds": time.perf_counter() - began}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--database", type=int, default=10000)
    parser.add_argument("--bits", default="32,64")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    data = clustered_embeddings(n_queries=args.queries, n_database=args.database)
    reference = compare(data, methods=("none", "binary"), seeds=1)
    results = {"none+binary": reference}
    for bits in [int(b) for b in args.bits.split(",")]:
        results[str(bits)] = compare(data, bits=bits, seeds=args.seeds)
    command = "python benchmarks/hashing_synthetic.py " + " ".join(sys.argv[1:])
    record = {
        "command": command.strip(),
        "machine": f"{platform.machine()} {platform.processor() or ''} {platform.system()}".strip(),
        "data": {"queries": args.queries, "database": args.database, "dim": 768, "classes": 30, "seed": 0},
        "k": 20,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hashing_synthetic.json").write_text(json.dumps(record, indent=2) + "\n")

    def cell(entry: dict[str, object]) -> str:
        ci = float(entry["ci95"])  # type: ignore[arg-type]
        return f"{entry['map']:.2f}" + ("" if np.isnan(ci) else f" ± {ci:.2f}")

    lines = [
        "# Learned hashing vs LSH and the trivial hash (synthetic, seeded)",
        "",
        f"Command: `{record['command']}`  ",
        f"Data: {args.queries:,} queries x {args.database:,} database, 768-d clustered embeddings (30 classes, "
        "seed 0); mAP@20 x100 as the paper computes it, relevance = same class; L1 on floats, Hamming on codes, "
        f"ties by lower row. Seeded methods: mean ± 95% CI over seeds {paper_seeds(args.seeds)}.",
        "",
        f"Float embedding (L1): {cell(reference['none'])}; binary embedding (768 bits): {cell(reference['binary'])}.",
        "",
        "| bits | trivial | LSH | PCA-sign | ITQ |",
        "|---|---|---|---|---|",
    ]
    for bits, entry in results.items():
        if bits == "none+binary":
            continue
        lines.append(
            f"| {bits} | {cell(entry['trivial'])} | {cell(entry['lsh'])} | {cell(entry['pca'])} | {cell(entry['itq'])} |"
        )
    lines += [
        "",
        "PCA-sign gets worse from 32 to 64 bits: its trailing principal directions carry little variance, "
        "so their sign bits are mostly noise (a known weakness); ITQ's learnt rotation spreads the variance "
        "over all bits and keeps improving.",
        "",
        "The ordering at 32 bits (ITQ > LSH, ITQ > trivial) is asserted, on a smaller draw of the same "
        "generator, by `tests/test_hashing.py::test_learned_hashing_beats_lsh_and_trivial_at_32_bits`.",
    ]
    (args.out / "hashing_synthetic.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
