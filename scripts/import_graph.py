#!/usr/bin/env python3
"""The import graph of rsir_cli: no circle, no module importing a higher layer, no oversized module.

    python scripts/import_graph.py            # exit 1 on a violation, with what and where
    python scripts/import_graph.py --dot      # the graph of packages, for Graphviz

Layers, low to high (docs/architecture.md): a module may import its own layer and the ones below.
Every import counts for layers, also those inside functions (they run too); imports under
``if TYPE_CHECKING:`` are for type hints only and do not count. Circles are looked for among the
imports that run when a module is imported (module level), which is where a circle breaks.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "rsir_cli"
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("errors", "config", "progress", "fileio", "dates", "bands", "provenance", "suggest", "geo",
                    "devices", "pixels", "__init__")),
    ("data", ("store", "datasets", "raster", "preprocessing", "hashing", "metrics", "models", "search", "figures",
              "html_map", "wkb", "geoparquet", "geoparquet_read", "arrow_columns", "stac", "samples", "download",
              "milvus_server")),
    ("pipelines", ("embedding", "stored_codes", "evaluation", "retrieval", "indexing", "bench", "exchange", "demo")),
    ("commands", ("cli", "__main__")),
]  # fmt: skip
#: modules allowed over the size limit, and why
LARGE = {"rsir_cli.search.kernels": "numba kernels, hand-unrolled on purpose"}
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for number, (_, members) in enumerate(LAYERS):
        if top in members:
            return number
    raise SystemExit(f"{module}: not in any layer of scripts/import_graph.py; add it")


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, package: str) -> tuple[set[str], set[str]]:
    """(module-level imports, all imports that run) of rsir_cli modules, as module names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top: set[str] = set()
    every: set[str] = set()

    def resolve(node: ast.ImportFrom) -> str:
        if node.level:
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if path.name == "__init__.py" else base[: len(base) - node.level]
            return ".".join([*base, node.module] if node.module else base)
        return node.module or ""

    def visit(nodes: list[ast.stmt], module_level: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _type_checking(node):
                continue
            found: list[str] = []
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = resolve(node)
                found = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for name in found:
                if name.startswith("rsir_cli"):
                    every.add(name)
                    if module_level:
                        top.add(name)
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    visit(child.body, module_level and isinstance(child, ast.ClassDef))
                elif isinstance(child, ast.stmt):
                    visit([child], module_level and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))
            if isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
                pass  # their bodies were visited as children above

    visit(tree.body, True)
    return top, every


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dot", action="store_true", help="print the package graph for Graphviz")
    args = parser.parse_args()
    files = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
    known = set(files)

    def owner(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    top_graph: dict[str, set[str]] = {}
    problems: list[str] = []
    edges: set[tuple[str, str]] = set()
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        top, every = imports(path, package)
        top_graph[module] = {o for o in map(owner, top) if o and o != module}
        for target in {o for o in map(owner, every) if o and o != module}:
            edges.add((module, target))
            if layer_of(target) > layer_of(module):
                problems.append(
                    f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]}), a higher layer"
                )
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES and module not in LARGE:
            problems.append(f"{module} has {lines} lines (more than {MAX_LINES})")

    # circles among module-level imports (a package's __init__ importing its own modules is fine)
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(top_graph.get(node, ())):
            if target.startswith(node + "."):
                continue
            if state.get(target) == 1:
                circle = stack[stack.index(target) :] + [target]
                if not all(
                    a.startswith(b + ".") or b.startswith(a + ".") for a, b in zip(circle, circle[1:], strict=False)
                ):
                    problems.append("import circle: " + " -> ".join(circle))
            elif target not in state:
                walk(target)
        stack.pop()
        state[node] = 2

    for module in sorted(top_graph):
        if module not in state:
            walk(module)
    if args.dot:
        packages = sorted({(a.split(".")[1] if "." in a else a, b.split(".")[1] if "." in b else b) for a, b in edges})
        print("digraph rsir {")
        for a, b in packages:
            if a != b:
                print(f'  "{a}" -> "{b}";')
        print("}")
    for problem in problems:
        print(problem)
    print(
        f"{len(files)} modules, {len(edges)} imports between them: "
        + ("OK" if not problems else f"{len(problems)} problems")
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
