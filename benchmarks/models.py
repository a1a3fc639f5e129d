"""Encoder build time (random init + copy vs meta + assign), import cost, and CPU images/s.

    python benchmarks/models.py                   # everything (a few minutes on 2 cores)
    python benchmarks/models.py --skip throughput
    python benchmarks/models.py --baseline REV    # the rsir tree to compare whole processes with

Sections, all in one run so the ratios compare like with like:
- imports: fresh processes (median of 5) importing what building a Prithvi encoder needs: torch
  alone, torch + timm's ``Block`` (what ``models/prithvi.py`` imported before), and rsir's
  ``models.prithvi`` from the baseline tree and from this tree.
- process: a fresh process building Prithvi-100M / ViT-B/16 from a checkpoint file, with the
  baseline tree (random init, then copy the weights in) and this tree (built on ``meta``, the
  checkpoint's tensors assigned): the build as a search pays it, imports included.
- build: in this process, per model, the old strategy (a normal build with its random init, then
  ``load_state_dict`` copying) against the new one (``meta`` + assign), from the same in-memory
  checkpoint (reading the file costs the same either way and is left out).
- throughput: images/s of each encoder on 224 x 224 input already preprocessed, fp32 and bf16
  autocast, random weights (speed does not depend on their values), batch 2.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The last commit before encoders were built on the meta device (and before rsir's own blocks).
DEFAULT_BASELINE = "ac0ce67"
BUILD_MODELS = ["prithvi", "vit-tv", "prithvi-eo2-300m", "prithvi-eo2-600m", "dofa-base", "ssl4eo-vit-s16-moco"]
THROUGHPUT_MODELS = [
    "prithvi",
    "prithvi-eo2-300m",
    "prithvi-eo2-300m-tl",
    "prithvi-eo2-600m",
    "prithvi-eo2-600m-tl",
    "dofa-base",
    "dofa-large",
    "ssl4eo-vit-s16-moco",
]


def _run(code: str, pythonpath: Path) -> tuple[float, str]:
    """Wall seconds of a fresh ``python -c code`` process, and its stdout."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "RSIR_PLUGINS": ""}
    start = time.perf_counter()
    # Run from the tree's parent: ``python -c`` puts the working directory first on sys.path, and
    # the checkout's own rsir_cli would shadow the baseline tree.
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=pythonpath.parent
    )
    return time.perf_counter() - start, out.stdout.strip()


def _interleaved(runs: dict[str, tuple[str, Path]], repeats: int = 5) -> dict[str, dict[str, float]]:
    """Median wall seconds (and the last number each process printed) of fresh processes.

    The runs alternate (A, B, C, A, B, C, ...) so that a burst of load from other work on the
    machine falls on all of them alike.
    """
    walls: dict[str, list[float]] = {label: [] for label in runs}
    inner: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(repeats):
        for label, (code, pythonpath) in runs.items():
            wall, stdout = _run(code, pythonpath)
            walls[label].append(wall)
            if stdout:
                inner[label].append(float(stdout.splitlines()[-1]))
    result = {}
    for label in runs:
        result[label] = {"wall_s": round(statistics.median(walls[label]), 3)}
        if inner[label]:
            result[label]["build_s"] = round(statistics.median(inner[label]), 3)
    return result


def baseline_tree(rev: str, into: Path) -> Path | None:
    """``rsir_cli/`` as it was at ``rev`` (git archive), or None when git does not know ``rev``."""
    archive = into / "baseline.tar"
    with open(archive, "wb") as handle:
        done = subprocess.run(["git", "-C", str(REPO), "archive", rev, "rsir_cli"], stdout=handle)
    if done.returncode != 0:
        return None
    with tarfile.open(archive) as tar:
        tar.extractall(into / "baseline", filter="data")
    return into / "baseline"


def imports_section(baseline: Path | None) -> dict:
    runs = {
        "torch": ("import torch", REPO),
        "torch + timm Block (old prithvi.py)": ("import torch; from timm.models.vision_transformer import Block", REPO),
        "rsir_cli.models.prithvi (this tree)": ("import rsir_cli.models.prithvi", REPO),
    }
    if baseline is not None:
        runs["rsir_cli.models.prithvi (baseline)"] = ("import rsir_cli.models.prithvi", baseline)
    rows = _interleaved(runs)
    loaded = _run(
        "import sys, rsir_cli.models.prithvi; print(int(any(m.startswith(('timm', 'torchvision')) for m in sys.modules)))",
        REPO,
    )[1]
    return {"rows": rows, "timm_or_torchvision_imported_now": bool(int(loaded.splitlines()[-1]))}


_PROCESS_CODE = """
import time
from pathlib import Path
import torch
start = time.perf_counter()
from rsir_cli.models import build_encoder, get_model_config
encoder = build_encoder(get_model_config({model!r}), weights=Path({path!r}))
print(time.perf_counter() - start)
"""


def process_section(baseline: Path | None, workdir: Path) -> dict:
    import torch

    from rsir_cli.models import build_encoder, get_model_config

    out = {}
    for model in ("prithvi", "vit-tv"):
        path = workdir / f"{model}.pt"
        state = build_encoder(get_model_config(model), random_weights=True).module.state_dict()
        torch.save(state, path)
        code = _PROCESS_CODE.format(model=model, path=str(path))
        runs = {"this_tree": (code, REPO)}
        if baseline is not None:
            runs["baseline"] = (code, baseline)
        row: dict = _interleaved(runs)
        if baseline is not None:
            row["speedup_build"] = round(row["baseline"]["build_s"] / row["this_tree"]["build_s"], 2)
            row["speedup_wall"] = round(row["baseline"]["wall_s"] / row["this_tree"]["wall_s"], 2)
        out[model] = row
        print(f"process {model}: {row}", file=sys.stderr)
        path.unlink()
    return out


def build_section(models: list[str]) -> dict:
    import torch

    from rsir_cli.models import _ARCHITECTURES, _builtin_architectures, build_encoder, get_model_config

    _builtin_architectures()
    out = {}
    for model in models:
        config = get_model_config(model)
        checkpoint = build_encoder(config, random_weights=True).module.state_dict()
        architecture = _ARCHITECTURES[config.architecture]
        start = time.perf_counter()
        old = architecture.build(config)  # random initialisation of every weight ...
        old.load_state_dict(checkpoint, strict=True)  # ... then overwritten by the checkpoint's
        old_s = time.perf_counter() - start
        del old
        start = time.perf_counter()
        with torch.device("meta"):
            new = architecture.skeleton(config)
        architecture.load(new, checkpoint, "in-memory checkpoint")
        new_s = time.perf_counter() - start
        params = sum(p.numel() for p in new.parameters())
        del new, checkpoint
        out[model] = {
            "parameters_M": round(params / 1e6, 1),
            "init_then_copy_s": round(old_s, 3),
            "meta_then_assign_s": round(new_s, 3),
            "speedup": round(old_s / new_s, 1),
        }
        print(f"build {model}: {out[model]}", file=sys.stderr)
    return out


def throughput_section(models: list[str], batch: int, batches: int) -> dict:
    import torch

    from rsir_cli.models import build_encoder, get_model_config

    out = {}
    for model in models:
        config = get_model_config(model)
        encoder = build_encoder(config, random_weights=True)
        x = torch.randn(batch, len(config.bands), config.input_size, config.input_size)
        extras = encoder.extra_inputs(dates=[date(2021, 6, 1)] * batch, latlon=[(45.0, 7.0)] * batch)
        row: dict = {"inputs_given": sorted(extras)}
        for precision in ("fp32", "bf16"):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                encoder.module(x, **extras)  # warm-up
                start = time.perf_counter()
                for _ in range(batches):
                    encoder.module(x, **extras)
                seconds = time.perf_counter() - start
            row[f"{precision}_images_per_s"] = round(batch * batches / seconds, 2)
        row["bf16_speedup"] = round(row["bf16_images_per_s"] / row["fp32_images_per_s"], 2)
        out[model] = row
        print(f"throughput {model}: {row}", file=sys.stderr)
        del encoder
    reference = out.get("prithvi", {}).get("fp32_images_per_s")
    if reference:
        for row in out.values():
            row["fp32_vs_prithvi_100m"] = round(row["fp32_images_per_s"] / reference, 3)
    return out


def write_markdown(result: dict, path: Path) -> None:
    lines = [
        "# Encoders: build time, imports and CPU throughput",
        "",
        "Command: `python benchmarks/models.py`  ",
        f"Machine: {result['machine']}; load average {result['load_start']} at start, {result['load_end']} at end.",
        "",
        "Other work shared the 2 cores: absolute times are inflated by it; the ratios compare runs "
        "under the same load.",
        "",
    ]
    if "imports" in result:
        lines += [
            "## Imports for building a Prithvi encoder (fresh process, median of 5)",
            "",
            "| import | wall s |",
            "|---|---:|",
        ]
        lines += [f"| {k} | {v['wall_s']:.2f} |" for k, v in result["imports"]["rows"].items()]
        lines += [
            "",
            f"timm or torchvision imported by `rsir_cli.models.prithvi` now: {result['imports']['timm_or_torchvision_imported_now']}",
            "",
        ]
    if "process" in result:
        lines += [
            f"## Build from a checkpoint file in a fresh process (median of 5; baseline `{result['baseline']}`)",
            "",
            "| model | baseline build s | this build s | speed-up | baseline process s | this process s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for model, row in result["process"].items():
            base = row.get("baseline", {})
            lines.append(
                f"| {model} | {base.get('build_s', '')} | {row['this_tree']['build_s']} | {row.get('speedup_build', '')}x "
                f"| {base.get('wall_s', '')} | {row['this_tree']['wall_s']} |"
            )
        lines += [
            "",
            "Build s: from `import rsir_cli.models` to a ready encoder (imports of timm included where the tree needs them), torch already imported.",
            "",
        ]
    if "build" in result:
        lines += [
            "## Build with weights, in one process (checkpoint already in memory)",
            "",
            "| model | parameters (M) | random init + copy s | meta + assign s | speed-up |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {m} | {r['parameters_M']} | {r['init_then_copy_s']} | {r['meta_then_assign_s']} | {r['speedup']}x |"
            for m, r in result["build"].items()
        ]
        lines.append("")
    if "throughput" in result:
        t = result["throughput_setup"]
        lines += [
            f"## CPU throughput (batch {t['batch']}, {t['batches']} timed batches after a warm-up, {t['threads']} torch threads, 224 px)",
            "",
            "| model | extra inputs | fp32 images/s | bf16 images/s | bf16 / fp32 | fp32 vs Prithvi-100M |",
            "|---|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {m} | {', '.join(r['inputs_given']) or '-'} | {r['fp32_images_per_s']} | {r['bf16_images_per_s']} | "
            f"{r['bf16_speedup']}x | {r.get('fp32_vs_prithvi_100m', '')} |"
            for m, r in result["throughput"].items()
        ]
        lines.append("")
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision of the tree to compare with")
    parser.add_argument("--skip", nargs="*", default=[], choices=["imports", "process", "build", "throughput"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "models.json")
    args = parser.parse_args()

    import torch

    result: dict = {
        "machine": f"{os.cpu_count()} CPUs, {platform.platform()}, torch {torch.__version__}",
        "load_start": round(os.getloadavg()[0], 2),
        "baseline": args.baseline,
    }
    with tempfile.TemporaryDirectory() as tmp:
        baseline = baseline_tree(args.baseline, Path(tmp))
        if baseline is None:
            print(f"git does not know {args.baseline}: no baseline rows", file=sys.stderr)
        if "imports" not in args.skip:
            result["imports"] = imports_section(baseline)
        if "process" not in args.skip:
            result["process"] = process_section(baseline, Path(tmp))
        if "build" not in args.skip:
            result["build"] = build_section(BUILD_MODELS)
        if "throughput" not in args.skip:
            result["throughput_setup"] = {
                "batch": args.batch,
                "batches": args.batches,
                "threads": torch.get_num_threads(),
            }
            result["throughput"] = throughput_section(THROUGHPUT_MODELS, args.batch, args.batches)
    result["load_end"] = round(os.getloadavg()[0], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, args.out.with_suffix(".md"))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
