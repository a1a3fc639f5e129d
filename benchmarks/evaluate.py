"""Full-size BigEarthNet evaluation search: rsir's exact engine vs the official way, in one process.

Seeded synthetic data at the size of BigEarthNet's evaluation (123,723 val queries x 125,866 test
database, 768-d float32 embeddings, top 20): clustered embeddings, their 32-bit trivial-hash codes
and their 768-bit binary codes (realistic tie structure). Timed:

- rsir: ``ExactIndex(distance, device).search(queries, 20)`` (strategy ``auto``) on every query for
  the codes and for L1 on the floats (the paper's distance); l2, cosine and dot on every query on
  CUDA, on a sample of queries (scaled up) on the CPU, where they are BLAS-bound matrix products of
  minutes;
- the official way (IBM/remote-sensing-image-retrieval): per block of 100 queries
  ``-torch.cdist(q.float(), db.float(), p=1)`` then ``topk(20)``, codes as 0/1 floats; on a
  sample of queries, scaled up to the full query count.

Both compute the same distances: the script checks that the top-20 distances agree on the sample.
Peak memory: the process's peak resident set during each rsir search (``VmHWM``, reset before each
run), and on CUDA ``torch.cuda.max_memory_allocated``.

Run:  .venv/bin/python benchmarks/evaluate.py [--device cpu|cuda]
It updates benchmarks/results/evaluate.json (one entry per device) and evaluate.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rsir_cli.devices import resolve_device  # noqa: E402
from rsir_cli.hashing import make_hasher  # noqa: E402
from rsir_cli.search.exact import ExactIndex  # noqa: E402

QUERIES, DATABASE, DIM, K = 123_723, 125_866, 768, 20


def synthetic(n: int, centres: np.ndarray, rng: np.random.Generator, block: int = 16384) -> np.ndarray:
    """Clustered float32 embeddings: a centre plus Gaussian noise, generated in blocks (bounded memory)."""
    out = np.empty((n, centres.shape[1]), dtype=np.float32)
    for start in range(0, n, block):
        stop = min(n, start + block)
        labels = rng.integers(0, len(centres), stop - start)
        out[start:stop] = centres[labels] + rng.standard_normal((stop - start, centres.shape[1]), dtype=np.float32)
    return out


def peak_rss_reset() -> None:
    """Reset the kernel's peak-RSS mark of this process (Linux), so VmHWM measures what follows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_gb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def time_rsir(distance: str, database: np.ndarray, queries: np.ndarray, device: str) -> dict[str, Any]:
    import torch

    on_cuda = device != "cpu"
    if on_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    peak_rss_reset()
    began = time.perf_counter()
    index = ExactIndex(distance, device)
    index.add(database)
    result = index.search(queries, K)
    if on_cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    entry = {"seconds": seconds, "queries": len(queries), "peak_rss_gb": peak_rss_gb()}
    entry["strategy"] = index.strategy_for(queries)
    if on_cuda:
        entry["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 1024**3
    entry["_result"] = result
    return entry


def time_faiss(distance: str, database: np.ndarray, queries: np.ndarray) -> dict[str, Any]:
    """The CPU engine before its numba kernels, its ``cpu-tiles`` strategy (still what ``auto`` runs
    for a few queries / non-finite vectors): faiss's IndexBinaryFlat for Hamming, faiss's L1 on tiles
    for floats."""
    began = time.perf_counter()
    index = ExactIndex(distance, "cpu", strategy="cpu-tiles")
    index.add(database)
    result = index.search(queries, K)
    return {"seconds": time.perf_counter() - began, "queries": len(queries), "_distances": result.distances}


def time_official(database: np.ndarray, queries: np.ndarray, device: str) -> dict[str, Any]:
    """The official loop: -cdist(p=1) per 100 queries, then topk(20, sorted=True)."""
    import torch

    db = torch.from_numpy(database).float().to(device)
    q = torch.from_numpy(queries).float().to(device)
    distances = []
    if device != "cpu":
        torch.cuda.synchronize()
    began = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(q), 100):
            similarity = -torch.cdist(q[start : start + 100], db, p=1)
            values, _ = similarity.topk(K, sorted=True)
            distances.append((-values).cpu())
    if device != "cpu":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "queries": len(queries), "_distances": torch.cat(distances).double().numpy()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--queries", type=int, default=QUERIES)
    parser.add_argument("--database", type=int, default=DATABASE)
    parser.add_argument("--float-sample", type=int, default=None, help="CPU l2/cosine/dot queries timed (default 4000)")
    parser.add_argument("--official-sample", type=int, default=None, help="queries timed the official way")
    parser.add_argument("--cases", default="", help="comma list of case names to (re)run, e.g. '32-bit codes'")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--markdown-only", action="store_true", help="rewrite evaluate.md from evaluate.json")
    args = parser.parse_args()
    if args.markdown_only:
        (args.out / "evaluate.md").write_text(_markdown(json.loads((args.out / "evaluate.json").read_text())))
        return
    device = resolve_device(args.device)
    on_cuda = device != "cpu"
    import torch

    load_before = os.getloadavg()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((200, DIM), dtype=np.float32) * 1.5 + 0.3
    began = time.perf_counter()
    queries = synthetic(args.queries, centres, rng)
    database = synthetic(args.database, centres, rng)
    codes = {}
    for name, hasher in (
        ("32-bit codes", make_hasher("trivial", 32, None, DIM)),
        ("768-bit codes", make_hasher("binary", None, None, DIM)),
    ):
        codes[name] = (hasher.transform(database), hasher.transform(queries), hasher.bits)
    print(f"data: {args.queries:,} x {args.database:,}, {time.perf_counter() - began:.1f} s", file=sys.stderr)

    # warm-up (library loading, thread pools, CUDA context, the CPU kernels' compilation or cache)
    for name in ("32-bit codes", "768-bit codes"):
        warm = ExactIndex("hamming", device)
        warm.add(codes[name][0][:1000])
        warm.search(codes[name][1][:100], K)
    warm_f = ExactIndex("l1", device)
    warm_f.add(database[:1000])
    warm_f.search(queries[:300], K)

    runs: dict[str, dict[str, Any]] = {}
    official_sample = args.official_sample or (20_000 if on_cuda else 500)
    sample_rows = np.sort(rng.choice(args.queries, size=min(args.queries, official_sample), replace=False))
    # the official way on 32-bit codes is cheap: a larger CPU sample steadies its timing
    small_sample = np.sort(rng.choice(args.queries, size=min(args.queries, 4 * official_sample), replace=False))
    cases = [
        ("32-bit codes", "hamming", codes["32-bit codes"][0], codes["32-bit codes"][1], None),
        ("768-bit codes", "hamming", codes["768-bit codes"][0], codes["768-bit codes"][1], None),
    ]
    float_sample = args.float_sample
    for distance in ("l1", "l2", "cosine", "dot"):
        sample = None if on_cuda or distance == "l1" else (float_sample or 4000)
        cases.append((f"768-d floats {distance}", distance, database, queries, sample))
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    for name, distance, db, q, sample in cases:
        if wanted and name not in wanted:
            continue
        load = os.getloadavg()[0]
        rows = slice(None) if sample is None else np.sort(rng.choice(len(q), size=sample, replace=False))
        entry = time_rsir(distance, db, q[rows], device)
        result = entry.pop("_result")
        scale = args.queries / entry["queries"]
        entry["full_seconds"] = entry["seconds"] * scale
        entry["scaled"] = scale != 1
        entry["distance"] = distance
        entry["load_average_1min_at_start"] = load
        entry["command"] = "python benchmarks/evaluate.py " + " ".join(sys.argv[1:])
        entry["engine"] = {"cpu-kernels": "numba kernels"}.get(entry["strategy"], entry["strategy"])
        if not on_cuda and distance in ("hamming", "l1"):  # the previous CPU engine, same process
            faiss_rows = small_sample if distance == "hamming" else sample_rows
            faiss_run = time_faiss(distance, db, q[faiss_rows] if sample is None else q[rows[: len(faiss_rows)]])
            faiss_distances = faiss_run.pop("_distances")
            ours_sample = result.distances[faiss_rows] if sample is None else result.distances[: len(faiss_rows)]
            faiss_run["agrees"] = bool(np.allclose(ours_sample, faiss_distances, rtol=1e-6, atol=1e-4))
            faiss_run["full_seconds"] = faiss_run["seconds"] * args.queries / faiss_run["queries"]
            entry["faiss"] = faiss_run
            entry["speedup_vs_faiss"] = faiss_run["full_seconds"] / entry["full_seconds"]
        # Official way on the sample, where it applies (L1 on floats, L1 = Hamming on 0/1 codes).
        if distance in ("hamming", "l1"):
            official_db = np.unpackbits(db, axis=1) if distance == "hamming" else db
            official_q = np.unpackbits(q, axis=1) if distance == "hamming" else q
            if sample is None:
                shared = small_sample if name == "32-bit codes" and not on_cuda else sample_rows
                ours = result.distances[shared]
            else:  # the first queries of rsir's own sample (result row i is query rows[i])
                shared = rows[:official_sample]
                ours = result.distances[: len(shared)]
            official = time_official(official_db, official_q[shared], device)
            official_distances = official.pop("_distances")
            entry["agrees_with_official"] = bool(np.allclose(ours, official_distances, rtol=1e-5, atol=1e-3))
            official["full_seconds"] = official["seconds"] * args.queries / official["queries"]
            entry["official"] = official
            entry["speedup"] = official["full_seconds"] / entry["full_seconds"]
        runs[name] = entry
        print(name, json.dumps(entry), file=sys.stderr)

    record = {
        "command": "python benchmarks/evaluate.py " + " ".join(sys.argv[1:]),
        "machine": _machine(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "queries": args.queries,
        "database": args.database,
        "k": K,
        "peak_rss_gb_process": peak_rss_gb(),
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "evaluate.json"
    existing = json.loads(path.read_text()) if path.exists() else {}
    key = "cuda" if on_cuda else "cpu"
    # Every timing of every case is kept (the machine may be shared: each carries its load).
    history = existing.get(key, {}).get("history", {}) if wanted else {}
    for name, run in runs.items():
        history.setdefault(name, []).append(
            {
                "full_seconds": run["full_seconds"],
                "load": run["load_average_1min_at_start"],
                "at": time.strftime("%H:%M"),
                "engine": run["engine"],
            }
        )
    record["history"] = history
    if wanted and key in existing:  # a partial rerun replaces only its own cases
        record["runs"] = {**existing[key]["runs"], **runs}
        record["command"] = existing[key]["command"] + "; then " + record["command"]
    existing[key] = record
    path.write_text(json.dumps(existing, indent=2) + "\n")
    (args.out / "evaluate.md").write_text(_markdown(existing))
    print(_markdown(existing))


def _machine(device: str) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores"
    if device != "cpu":
        text += f"; {torch.cuda.get_device_name(device)}"
    return text


def _markdown(records: dict[str, Any]) -> str:
    lines = [
        "# Full-size evaluation search: rsir exact engine vs the official way",
        "",
        f"{QUERIES:,} queries x {DATABASE:,} database (BigEarthNet val x test), top {K}, seeded clustered "
        "synthetic embeddings (768-d float32), their 32-bit trivial-hash and 768-bit binary codes. "
        "The official way: per 100 queries `-torch.cdist(q, db, p=1)` then `topk(20)` (codes as 0/1 floats), "
        "timed on a sample of queries and scaled to the full query count. 'scaled' rsir rows were timed on a "
        "sample of queries too (the CPU float runs); the others on all queries. Ties: rsir orders by "
        "(distance, lower row); top-20 distances agree with the official way on the sample.",
        "",
        "Notes:",
        "",
        "- The CPU machine has 2 cores shared with other jobs; 'load' is the 1-minute load average when a case "
        "started. faiss's OpenMP threads slow down sharply when the cores are oversubscribed (32-bit codes: "
        "12.5 s at load 1.65, 46.9 s at load 2.33).",
        "- CPU Hamming and L1 run the numba kernels of `rsir_cli/search/kernels.py` since 0.2.0; the 'faiss' "
        "column times the engine's previous path (faiss-cpu `IndexBinaryFlat`; faiss's L1 on tiles) on a "
        "sample of the same queries in the same process. faiss has specialised popcount loops only for "
        "4-64-byte codes; 768-bit codes (96 bytes) take its generic loop.",
        "- The L1 kernel ranks float64 sums rounded to float32 (faiss: float32 sums), so a few top-20 "
        "distances differ from faiss's in the last float32 bits; 'agree' allows for that (rtol 1e-6).",
        "- Exact 768-d float search is compute bound on 2 AVX2 cores: 1.56e10 pairs x 768 dims. l2/cosine/dot "
        "are BLAS matrix products (about 2.4e13 flop; sgemm runs at 70-90 GFLOP/s here, so about 5 minutes "
        "at best); l1 has no matrix-product form: the kernel bounds every pair with a 768-byte "
        "sum of absolute differences (psadbw) on uint8 codes and computes exact distances for the "
        "candidates only.",
        "",
    ]
    for device, record in records.items():
        lines += [
            f"## {device.upper()}: {record['machine']}",
            "",
            f"Command: `{record['command']}`; torch {record['torch']}, {record['threads']} threads; "
            f"load average before {record['load_average_before'][0]:.2f}, after {record['load_average_after'][0]:.2f}; "
            f"process peak RSS {record['peak_rss_gb_process']:.2f} GB (includes the data).",
            "",
            "| case | rsir (full size) | timed on | peak RSS GB | faiss (scaled) | vs faiss "
            "| official way (scaled) | speed-up | agree | load |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, run in record["runs"].items():
            official = run.get("official")
            gpu = f" / GPU {run['peak_gpu_gb']:.2f}" if "peak_gpu_gb" in run else ""
            lines.append(
                f"| {name} | {run['full_seconds']:.2f} s{' (scaled)' if run['scaled'] else ''} | "
                f"{run['queries']:,} queries | {run['peak_rss_gb']:.2f}{gpu} | "
                + (
                    f"{run['faiss']['full_seconds']:.1f} s ({run['faiss']['queries']:,} queries"
                    f"{'' if run['faiss']['agrees'] else ', DISAGREES'}) | {run['speedup_vs_faiss']:.1f}x | "
                    if "faiss" in run
                    else "- | - | "
                )
                + (
                    f"{official['full_seconds']:.1f} s ({official['queries']:,} queries) | {run['speedup']:.1f}x | "
                    f"{'yes' if run['agrees_with_official'] else 'NO'} |"
                    if official
                    else "- | - | - |"
                )
                + f" {run.get('load_average_1min_at_start', float('nan')):.2f} |"
            )
        repeated = {name: runs for name, runs in record.get("history", {}).items() if len(runs) > 1}
        if repeated:
            lines += ["", "All timings of repeated cases (rsir, full size; 1-minute load average at the start):", ""]
            for name, runs in repeated.items():
                timings = ", ".join(
                    f"{r['full_seconds']:.1f} s ({r.get('engine', 'before 0.2.0')}, load {r['load']:.2f}, {r['at']})"
                    for r in runs
                )
                lines.append(f"- {name}: {timings}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
