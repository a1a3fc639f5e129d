"""A command the tool suggests runs as printed, with the user's own options, and then does its job.

(Every suggestion printed anywhere in the suite is also parsed by the real app: tests/suggestions.py.)
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests import suggestions
from tests.cli import run


def _follow(output: str) -> object:
    """Run the one command an error message suggests, exactly as printed."""
    command = suggestions.suggestions(output)[-1]  # the error line's (a warning may have said it first)
    return run(*shlex.split(command)[1:])


@pytest.fixture
def val_only(tmp_path: Path, ben_root: Path, fake_encoder: str) -> Path:
    """A store with only the val split, embedded from a data folder and with options that are not defaults."""
    store = tmp_path / "my store"  # a space: the suggestion must quote it
    result = run("embed", "-m", fake_encoder, "-d", "bigearthnet", "--data-dir", ben_root, "--random-weights",
                 "--split", "val", "--precision", "bf16", "--store", store, "--workers", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    return store


def test_a_missing_split_suggests_the_embed_that_makes_it_like_the_other(val_only: Path, ben_root: Path) -> None:
    failed = run("evaluate", "--store", val_only)
    assert failed.exit_code == 1
    command = suggestions.suggestions(failed.output)[-1]
    for option in ("--split test", "--random-weights", "--precision bf16", f"--data-dir {ben_root}", "--store"):
        assert option in command, command
    followed = _follow(failed.output)
    assert followed.exit_code == 0, followed.output
    assert run("evaluate", "--store", val_only, "--hash", "none", "--k", "3").exit_code == 0


def test_missing_codes_suggest_the_hash_that_makes_them(val_only: Path) -> None:
    embedded = _follow(run("evaluate", "--store", val_only).output)  # the test split, as above
    assert embedded.exit_code == 0
    failed = run(
        "search", "--id", "S2A_MSIL2A_20170613T101031_0_45", "--hash", "itq", "--bits", "16", "--store", val_only
    )
    assert failed.exit_code == 1 and "`rsir hash --method itq --bits 16" in failed.output
    assert _follow(failed.output).exit_code == 0
    ids = run("info", "--ids", "--store", val_only, "--split", "val").stdout.split()
    found = run("search", "--id", ids[0], "--hash", "itq", "--bits", "16", "--store", val_only, "--k", "2")
    assert found.exit_code == 0, found.output


def test_verbosity_flags_work_after_the_subcommand_too(tmp_path: Path) -> None:
    missing = tmp_path / "none"
    quiet = run("info", "--store", missing, "-q")
    verbose = run("info", "-vv", "--store", missing)
    assert quiet.exit_code == verbose.exit_code == 1 and "does not exist" in quiet.output
    assert "--verbose" not in verbose.output  # taken as a flag, not refused as an unknown option
