"""Record `rsir bench-milvus` (the paper's Milvus speed experiment) on Milvus Lite and on a local server.

    .venv/bin/python benchmarks/bench_milvus.py --target lite
    .venv/bin/python benchmarks/bench_milvus.py --target server     # needs `unshare -n` (root)

Each target writes ``benchmarks/results/bench_milvus_<target>.json`` (the command's ``--json``
document plus the exact command and the machine's load before and after) and a Markdown summary
``bench_milvus_<target>.md``. The server is the PyPI package ``milvus``, started in a private
network namespace by ``python -m rsir_cli.milvus_server`` and stopped by its process id.
Every Milvus row is set against the exact engine's row, run in the same process on the same data.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RSIR = str(Path(sys.executable).parent / "rsir")


def _load() -> str:
    """The 1, 5 and 15 minute load averages."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _command(target: str, args: argparse.Namespace, scratch: Path) -> list[str]:
    bench = [
        RSIR, "bench-milvus", "--seeded", "--sizes", args.sizes, "--queries", str(args.queries), "--k", str(args.k),
        "--store", str(scratch / "store"), "--json",
    ]  # fmt: skip
    if target == "lite":
        return bench
    server = [
        "unshare", "-n", sys.executable, "-m", "rsir_cli.milvus_server", "--data", str(scratch / "milvus"), "--",
    ]  # fmt: skip
    return server + [*bench, "--uri", "http://127.0.0.1:19530"]


def _markdown(target: str, document: dict, command: list[str], load: dict[str, str]) -> str:
    settings, rows = document["settings"], document["rows"]
    exact = {(r["size"], r["vectors"]): r for r in rows if r["engine"] == "exact"}
    lines = [
        f"# rsir bench-milvus on {settings['milvus']}",
        "",
        f"- Data: {settings['data']}",
        f"- {settings['queries']} queries, top {settings['k']}, sizes {', '.join(f'{s:,}' for s in settings['sizes'])}; "
        f"IVF nlist {settings['nlist']}, nprobe {settings['nprobe']}; batched: {settings['batch']} queries per call",
        f"- Machine: {settings['machine']}, Python {settings['python']}, pymilvus {settings['pymilvus']}; "
        f"load average before {load['before']}, after {load['after']} (2 cores shared with other work)",
        f"- Started {settings['started']}, {settings['seconds']} s in all",
        *(f"- Note: {note}" for note in settings["notes"]),
        "",
        "Command (from the repository root; paths are temporary folders):",
        "",
        "```",
        " ".join(shlex.quote(part.replace(str(REPO) + "/", "")) for part in command),
        "```",
        "",
        "| size | vectors | engine | index | insert s | index s | mean ms | p50 ms | p95 ms | p99 ms "
        "| latency vs exact | batched q/s | recall@k | memory MB |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        base = exact.get((row["size"], row["vectors"]))
        ratio = f"{row['mean_ms'] / base['mean_ms']:.2f}x" if base and base["mean_ms"] else "-"
        memory = "-" if row["memory_mb"] is None else f"{row['memory_mb']:,.0f}"
        lines.append(
            f"| {row['size']:,} | {row['vectors']} | {row['engine']} | {row['index']}"
            f"{' *' if row['note'] else ''} | {row['insert_s']:.2f} | {row['index_s']:.2f} | {row['mean_ms']:.3f} "
            f"| {row['p50_ms']:.3f} | {row['p95_ms']:.3f} | {row['p99_ms']:.3f} | {ratio} "
            f"| {row['throughput_qps']:,.0f} | {row['recall']:.4f} | {memory} |"
        )
    fallbacks = sorted({row["note"] for row in rows if row["note"]})
    lines += [
        "",
        *(f"\\* {note}" for note in fallbacks),
        "",
        f"Recall: {settings['recall']}. Memory: {settings['memory']}. Exact: {settings.get('exact', 'in process')}.",
        "Latency vs exact: Milvus mean single-query latency over the exact engine's, same data, same process.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=("lite", "server", "both"), default="both")
    parser.add_argument("--sizes", default="10000,50000,100000")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--render", action="store_true", help="only rewrite the .md files from the recorded .json")
    args = parser.parse_args()
    if args.render:
        for target in ("lite", "server") if args.target == "both" else (args.target,):
            document = json.loads((args.out / f"bench_milvus_{target}.json").read_text())
            command = shlex.split(document["command"])
            (args.out / f"bench_milvus_{target}.md").write_text(
                _markdown(target, document, command, document["load_average"])
            )
        return 0
    for target in ("lite", "server") if args.target == "both" else (args.target,):
        with tempfile.TemporaryDirectory(prefix="rsir-bench-milvus-") as scratch:
            command = _command(target, args, Path(scratch))
            load = {"before": _load()}
            began = time.time()
            result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=dict(os.environ))
            load["after"] = _load()
            if result.returncode != 0:
                sys.stderr.write(result.stderr[-4000:])
                return result.returncode
        document = json.loads(result.stdout)
        document["command"] = " ".join(shlex.quote(part) for part in command)
        document["load_average"] = load
        document["wall_seconds"] = round(time.time() - began, 1)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"bench_milvus_{target}.json").write_text(json.dumps(document, indent=2) + "\n")
        (args.out / f"bench_milvus_{target}.md").write_text(_markdown(target, document, command, load))
        sys.stderr.write(f"wrote {args.out}/bench_milvus_{target}.json and .md\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
