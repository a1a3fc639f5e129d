"""The commands of `rsir`, as the command modules declare them (``@command``); ``app.py`` registers them.

A command module imports this module, not the app, so that importing the app imports the command
modules and never the other way round (no import circle).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class CommandSpec:
    """One subcommand: its name, its one-line help (the root --help), and its function."""

    name: str
    help_line: str
    function: Callable[..., Any]


COMMANDS: dict[str, CommandSpec] = {}


def command(name: str, help_line: str) -> Callable[[F], F]:
    """Declare the function as subcommand ``name`` (its docstring is the command's --help)."""

    def declare(function: F) -> F:
        COMMANDS[name] = CommandSpec(name, help_line, function)
        return function

    return declare
