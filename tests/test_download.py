"""`rsir download` against a real HTTP server on 127.0.0.1: resume, retries, checksums, safe extraction.

The server (tests/httpserver.py) serves small archives in the real layouts (tests/fakedata.py) at
the real URL paths; ``--mirror`` points the download at it. BigEarthNet's source table is replaced
in-process with the checksums of the small files (its real md5s belong to the 66 GB archive);
ForestNet publishes no checksum, so its real table serves as is (trust on first use).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pytest

from rsir_cli import download
from rsir_cli.datasets import open_split
from rsir_cli.datasets.sources import GB, MB
from tests import cli, fakedata
from tests.archives import set_source
from tests.cli import assert_one_line_error, assert_usage_error
from tests.httpserver import FileServer, serve

REPO = Path(__file__).resolve().parent.parent
FAST = ("--retry-wait", "0")
BEN = download.dataset_source("bigearthnet")
FORESTNET = download.dataset_source("forestnet")
BEN_ARCHIVE = next(f for f in BEN.files if f.is_archive)
FN_ARCHIVE = FORESTNET.files[0]


def run(*args: Any):
    return cli.run("download", *args)


def path_of(url: str) -> str:
    return urlsplit(url).path


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Archives(NamedTuple):
    ben_tree: Path
    ben_tar: bytes
    ben_splits: dict[str, bytes]
    ben_names: dict[str, list[str]]
    fn_tree: Path
    fn_zip: bytes
    fn_names: dict[str, list[str]]


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Archives:
    base = tmp_path_factory.mktemp("archives")
    ben = base / "ben"
    ben_names = fakedata.make_bigearthnet(ben, splits={"train": 2, "val": 3, "test": 4})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(ben / "BigEarthNet-v1.0", arcname="BigEarthNet-v1.0")
    splits = {split: (ben / "splits" / f"{split}.csv").read_bytes() for split in ("train", "val", "test")}
    forest = base / "forestnet"
    fn_names = fakedata.make_forestnet(forest, splits={"train": 2, "val": 3, "test": 4}, size=96)
    return Archives(ben, buffer.getvalue(), splits, ben_names, forest, fakedata.forestnet_zip(forest), fn_names)


@pytest.fixture
def server():
    with serve() as running:
        yield running


def serve_bigearthnet(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, archives: Archives, archive: bytes | None = None, **override
) -> dict[str, str]:
    """Serve the fake BigEarthNet at the real URL paths; point the source table at its checksums."""
    archive = archives.ben_tar if archive is None else archive
    files, paths = [], {}
    for remote in BEN.files:
        data = archive if remote.is_archive else archives.ben_splits[remote.name.removesuffix(".csv")]
        server.add(path_of(remote.url), data)
        paths[remote.name] = path_of(remote.url)
        changes = {"size": len(data), "approx_size": None, "md5": md5(data)}
        if remote.is_archive:
            changes.update(extracted_size=10_000_000, **override)
        files.append(dataclasses.replace(remote, **changes))
    set_source(monkeypatch, dataclasses.replace(BEN, files=tuple(files)))
    return paths


def small_forestnet(monkeypatch: pytest.MonkeyPatch) -> None:
    """ForestNet's real table with a small planning size, so the disk check does not ask for 7 GB."""
    files = (dataclasses.replace(FN_ARCHIVE, approx_size=1_000_000, extracted_size=1_000_000),)
    set_source(monkeypatch, dataclasses.replace(FORESTNET, files=files))


def data_dir(name: str) -> Path:
    return Path(os.environ["RSIR_DATA"]) / name


def leftovers(root: Path) -> list[str]:
    """Anything that would look like a half-done job: .part files, extraction scratch folders."""
    return sorted(p.name for p in root.rglob("*") if p.name.endswith(".part") or p.name.startswith(".extract-"))


# ---------------------------------------------------------------------------------------------
# BigEarthNet: the whole path, re-runs, resume


def test_bigearthnet_downloads_verifies_and_extracts_where_the_reader_looks(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, archives: Archives
) -> None:
    paths = serve_bigearthnet(server, monkeypatch, archives)
    result = run("bigearthnet", "--mirror", server.root, "--json", *FAST)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    root = data_dir("bigearthnet")
    assert report["status"] == "complete" and Path(report["destination"]) == root
    by_name = {f["name"]: f for f in report["files"]}
    assert by_name["BigEarthNet-S2-v1.0.tar.gz"]["md5"] == md5(archives.ben_tar)
    assert by_name["val.csv"]["sha256"] == sha256(archives.ben_splits["val"])
    # Every file was fetched once, from the mirror, without Range.
    assert sorted(hit.path for hit in server.gets()) == sorted(paths.values())
    assert all(hit.range is None and hit.status == 200 for hit in server.gets())

    # The extracted tree equals the source tree byte for byte; the archive is kept, verified.
    source_files = sorted(p.relative_to(archives.ben_tree) for p in archives.ben_tree.rglob("*") if p.is_file())
    extracted = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and ".downloads" not in p.parts)
    assert set(extracted) == set(source_files) | {Path(download.MARKER)}
    for relative in source_files:
        assert (root / relative).read_bytes() == (archives.ben_tree / relative).read_bytes(), relative
    assert (root / ".downloads" / "BigEarthNet-S2-v1.0.tar.gz").read_bytes() == archives.ben_tar
    assert leftovers(root) == []
    marker = json.loads((root / download.MARKER).read_text())
    assert marker["dataset"] == "bigearthnet" and len(marker["files"]) == 4

    # `rsir embed`'s reader finds it without --data-dir.
    reader = open_split("bigearthnet", "test", None)
    assert reader.ids == archives.ben_names["test"]


def test_second_run_fetches_nothing_and_a_lost_extraction_reuses_the_verified_archive(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, archives: Archives
) -> None:
    serve_bigearthnet(server, monkeypatch, archives)
    assert run("bigearthnet", "--mirror", server.root, *FAST).exit_code == 0
    requests = len(server.log)

    again = run("bigearthnet", "--mirror", server.root, "--json", *FAST)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["status"] == "already complete"
    assert len(server.log) == requests

    # The extracted tree is lost (say, deleted by hand): the archive verified last time is reused.
    root = data_dir("bigearthnet")
    shutil.rmtree(root / "BigEarthNet-v1.0")
    third = run("bigearthnet", "--mirror", server.root, "--json", *FAST)
    assert third.exit_code == 0, third.output
    assert {f["status"] for f in json.loads(third.stdout)["files"]} == {"present"}
    assert len(server.log) == requests
    assert len(open_split("bigearthnet", "val", None)) == 3

    # --force fetches everything again.
    forced = run("bigearthnet", "--mirror", server.root, "--force", *FAST)
    assert forced.exit_code == 0, forced.output
    assert len(server.gets()) == 2 * 4


def test_cut_transfer_resumes_with_range_and_the_file_is_byte_identical(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, archives: Archives
) -> None:
    paths = serve_bigearthnet(server, monkeypatch, archives)
    archive_path = paths["BigEarthNet-S2-v1.0.tar.gz"]
    half = len(archives.ben_tar) // 2
    server.cut_after[archive_path] = half
    result = run("bigearthnet", "--mirror", server.root, *FAST)
    assert result.exit_code == 0, result.output
    gets = server.gets(archive_path)
    assert [(hit.range, hit.status) for hit in gets] == [(None, 200), (f"bytes={half}-", 206)]
    root = data_dir("bigearthnet")
    assert (root / ".downloads" / "BigEarthNet-S2-v1.0.tar.gz").read_bytes() == archives.ben_tar
    assert (root / download.MARKER).is_file()


def test_a_server_that_ignores_range_is_restarted_from_zero(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, archives: Archives
) -> None:
    paths = serve_bigearthnet(server, monkeypatch, archives)
    part = data_dir("bigearthnet") / ".downloads" / "BigEarthNet-S2-v1.0.tar.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0garbage" * 1000)  # resuming after these bytes would fail the md5
    server.ignore_range = True
    result = run("bigearthnet", "--mirror", server.root, *FAST)
    assert result.exit_code == 0, result.output
    assert [hit.range for hit in server.gets(paths["BigEarthNet-S2-v1.0.tar.gz"])] == ["bytes=8000-"]
    assert part.with_suffix("").read_bytes() == archives.ben_tar


def test_wrong_checksum_exits_1_extracts_nothing_and_leaves_nothing_complete(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, archives: Archives
) -> None:
    serve_bigearthnet(server, monkeypatch, archives, md5="0" * 32)
    result = run("bigearthnet", "--mirror", server.root, *FAST)
    assert_one_line_error(
        result, r"BigEarthNet-S2-v1\.0\.tar\.gz .*failed verification.*md5 is [0-9a-f]{32}, expected 0{32}"
    )
    root = data_dir("bigearthnet")
    assert not (root / "BigEarthNet-v1.0").exists()
    assert not (root / download.MARKER).exists()
    assert not (root / ".downloads" / "BigEarthNet-S2-v1.0.tar.gz").exists()
    assert leftovers(root) == []


# ---------------------------------------------------------------------------------------------
# Unsafe and damaged archives: tests/test_archives.py


# ---------------------------------------------------------------------------------------------
# Network errors, disk space, dry run


def test_500_then_200_is_retried(server: FileServer, monkeypatch: pytest.MonkeyPatch, archives: Archives) -> None:
    paths = serve_bigearthnet(server, monkeypatch, archives)
    archive_path = paths["BigEarthNet-S2-v1.0.tar.gz"]
    server.fail[archive_path] = [500, 503]
    result = run("bigearthnet", "--mirror", server.root, *FAST)
    assert result.exit_code == 0, result.output
    assert [hit.status for hit in server.gets(archive_path)] == [500, 503, 200]


def test_persistent_500_fails_after_the_retries_with_one_line(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, archives: Archives
) -> None:
    paths = serve_bigearthnet(server, monkeypatch, archives)
    server.fail[paths["train.csv"]] = [500] * 10
    result = run("bigearthnet", "--mirror", server.root, "--retries", "3", *FAST)
    assert_one_line_error(result, r"downloading train\.csv from http://127\.0\.0\.1.*failed after 3 tries: HTTP 500")
    assert len(server.gets(paths["train.csv"])) == 3


def test_404_is_final_without_retries(server: FileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    small_forestnet(monkeypatch)
    result = run("forestnet", "--mirror", server.root + "/nothing-here", *FAST)
    assert_one_line_error(result, r"answered HTTP 404")
    assert len(server.gets()) == 1


def test_unreachable_host_fails_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    small_forestnet(monkeypatch)
    with serve() as closed:
        port = closed.port
    result = run("forestnet", "--mirror", f"http://127.0.0.1:{port}", "--retries", "2", *FAST)
    assert_one_line_error(result, r"failed after 2 tries: cannot reach 127\.0\.0\.1")


def test_no_free_disk_is_refused_before_fetching(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, archives: Archives
) -> None:
    serve_bigearthnet(server, monkeypatch, archives)
    real = shutil.disk_usage

    def tiny_disk(path: Any) -> Any:
        usage = real(path)
        return type(usage)(usage.total, usage.total - 5_000_000, 5_000_000)

    monkeypatch.setattr(shutil, "disk_usage", tiny_disk)
    result = run("bigearthnet", "--mirror", server.root, *FAST)
    assert_one_line_error(result, r"not enough free disk space for bigearthnet .* 5\.0 MB is free")
    assert server.log == []
    assert not (data_dir("bigearthnet") / ".downloads").exists()


def test_dry_run_lists_sources_sizes_and_disk_and_fetches_nothing(server: FileServer) -> None:
    result = run("bigearthnet", "--dry-run", "--json", "--mirror", server.root + "/mirror/")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["status"] == "dry run"
    rows = {f["name"]: f for f in plan["files"]}
    archive = rows["BigEarthNet-S2-v1.0.tar.gz"]
    assert archive["url"] == server.root + "/mirror/records/12687186/files/BigEarthNet-S2-v1.0.tar.gz?download=1"
    assert archive["md5"] == "5a64e9ce38deb036a435a7b59494924c" and archive["size"] == 66 * GB
    assert rows["test.csv"]["md5"] == "697fb90677e30571b9ac7699b7e5b432"
    assert "9a5be07346ab0884b2d9517475c27ef9db9b5104/splits/test.csv" in rows["test.csv"]["url"]
    planned = 66 * GB + (22 + 11 + 11) * MB + BEN_ARCHIVE.extracted_size
    assert plan["disk_needed"] == planned + int(0.02 * planned) + 100 * MB
    assert server.log == [] and not data_dir("bigearthnet").exists()

    table = run("forestnet", "--dry-run")
    assert table.exit_code == 0, table.output
    assert "forestnet: would download" in table.stdout and "disk needed: 7.2 GB" in table.stdout


# ---------------------------------------------------------------------------------------------
# ForestNet: trust on first use, 416, delete-archive, interrupted processes


def test_forestnet_trusts_on_first_use_and_refuses_a_changed_file_later(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, archives: Archives, tmp_path: Path
) -> None:
    small_forestnet(monkeypatch)
    server.add(path_of(FN_ARCHIVE.url), archives.fn_zip)
    result = run("forestnet", "--mirror", server.root, "--delete-archive", "--json", *FAST)
    assert result.exit_code == 0, result.output
    known = json.loads((Path(os.environ["RSIR_CACHE"]) / "known-checksums.json").read_text())
    assert known["forestnet/ForestNetDataset.zip"]["sha256"] == sha256(archives.fn_zip)
    root = data_dir("forestnet")
    assert not (root / ".downloads" / "ForestNetDataset.zip").exists()  # --delete-archive
    assert json.loads((root / download.MARKER).read_text())["archives_kept"] is False
    assert sorted(open_split("forestnet", "test", None).ids) == sorted(archives.fn_names["test"])
    assert run("forestnet", "--mirror", server.root, *FAST).exit_code == 0  # complete: no refetch
    assert len(server.gets()) == 1

    # The "same" file, changed (same size, then another size): refused in another directory
    # before anything is extracted; accepted, and recorded anew, with --force.
    other = tmp_path / "elsewhere"
    flipped = bytearray(archives.fn_zip)
    flipped[100] ^= 0xFF
    server.files[path_of(FN_ARCHIVE.url)] = bytes(flipped)
    changed = run("forestnet", "--mirror", server.root, "--data-dir", other, *FAST)
    assert_one_line_error(
        changed, r"failed verification \(sha256 is .*differs from the file first downloaded .*--force"
    )
    buffer = io.BytesIO(archives.fn_zip)
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.comment = b"version 2"
    server.files[path_of(FN_ARCHIVE.url)] = buffer.getvalue()
    resized = run("forestnet", "--mirror", server.root, "--data-dir", other, *FAST)
    assert_one_line_error(resized, r"serves [\d,]+ bytes, expected [\d,]+: .*differs from the file first downloaded")
    assert not (other / "ForestNetDataset").exists() and leftovers(other) == []
    forced = run("forestnet", "--mirror", server.root, "--data-dir", other, "--force", *FAST)
    assert forced.exit_code == 0, forced.output
    known = json.loads((Path(os.environ["RSIR_CACHE"]) / "known-checksums.json").read_text())
    assert known["forestnet/ForestNetDataset.zip"]["sha256"] == sha256(buffer.getvalue())


def test_complete_part_file_gets_416_and_is_used(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, archives: Archives
) -> None:
    small_forestnet(monkeypatch)
    server.add(path_of(FN_ARCHIVE.url), archives.fn_zip)
    part = data_dir("forestnet") / ".downloads" / "ForestNetDataset.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(archives.fn_zip)
    result = run("forestnet", "--mirror", server.root, *FAST)
    assert result.exit_code == 0, result.output
    assert [(hit.range, hit.status) for hit in server.gets()] == [(f"bytes={len(archives.fn_zip)}-", 416)]
    assert (data_dir("forestnet") / "ForestNetDataset" / "val.csv").is_file()


def test_a_second_download_into_the_same_directory_is_refused_while_one_runs(
    server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    small_forestnet(monkeypatch)
    lock = data_dir("forestnet") / ".downloads" / ".lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        result = run("forestnet", "--mirror", server.root, *FAST)
    assert_one_line_error(result, r"another rsir download is writing")
    assert server.log == []


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_process_resumes_with_range_and_the_file_is_byte_identical(
    server: FileServer, archives: Archives, tmp_path: Path, stop: signal.Signals
) -> None:
    free = shutil.disk_usage(tmp_path).free
    if free < 8 * GB:  # the real ForestNet table plans for 3 GB + 4 GB (a subprocess sees no monkeypatch)
        pytest.skip(f"needs 8 GB free for ForestNet's disk check, {free / 1e9:.1f} GB free")
    archive_path = path_of(FN_ARCHIVE.url)
    server.add(archive_path, archives.fn_zip)
    server.throttle = (4096, 0.06)  # ~70 kB/s: the 390 kB transfer takes about 6 s (room for a loaded machine)
    part = data_dir("forestnet") / ".downloads" / "ForestNetDataset.zip.part"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "rsir_cli", "-q", "download", "forestnet", "--mirror", server.root]
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (part.is_file() and part.stat().st_size >= 32_768):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.01)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=30)
    if stop == signal.SIGINT:
        assert process.returncode == 130 and b"Interrupted" in stderr, stderr
    else:
        assert process.returncode == -signal.SIGKILL
    kept = part.stat().st_size
    assert 0 < kept < len(archives.fn_zip)
    assert not (data_dir("forestnet") / download.MARKER).exists()
    assert not (data_dir("forestnet") / "ForestNetDataset").exists()

    server.throttle = None
    result = run("forestnet", "--mirror", server.root, "--json", *FAST)
    assert result.exit_code == 0, result.output
    gets = server.gets(archive_path)
    assert gets[0].range is None and (gets[-1].range, gets[-1].status) == (f"bytes={kept}-", 206)
    report = json.loads(result.stdout)["files"][0]
    assert report["status"] == "resumed" and report["resumed_from"] == kept
    assert (data_dir("forestnet") / ".downloads" / "ForestNetDataset.zip").read_bytes() == archives.fn_zip
    assert len(open_split("forestnet", "val", None)) == 3


def test_the_real_forestnet_zip_installs_as_forestnetdataset_and_nothing_else(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, archives: Archives
) -> None:
    """The published zip holds deep/downloads/ForestNetDataset/ (tests/fakedata.forestnet_zip builds it so)."""
    with zipfile.ZipFile(io.BytesIO(archives.fn_zip)) as archive:
        assert {name.split("/", 3)[2] for name in archive.namelist() if name.count("/") >= 3} == {"ForestNetDataset"}
    small_forestnet(monkeypatch)
    server.add(path_of(FN_ARCHIVE.url), archives.fn_zip)
    result = run("forestnet", "--mirror", server.root, *FAST)
    assert result.exit_code == 0, result.output
    root = data_dir("forestnet")
    assert sorted(p.name for p in root.iterdir()) == [".downloads", download.MARKER, "ForestNetDataset"]
    assert (root / "ForestNetDataset" / "val.csv").read_bytes() == (
        archives.fn_tree / "ForestNetDataset" / "val.csv"
    ).read_bytes()
    assert sorted(open_split("forestnet", "test", None).ids) == sorted(archives.fn_names["test"])


def test_a_hand_unzipped_forestnet_is_found_from_each_folder_of_the_real_layout(
    archives: Archives, tmp_path: Path
) -> None:
    unzipped = tmp_path / "unzipped"
    with zipfile.ZipFile(io.BytesIO(archives.fn_zip)) as archive:  # as `unzip ForestNetDataset.zip` does
        archive.extractall(unzipped)
    for folder in ("", "deep", "deep/downloads", "deep/downloads/ForestNetDataset"):
        reader = open_split("forestnet", "val", unzipped / folder)
        assert reader.ids == archives.fn_names["val"], folder
        assert reader.root == unzipped / "deep" / "downloads" / "ForestNetDataset"


def _no_sleeping(monkeypatch: pytest.MonkeyPatch) -> None:
    from rsir_cli.download import http

    def refuse(seconds: float) -> None:
        raise AssertionError(f"retried a host that does not resolve (slept {seconds} s)")

    monkeypatch.setattr(http.time, "sleep", refuse)


def test_a_host_that_does_not_resolve_fails_at_once_and_the_printed_way_round_works(
    monkeypatch: pytest.MonkeyPatch, archives: Archives, tmp_path: Path
) -> None:
    _no_sleeping(monkeypatch)
    small_forestnet(monkeypatch)
    where = tmp_path / "forest"
    result = run("forestnet", "--mirror", "http://nonexistent.invalid", "--data-dir", where, "--retry-wait", "5")
    hand = where / ".downloads" / "ForestNetDataset.zip"
    assert_one_line_error(
        result,
        r"cannot resolve the host name nonexistent\.invalid .*pass --mirror URL .*fetch "
        r"https://download\.cs\.stanford\.edu/deep/ForestNetDataset\.zip on a machine with network access and "
        r"save it as " + re.escape(str(hand)),
    )
    # Doing what it says: the file put there by hand is verified, extracted and trusted from now on.
    hand.write_bytes(archives.fn_zip)
    again = run("forestnet", "--mirror", "http://nonexistent.invalid", "--data-dir", where, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["files"][0]["status"] == "present"
    assert len(open_split("forestnet", "val", where)) == 3


def test_unresolvable_weights_hosts_name_mirror_and_weights_path(
    monkeypatch: pytest.MonkeyPatch, hub_cache: Path
) -> None:
    from huggingface_hub import constants

    from rsir_cli.config import weights_dir

    _no_sleeping(monkeypatch)
    url_weights = run("vit-tv", "--mirror", "http://nonexistent.invalid")
    assert_one_line_error(
        url_weights,
        r"cannot resolve the host name nonexistent\.invalid.*--mirror URL.*--weights PATH.*save it as "
        + re.escape(str(weights_dir() / "vit_b_16-c867db91.pth")),
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    hub = run("prithvi", "--mirror", "http://nonexistent.invalid")
    assert_one_line_error(hub, r"cannot resolve nonexistent\.invalid \(pass --mirror URL.*--weights PATH")


def test_credentials_in_a_mirror_are_sent_as_basic_auth_and_never_shown_or_written(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, archives: Archives, tmp_path: Path, hub_cache: Path
) -> None:
    user, password = "rsir-user-7f3a", "s3cret@Pa55"  # the @ travels percent-encoded in the URL
    server.auth = (user, password)
    mirror = f"http://{user}:s3cret%40Pa55@127.0.0.1:{server.port}"
    paths = serve_bigearthnet(server, monkeypatch, archives)
    small_forestnet(monkeypatch)
    server.add(path_of(FN_ARCHIVE.url), archives.fn_zip)
    outputs = [
        run("bigearthnet", "--dry-run", "--mirror", mirror),
        run("bigearthnet", "--dry-run", "--json", "--mirror", mirror),
        run("forestnet", "--mirror", mirror, "--json", *FAST),
        run("forestnet", "--mirror", mirror, *FAST),  # already complete: the table of the marker
        run("bigearthnet", "--mirror", f"http://{user}:wrong@127.0.0.1:{server.port}", *FAST),
        run("vit-tv", "--dry-run", "--mirror", mirror),
        run("prithvi", "--dry-run", "--json", "--mirror", mirror),
    ]
    server.fail[paths["train.csv"]] = [500] * 5
    outputs.append(run("bigearthnet", "--mirror", mirror, "--retries", "2", *FAST))
    codes = [result.exit_code for result in outputs]
    assert codes == [0, 0, 0, 0, 1, 0, 0, 1], [r.output for r in outputs]
    assert "HTTP 401" in outputs[4].output and "user name and password in --mirror" in outputs[4].output
    assert f"http://***@127.0.0.1:{server.port}/deep/ForestNetDataset.zip" in outputs[2].stdout
    for result in outputs:
        for secret in (password, "s3cret%40Pa55", user):
            assert secret not in result.output, result.output
    # The archive was fetched with the credentials, and they are in no file rsir wrote.
    assert [hit.authorization is not None for hit in server.gets(path_of(FN_ARCHIVE.url))] == [True]
    assert len(open_split("forestnet", "val", None)) == 3
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.is_symlink():
            content = path.read_bytes()
            for secret in (password, "s3cret%40Pa55", user):
                assert secret.encode() not in content, path


# ---------------------------------------------------------------------------------------------
# Weights


PRITHVI_REPO = "ibm-nasa-geospatial/Prithvi-EO-1.0-100M"
PRITHVI_FILE = "Prithvi_EO_V1_100M.pt"


@pytest.fixture
def hub_cache(monkeypatch: pytest.MonkeyPatch) -> Path:
    """huggingface_hub reads HF_HOME / HF_HUB_OFFLINE once, at import: point it at this test's HF_HOME."""
    from huggingface_hub import constants

    cache = Path(os.environ["HF_HOME"]) / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def place_in_hub_cache(cache: Path, repo_id: str, filename: str, data: bytes, blob: str | None = None) -> Path:
    """The Hugging Face cache layout: blobs/<etag>, snapshots/<commit>/<file> -> blob, refs/main."""
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (folder / "blobs").mkdir(parents=True)
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "refs").mkdir()
    blob_name = blob or sha256(data)
    (folder / "blobs" / blob_name).write_bytes(data)
    (folder / "snapshots" / commit / filename).symlink_to(f"../../blobs/{blob_name}")
    (folder / "refs" / "main").write_text(commit)
    return folder / "snapshots" / commit / filename


def test_prithvi_offline_from_the_hub_cache_is_recorded_and_found_by_embed(hub_cache: Path) -> None:
    from rsir_cli.models import get_model_config
    from rsir_cli.models.weights import read_manifest, resolve_weights, weights_key

    data = os.urandom(4096)
    snapshot = place_in_hub_cache(hub_cache, PRITHVI_REPO, PRITHVI_FILE, data)
    result = run("prithvi", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["files"][0]["sha256"] == sha256(data)
    assert "etag" in report["files"][0]["checksum"]
    entry = read_manifest()[weights_key(get_model_config("prithvi"))]
    assert entry["sha256"] == sha256(data) and Path(entry["path"]).resolve() == snapshot.resolve()
    # prithvi-rgb shares the checkpoint: `rsir embed -m prithvi-rgb` resolves it with no --weights.
    resolved = resolve_weights(get_model_config("prithvi-rgb"))
    assert resolved.sha256 == sha256(data) and resolved.path.resolve() == snapshot.resolve()
    again = run("prithvi-rgb", "--json")
    assert json.loads(again.stdout)["status"] == "already complete"


def test_prithvi_offline_without_the_file_says_how_to_place_it(hub_cache: Path) -> None:
    result = run("prithvi")
    assert_one_line_error(
        result,
        r"offline mode \(HF_HUB_OFFLINE=1\) is on and Prithvi_EO_V1_100M\.pt .* not in the Hugging Face cache: "
        r"fetch https://huggingface\.co/ibm-nasa-geospatial/Prithvi-EO-1\.0-100M/resolve/main/Prithvi_EO_V1_100M\.pt"
        r".*--weights PATH.*" + re.escape(str(hub_cache)),
    )


def test_a_damaged_hub_blob_is_detected(hub_cache: Path) -> None:
    place_in_hub_cache(hub_cache, PRITHVI_REPO, PRITHVI_FILE, b"damaged", blob=sha256(b"the real file"))
    assert_one_line_error(run("prithvi"), r"the cached file is damaged; run `rsir download prithvi --force`")


def tiny_model_yaml(path: Path, weights: dict[str, Any]) -> Path:
    """A model config for the test suite's fake encoder (24 x 64 projection) with a weights source."""
    from tests.plugins.fake_encoder import PRITHVI_MEAN, PRITHVI_STD

    config = {
        "name": "tiny-fake",
        "description": "test model with downloadable weights",
        "architecture": "fake",
        "bands": ["B02", "B03", "B04", "B8A", "B11", "B12"],
        "mean": list(PRITHVI_MEAN),
        "std": list(PRITHVI_STD),
        "input_size": 32,
        "pooling": "mean_patch",
        "embed_dim": 64,
        "weights": weights,
    }
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def fake_checkpoint() -> bytes:
    import torch
    from safetensors.torch import save

    return save({"projection": torch.randn(24, 64, generator=torch.Generator().manual_seed(3))})


@pytest.mark.slow
def test_hub_download_through_a_local_endpoint_then_embed_finds_data_and_weights(
    server: FileServer,
    monkeypatch: pytest.MonkeyPatch,
    archives: Archives,
    hub_cache: Path,
    fake_encoder: str,
    tmp_path: Path,
) -> None:
    from huggingface_hub import constants

    from rsir_cli.store import EmbeddingStore

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    checkpoint = fake_checkpoint()
    hub_path = "/test-org/tiny-fake/resolve/main/model.safetensors"
    server.add(hub_path, checkpoint, {"X-Repo-Commit": "c" * 40, "ETag": f'"{sha256(checkpoint)}"'})
    model = tiny_model_yaml(
        tmp_path / "tiny.yaml",
        {"source": "huggingface", "repo_id": "test-org/tiny-fake", "filename": "model.safetensors"},
    )
    serve_bigearthnet(server, monkeypatch, archives)
    store = tmp_path / "store"
    embed = ["embed", "--model", str(model), "--dataset", "bigearthnet", "--store", str(store), "--workers", "0"]
    before = cli.run(*embed, "--device", "cpu")
    assert before.exit_code == 1 and "rsir download" in before.output, before.output

    weights = run(model, "--mirror", server.root, "--json")
    assert weights.exit_code == 0, weights.output
    assert json.loads(weights.stdout)["files"][0]["sha256"] == sha256(checkpoint)
    assert [(hit.method, hit.status) for hit in server.log if hit.path == hub_path] == [("HEAD", 200), ("GET", 200)]
    assert run("bigearthnet", "--mirror", server.root, *FAST).exit_code == 0

    result = cli.run(*embed, "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert [(r["split"], r["rows"]) for r in json.loads(result.stdout)] == [("val", 3), ("test", 4)]
    attrs = EmbeddingStore(store).attrs("tiny-fake", "bigearthnet", "test")
    assert attrs["weights_sha256"] == sha256(checkpoint) and attrs["random_weights"] is False


def test_url_weights_are_fetched_checked_by_prefix_recorded_and_not_fetched_twice(
    server: FileServer, tmp_path: Path, fake_encoder: str
) -> None:
    from rsir_cli.config import weights_dir
    from rsir_cli.models import get_model_config
    from rsir_cli.models.weights import read_manifest, resolve_weights, weights_key

    checkpoint = fake_checkpoint()
    url = "https://download.example.org/models/tiny.safetensors"
    server.add(path_of(url), checkpoint)
    good = tiny_model_yaml(
        tmp_path / "good.yaml",
        {"source": "url", "url": url, "filename": "tiny.safetensors", "sha256_prefix": sha256(checkpoint)[:8]},
    )
    result = run(good, "--mirror", server.root, "--json", *FAST)
    assert result.exit_code == 0, result.output
    assert (weights_dir() / "tiny.safetensors").read_bytes() == checkpoint
    config = get_model_config(str(good))
    assert read_manifest()[weights_key(config)]["sha256"] == sha256(checkpoint)
    assert resolve_weights(config).sha256 == sha256(checkpoint)
    assert json.loads(run(good, "--mirror", server.root, "--json").stdout)["status"] == "already complete"
    assert len(server.gets()) == 1

    wrong_prefix = "00000000" if not sha256(checkpoint).startswith("00000000") else "11111111"
    bad = tiny_model_yaml(
        tmp_path / "bad.yaml",
        {"source": "url", "url": url, "filename": "bad.safetensors", "sha256_prefix": wrong_prefix},
    )
    assert_one_line_error(run(bad, "--mirror", server.root, *FAST), rf"failed verification .*expected {wrong_prefix}")
    assert not (weights_dir() / "bad.safetensors").exists()
    assert not (weights_dir() / "bad.safetensors.part").exists()


def test_vit_tv_dry_run_names_torchvisions_file_and_where_it_goes(server: FileServer) -> None:
    from rsir_cli.config import weights_dir

    result = run("vit-tv", "--dry-run", "--json", "--mirror", server.root)
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)["files"][0]
    assert row["url"] == server.root + "/models/vit_b_16-c867db91.pth"
    assert Path(row["destination"]) == weights_dir() / "vit_b_16-c867db91.pth"
    assert "c867db91" in row["checksum"]
    assert server.log == []


def test_unknown_name_and_bad_mirror() -> None:
    assert_usage_error(run("imagenet"), r"unknown name 'imagenet': give a dataset \(bigearthnet, reben, forestnet\)")
    bad = run("forestnet", "--mirror", "ftp://example.org")
    assert bad.exit_code == 2 and "--mirror" in bad.output
    with_secret = run("forestnet", "--mirror", "ftp://someone:hunter2@example.org")
    assert with_secret.exit_code == 2 and "***@example.org" in with_secret.output
    assert "hunter2" not in with_secret.output and "someone" not in with_secret.output
    folder = run("folder")  # a dataset of the user's own files: nothing to download
    assert_usage_error(folder, r"dataset folder is your own files and has nothing to download")
