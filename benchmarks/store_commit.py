"""The crash-consistent store against the old in-place one, in one run: embed throughput and reading.

Two commits are exported with ``git archive`` (the repository is only read) and the same driver
runs in each, alternately (A B B A ...), so both see the same machine load:

- ``embed``: `rsir embed`'s library path (``embed_split``) on generated BigEarthNet patches with
  the test suite's fake encoder (so that the store's share of the time is as large as it gets on
  this CPU) and with Prithvi-100M (random weights; the realistic case), images/s;
- ``read``: a complete 125,866 x 768 split (BigEarthNet's test split size), written through each
  commit's own writer, then opened and read whole (embeddings, ids, labels), seconds.

    python benchmarks/store_commit.py --baseline ac0ce67 [--candidate HEAD] [--rounds 2]

Appends to benchmarks/results/store_commit.json and rewrites store_commit.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"

DRIVER = r"""
import json, os, sys, tempfile, time, shutil
from pathlib import Path
import numpy as np
sys.path.insert(0, os.getcwd())
import tests.plugins.fake_encoder  # noqa: F401
from rsir_cli.datasets import open_split
from rsir_cli.embedding import EmbedOptions, embed_split
from rsir_cli.models import build_encoder, get_model_config
from rsir_cli.store import EmbeddingStore

case, data, patches = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
out = {}
if case == "embed":
    reader = open_split("bigearthnet", "test", data)
    for model, limit in (("fake", patches), ("prithvi", 64)):
        encoder = build_encoder(get_model_config(model), None, True)
        root = Path(tempfile.mkdtemp(prefix="rsir-bench-"))
        try:
            options = EmbedOptions(device="cpu", batch_size=32, workers=1, limit=limit)
            began = time.perf_counter()
            result = embed_split(EmbeddingStore(root), encoder, reader, options)
            out[model] = result.rows / (time.perf_counter() - began)
        finally:
            shutil.rmtree(root, ignore_errors=True)
else:
    rows, dim = 125866, 768
    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((rows, dim), dtype=np.float32)
    ids = [f"S2A_MSIL2A_20170613T101031_{i // 100}_{i % 100}" for i in range(rows)]
    labels = (rng.random((rows, 43)) < 0.1).astype(np.uint8)
    root = Path(tempfile.mkdtemp(prefix="rsir-bench-"))
    try:
        store = EmbeddingStore(root)
        began = time.perf_counter()
        writer = store.writer("m", "d", "test", attrs={"label_names": [str(i) for i in range(43)]}, dim=dim,
                              n_labels=43, rows_expected=rows)
        for start in range(0, rows, 8192):
            writer.append(embeddings[start:start + 8192], ids[start:start + 8192], labels[start:start + 8192])
        writer.finish()
        out["write_s"] = time.perf_counter() - began
        began = time.perf_counter()
        data = EmbeddingStore(root).read("m", "d", "test")
        out["read_s"] = time.perf_counter() - began
        assert data.embeddings.shape == (rows, dim) and data.ids[-1] == ids[-1]
    finally:
        shutil.rmtree(root, ignore_errors=True)
print(json.dumps(out))
"""


def export(revision: str, folder: Path) -> str:
    commit = subprocess.run(["git", "rev-parse", revision], cwd=REPO, capture_output=True, text=True, check=True)
    archive = subprocess.run(["git", "archive", "--format=tar", revision], cwd=REPO, capture_output=True, check=True)
    folder.mkdir(parents=True)
    with tarfile.open(fileobj=__import__("io").BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")  # our own repository's tree
    return commit.stdout.strip()


def run(tree: Path, case: str, data: Path, patches: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "RSIR_PLUGINS": "tests.plugins.fake_encoder"}
    done = subprocess.run([sys.executable, "-c", DRIVER, case, str(data), str(patches)], cwd=tree, env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--candidate", default="HEAD")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--patches", type=int, default=1024)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from tests import fakedata

    with tempfile.TemporaryDirectory(prefix="rsir-store-bench-") as tmp:
        work = Path(tmp)
        trees = {"baseline": work / "a", "candidate": work / "b"}
        commits = {
            name: export(rev, trees[name]) for name, rev in (("baseline", args.baseline), ("candidate", args.candidate))
        }
        data = work / "ben"
        fakedata.make_bigearthnet(data, {"test": args.patches})
        samples: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
        order = ["baseline", "candidate"]
        for round_number in range(args.rounds):
            for name in order if round_number % 2 == 0 else order[::-1]:
                for case in ("embed", "read"):
                    for key, value in run(trees[name], case, data, args.patches).items():
                        samples[name].setdefault(key, []).append(value)
        medians = {name: {k: statistics.median(v) for k, v in values.items()} for name, values in samples.items()}
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_average": os.getloadavg()[0],
        "commits": commits,
        "patches": args.patches,
        "rounds": args.rounds,
        "median": medians,
        "ratio_candidate_over_baseline": {
            k: medians["candidate"][k] / medians["baseline"][k] for k in medians["baseline"]
        },
    }
    path = RESULTS / "store_commit.json"
    history = json.loads(path.read_text()) if path.exists() else []
    history.append(record)
    path.write_text(json.dumps(history, indent=1) + "\n")
    lines = ["# Store commit protocol: speed (benchmarks/store_commit.py)", "",
             "embed: images/s (`embed_split`, CPU, batch 32, 1 loader worker; fake encoder / Prithvi-100M random, 64 images); "
             "read/write: seconds for a 125,866 x 768 split. Medians of alternating rounds.", "",
             "| date | load | baseline | candidate | fake img/s | prithvi img/s | write s | read s |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in history:
        b, c = r["median"]["baseline"], r["median"]["candidate"]
        lines.append(
            f"| {r['date']} | {r['load_average']:.1f} | {r['commits']['baseline'][:7]} | {r['commits']['candidate'][:7]} | "
            f"{b['fake']:.0f} -> {c['fake']:.0f} ({c['fake'] / b['fake']:.2f}x) | {b['prithvi']:.2f} -> {c['prithvi']:.2f} "
            f"({c['prithvi'] / b['prithvi']:.2f}x) | {b['write_s']:.2f} -> {c['write_s']:.2f} | {b['read_s']:.2f} -> {c['read_s']:.2f} |"
        )
    (RESULTS / "store_commit.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
