"""`rsir bench-milvus`: the paper's Milvus speed experiment, with the exact engine as the reference.

Protocol (Blumenstiel et al. 2024, "speed experiment"): 1,000 queries from the val split, one
search call each, top 20, against the first 10K / 50K / 100K vectors of the test split; 768-d
float embeddings in IVF_FLAT (nlist 128, L2), 768-bit binary embeddings and 32-bit trivial-hash
codes in BIN_IVF_FLAT (nlist 128, HAMMING). Where this Milvus cannot build those indexes (Milvus
Lite: BIN_FLAT only for binary vectors), FLAT / BIN_FLAT runs instead and every output says so.
When the store has no embeddings, seeded synthetic vectors of the same shapes stand in, and every
output says that too.

Per (size, vectors) the run measures, for Milvus and for the in-process exact engine:

- insert time (Milvus: batched inserts and the flush; exact: adding the array),
- index time (Milvus: building the index and loading the collection; exact: none),
- latency of single-query searches (one call per query): mean, p50, p95, p99,
- throughput of batched search (queries per second, ``batch`` queries per call),
- recall@k against the exact engine, counting ties: a returned row is correct when its true
  distance is at most the exact k-th distance (with Hamming codes, many rows tie at the k-th
  distance and any of them is a correct answer),
- memory: the resident set (RSS) of the Milvus process after the searches (the Milvus Lite
  child process of this one, or a local server's process), and for the exact engine the size
  of its in-memory database.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import socket
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rsir_cli import suggest
from rsir_cli.errors import StoreError, UsageError
from rsir_cli.progress import NULL_PROGRESS, Progress, ProgressTask
from rsir_cli.search import milvus

if TYPE_CHECKING:
    from rsir_cli.search.base import SearchBackend, SearchResult
    from rsir_cli.store import EmbeddingStore

log = logging.getLogger(__name__)

PAPER_SIZES = (10_000, 50_000, 100_000)
PAPER_QUERIES = 1000
PAPER_K = 20
DEFAULT_BATCH = 100
SEEDED_CLUSTERS = 64
SEEDED_DIM = 768
#: where a run keeps its temporary Milvus Lite file: <store>/.bench-tmp/<host>-<pid>
SCRATCH_FOLDER = ".bench-tmp"


@dataclass
class BenchData:
    """Float queries and database, and where they came from."""

    queries: np.ndarray  # (Q, D) float32
    database: np.ndarray  # (N, D) float32
    source: str
    seeded: bool
    notes: list[str] = field(default_factory=list)


def seeded_data(n_queries: int, n_database: int, dim: int = SEEDED_DIM, seed: int = 0) -> BenchData:
    """Synthetic stand-ins: a seeded mixture of Gaussian clusters (embeddings cluster; uniform noise does not)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((SEEDED_CLUSTERS, dim)).astype(np.float32)

    def draw(n: int) -> np.ndarray:
        members = rng.integers(0, SEEDED_CLUSTERS, n)
        return centres[members] + 0.5 * rng.standard_normal((n, dim), dtype=np.float32)

    return BenchData(
        draw(n_queries),
        draw(n_database),
        f"SEEDED synthetic vectors ({SEEDED_CLUSTERS}-cluster Gaussian mixture, {dim}-d, seed {seed}), not embeddings",
        True,
    )


def store_data(store: EmbeddingStore, model: str, dataset: str, n_queries: int, n_database: int) -> BenchData:
    """Queries from the store's val split, the database from its test split (first rows of each).

    Raises:
        StoreError: the store lacks either split.
    """
    from rsir_cli.store import DATABASE_SPLIT, QUERY_SPLIT

    notes = []
    query_split = store.read(model, dataset, QUERY_SPLIT)
    database_split = store.read(model, dataset, DATABASE_SPLIT)
    queries = np.asarray(query_split.embeddings[:n_queries], dtype=np.float32)
    database = np.asarray(database_split.embeddings[:n_database], dtype=np.float32)
    if len(queries) < n_queries:
        notes.append(f"the {QUERY_SPLIT} split has {len(queries)} rows; all of them are the queries")
    random = " (RANDOM WEIGHTS)" if query_split.attrs.get("random_weights") else ""
    source = f"store embeddings {model}/{dataset}{random}: queries {QUERY_SPLIT}, database {DATABASE_SPLIT}"
    return BenchData(queries, database, source, False, notes)


def vector_sets(embeddings: np.ndarray) -> list[tuple[str, str, Callable[[np.ndarray], np.ndarray]]]:
    """The paper's three kinds: (name, distance, make(embeddings) -> vectors) for float, binary, 32-bit trivial."""
    from rsir_cli.hashing import make_hasher

    dim = embeddings.shape[1]
    kinds: list[tuple[str, str, Callable[[np.ndarray], np.ndarray]]] = [
        (f"float-{dim}", "l2", lambda x: np.asarray(x, dtype=np.float32))
    ]
    if dim % 8 == 0:
        binary = make_hasher("binary", None, None, dim)
        kinds.append((binary.name, "hamming", binary.transform))
    if dim % 32 == 0:
        trivial = make_hasher("trivial", 32, None, dim)
        kinds.append((trivial.name, "hamming", trivial.transform))
    return kinds


@dataclass
class BenchRow:
    """One measured configuration."""

    size: int
    vectors: str
    engine: str  # milvus | exact
    index: str  # the index that ran
    requested: str  # the index asked for
    metric: str
    insert_s: float
    index_s: float
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    throughput_qps: float
    recall: float
    memory_mb: float | None
    note: str = ""


@dataclass
class BenchReport:
    """Every row and the settings that produced them."""

    rows: list[BenchRow]
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "rows": [asdict(row) for row in self.rows]}


# ------------------------------------------------------------------------------------ memory
def rss_mb(pid: int) -> float | None:
    """Resident set size of a process in MB (Linux /proc), or None when unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _processes() -> list[tuple[int, int, str]]:
    """(pid, parent pid, command line) of every process visible in /proc."""
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        found.append((int(entry.name), parent, cmdline))
    return found


def milvus_pid(target: milvus.MilvusTarget, server_pid: int | None = None) -> int | None:
    """The process that holds the vectors: the Milvus Lite child of this process, or a local server."""
    if server_pid:
        return server_pid
    processes = _processes()
    if target.lite:
        mine = [pid for pid, parent, cmd in processes if parent == os.getpid() and "milvus" in cmd]
        return mine[0] if mine else None
    host = re.sub(r"^[a-z]+://([^@/]*@)?", "", target.uri).split(":")[0].split("/")[0]
    if host not in ("localhost", "127.0.0.1", "::1", "[::1]"):
        return None
    servers = [pid for pid, _, cmd in processes if "milvus" in cmd and "run standalone" in cmd]
    return servers[0] if len(servers) == 1 else None


# ----------------------------------------------------------------------------------- measuring
def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if len(values) else float("nan")


def _single_query_latencies(backend: SearchBackend, queries: np.ndarray, k: int, task: ProgressTask) -> list[float]:
    seconds = []
    for i in range(len(queries)):
        began = time.perf_counter()
        backend.search(queries[i : i + 1], k)
        seconds.append(time.perf_counter() - began)
        task.advance(1)
    return seconds


def _throughput(backend: SearchBackend, queries: np.ndarray, k: int, batch: int) -> float:
    began = time.perf_counter()
    for start in range(0, len(queries), batch):
        backend.search(queries[start : start + batch], k)
    elapsed = time.perf_counter() - began
    return len(queries) / elapsed if elapsed > 0 else float("inf")


def true_distances(database: np.ndarray, queries: np.ndarray, rows: np.ndarray, distance: str) -> np.ndarray:
    """Distances of each query to the rows returned for it (inf where a row is -1)."""
    out = np.full(rows.shape, np.inf)
    valid = rows >= 0
    for q in range(len(queries)):
        picked = database[rows[q][valid[q]]]
        if distance == "hamming":
            d = np.unpackbits(np.bitwise_xor(picked, queries[q]), axis=1).sum(axis=1)
        else:
            d = np.sqrt(((picked.astype(np.float64) - queries[q].astype(np.float64)) ** 2).sum(axis=1))
        out[q, valid[q]] = d
    return out


def recall_at_k(
    database: np.ndarray, queries: np.ndarray, found_rows: np.ndarray, exact_distances: np.ndarray, distance: str
) -> float:
    """Tie-aware recall@k: the share of returned rows whose true distance is within the exact k-th distance."""
    k = found_rows.shape[1]
    kth = exact_distances[:, k - 1 : k]
    wanted = np.isfinite(exact_distances).sum(axis=1)
    actual = true_distances(database, queries, found_rows, distance)
    tolerance = 0 if distance == "hamming" else 1e-5 * np.maximum(kth, 1e-6)
    hits = ((actual <= kth + tolerance) & (found_rows >= 0)).sum(axis=1)
    return float(np.mean(hits / np.maximum(wanted, 1)))


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run the exact engine's single queries on one thread.

    One query gains nothing from a thread team, and on a loaded machine an OpenMP or BLAS team
    waits for descheduled members: measured here, a 2,000-row 32-bit Hamming query took 24 ms on
    two faiss threads and 0.05 ms on one. (BLAS threads are limited too when threadpoolctl is
    installed.)
    """
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    limiter = None
    try:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(1)
    except ImportError:
        pass
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)
        if limiter is not None:
            limiter.restore_original_limits()


def _exact_row(
    size: int,
    name: str,
    distance: str,
    database: np.ndarray,
    queries: np.ndarray,
    k: int,
    batch: int,
    task: ProgressTask,
) -> tuple[BenchRow, SearchResult]:
    from rsir_cli.search.exact import ExactIndex

    began = time.perf_counter()
    with ExactIndex(distance) as engine:
        engine.add(database)
        insert_s = time.perf_counter() - began
        engine.search(queries[:1], k)  # warm up (thread pools), as for Milvus
        with _one_thread():
            latencies = _single_query_latencies(engine, queries, k, task)
        throughput = _throughput(engine, queries, k, batch)
        truth = engine.search(queries, k)
    row = BenchRow(
        size, name, "exact", "exact (in process)", "exact", distance, insert_s, 0.0,
        statistics.fmean(latencies) * 1e3, _percentile(latencies, 50) * 1e3, _percentile(latencies, 95) * 1e3,
        _percentile(latencies, 99) * 1e3, throughput, 1.0, database.nbytes / 2**20,
    )  # fmt: skip
    return row, truth


def _milvus_row(
    connection: milvus.MilvusConnection,
    size: int,
    name: str,
    distance: str,
    database: np.ndarray,
    queries: np.ndarray,
    truth: SearchResult,
    *,
    k: int,
    nlist: int,
    nprobe: int,
    batch: int,
    server_pid: int | None,
    task: ProgressTask,
) -> BenchRow:
    binary = distance == "hamming"
    requested, params, search_params = milvus.index_spec("ivf_flat", binary, nlist, nprobe)
    collection = milvus.collection_name("bench", name, str(size), "v")
    connection.drop_collection(collection)
    dim = database.shape[1] * (8 if binary else 1)
    note = ""
    try:
        began = time.perf_counter()
        index = milvus.MilvusIndex.create(connection, collection, distance=distance, dim=dim, description="rsir bench")
        index.add(database)
        insert_s = time.perf_counter() - began
        began = time.perf_counter()
        ran = requested
        try:
            index.build_index(requested, params, search_params)
        except milvus.UnsupportedIndexError:
            ran, params, search_params = milvus.index_spec("flat", binary, nlist, nprobe)
            note = f"{requested} unsupported here; ran {ran}"
            log.debug("%s: %s", collection, note)
            index.build_index(ran, params, search_params)
        index_s = time.perf_counter() - began
        index.search(queries[:1], k)  # the first search after a load pays one-off costs
        latencies = _single_query_latencies(index, queries, k, task)
        throughput = _throughput(index, queries, k, batch)
        found = index.search(queries, k)
        recall = recall_at_k(database, queries, found.indices, truth.distances, distance)
        pid = milvus_pid(connection.target, server_pid)
        memory = rss_mb(pid) if pid else None
    finally:
        connection.drop_collection(collection)
    extra = ", ".join(f"{key} {value}" for key, value in {**params, **search_params}.items())
    return BenchRow(
        size, name, "milvus", ran + (f" ({extra})" if extra else ""), requested, milvus.METRICS[distance],
        insert_s, index_s, statistics.fmean(latencies) * 1e3, _percentile(latencies, 50) * 1e3,
        _percentile(latencies, 95) * 1e3, _percentile(latencies, 99) * 1e3, throughput, recall, memory, note,
    )  # fmt: skip


def run_bench(
    target: milvus.MilvusTarget,
    data: BenchData,
    *,
    sizes: Sequence[int] = PAPER_SIZES,
    k: int = PAPER_K,
    nlist: int = milvus.DEFAULT_NLIST,
    nprobe: int = milvus.DEFAULT_NPROBE,
    batch: int = DEFAULT_BATCH,
    server_pid: int | None = None,
    progress: Progress = NULL_PROGRESS,
) -> BenchReport:
    """Run the experiment for every size and vector kind on Milvus and on the exact engine.

    Collections are named ``rsir_bench_<vectors>_<size>_v``, created fresh and dropped afterwards.

    Raises:
        UsageError: no size fits the database, or bad settings.
        BackendError: Milvus unreachable or failing.
    """
    if k < 1 or batch < 1:
        raise UsageError("--k and --batch must be at least 1")
    if not len(data.queries):
        raise UsageError("no queries to run")
    notes = list(data.notes)
    usable = sorted({s for s in sizes if 0 < s <= len(data.database)})
    dropped = sorted({s for s in sizes if s > len(data.database)})
    if dropped:
        notes.append(
            f"sizes {', '.join(f'{s:,}' for s in dropped)} skipped: the database has {len(data.database):,} rows"
        )
    if not usable:
        raise UsageError(f"no size fits the database of {len(data.database):,} rows; pass smaller --sizes")
    kinds = vector_sets(data.database)
    encoded = [
        (name, distance, make(data.database[: max(usable)]), make(data.queries)) for name, distance, make in kinds
    ]
    queries_n = len(data.queries)
    rows: list[BenchRow] = []
    started = time.time()
    with milvus.MilvusConnection(target) as connection:
        version = connection.server_version()
        task = progress.task("single-query searches", total=2 * queries_n * len(usable) * len(kinds), unit="queries")
        try:
            for size in usable:
                for name, distance, database, queries in encoded:
                    exact, truth = _exact_row(size, name, distance, database[:size], queries, k, batch, task)
                    row = _milvus_row(
                        connection, size, name, distance, database[:size], queries, truth,
                        k=k, nlist=nlist, nprobe=nprobe, batch=batch, server_pid=server_pid, task=task,
                    )  # fmt: skip
                    rows.extend([row, exact])
        finally:
            task.close()
    settings = {
        "data": data.source,
        "seeded": data.seeded,
        "milvus": f"{target.kind} {version}",
        "uri": target.display,
        "sizes": usable,
        "queries": queries_n,
        "k": k,
        "nlist": nlist,
        "nprobe": nprobe,
        "batch": batch,
        "recall": "tie-aware recall@k against the exact engine",
        "memory": "milvus rows: RSS of the Milvus process after the searches; exact rows: the database array",
        "exact": "the in-process exact engine (rsir's ground truth); its single queries run on one thread",
        "notes": notes,
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "pymilvus": _version("pymilvus"),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
    }
    return BenchReport(rows, settings)


# ----------------------------------------------------------------------------------- scratch
@contextmanager
def scratch_folder(store_root: str | Path) -> Iterator[Path]:
    """A private folder for this run's temporary Milvus Lite file, removed when the run ends.

    It is ``<store>/.bench-tmp/<host>-<pid>``: on the store's disk (a Lite file of 100K vectors
    takes hundreds of MB, too much for a small /tmp), and named by its process, so that a run
    killed before it could clean up (SIGKILL, a power cut) leaves a folder the next run on this
    host removes (its process is gone).
    """
    parent = Path(store_root) / SCRATCH_FOLDER
    remove_stale_scratch(parent)
    mine = parent / f"{socket.gethostname()}-{os.getpid()}"
    shutil.rmtree(mine, ignore_errors=True)  # left by an earlier process that had this pid
    mine.mkdir(parents=True)
    try:
        yield mine
    finally:
        shutil.rmtree(mine, ignore_errors=True)
        with suppress(OSError):
            parent.rmdir()  # only when no other run is using it


def remove_stale_scratch(parent: Path) -> list[Path]:
    """Remove the scratch folders under ``parent`` of this host's runs whose process is gone.

    Returns:
        The folders removed.
    """
    host = socket.gethostname()
    removed = []
    for folder in sorted(parent.iterdir()) if parent.is_dir() else []:
        name_host, _, pid = folder.name.rpartition("-")
        if name_host != host or not pid.isdigit() or _process_alive(int(pid)):
            continue  # another host's run (a shared disk), or one still running
        shutil.rmtree(folder, ignore_errors=True)
        log.info("removed %s, left by a bench-milvus run that was stopped before it could clean up", folder)
        removed.append(folder)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _version(package: str) -> str:
    import importlib.metadata as metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def load_data(
    store: EmbeddingStore,
    model: str | None,
    dataset: str | None,
    *,
    n_queries: int,
    n_database: int,
    seeded: bool = False,
    seed: int = 0,
) -> BenchData:
    """Store embeddings when the store has them (or when asked for by model/dataset), else seeded vectors.

    Raises:
        StoreError: a model/dataset was asked for and the store lacks it.
    """
    if seeded:
        if model or dataset:
            raise UsageError("--seeded and --model/--dataset exclude each other")
        return seeded_data(n_queries, n_database, seed=seed)
    entries = store.entries()
    if not (model or dataset):
        pairs = sorted(
            {(m, d) for m, d, s in entries if s in ("val",)} & {(m, d) for m, d, s in entries if s == "test"}
        )
        if not pairs:
            data = seeded_data(n_queries, n_database, seed=seed)
            data.notes.append(f"the store {store.root} has no val + test embeddings, so seeded vectors stand in")
            return data
        if len(pairs) > 1:
            listed = ", ".join(f"{m}/{d}" for m, d in pairs)
            raise UsageError(f"the store holds several embeddings ({listed}); pick one with --model and --dataset")
        model, dataset = pairs[0]
    if not model or not dataset:
        candidates = sorted({(m, d) for m, d, _ in entries if (model in (None, m)) and (dataset in (None, d))})
        if len(candidates) != 1:
            raise StoreError(
                f"the store {store.root} has no single match for model {model or 'any'} / dataset {dataset or 'any'}; "
                f"pass both --model and --dataset ({suggest.quoted('info', store=store.root)} lists them)"
            )
        model, dataset = candidates[0]
    return store_data(store, model, dataset, n_queries, n_database)
