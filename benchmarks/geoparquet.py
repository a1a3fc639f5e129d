"""GeoParquet export and import at BigEarthNet's test-split size: seconds and peak memory.

Data (seeded, generated): 125,866 rows x 768 float32 embeddings, BigEarthNet-like footprints
(1.2 km UTM boxes in six zones over Europe, turned into lon/lat corners by rsir's own transform),
43-label multi-hot labels, dates, and two packed code tables (64 and 256 bits).

Each phase runs in its own process, so its peak resident memory (``ru_maxrss``) is its own:

- ``export``:   :func:`rsir_cli.geoparquet.write_geoparquet` with the embeddings memory-mapped
  from a ``.npy`` on disk (as a store on disk would give them), so memory is bounded by a row group;
- ``import``:   :class:`rsir_cli.geoparquet_read.GeoParquetReader` blocks in the store's order,
  each block appended to a ``.npy``-style file as an importer would (memory bounded by a row group);
- baselines, in the same run: ``pyarrow.parquet.write_table`` of the same columns in one go from
  memory (no spatial order, no geometry: the floor of what Arrow costs), ``numpy.save`` of the
  embeddings, and ``pyarrow.parquet.read_table`` of the exported file in one go.

All writes are fsync-ed, like rsir's own (``rsir_cli.fileio``), so the comparison is fair.

Run:  .venv/bin/python benchmarks/geoparquet.py [--rows 125866 --dim 768 --row-group-rows 8192]
It writes benchmarks/results/geoparquet.{json,md}.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rsir_cli.geo import lonlat_corners  # noqa: E402
from rsir_cli.geoparquet import DEFAULT_ROW_GROUP_ROWS, EmbeddingTable, write_geoparquet  # noqa: E402
from rsir_cli.geoparquet_read import GeoParquetReader  # noqa: E402

BIGEARTHNET_TEST_ROWS = 125_866
LABELS = 43
CODES = {"itq_64_s42": 8, "itq_256_s42": 32}


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    return float("nan")


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited through fork)."""
    return _status_mb("VmHWM")


def rss_mb() -> float:
    return _status_mb("VmRSS")


def generate(folder: Path, rows: int, dim: int, seed: int = 0) -> None:
    """Write the seeded data set: ``embeddings.npy`` (big) and ``rest.npz`` (everything else)."""
    rng = np.random.default_rng(seed)
    embeddings = np.lib.format.open_memmap(folder / "embeddings.npy", mode="w+", dtype=np.float32, shape=(rows, dim))
    for start in range(0, rows, 16384):
        stop = min(rows, start + 16384)
        embeddings[start:stop] = rng.standard_normal((stop - start, dim), dtype=np.float32)
    embeddings.flush()
    with open(folder / "embeddings.npy.raw", "wb") as raw:  # the bytes an exact import gives back
        for start in range(0, rows, 16384):
            raw.write(np.ascontiguousarray(embeddings[start : start + 16384]).tobytes())
    del embeddings
    zones = rng.integers(29, 35, rows)  # UTM 29N..34N: Portugal to Finland, as BigEarthNet
    easting = rng.uniform(300_000, 700_000, rows).round(-1)
    northing = rng.uniform(4_200_000, 7_000_000, rows).round(-1)
    bounds = np.stack([easting, northing - 1200, easting + 1200, northing], axis=1)
    crs = [f"EPSG:{32600 + z}" for z in zones]
    lonlat = lonlat_corners(crs, bounds)
    missing = rng.random(rows) < 0.01  # a few rows without a place
    lonlat[missing] = np.nan
    bounds[missing] = np.nan
    labels = (rng.random((rows, LABELS)) < 3 / LABELS).astype(np.uint8)
    days = rng.integers(0, 365, rows)
    dates = np.array([str(np.datetime64("2017-06-01") + d) for d in days])
    codes = {name: rng.integers(0, 256, (rows, width), dtype=np.uint8) for name, width in CODES.items()}
    np.savez(
        folder / "rest.npz",
        ids=np.array([f"S2A_MSIL2A_{i:06d}" for i in range(rows)]),
        crs=np.array(crs),
        bounds=bounds,
        lonlat=lonlat,
        labels=labels,
        dates=dates,
        **{f"code_{k}": v for k, v in codes.items()},
    )


class NpyRows:
    """Rows of a ``.npy`` file read on demand with ``pread`` (as h5py reads a store dataset).

    A memory map would do as well, but its pages count as resident memory once touched (they are
    page cache the kernel can drop), which would hide what the writer itself holds.
    """

    def __init__(self, path: Path) -> None:
        mapped = np.load(path, mmap_mode="r")
        self.shape, self.dtype, self.offset = mapped.shape, mapped.dtype, mapped.offset
        del mapped
        self.handle = open(path, "rb")  # noqa: SIM115 (lives as long as the benchmark process)
        self.row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        flat = out.reshape(len(rows), -1).view(np.uint8)
        # one read per run of consecutive rows
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for run in np.split(np.arange(len(rows)), breaks):
            if len(run):
                first = int(rows[run[0]])
                data = os.pread(self.handle.fileno(), self.row_bytes * len(run), self.offset + first * self.row_bytes)
                flat[run[0] : run[-1] + 1] = np.frombuffer(data, np.uint8).reshape(len(run), -1)
        return out


def load_table(folder: Path, in_memory: bool) -> EmbeddingTable:
    rest = np.load(folder / "rest.npz")
    embeddings = np.load(folder / "embeddings.npy") if in_memory else NpyRows(folder / "embeddings.npy")
    return EmbeddingTable(
        ids=rest["ids"].tolist(),
        embeddings=embeddings,
        labels=rest["labels"],
        label_names=[f"label {i}" for i in range(LABELS)],
        dates=rest["dates"].tolist(),
        lonlat=rest["lonlat"],
        crs=rest["crs"].tolist(),
        bounds=rest["bounds"],
        codes={name: rest[f"code_{name}"] for name in CODES},
    )


def phase_export(folder: Path, row_group_rows: int) -> dict[str, float]:
    table = load_table(folder, in_memory=False)
    before = rss_mb()
    began = time.perf_counter()
    result = write_geoparquet(
        folder / "out.parquet", table, metadata={"model": "benchmark"}, row_group_rows=row_group_rows
    )
    return {
        "seconds": time.perf_counter() - began,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_mb": before,
        "bytes": result.bytes,
        "row_groups": result.row_groups,
    }


def phase_import(folder: Path) -> dict[str, float]:
    before = rss_mb()
    began = time.perf_counter()
    reader = GeoParquetReader(folder / "out.parquet")
    rows = 0
    with open(folder / "imported.bin", "wb") as sink:  # what a store append would do with each block
        for block in reader.blocks():
            sink.write(np.ascontiguousarray(block.embeddings).tobytes())
            rows += len(block)
        sink.flush()
        os.fsync(sink.fileno())
    seconds, peak = time.perf_counter() - began, peak_rss_mb()
    same = filecmp.cmp(folder / "imported.bin", folder / "embeddings.npy.raw", shallow=False)
    return {"seconds": seconds, "peak_rss_mb": peak, "rss_before_mb": before, "rows": rows, "bit_exact": same}


def phase_baseline_write_table(folder: Path) -> dict[str, float]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = load_table(folder, in_memory=True)
    before = rss_mb()
    began = time.perf_counter()
    flat = pa.array(np.ascontiguousarray(table.embeddings).reshape(-1))
    arrow = pa.table(
        {
            "id": pa.array(table.ids),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, table.dim),
            **{
                name: pa.FixedSizeBinaryArray.from_buffers(pa.binary(c.shape[1]), len(c), [None, pa.py_buffer(c)])
                for name, c in table.codes.items()
            },
        }
    )
    with open(folder / "baseline.parquet", "wb") as handle:
        pq.write_table(arrow, handle, compression="zstd")
        handle.flush()
        os.fsync(handle.fileno())
    return {"seconds": time.perf_counter() - began, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": before}


def phase_baseline_npy(folder: Path) -> dict[str, float]:
    embeddings = np.load(folder / "embeddings.npy")
    before = rss_mb()
    began = time.perf_counter()
    with open(folder / "baseline.npy", "wb") as handle:
        np.save(handle, embeddings)
        handle.flush()
        os.fsync(handle.fileno())
    return {"seconds": time.perf_counter() - began, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": before}


def phase_baseline_read_table(folder: Path) -> dict[str, float]:
    import pyarrow.parquet as pq

    before = rss_mb()
    began = time.perf_counter()
    table = pq.read_table(folder / "out.parquet")
    embeddings = table.column("embedding").combine_chunks().flatten().to_numpy().reshape(table.num_rows, -1)
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": before, "rows": len(embeddings)}


PHASES = {
    "export": phase_export,
    "import": phase_import,
    "baseline_write_table": phase_baseline_write_table,
    "baseline_npy": phase_baseline_npy,
    "baseline_read_table": phase_baseline_read_table,
}


def run_phase(name: str, folder: Path, row_group_rows: int) -> dict[str, float]:
    command = [
        sys.executable,
        __file__,
        "--phase",
        name,
        "--folder",
        str(folder),
        "--row-group-rows",
        str(row_group_rows),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_results(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "geoparquet.json").write_text(json.dumps(results, indent=2) + "\n")
    full, small = results["sizes"][-1], results["sizes"][0]
    rows, dim = full["rows"], results["dim"]
    p, q = full["phases"], small["phases"]
    lines = [
        "# GeoParquet export and import (BigEarthNet test-split size, generated)",
        "",
        "Command: `python benchmarks/geoparquet.py`  ",
        f"Data: {rows:,} rows x {dim} float32 ({rows * dim * 4 / 1e6:,.0f} MB of embeddings), footprints, 43 labels, "
        f"dates, two code tables ({', '.join(CODES)}); row groups of {results['row_group_rows']:,} rows; zstd.  ",
        f"Machine: {results['machine']} (load average {results['load_average']:.1f} when it started: the machine is "
        f"shared, so seconds are the best of {results['repeats']} runs). Each phase runs in its own process; peak "
        "RSS is its VmHWM (`before`: what Python, numpy, pyarrow and the small columns take before the work).",
        "",
        "| phase | seconds | peak RSS MB | RSS before MB | vs baseline (same run) |",
        "|---|---|---|---|---|",
    ]
    ratios = {"export": ("baseline_write_table", "x write_table"), "import": ("baseline_read_table", "x read_table")}
    for name, value in p.items():
        ratio = ""
        if name in ratios:
            base, label = ratios[name]
            ratio = f"{value['seconds'] / p[base]['seconds']:.2f} {label}"
        lines.append(
            f"| {name} | {value['seconds']:.2f} | {value['peak_rss_mb']:,.0f} | {value['rss_before_mb']:,.0f} | {ratio} |"
        )
    lines += [
        "",
        f"File: {p['export']['bytes'] / 1e6:,.0f} MB in {p['export']['row_groups']} row groups "
        f"(`write_table`'s file without geometry, labels and dates: {p['baseline_write_table']['bytes'] / 1e6:,.0f} MB); "
        f"the import gives the embeddings back bit for bit in the store's order: {p['import']['bit_exact']}.",
        "",
        f"Memory is bounded by a row group, not by the file: at a quarter of the rows ({small['rows']:,}) export peaks "
        f"at {q['export']['peak_rss_mb']:,.0f} MB and import at {q['import']['peak_rss_mb']:,.0f} MB, against "
        f"{p['export']['peak_rss_mb']:,.0f} MB and {p['import']['peak_rss_mb']:,.0f} MB at full size; what grows is "
        "the small per-row columns (ids, labels, footprints, dates), held whole. The baselines hold everything: "
        "`baseline_write_table` writes id, embedding and codes from memory in one go (no geometry, no spatial "
        "order); `baseline_read_table` reads the exported file whole; `baseline_npy` is `numpy.save` of the "
        "embeddings alone.",
    ]
    (out / "geoparquet.md").write_text("\n".join(lines) + "\n")


def measure(rows: int, dim: int, row_group_rows: int, repeats: int, baselines: bool) -> dict[str, Any]:
    """Every phase at one size: the best time of ``repeats`` runs, the peak memory of the first."""
    with tempfile.TemporaryDirectory(prefix="rsir-bench-geoparquet-") as tmp:
        folder = Path(tmp)
        began = time.perf_counter()
        generate(folder, rows, dim)
        print(f"{rows:,} rows generated in {time.perf_counter() - began:.1f} s", file=sys.stderr)
        names = ["export", "import"] + (
            ["baseline_write_table", "baseline_npy", "baseline_read_table"] if baselines else []
        )
        phases: dict[str, Any] = {}
        for name in names:
            runs = [run_phase(name, folder, row_group_rows) for _ in range(repeats)]
            phases[name] = {
                **runs[0],
                "seconds": min(r["seconds"] for r in runs),
                "all_seconds": [r["seconds"] for r in runs],
            }
            if name == "baseline_write_table":
                phases[name]["bytes"] = (folder / "baseline.parquet").stat().st_size
            print(rows, name, phases[name], file=sys.stderr)
    return {"rows": rows, "phases": phases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=BIGEARTHNET_TEST_ROWS)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--row-group-rows", type=int, default=DEFAULT_ROW_GROUP_ROWS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--phase", choices=sorted(PHASES))
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if args.phase:
        function = PHASES[args.phase]
        result = function(args.folder, args.row_group_rows) if args.phase == "export" else function(args.folder)
        print(json.dumps(result))
        return
    load = os.getloadavg()[0]
    sizes = [
        measure(args.rows // 4, args.dim, args.row_group_rows, 1, baselines=False),
        measure(args.rows, args.dim, args.row_group_rows, args.repeats, baselines=True),
    ]
    results = {
        "dim": args.dim,
        "row_group_rows": args.row_group_rows,
        "repeats": args.repeats,
        "load_average": load,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "sizes": sizes,
    }
    write_results(results, args.out)


if __name__ == "__main__":
    main()
