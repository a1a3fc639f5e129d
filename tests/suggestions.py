"""Every command the tool suggests must run as printed: each one is parsed by the real app.

The test suite wraps Typer's test runner (``conftest.py``), so that every `rsir ...` the tool
prints between backticks in any test is parsed here with the real command-line app, with the
options and arguments as written; a suggestion that Typer would refuse (an unknown option, a
missing required option, a bad value) fails the test that made the tool print it.
"""

from __future__ import annotations

import re
import shlex

from typer.main import get_command

SUGGESTION = re.compile(r"`(rsir(?: [^`]*)?)`")
#: every suggestion seen in this test session (for the report of tests/test_suggestions.py)
SEEN: set[str] = set()


def suggestions(text: str) -> list[str]:
    """The backticked `rsir ...` commands in a text (lines folded by a terminal are joined first)."""
    return SUGGESTION.findall(" ".join(text.split()))


def parse(command: str) -> None:
    """Parse one suggested command with the real app; raise AssertionError when Typer refuses it."""
    from rsir_cli.cli.app import app

    argv = shlex.split(command)
    assert argv[0] == "rsir", command
    group = get_command(app)
    try:
        with group.make_context("rsir", argv[1:], resilient_parsing=False) as ctx:
            # the subcommand and its arguments, which the group leaves unparsed (Click 8.2+ keeps them private)
            protected = getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])
            args = [*protected, *ctx.args]
            if not args:
                return
            name, sub, rest = group.resolve_command(ctx, args)
            assert sub is not None, command
            with sub.make_context(name, rest, parent=ctx):
                pass
    except Exception as error:  # Typer's (vendored) Click raises its own UsageError / Exit classes
        if type(error).__name__ == "Exit":
            return  # --help / --version
        if hasattr(error, "format_message"):
            raise AssertionError(
                f"the tool suggested `{command}`, which does not parse: {error.format_message()}"
            ) from None
        raise


def check(text: str) -> None:
    for command in suggestions(text):
        SEEN.add(command)
        parse(command)
