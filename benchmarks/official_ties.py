"""How much the official code's tie order and torchmetrics version move mAP@20: facts for the README.

A seeded simulation (2,000 queries x 20,000 items, 768-d clustered embeddings, multi-labels from the
clusters), hashed with the trivial hash and LSH at 32 bits, ranked by Hamming distance two ways:

- rsir: (distance, lower row) -- deterministic;
- the official code's way: ``torch.topk`` of the negated distances, whose order among equal
  distances is the implementation's.

Both rankings are scored with rsir's metric (AP@k as torchmetrics computes it from the top k), and
the official ranking also with torchmetrics' ``RetrievalMAP(top_k=20)`` fed as the official code
feeds it (scores = negative distances), under the installed torchmetrics and under 1.3.2 (fetched
with ``pip download --no-deps`` into a cache, loaded by path in a subprocess).

    python benchmarks/official_ties.py      # writes benchmarks/results/official_ties.{json,md}
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
K = 20

SCORE = r"""
import sys, json, numpy as np, torch
sys.path.insert(0, sys.argv[1]) if sys.argv[1] else None
import torchmetrics
data = np.load(sys.argv[2])
scores, relevant = torch.from_numpy(data["scores"]), torch.from_numpy(data["relevant"])
queries = torch.arange(scores.shape[0])[:, None].expand_as(scores)
metric = torchmetrics.retrieval.RetrievalMAP(top_k=int(sys.argv[3]))
value = metric(scores.reshape(-1), relevant.reshape(-1), indexes=queries.reshape(-1)).item()
print(json.dumps({"torchmetrics": torchmetrics.__version__, "map": value}))
"""


def simulate(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, 768)) * 2

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        cluster = rng.integers(0, 40, n)
        embeddings = (centres[cluster] + rng.standard_normal((n, 768)) * 3).astype(np.float32)
        labels = np.zeros((n, 10), dtype=np.uint8)
        labels[np.arange(n), cluster % 10] = 1
        labels[np.arange(n), rng.integers(0, 10, n)] = 1
        return embeddings, labels

    q, q_labels = draw(2000)
    db, db_labels = draw(20000)
    return q, q_labels, db, db_labels


def main() -> None:
    import torch

    from rsir_cli import metrics
    from rsir_cli.hashing import make_hasher, unpack
    from rsir_cli.search.exact import exact_search

    q, q_labels, db, db_labels = simulate()
    totals = metrics.total_relevant(q_labels, db_labels, "any")
    cache = Path.home() / ".cache" / "rsir" / "test-data" / "torchmetrics-1.3.2"
    if not cache.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "torchmetrics==1.3.2", "-d", str(cache)],
                       check=True, capture_output=True)  # fmt: skip
    wheel = next(cache.glob("torchmetrics-1.3.2-*.whl"))
    report: dict = {"queries": len(q), "database": len(db), "k": K, "methods": {}}
    for method in ("trivial", "lsh"):
        hasher = make_hasher(method, 32, 42 if method == "lsh" else None, 768)
        q_codes, db_codes = hasher.transform(q), hasher.transform(db)
        rsir_rows = exact_search(db_codes, q_codes, K, "hamming").indices
        bits_q = torch.from_numpy(unpack(q_codes, 32).astype(np.float32))
        bits_db = torch.from_numpy(unpack(db_codes, 32).astype(np.float32))
        distances = torch.cdist(bits_q, bits_db, p=1)  # Hamming on 0/1 bits
        top = torch.topk(-distances, K, dim=1)  # the official way: ties in topk's order
        official_rows = top.indices.numpy()
        rsir_map = 100 * metrics.score_ranking(q_labels, db_labels, rsir_rows, "any", totals).to_dict()["map"]
        official_map = 100 * metrics.score_ranking(q_labels, db_labels, official_rows, "any", totals).to_dict()["map"]
        relevant = (q_labels[:, None, :] & db_labels[official_rows]).any(axis=2)
        scores_file = RESULTS.parent / f".scores-{method}.npz"
        np.savez(scores_file, scores=top.values.numpy().astype(np.float32), relevant=relevant)
        by_version = {}
        for path in ("", str(wheel)):
            done = subprocess.run([sys.executable, "-c", SCORE, path, str(scores_file), str(K)], capture_output=True,
                                  text=True, check=True)  # fmt: skip
            result = json.loads(done.stdout.strip().splitlines()[-1])
            by_version[result["torchmetrics"]] = 100 * result["map"]
        scores_file.unlink()
        report["methods"][method] = {
            "rsir_tie_order_map": rsir_map,
            "official_tie_order_map": official_map,
            "difference_points": abs(rsir_map - official_map),
            "official_scored_by_torchmetrics": by_version,
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "official_ties.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [
        "# Tie order and torchmetrics versions (benchmarks/official_ties.py)",
        "",
        f"Seeded simulation: {report['queries']:,} queries x {report['database']:,} items, 768-d, 32-bit codes, mAP@{K} x100.",
        "",
        "| method | rsir order | official order (torch.topk) | difference (points) | official, scored by torchmetrics |",
        "|---|---:|---:|---:|---|",
    ]
    for method, r in report["methods"].items():
        versions = ", ".join(f"{v}: {m:.2f}" for v, m in sorted(r["official_scored_by_torchmetrics"].items()))
        lines.append(
            f"| {method}-32 | {r['rsir_tie_order_map']:.2f} | {r['official_tie_order_map']:.2f} | "
            f"{r['difference_points']:.2f} | {versions} |"
        )
    (RESULTS / "official_ties.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
