#!/usr/bin/env python3
"""Which public functions of ``rsir_cli`` lack Google-style ``Args:`` / ``Returns:`` sections.

A function counts as public when neither it, nor its class, nor its module's name starts with an
underscore, and it is not nested inside another function. It needs:

- ``Args:`` naming every parameter (``self``/``cls`` aside; ``*args``/``**kwargs`` by their names)
  when it takes any;
- ``Returns:`` (``Yields:`` for a generator) when it returns a value: an annotation other than
  ``None``, or, without one, a ``return`` with a value.

Exempt: the subcommands (functions decorated ``@command(...)``, whose docstring is the command's
``--help`` text), ``@property`` getters (their docstring says what the attribute is), ``@overload``
stubs, and functions whose whole docstring is ``See <name>.`` pointing at a documented twin.

    python scripts/docstring_coverage.py            summary per module, worst first
    python scripts/docstring_coverage.py --list     every function and what it lacks
    python scripts/docstring_coverage.py --check    exit 1 if anything lacks a section
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "rsir_cli"
_SECTION = re.compile(r"^(\s*)(Args|Arguments|Returns|Yields|Raises|Example|Examples|Note|Notes):\s*$")


@dataclass
class Finding:
    """One public function and what its docstring lacks."""

    path: str
    line: int
    name: str
    lacks: list[str]


def _decorator_names(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    names = set()
    for dec in node.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        if isinstance(target, ast.Attribute):
            names.add(target.attr)
        elif isinstance(target, ast.Name):
            names.add(target.id)
    return names


def _params(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = node.args
    names = [p.arg for p in [*a.posonlyargs, *a.args, *a.kwonlyargs]]
    if a.vararg:
        names.append(a.vararg.arg)
    if a.kwarg:
        names.append(a.kwarg.arg)
    return [n for n in names if n not in ("self", "cls")]


def _own_nodes(node: ast.AST):
    """The nodes of a function body, not descending into nested functions, classes or lambdas."""
    stack = list(ast.iter_child_nodes(node))
    while stack:
        child = stack.pop()
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        yield child
        stack.extend(ast.iter_child_nodes(child))


def _is_generator(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in _own_nodes(node))


def _returns_value(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    if node.returns is not None:
        ann = node.returns
        if isinstance(ann, ast.Constant) and ann.value is None:
            return False
        if isinstance(ann, ast.Constant) and ann.value == "None":
            return False
        if isinstance(ann, ast.Name) and ann.id == "NoReturn":
            return False
        return True
    return any(isinstance(n, ast.Return) and n.value is not None for n in _own_nodes(node))


def _section(doc: str, names: tuple[str, ...]) -> list[str] | None:
    """The lines of the first section headed by one of ``names``, or None if there is none."""
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        m = _SECTION.match(line)
        if m and m.group(2) in names:
            indent = len(m.group(1))
            body = []
            for nxt in lines[i + 1 :]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                body.append(nxt)
            return body
    return None


def _lacks(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    doc = ast.get_docstring(node) or ""
    if re.fullmatch(r"See `*[\w.]+`*\.?", doc.strip()):
        return []
    lacks = []
    params = _params(node)
    if params:
        body = _section(doc, ("Args", "Arguments"))
        if body is None:
            lacks.append("Args:")
        else:
            text = "\n".join(body)
            missing = [p for p in params if not re.search(rf"^\s*\**{re.escape(p)}\b", text, re.M)]
            if missing:
                lacks.append("Args: " + ", ".join(missing))
    if node.name != "__init__":
        if _is_generator(node):
            if _section(doc, ("Yields",)) is None:
                lacks.append("Yields:")
        elif _returns_value(node) and _section(doc, ("Returns",)) is None:
            lacks.append("Returns:")
    return lacks


def findings(root: Path = ROOT) -> tuple[int, list[Finding]]:
    """Every public function under ``root`` and what each one's docstring lacks.

    Args:
        root: the package folder to scan.

    Returns:
        The number of public functions that need a section, and the findings for those that lack
        one.
    """
    total = 0
    found: list[Finding] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).as_posix()
        if any(part.startswith("_") and part != "__init__.py" for part in path.relative_to(root).parts):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))

        def visit(body, prefix: str, rel: str) -> None:
            nonlocal total
            for node in body:
                if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                    visit(node.body, f"{prefix}{node.name}.", rel)
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    if node.name.startswith("_") and node.name != "__init__":
                        continue
                    if _decorator_names(node) & {"command", "property", "overload", "setter"}:
                        continue
                    needs = bool(_params(node)) or (
                        node.name != "__init__" and (_is_generator(node) or _returns_value(node))
                    )
                    if not needs:
                        continue
                    total += 1
                    lacks = _lacks(node)
                    if lacks:
                        found.append(Finding(rel, node.lineno, prefix + node.name, lacks))

        visit(tree.body, "", rel)
    return total, found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--list", action="store_true", help="every function and what it lacks")
    parser.add_argument("--check", action="store_true", help="exit 1 if anything lacks a section")
    args = parser.parse_args(argv)
    total, found = findings()
    if args.list:
        for f in found:
            print(f"{f.path}:{f.line}: {f.name}: lacks {'; '.join(f.lacks)}")
    else:
        per: dict[str, int] = {}
        for f in found:
            per[f.path] = per.get(f.path, 0) + 1
        for path, n in sorted(per.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"{n:4d}  {path}")
    print(f"{total - len(found)} of {total} public functions have their Args:/Returns: sections")
    return 1 if args.check and found else 0


if __name__ == "__main__":
    sys.exit(main())
