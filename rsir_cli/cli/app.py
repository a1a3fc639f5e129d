"""The ``rsir`` Typer application: registers one module per command and the one error boundary."""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Annotated, Any

import typer
from rich.text import Text
from typer.core import TyperCommand
from typer.exceptions import TyperException

from rsir_cli import __version__
from rsir_cli.cli import (  # one module per command; each declares its command in cli/registry.py
    bench_milvus_cmd,  # noqa: F401
    demo_cmd,  # noqa: F401
    download_cmd,  # noqa: F401
    embed_cmd,  # noqa: F401
    evaluate_cmd,  # noqa: F401
    export_cmd,  # noqa: F401
    hash_cmd,  # noqa: F401
    import_cmd,  # noqa: F401
    index_cmd,  # noqa: F401
    info_cmd,  # noqa: F401
    output,
    registry,
    search_cmd,  # noqa: F401
)
from rsir_cli.errors import RsirError, UsageError

log = logging.getLogger("rsir_cli")
#: the commands in the order of the job
ORDER = ("download", "embed", "hash", "evaluate", "search", "index", "bench-milvus", "export", "import", "info", "demo")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one red error line on stderr; return the exit (code 1, or 2 for usage) to raise."""
    output.stderr.print(Text.assemble(("Error: ", "bold red"), message), highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _debug() -> bool:
    return os.environ.get("RSIR_DEBUG", "") not in ("", "0") or log.isEnabledFor(logging.DEBUG)


class RsirCommand(TyperCommand):
    """A Typer command whose errors are mapped once, here, to one clear line and an exit code.

    Library errors (RsirError) exit 1 with their message; usage errors exit 2, whichever layer
    notices them (Typer's own, or a UsageError raised by the library).
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Take -v / -q (and -vv, --verbose, --quiet) after the subcommand too, as before it."""
        rest: list[str] = []
        change = 0
        for position, arg in enumerate(args):
            if arg == "--":
                rest += args[position:]
                break
            if arg in ("--verbose", "--quiet"):
                change += 1 if arg == "--verbose" else -1
            elif re.fullmatch(r"-v+|-q+", arg):
                change += (len(arg) - 1) * (1 if arg[1] == "v" else -1)
            else:
                rest.append(arg)
        if change:
            output.configure_logging(output.verbosity + change)
        return super().parse_args(ctx, rest)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):
            raise
        except UsageError as error:
            if _debug():
                log.exception("traceback")
            raise fail(str(error), code=2) from None
        except RsirError as error:
            if _debug():
                log.exception("traceback")
            raise fail(str(error)) from None
        except KeyboardInterrupt:
            output.stderr.print(
                "Interrupted. Work written so far is kept; run the same command again to resume.", style="yellow"
            )
            raise typer.Exit(130) from None
        except MemoryError:
            options = {p.name for p in ctx.command.params}
            lower = [f"--{name.replace('_', '-')}" for name in ("batch_size", "k") if name in options]
            hint = f"lower {' or '.join(lower)} and run again" if lower else "try a smaller input"
            raise fail(f"out of memory: {hint}") from None
        except Exception as error:  # a bug: one line by default, the traceback with -v
            if _debug():
                log.exception("unexpected error")
            raise fail(
                f"unexpected {type(error).__name__}: {error} (run again with -v for the traceback, and please report it)"
            ) from None


app = typer.Typer(
    name="rsir",
    help=(
        "Content-based retrieval of multi-spectral satellite imagery with geospatial foundation models.\n\n"
        "Typical session:\n\n"
        "  rsir download bigearthnet && rsir download prithvi\n\n"
        "  rsir embed --model prithvi --dataset bigearthnet\n\n"
        "  rsir evaluate --hash none,binary,trivial,lsh --bits 32\n\n"
        "  rsir search path/to/tile.tif --k 10 --figure matches.png"
    ),
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rsir {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output on stderr (-v debug).")
    ] = 0,
    quiet: Annotated[
        int, typer.Option("--quiet", "-q", count=True, help="Only errors on stderr; no progress bars.")
    ] = 0,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """rsir: search satellite image archives by content."""
    output.configure_logging(verbose - quiet)


def _register() -> None:
    """Every command, in the order of the job (the root --help lists them so), with the error boundary."""
    for name in ORDER:
        spec = registry.COMMANDS[name]
        app.command(name, cls=RsirCommand, short_help=spec.help_line, no_args_is_help=False)(spec.function)
    unlisted = set(registry.COMMANDS) - set(ORDER)
    if unlisted:
        raise RuntimeError(f"commands {sorted(unlisted)} are declared but not in ORDER")


_register()


def main() -> None:
    """Console-script entry point."""
    app(prog_name="rsir")


if __name__ == "__main__":
    sys.exit(main())
