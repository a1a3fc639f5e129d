"""`rsir demo`: the main job end to end on real sample imagery, one command at a time."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from rsir_cli import suggest
from rsir_cli.cli import output
from rsir_cli.cli.options import DeviceOption
from rsir_cli.cli.registry import command
from rsir_cli.errors import RsirError

OFFLINE_COMMAND = "./scripts/demo.sh --random-weights"


@command("demo", "Run the whole job on real sample imagery: embed, hash, evaluate, index, search.")
def demo(
    workdir: Annotated[
        Path, typer.Option("--workdir", help="Where the demo writes its store, tile and figure.")
    ] = Path("rsir-demo"),
    random_weights: Annotated[
        bool, typer.Option("--random-weights", help="Offline smoke run: RANDOM Prithvi weights, labelled as such.")
    ] = False,
    device: DeviceOption = "auto",
    model: Annotated[
        str, typer.Option("--model", "-m", help="The encoder to run (any `rsir embed` model).")
    ] = "prithvi",
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Start over: delete the demo's store and outputs in --workdir first.")
    ] = False,
) -> None:
    """Run the main job end to end on real sample imagery, showing each `rsir` command it runs.

    It fetches six labelled BigEarthNet patches and a 13-band Sentinel-2 scene from the package
    index (cached), fetches the Prithvi-100M weights, embeds both, hashes, evaluates like the
    paper, indexes the scene into Milvus Lite and searches it with a GeoTIFF tile, ending with
    the matches table, a figure and a GeoJSON file. Without a route to Hugging Face, it stops and
    names the offline command, which runs the same steps with random weights.

    Examples:

        rsir demo

        rsir demo --random-weights --workdir /tmp/rsir-demo

        rsir demo --fresh

    Run it again and the steps that are done say so (nothing is embedded twice); real-weights
    and random-weights runs keep separate stores (store/ and store-random/).
    """
    from rsir_cli import demo as demo_lib

    if random_weights:
        output.stderr.print(
            f"[bold magenta]SMOKE RUN: random {model} weights; the numbers and matches mean nothing.[/]"
        )
    if fresh:
        for path in demo_lib.start_over(workdir, random_weights=random_weights):
            output.note(f"removed {path}")
    plan = demo_lib.plan(workdir, random_weights=random_weights, device=device, model=model)
    started = time.perf_counter()
    for number, (title, args) in enumerate(plan.steps, start=1):
        output.stderr.rule(f"[bold]{number}/{len(plan.steps)}[/bold] {title}")
        output.stderr.print(f"$ rsir {shlex.join(args)}", style="cyan", highlight=False, soft_wrap=True)
        code = subprocess.call([sys.executable, "-m", "rsir_cli", *args])
        if code != 0 and args[0] == "download":
            raise RsirError(
                f"the {model} weights could not be fetched (see above; no route to huggingface.co?). "
                f"Run the same demo offline, with random weights, as a smoke run: {OFFLINE_COMMAND}"
            )
        if code != 0:
            raise RsirError(f"step {number} (rsir {args[0]}) failed with exit code {code}; see its message above")
    output.stderr.rule("done")
    smoke = " (SMOKE RUN, random weights)" if random_weights else ""
    output.note(
        f"Finished in {time.perf_counter() - started:.0f} s{smoke}. Wrote:\n"
        f"  store      {plan.store}\n  figure     {plan.figure}\n  GeoJSON    {plan.geojson}\n"
        f"  query tile {plan.query_tile}\nTry: {suggest.command('info', store=plan.store)}"
    )
