"""Two commits' search benchmarks in one run: is a refactoring's speed unchanged within noise?

Each commit is exported with ``git archive`` into a temporary folder (the repository is only
read), and its own scripts run there, alternately (A B, then B A, ...), so both see the same
machine load:

- ``benchmarks/search.py --skip-encoder``: one query against 125,866 vectors (median ms of
  768-d L1, 768-d L2, 32-bit Hamming, and 32-bit Hamming with faiss on one thread);
- ``benchmarks/evaluate.py --device cpu --cases CASE`` (default the 32-bit codes case): the
  full-size evaluation search (123,723 x 125,866, top 20), rsir's time, its faiss path (sampled)
  and the official way (sampled).

    python benchmarks/same_run.py --baseline ac0ce67 [--candidate HEAD] [--rounds 2]

Every run is appended to benchmarks/results/same_run.json (nothing is erased) and same_run.md is
rewritten from it. The 1-minute load average at the start of each script is recorded: on a
shared machine, compare runs made under similar load.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SEARCH_CASES = ("float768_l1", "float768_l2", "trivial32_hamming", "trivial32_hamming_faiss_1_thread")


def export(revision: str, folder: Path) -> str:
    """Write the tree of ``revision`` into ``folder``; returns the full commit id."""
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{revision}^{{commit}}"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=REPO, capture_output=True, check=True)
    folder.mkdir(parents=True)
    archive_path = folder.parent / f"{folder.name}.tar"
    archive_path.write_bytes(archive.stdout)
    with tarfile.open(archive_path) as tar:
        tar.extractall(folder, filter="data")
    archive_path.unlink()
    return commit


def run_script(root: Path, args: list[str], out: Path) -> dict[str, Any]:
    """Run one benchmark script of the tree at ``root``; returns its load at start and seconds."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    load = os.getloadavg()[0]
    began = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed in {root}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return {"load": round(load, 2), "seconds": round(time.perf_counter() - began, 1), "out": str(out)}


# --quick: a check that the script works, at sizes too small to mean anything
QUICK_SEARCH = ["--float-queries", "5", "--l2-queries", "3", "--code-queries", "20", "--baseline-queries", "2",
                "--read-repeats", "3"]  # fmt: skip
QUICK_EVALUATE = ["--queries", "2000", "--database", "3000", "--official-sample", "100"]


def measure(root: Path, work: Path, case: str, quick: bool = False) -> dict[str, Any]:
    """Both scripts once on the tree at ``root``."""
    work.mkdir(parents=True)
    search_out = work / "search.json"
    search_args = ["benchmarks/search.py", "--skip-encoder", "--out", str(search_out), *(QUICK_SEARCH if quick else [])]
    search_run = run_script(root, search_args, search_out)
    query = json.loads(search_out.read_text())["query"]
    evaluate_args = ["benchmarks/evaluate.py", "--device", "cpu", "--cases", case, "--out", str(work)]
    evaluate_run = run_script(root, evaluate_args + (QUICK_EVALUATE if quick else []), work)
    entry = json.loads((work / "evaluate.json").read_text())["cpu"]["runs"][case]
    return {
        "search_load": search_run["load"],
        "search_median_ms": {name: query[name]["rsir"]["median_ms"] for name in SEARCH_CASES},
        "search_same_top_k": all(query[name].get("same_top_k_as_brute_force", True) for name in SEARCH_CASES),
        "evaluate_load": evaluate_run["load"],
        "evaluate_s": {
            "rsir": round(entry["full_seconds"], 3),
            "faiss_scaled": round(entry["faiss"]["full_seconds"], 2) if "faiss" in entry else None,
            "official_scaled": round(entry["official"]["full_seconds"], 2) if "official" in entry else None,
        },
        "evaluate_agrees_with_official": entry.get("agrees_with_official"),
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds of one commit."""
    return {
        "search_median_ms": {
            name: statistics.median(r["search_median_ms"][name] for r in runs) for name in SEARCH_CASES
        },
        "evaluate_s": {
            key: statistics.median(r["evaluate_s"][key] for r in runs if r["evaluate_s"][key] is not None)
            for key in ("rsir", "faiss_scaled", "official_scaled")
            if any(r["evaluate_s"][key] is not None for r in runs)
        },
    }


def markdown(history: list[dict[str, Any]]) -> str:
    lines = [
        "# Two commits in one run (benchmarks/same_run.py)",
        "",
        "Each row: the median over the rounds of one commit's own `benchmarks/search.py --skip-encoder` "
        "(one query against 125,866 vectors, median ms) and `benchmarks/evaluate.py --device cpu --cases CASE` "
        "(full-size evaluation search, seconds; faiss and official scaled from samples), the two commits "
        "run alternately in the same session. Loads are 1-minute load averages at the start of each script.",
        "",
    ]
    for record in history:
        lines += [
            f"## {record['at']}: {record['label'] or 'comparison'}",
            "",
            f"Command: `{record['command']}`; machine: {record['machine']}; evaluate case: {record['case']}.",
            "",
            "| commit | L1 ms | L2 ms | Hamming-32 ms | Hamming-32 faiss 1 thread ms | evaluate rsir s "
            "| faiss s | official s | loads (search / evaluate) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for side in ("baseline", "candidate"):
            info = record[side]
            med = info["summary"]
            s, e = med["search_median_ms"], med["evaluate_s"]
            loads = ", ".join(f"{r['search_load']:.2f} / {r['evaluate_load']:.2f}" for r in info["runs"])
            lines.append(
                f"| {side} {info['commit'][:10]} | {s['float768_l1']:.2f} | {s['float768_l2']:.2f} | "
                f"{s['trivial32_hamming']:.3f} | {s['trivial32_hamming_faiss_1_thread']:.3f} | {e['rsir']:.2f} | "
                f"{e.get('faiss_scaled', float('nan')):.1f} | {e.get('official_scaled', float('nan')):.1f} | {loads} |"
            )
        base, cand = record["baseline"]["summary"], record["candidate"]["summary"]
        ratios = [
            f"{name}: {cand['search_median_ms'][name] / base['search_median_ms'][name]:.2f}" for name in SEARCH_CASES
        ]
        ratios.append(f"evaluate rsir: {cand['evaluate_s']['rsir'] / base['evaluate_s']['rsir']:.2f}")
        lines += ["", "Candidate / baseline: " + "; ".join(ratios) + ".", ""]
        if record.get("note"):
            lines += [record["note"], ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="the commit to compare with (e.g. the parent of a change)")
    parser.add_argument("--candidate", default="HEAD")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--case", default="32-bit codes", help="the evaluate.py case")
    parser.add_argument("--label", default="", help="what the comparison is about")
    parser.add_argument("--note", default="", help="a sentence recorded below the table")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "same_run.json")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check that the script runs")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    with tempfile.TemporaryDirectory(prefix="rsir-same-run-") as scratch:
        trees = {}
        for side, revision in (("baseline", args.baseline), ("candidate", args.candidate)):
            trees[side] = (Path(scratch) / side, export(revision, Path(scratch) / side))
        runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "candidate": []}
        for round_ in range(args.rounds):
            order = ("baseline", "candidate") if round_ % 2 == 0 else ("candidate", "baseline")
            for side in order:
                root, _ = trees[side]
                result = measure(root, Path(scratch) / f"{side}-{round_}", args.case, args.quick)
                runs[side].append(result)
                print(side, round_, json.dumps(result), file=sys.stderr, flush=True)
    record = {
        "at": started,
        "label": args.label,
        "note": args.note,
        "command": "python benchmarks/same_run.py " + shlex.join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end",
        "case": args.case,
        **{
            side: {"revision": rev, "commit": trees[side][1], "runs": runs[side], "summary": summary(runs[side])}
            for side, rev in (("baseline", args.baseline), ("candidate", args.candidate))
        },
    }
    history = json.loads(args.out.read_text()) if args.out.exists() else []
    history.append(record)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(history, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(history) + "\n")
    print(markdown([record]))


if __name__ == "__main__":
    main()
