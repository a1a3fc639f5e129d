"""Every command teaches: it has help with an example, and the README documents it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from rsir_cli.cli.app import app

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
COMMANDS = sorted(get_command(app).commands)  # type: ignore[attr-defined]
runner = CliRunner()


def test_the_expected_commands_exist() -> None:
    assert {"download", "embed", "hash", "evaluate", "search", "bench-milvus", "index", "info", "demo"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_command_has_help_with_an_example(name: str) -> None:
    result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert re.search(rf"rsir {re.escape(name)}\b", result.output), "the example invokes the command"


@pytest.mark.parametrize("name", COMMANDS)
def test_command_appears_in_the_readme(name: str) -> None:
    assert re.search(rf"`rsir {re.escape(name)}\b", README), f"README has no entry for `rsir {name}`"


def test_root_help_lists_every_command_with_one_line() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in COMMANDS:
        assert re.search(rf"│ {re.escape(name)}\s+\S", result.output), name


def test_version() -> None:
    from rsir_cli import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"rsir {__version__}"
    assert f"## {__version__} (" in (Path(__file__).resolve().parent.parent / "CHANGELOG.md").read_text()


def test_usage_errors_exit_2_and_user_errors_exit_1(tmp_path: Path) -> None:
    assert runner.invoke(app, ["embed", "--bogus-option"]).exit_code == 2
    result = runner.invoke(app, ["evaluate", "--store", str(tmp_path / "empty")])
    assert result.exit_code in (0, 1)  # an empty store: a clear note or a clear error, never a traceback
    assert "Traceback" not in result.output


def _placeholders(name: str) -> set[str]:
    """The ``<...>`` placeholders written in a command's docstring and option help (backticks aside)."""
    command = get_command(app).commands[name]  # type: ignore[attr-defined]
    texts = [command.help or "", *(getattr(param, "help", None) or "" for param in command.params)]
    return {" ".join(found.split()) for text in texts for found in re.findall(r"<[^<>]+>", text.replace("`", ""))}


def test_help_texts_have_placeholders_to_check() -> None:
    assert "<store>" in _placeholders("index") and "<dataset>" in _placeholders("embed")


@pytest.mark.parametrize("name", COMMANDS)
def test_help_shows_angle_bracket_placeholders(name: str) -> None:
    # Markdown help takes <store> for an HTML tag and drops it ("default /milvus.db").
    result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.replace("│", " ").split())
    for placeholder in _placeholders(name):
        assert placeholder in shown, f"rsir {name} --help drops {placeholder}"
