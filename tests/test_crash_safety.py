"""A kill at any single write, or a full disk, never costs a committed row (issue: "Nothing lost").

Every file-system-changing system call that `rsir embed` and `rsir hash` make inside the store is
found by tracing a clean run with strace; then, for each one, a fresh run is killed with SIGKILL
exactly there (``strace -e inject=SYSCALL:signal=SIGKILL:when=N``), the store is checked to be
readable, the same command is run again, and the final store must equal an uninterrupted run's
row for row and bit for bit. The same with ENOSPC injected at every write, and with a real full
tmpfs. strace comes from the system packages (``scripts/test.sh`` installs it where it is missing).
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rsir_cli.store import EmbeddingStore
from tests import fakedata
from tests.cli import run

pytestmark = [pytest.mark.slow, pytest.mark.faults]

STRACE = shutil.which("strace")
REPO = Path(__file__).resolve().parent.parent
# every system call that changes the file system (or makes a change durable)
CHANGING = ("write", "pwrite64", "writev", "fsync", "fdatasync", "rename", "renameat", "renameat2", "unlink",
            "unlinkat", "mkdir", "rmdir", "ftruncate")  # fmt: skip
_LINE = re.compile(r"^(?P<call>[a-z0-9_]+)\((?P<args>.*)$")
# attributes that differ between any two runs (times, where the run happened)
_VOLATILE = {"created", "completed", "device"}

if STRACE is None:
    pytest.skip("strace is not installed (scripts/test.sh installs it with apt-get)", allow_module_level=True)


def _env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PYTHONDONTWRITEBYTECODE": "1",  # no .pyc writes: every run makes the same system calls
        "RSIR_PLUGINS": "tests.plugins.fake_encoder",
        "RSIR_COMMIT_SECONDS": "0",  # a commit per batch: many commits in a small run
        **extra,
    }


def _command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "rsir_cli", "-q", *args]


def _embed_args(data: Path, store: Path, limit: int = 6) -> list[str]:
    return ["embed", "-m", "fake", "-d", "bigearthnet", "--data-dir", str(data), "--store", str(store),
            "--random-weights", "--split", "test", "--batch-size", "2", "--limit", str(limit), "--workers", "0"]  # fmt: skip


def _hash_args(store: Path) -> list[str]:
    return ["hash", "--store", str(store), "--method", "itq", "--bits", "16"]


def _points(args: list[str], store: Path, log: Path) -> list[tuple[str, int]]:
    """(syscall, n): the n-th call of that syscall by rsir's main thread touches the store.

    Only the main thread is traced (no ``-f``), here and when injecting: the store is written there,
    and the helper processes Python starts (``uname``, ``ldconfig``) must not be hit.
    """
    subprocess.run(
        [STRACE, "-y", "-qq", "-s", "0", "-o", str(log), "-e", f"trace={','.join(CHANGING)}", *_command(args)],
        env=_env(), check=True, capture_output=True,
    )  # fmt: skip
    counts: dict[str, int] = {}
    points = []
    for match in filter(None, map(_LINE.match, log.read_text().splitlines())):
        call = match.group("call")
        counts[call] = counts.get(call, 0) + 1
        if str(store) in match.group("args"):
            points.append((call, counts[call]))
    return points


def _inject(args: list[str], call: str, n: int, action: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [STRACE, "-qq", "-o", os.devnull, "-e", f"trace={call}", "-e", f"inject={call}:{action}:when={n}",
         *_command(args)],
        env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _snapshot(store: Path) -> dict[str, object]:
    """Everything a store holds that must not depend on how the run went (arrays, attributes, codes)."""
    data = EmbeddingStore(store)
    out: dict[str, object] = {}
    for model, dataset, split in data.entries():
        part = data.read(model, dataset, split, footprints=True)
        out[f"{model}/{dataset}/{split}"] = (
            part.ids, part.dates, part.embeddings.tobytes(), part.labels.tobytes(), part.footprints.crs,
            part.footprints.bounds.tobytes(), part.footprints.lonlat.tobytes(),
            {k: v for k, v in part.attrs.items() if k not in _VOLATILE},
        )  # fmt: skip
        for name in data.code_names(model, dataset, split):
            codes = data.read_codes(model, dataset, split, name)
            out[f"{model}/{dataset}/{split}/{name}"] = (
                codes.bits.tobytes(), {k: v.tobytes() for k, v in codes.hasher.items()}, codes.hasher_attrs,
                {k: v for k, v in codes.attrs.items() if k not in _VOLATILE},
            )  # fmt: skip
    return out


def _rerun(args: list[str]) -> None:
    """The same command again, in process (a fresh interpreter costs seconds per point)."""
    os.environ["RSIR_COMMIT_SECONDS"] = "0"
    try:
        result = run(*args)
    finally:
        del os.environ["RSIR_COMMIT_SECONDS"]
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ben")
    fakedata.make_bigearthnet(root)
    return root


@pytest.fixture
def clean(dataset: Path, tmp_path: Path, fake_encoder: str) -> Path:
    """An uninterrupted embed run (the first 6 rows of the test split: 3 commits)."""
    store = tmp_path / "clean"
    assert subprocess.run(_command(_embed_args(dataset, store)), env=_env(), capture_output=True).returncode == 0
    return store


def test_a_kill_at_every_write_of_rsir_embed_loses_nothing(dataset: Path, clean: Path, tmp_path: Path) -> None:
    expected = _snapshot(clean)
    points = _points(_embed_args(dataset, tmp_path / "probe"), tmp_path / "probe", tmp_path / "embed.strace")
    assert len(points) >= 25, points  # header, 3 segments, the complete file, the clean-up

    def one(point: tuple[str, int]) -> tuple[tuple[str, int], Path, str]:
        call, n = point
        store = tmp_path / f"kill-{call}-{n}"
        result = _inject(_embed_args(dataset, store), call, n, "signal=SIGKILL")
        return point, store, f"{result.returncode} {result.stderr[-300:]}"

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        killed = list(pool.map(one, points))
    for (call, n), store, outcome in killed:
        assert outcome.startswith(str(-signal.SIGKILL)), ((call, n), outcome)  # killed exactly there
        assert all(s.error is None for s in EmbeddingStore(store).summaries()), (call, n)  # readable as it is
        _rerun(_embed_args(dataset, store))
        assert _snapshot(store) == expected, (call, n)
        assert not list(store.rglob("*.partial")) and not list(store.rglob(".*")), (call, n)  # no debris left


def test_a_kill_at_every_write_of_rsir_hash_loses_nothing(dataset: Path, clean: Path, tmp_path: Path) -> None:
    val = _embed_args(dataset, clean)
    val[val.index("test")] = "val"
    assert subprocess.run(_command(val), env=_env(), capture_output=True).returncode == 0
    embeddings = {p: p.read_bytes() for p in clean.rglob("*.h5")}
    reference = tmp_path / "reference"
    shutil.copytree(clean, reference)
    _rerun(_hash_args(reference))
    expected = _snapshot(reference)
    probe = tmp_path / "probe"
    shutil.copytree(clean, probe)
    points = _points(_hash_args(probe), probe, tmp_path / "hash.strace")
    assert len(points) >= 8, points  # two tables: write, fsync, rename, fsync the folder

    def one(point: tuple[str, int]) -> tuple[tuple[str, int], Path, str]:
        call, n = point
        store = tmp_path / f"kill-{call}-{n}"
        shutil.copytree(clean, store)
        result = _inject(_hash_args(store), call, n, "signal=SIGKILL")
        return point, store, f"{result.returncode} {result.stderr[-300:]}"

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        killed = list(pool.map(one, points))
    for (call, n), store, outcome in killed:
        assert outcome.startswith(str(-signal.SIGKILL)), ((call, n), outcome)
        for path, content in embeddings.items():  # hashing never writes into an embeddings file
            assert (store / path.relative_to(clean)).read_bytes() == content, (call, n, path)
        _rerun(_hash_args(store))
        assert _snapshot(store) == expected, (call, n)


def test_a_full_disk_at_every_write_is_one_clear_line_and_a_rerun_completes(
    dataset: Path, clean: Path, tmp_path: Path
) -> None:
    expected = _snapshot(clean)
    points = _points(_embed_args(dataset, tmp_path / "probe"), tmp_path / "probe", tmp_path / "embed.strace")
    writes = [(call, n) for call, n in points if call in ("write", "pwrite64", "fsync")]
    assert len(writes) >= 8, writes

    def one(point: tuple[str, int]) -> tuple[tuple[str, int], Path, subprocess.CompletedProcess]:
        call, n = point
        store = tmp_path / f"full-{call}-{n}"
        return point, store, _inject(_embed_args(dataset, store), call, n, "error=ENOSPC")

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        starved = list(pool.map(one, writes))
    failed = 0
    for (call, n), store, result in starved:
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert "Traceback" not in result.stderr, (call, n)
        if result.returncode == 0:  # a write that may fail (the lock's pid note): the run goes on
            assert _snapshot(store) == expected, (call, n)
            continue
        failed += 1
        assert result.returncode == 1, ((call, n), result.stderr[-500:])
        assert len(errors) == 1 and "is full" in errors[0] and "run the same command again" in errors[0], (call, n)
        _rerun(_embed_args(dataset, store))
        assert _snapshot(store) == expected, (call, n)
    assert failed >= len(writes) - 1  # every store write but the lock's pid note stops the run


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 3 MB tmpfs (needs root, as in CI); skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_disk_that_fills_during_the_run_stops_cleanly_and_the_rerun_completes(
    dataset: Path, tmp_path: Path, small_disk: Path, fake_encoder: str
) -> None:
    clean = tmp_path / "clean10"  # 10 rows, 5 batches: the disk fills with batches still to come
    assert subprocess.run(_command(_embed_args(dataset, clean, 10)), env=_env(), capture_output=True).returncode == 0
    store = small_disk / "store"
    args = _embed_args(dataset, store, 10)
    process = subprocess.Popen(
        _command(args), env=_env(RSIR_FAKE_DELAY="1.0"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if sum(s.rows for s in EmbeddingStore(store).summaries()) >= 4:
            break
        time.sleep(0.05)
    ballast = small_disk / "ballast"
    with open(ballast, "wb") as handle:  # another program fills the disk
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    _, stderr = process.communicate(timeout=120)
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert process.returncode == 1, stderr
    assert len(errors) == 1 and "is full" in errors[0] and "Traceback" not in stderr, stderr
    committed = sum(s.rows for s in EmbeddingStore(store).summaries())
    assert committed >= 4  # what was committed before the disk filled is still there

    ballast.unlink()  # space is freed
    _rerun(args)
    assert _snapshot(store) == _snapshot(clean)
    np.testing.assert_array_equal(
        EmbeddingStore(store).read("fake", "bigearthnet", "test").embeddings,
        EmbeddingStore(clean).read("fake", "bigearthnet", "test").embeddings,
    )
