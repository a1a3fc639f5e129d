"""rsir's own safe extraction against tarfile's ``extractall(filter="data")`` on a BigEarthNet-shaped archive.

The archive imitates BigEarthNet-S2 v1.0: one folder per patch holding 12 band GeoTIFF-sized files
(4 x 29,192 + 6 x 7,560 + 2 x 1,160 bytes, low-entropy uint16 noise that compresses like imagery)
and a 1 kB JSON, as ``.tar.gz`` and ``.tar.zst``. Each way is run alternately, ``--repeats`` times,
into fresh folders on the same disk; the table gives the medians and rsir's time as a ratio of the
baseline measured in the same run (tarfile's own filter is the code rsir replaced; for zstd the
baseline is ``zstandard``'s stream reader feeding tarfile).

Run:  .venv/bin/python benchmarks/extract.py [--patches 1000 --repeats 5 --dir /dev/shm]
(``--dir`` on a RAM disk measures the code, not a shared disk; the default is a folder in the repo.)
It writes benchmarks/results/extract.{json,md}.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rsir_cli.download import extract_archive  # noqa: E402

SIZES = [29_192] * 4 + [7_560] * 6 + [1_160] * 2
BANDS = ["B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12", "B01", "B09"]


def build_tar(patches: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        top = tarfile.TarInfo("BigEarthNet-v1.0")
        top.type = tarfile.DIRTYPE
        tar.addfile(top)
        for i in range(patches):
            name = f"S2A_MSIL2A_20170613T101031_{i // 100}_{i % 100}"
            folder = tarfile.TarInfo(f"BigEarthNet-v1.0/{name}")
            folder.type = tarfile.DIRTYPE
            tar.addfile(folder)
            for band, size in zip(BANDS, SIZES, strict=True):
                data = (rng.integers(0, 64, size // 2, dtype=np.uint16) + 900).tobytes()
                info = tarfile.TarInfo(f"BigEarthNet-v1.0/{name}/{name}_{band}.tif")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            meta = json.dumps({"labels": ["Pastures"], "patch": name}).encode().ljust(1000)
            info = tarfile.TarInfo(f"BigEarthNet-v1.0/{name}/{name}_labels_metadata.json")
            info.size = len(meta)
            tar.addfile(info, io.BytesIO(meta))
    return buffer.getvalue()


def baseline(archive: Path, target: Path, kind: str) -> None:
    if kind == "gz":
        with tarfile.open(archive, mode="r|gz") as tar:
            tar.extractall(target, filter="data")
    else:
        import zstandard

        with open(archive, "rb") as raw:
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                tar.extractall(target, filter="data")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=ROOT, help="where the archives are written and extracted")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rsir-extract-bench-", dir=args.dir))
    try:
        plain = build_tar(args.patches)
        import gzip

        import zstandard

        archives = {
            "gz": (work / "BigEarthNet-S2-v1.0.tar.gz", gzip.compress(plain, compresslevel=6)),
            "zst": (work / "BigEarthNet-S2.tar.zst", zstandard.ZstdCompressor(level=3).compress(plain)),
        }
        rows = []
        for kind, (path, data) in archives.items():
            path.write_bytes(data)
            times: dict[str, list[float]] = {"tarfile": [], "rsir": []}
            for repeat in range(args.repeats):
                for way in ("tarfile", "rsir"):
                    target = work / f"{kind}-{way}-{repeat}"
                    target.mkdir()
                    started = time.perf_counter()
                    if way == "tarfile":
                        baseline(path, target, kind)
                    else:
                        extract_archive(path, target, ["BigEarthNet-v1.0"])
                    times[way].append(time.perf_counter() - started)
                    shutil.rmtree(target)
            base, ours = statistics.median(times["tarfile"]), statistics.median(times["rsir"])
            rows.append(
                {
                    "archive": path.name,
                    "files": args.patches * 13,
                    "uncompressed_bytes": len(plain),
                    "archive_bytes": len(data),
                    "tarfile_s": round(base, 3),
                    "rsir_s": round(ours, 3),
                    "rsir_over_tarfile": round(ours / base, 3),
                    "runs": {way: [round(t, 3) for t in ts] for way, ts in times.items()},
                }
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "benchmark": "extract",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": __import__("os").cpu_count(),
        "patches": args.patches,
        "repeats": args.repeats,
        "dir": str(args.dir),
        "rows": rows,
    }
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "extract.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Safe extraction vs tarfile's data filter (benchmarks/extract.py)",
        "",
        f"Python {result['python']}, {result['cpus']} CPUs; {args.patches} BigEarthNet-shaped patches "
        f"({args.patches * 13:,} files), median of {args.repeats} alternating runs, in {args.dir}.",
        "",
        "| archive | files | MB uncompressed | tarfile s | rsir s | rsir / tarfile |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['archive']} | {row['files']:,} | {row['uncompressed_bytes'] / 1e6:,.1f} | {row['tarfile_s']:.2f} "
            f"| {row['rsir_s']:.2f} | {row['rsir_over_tarfile']:.2f} |"
        )
    (out / "extract.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
