"""Helpers for CLI tests: run `rsir` in-process and check the one-line error contract."""

from __future__ import annotations

import re
from typing import Any

from typer.testing import CliRunner

from rsir_cli.cli.app import app

runner = CliRunner()


def run(*args: Any, env: dict[str, str] | None = None) -> Any:
    """``rsir ARGS...`` through Typer's runner (arguments are str()-ed)."""
    return runner.invoke(app, [str(a) for a in args], env=env)


def assert_one_line_error(result: Any, pattern: str, exit_code: int = 1) -> None:
    """Exit code 1 (2: a usage error), exactly one ``Error:`` line, no traceback, ``pattern`` in the output."""
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert re.search(pattern, result.output.replace("\n", " ")), result.output


def assert_usage_error(result: Any, pattern: str) -> None:
    """A usage error noticed by the library: exit code 2 and one ``Error:`` line, like Typer's own."""
    assert_one_line_error(result, pattern, exit_code=2)
