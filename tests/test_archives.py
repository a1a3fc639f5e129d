"""Safe extraction: hostile and damaged archives, served as the real file names, on this Python as it is.

Each hostile archive goes through `rsir download --mirror` against the local HTTP server. For every
one: one error line and exit 1; the whole temporary tree (the user's other folders, a file four
levels up, the rsir cache) is unchanged but for the dataset's own ``.downloads/``; nothing is
recorded as verified or trusted on first use. The formats themselves are checked against the bytes
the archives were built from.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from rsir_cli.download import DamagedArchiveError, UnsafeArchiveError, extract_archive
from rsir_cli.download.zstd import FrameWalker, ZstdReader, ZstdStreamError
from tests import archives as build
from tests import cli
from tests.cli import assert_one_line_error
from tests.httpserver import FileServer, serve

FAST = ("--retry-wait", "0")
BEN_TOP = "BigEarthNet-v1.0"
FN_TOP = "deep/downloads/ForestNetDataset"  # where the real ForestNetDataset.zip holds the data
UP = 4  # the chain aims four folders above the folder it is extracted into


@dataclass(frozen=True)
class Case:
    id: str
    dataset: str
    make: Callable[[Path], bytes]  # gets the tmp root (absolute-path members aim inside it)
    error: str  # a regex the error line must match
    name: str | None = None  # served under another real name (reBEN's .tar.zst)
    produces: tuple[str, ...] | None = None


def _ben_tar(*entries: build.Entry, compression: str = "gz") -> bytes:
    return build.tar_bytes([build.file_entry(f"{BEN_TOP}/ok/ok.txt"), *entries], compression)


def _fn_zip(*members: tuple[str, bytes, int | None]) -> bytes:
    return build.zip_bytes([(f"{FN_TOP}/train.csv", b"label\n", None), *members])


def _cut(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]


REFUSED = r"refusing {name}: member .*{why}.*nothing was extracted"
BEN_NAME, FN_NAME, ZST_NAME = r"BigEarthNet-S2-v1\.0\.tar\.gz", r"ForestNetDataset\.zip", r"BigEarthNet-S2\.tar\.zst"
CASES = [
    Case(
        "cve-2025-4517-chain",
        "bigearthnet",
        lambda root: build.tar_bytes(build.cve_2025_4517_chain(BEN_TOP, UP)),
        REFUSED.format(name=BEN_NAME, why="is a symbolic link"),
    ),
    Case(
        "tar-dotdot",
        "bigearthnet",
        lambda root: _ben_tar(build.file_entry(f"{BEN_TOP}/../../../evil.txt")),
        REFUSED.format(name=BEN_NAME, why="climbs out with '..'"),
    ),
    Case(
        "tar-absolute",
        "bigearthnet",
        lambda root: _ben_tar(build.file_entry(str(root / "l1" / "evil.txt"))),
        REFUSED.format(name=BEN_NAME, why="is an absolute path"),
    ),
    Case(
        "tar-symlink-out",
        "bigearthnet",
        lambda root: _ben_tar(
            build.symlink_entry(f"{BEN_TOP}/out", "../../.."), build.file_entry(f"{BEN_TOP}/out/evil.txt")
        ),
        REFUSED.format(name=BEN_NAME, why="is a symbolic link"),
    ),
    Case(
        "tar-hardlink-out",
        "bigearthnet",
        lambda root: _ben_tar(
            build.hardlink_entry(f"{BEN_TOP}/h", str(root / "l1" / "l2" / "existing.txt")),
            build.file_entry(f"{BEN_TOP}/h", b"overwritten\n"),
        ),
        REFUSED.format(name=BEN_NAME, why="is a hard link"),
    ),
    Case(
        "tar-hardlink-inside",  # harmless in itself, but neither dataset has one: refused all the same
        "bigearthnet",
        lambda root: _ben_tar(build.hardlink_entry(f"{BEN_TOP}/again.txt", f"{BEN_TOP}/ok/ok.txt")),
        REFUSED.format(name=BEN_NAME, why="is a hard link"),
    ),
    Case(
        "tar-char-device",
        "bigearthnet",
        lambda root: _ben_tar(build.special_entry(f"{BEN_TOP}/null", tarfile.CHRTYPE)),
        REFUSED.format(name=BEN_NAME, why="is a device file"),
    ),
    Case(
        "tar-block-device",
        "bigearthnet",
        lambda root: _ben_tar(build.special_entry(f"{BEN_TOP}/disk", tarfile.BLKTYPE)),
        REFUSED.format(name=BEN_NAME, why="is a device file"),
    ),
    Case(
        "tar-fifo",
        "bigearthnet",
        lambda root: _ben_tar(build.special_entry(f"{BEN_TOP}/pipe", tarfile.FIFOTYPE)),
        REFUSED.format(name=BEN_NAME, why="is a FIFO"),
    ),
    Case(
        "tar-backslash",
        "bigearthnet",
        lambda root: _ben_tar(build.file_entry(f"{BEN_TOP}\\..\\..\\evil.txt")),
        REFUSED.format(name=BEN_NAME, why="backslash"),
    ),
    Case(
        "tar-windows-drive",
        "bigearthnet",
        lambda root: _ben_tar(build.file_entry("C:/evil.txt")),
        REFUSED.format(name=BEN_NAME, why="Windows drive"),
    ),
    Case(
        "tar-unrelated-top-level",  # the data dir holds the user's mydata/: it must survive
        "bigearthnet",
        lambda root: _ben_tar(build.file_entry("mydata/precious.txt", b"replaced\n")),
        REFUSED.format(name=BEN_NAME, why="lies outside the dataset's folders BigEarthNet-v1.0/"),
    ),
    Case(
        "tar-gz-cut",
        "bigearthnet",
        lambda root: _cut(_ben_tar(build.file_entry(f"{BEN_TOP}/big.bin", os.urandom(300_000)))),
        r"BigEarthNet-S2-v1\.0\.tar\.gz is damaged \(EOFError.*nothing was extracted.*was kept",
    ),
    Case(
        "tar-without-end-marker",
        "bigearthnet",
        lambda root: build.tar_bytes([build.file_entry(f"{BEN_TOP}/a.txt")], "gz", end_marker=False),
        r"BigEarthNet-S2-v1\.0\.tar\.gz ends before its end-of-archive marker",
    ),
    Case(
        "tar-zst-escape",
        "bigearthnet",
        lambda root: build.tar_bytes(
            [build.file_entry("BigEarthNet-S2/ok.txt"), build.file_entry("BigEarthNet-S2/../../evil.txt")], "zst"
        ),
        REFUSED.format(name=ZST_NAME, why="climbs out with '..'"),
        name="BigEarthNet-S2.tar.zst",
        produces=("BigEarthNet-S2",),
    ),
    Case(
        "tar-zst-symlink",
        "bigearthnet",
        lambda root: build.tar_bytes(
            [build.symlink_entry("BigEarthNet-S2/out", ".."), build.file_entry("BigEarthNet-S2/out/evil.txt")], "zst"
        ),
        REFUSED.format(name=ZST_NAME, why="is a symbolic link"),
        name="BigEarthNet-S2.tar.zst",
        produces=("BigEarthNet-S2",),
    ),
    Case(
        "tar-zst-cut",
        "bigearthnet",
        # the last 2 bytes of the frame's checksum are missing: the tar inside is whole, only the frame is cut
        lambda root: build.tar_bytes([build.file_entry("BigEarthNet-S2/big.bin", os.urandom(300_000))], "zst")[:-2],
        r"BigEarthNet-S2\.tar\.zst is damaged .*the zstd stream ends inside a frame",
        name="BigEarthNet-S2.tar.zst",
        produces=("BigEarthNet-S2",),
    ),
    Case(
        "zip-served-as-tar-gz",
        "bigearthnet",
        lambda root: build.zip_bytes([(f"{BEN_TOP}/a.txt", b"x", None)]),
        r"BigEarthNet-S2-v1\.0\.tar\.gz is not a gzip file",
    ),
    Case(
        "zip-dotdot",
        "forestnet",
        lambda root: _fn_zip((f"{FN_TOP}/../../../../evil.txt", b"x", None), ("../../evil.txt", b"x", None)),
        REFUSED.format(name=FN_NAME, why="climbs out with '..'"),
    ),
    Case(
        "zip-absolute",
        "forestnet",
        lambda root: _fn_zip((str(root / "l1" / "evil.txt"), b"x", None)),
        REFUSED.format(name=FN_NAME, why="is an absolute path"),
    ),
    Case(
        "zip-symlink",
        "forestnet",
        lambda root: _fn_zip(build.zip_symlink(f"{FN_TOP}/out", "../../../.."), (f"{FN_TOP}/out/evil.txt", b"x", None)),
        REFUSED.format(name=FN_NAME, why="is a symbolic link"),
    ),
    Case(
        "zip-device",
        "forestnet",
        lambda root: _fn_zip((f"{FN_TOP}/null", b"", 0o020666)),  # S_IFCHR
        REFUSED.format(name=FN_NAME, why="is a device file, FIFO or socket"),
    ),
    Case(
        "zip-backslash",
        "forestnet",
        lambda root: _fn_zip(("deep\\..\\..\\evil.txt", b"x", None)),
        REFUSED.format(name=FN_NAME, why="backslash"),
    ),
    Case(
        "zip-duplicate-name",
        "forestnet",
        lambda root: _fn_zip((f"{FN_TOP}/train.csv", b"another\n", None)),
        REFUSED.format(name=FN_NAME, why="appears twice"),
    ),
    Case(
        "zip-unrelated-top-level",
        "forestnet",
        lambda root: _fn_zip(("mydata/precious.txt", b"replaced\n", None)),
        REFUSED.format(name=FN_NAME, why="lies outside the dataset's folders ForestNetDataset/"),
    ),
    Case(
        "zip-bad-crc",
        "forestnet",
        lambda root: build.damage_zip_crc(
            _fn_zip((f"{FN_TOP}/val.csv", os.urandom(50_000), None)), f"{FN_TOP}/val.csv"
        ),
        r"ForestNetDataset\.zip is damaged \(BadZipFile: Bad CRC-32.*was deleted \(run again",
    ),
    Case(
        "tar-served-as-zip",  # never read as a tar, though it is a perfectly good one
        "forestnet",
        lambda root: build.tar_bytes([build.file_entry(f"{FN_TOP}/train.csv", b"label\n")], ""),
        r"ForestNetDataset\.zip is not a zip file",
    ),
]


@pytest.fixture
def server():
    with serve() as running:
        yield running


def _tree(tmp_path: Path, dataset: str) -> Path:
    """tmp/l1/l2/l3/l4/<dataset> as the data dir, the user's mydata/ in it, a file four levels above."""
    data_dir = tmp_path / "l1" / "l2" / "l3" / "l4" / dataset
    (data_dir / "mydata").mkdir(parents=True)
    (data_dir / "mydata" / "precious.txt").write_bytes(b"the user's own file\n")
    (tmp_path / "l1" / "l2" / "existing.txt").write_bytes(b"precious\n")
    return data_dir


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_or_damaged_archive_exits_1_writes_nothing_outside_and_records_nothing(
    case: Case, server: FileServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data_dir = _tree(tmp_path, case.dataset)
    build.serve_archive(server, monkeypatch, case.dataset, case.make(tmp_path), name=case.name, produces=case.produces)
    downloads = data_dir / ".downloads"
    own_files = [downloads, data_dir / "splits"]  # BigEarthNet's split CSVs are plain files, not archives
    before = build.snapshot(tmp_path, skip=own_files)

    result = cli.run("download", case.dataset, "--mirror", server.root, "--data-dir", data_dir, *FAST)

    assert_one_line_error(result, case.error)
    assert build.snapshot(tmp_path, skip=own_files) == before  # incl. mydata/, existing.txt, the cache
    assert (tmp_path / "l1" / "l2" / "existing.txt").read_bytes() == b"precious\n"
    assert not (Path(os.environ["RSIR_CACHE"]) / "known-checksums.json").exists()  # not trusted on first use
    verified = json.loads((downloads / "verified.json").read_text()) if (downloads / "verified.json").exists() else {}
    assert not [dest for dest in verified if not dest.startswith("splits/")]  # no archive recorded as verified
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith((".extract-", ".old-"))]


def _unpatched_tarfile() -> bool:
    v = sys.version_info[:3]
    return (3, 11, 4) <= v < (3, 11, 13) or (3, 12, 0) <= v < (3, 12, 11) or (3, 13, 0) <= v < (3, 13, 4)


@pytest.mark.skipif(not _unpatched_tarfile(), reason="this interpreter has the CVE-2025-4517 fix")
def test_the_chain_really_escapes_tarfiles_data_filter_on_this_python(tmp_path: Path) -> None:
    """The fixture is the real exploit: tarfile's own safe mode writes outside its target here."""
    target = tmp_path / "l1" / "l2" / "l3" / "l4" / "target"
    target.mkdir(parents=True)
    (tmp_path / "l1" / "existing.txt").write_bytes(b"precious\n")
    archive = build.tar_bytes(build.cve_2025_4517_chain(BEN_TOP, UP, name_length=build.chain_name_length(target)), "")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    assert (tmp_path / "l1" / "evil.txt").is_file()
    assert (tmp_path / "l1" / "existing.txt").read_bytes() == b"overwritten through a hard link\n"

    # The same archive through rsir's extraction: refused, nothing written.
    (tmp_path / "l1" / "existing.txt").write_bytes(b"precious\n")
    (tmp_path / "l1" / "evil.txt").unlink()
    other = tmp_path / "l1" / "l2" / "l3" / "l4" / "rsir"
    other.mkdir()
    path = tmp_path / "chain.tar"
    path.write_bytes(archive)
    before = build.snapshot(tmp_path, skip=[target])  # tarfile's tree is too deep to walk by path
    with pytest.raises(UnsafeArchiveError, match="is a symbolic link"):
        extract_archive(path, other, [BEN_TOP])
    assert build.snapshot(tmp_path, skip=[target]) == before


# ---------------------------------------------------------------------------------------------
# The formats, against the bytes the archives were made of


def _source_files() -> dict[str, bytes]:
    return {
        "top/a.txt": b"alpha\n",
        "top/empty": b"",
        "top/sub/deeper/b.bin": os.urandom(3 * (1 << 20) + 17),  # spans several read chunks
        "top/sub/c.json": b'{"c": 1}',
    }


@pytest.mark.parametrize("kind", ["tar", "tar.gz", "tar.bz2", "tar.zst", "zip"])
def test_every_format_extracts_exactly_the_archived_bytes(kind: str, tmp_path: Path) -> None:
    files = _source_files()
    if kind == "zip":
        data = build.zip_bytes([(name, content, None) for name, content in files.items()])
    else:
        entries = [build.dir_entry("./top")] + [build.file_entry(f"./{n}", c) for n, c in files.items()]
        data = build.tar_bytes(entries, {"tar": "", "tar.gz": "gz", "tar.bz2": "bz2", "tar.zst": "zst"}[kind])
    archive = tmp_path / f"data.{kind}"
    archive.write_bytes(data)
    target = tmp_path / "target"
    assert extract_archive(archive, target, ["top"]) == ["top"]
    got = {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert got == files
    assert sorted(p.name for p in target.iterdir()) == ["top"]  # no scratch left


def test_an_archive_inside_a_prefix_lands_at_the_top_and_nothing_else_moves(tmp_path: Path) -> None:
    """ForestNet's zip holds deep/downloads/ForestNetDataset/: only that folder comes out, as ForestNetDataset/."""
    archive = tmp_path / "ForestNetDataset.zip"
    archive.write_bytes(build.zip_bytes([("deep/", b"", None), (f"{FN_TOP}/train.csv", b"label\n", None)]))
    target = tmp_path / "data"
    extract_archive(archive, target, ["ForestNetDataset"], inside=["deep/downloads", ""])
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == [
        "ForestNetDataset",
        "ForestNetDataset/train.csv",
    ]


def test_macos_metadata_is_skipped_but_a_link_among_it_is_still_refused(tmp_path: Path) -> None:
    archive = tmp_path / "data.zip"
    archive.write_bytes(
        build.zip_bytes([("top/a.txt", b"a", None), ("__MACOSX/top/._a.txt", b"x", None), ("top/._a.txt", b"x", None)])
    )
    target = tmp_path / "target"
    extract_archive(archive, target, ["top"])
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == ["top", "top/a.txt"]
    archive.write_bytes(build.zip_bytes([("top/a.txt", b"a", None), build.zip_symlink("__MACOSX/._l", "/etc")]))
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        extract_archive(archive, target, ["top"])


def test_a_link_already_in_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_bytes(b"keep\n")
    target = tmp_path / "data"
    target.mkdir()
    (target / "top").symlink_to(outside, target_is_directory=True)
    # a stale scratch folder of this very process id, with a link planted in it
    stale = target / f".extract-data.tar.{os.getpid()}.tmp"
    stale.mkdir()
    (stale / "top").symlink_to(outside, target_is_directory=True)
    archive = tmp_path / "data.tar"
    archive.write_bytes(build.tar_bytes([build.file_entry("top/keep.txt", b"new\n")], ""))
    extract_archive(archive, target, ["top"])
    assert not (target / "top").is_symlink() and (target / "top" / "keep.txt").read_bytes() == b"new\n"
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert (outside / "keep.txt").read_bytes() == b"keep\n"


@pytest.mark.parametrize("kind", ["tar.gz", "tar.bz2", "tar.zst", "zip"])
def test_every_cut_of_an_archive_is_damaged_and_leaves_the_target_as_it_was(kind: str, tmp_path: Path) -> None:
    files = {"top/a.bin": os.urandom(40_000), "top/b.txt": b"b\n" * 1000}
    if kind == "zip":
        data = build.zip_bytes([(name, content, None) for name, content in files.items()])
    else:
        compression = {"tar.gz": "gz", "tar.bz2": "bz2", "tar.zst": "zst"}[kind]
        data = build.tar_bytes([build.file_entry(n, c) for n, c in files.items()], compression)
    target = tmp_path / "target"
    target.mkdir()
    (target / "top").mkdir()
    (target / "top" / "old.txt").write_bytes(b"the previous copy\n")
    archive = tmp_path / f"a.{kind}"
    for cut in range(1, len(data), max(1, len(data) // 23)):
        archive.write_bytes(data[:cut])
        with pytest.raises((DamagedArchiveError, UnsafeArchiveError)):
            extract_archive(archive, target, ["top"])
        assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == ["top", "top/old.txt"], cut


def test_the_zstd_frame_walker_knows_every_frame_boundary() -> None:
    """Independent truth: the stream is a concatenation of separately made frames of known lengths."""
    import zstandard

    pieces = [
        zstandard.ZstdCompressor(level=3, write_checksum=True).compress(b"abc" * 5000 + os.urandom(3000)),
        (0x184D2A53).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"hello",  # a skippable frame
        zstandard.ZstdCompressor(level=1, write_content_size=False).compress(b"\0" * 200_000),
        zstandard.ZstdCompressor(level=19, write_checksum=True).compress(os.urandom(70_000)),
    ]
    stream = b"".join(pieces)
    boundaries = {sum(len(p) for p in pieces[: i + 1]) for i in range(len(pieces))}
    for cut in range(1, len(stream) + 1):
        walker = FrameWalker()
        for start in range(0, cut, 4099):  # fed in pieces that straddle headers
            walker.feed(stream[start : min(cut, start + 4099)])
        assert walker.at_frame_boundary == (cut in boundaries), cut
    whole = ZstdReader(io.BytesIO(stream))
    assert len(whole.read(1 << 30)) + sum(len(b) for b in iter(lambda: whole.read(1 << 16), b"")) > 0
    whole.finish()
    cut_short = ZstdReader(io.BytesIO(stream[:-1]))
    while cut_short.read(1 << 16):
        pass
    with pytest.raises(ZstdStreamError, match="ends inside a frame"):
        cut_short.finish()
