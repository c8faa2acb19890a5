"""The package layout is the architecture: imports flow one way, and no packages import each other in a loop.

    cli, serve  ->  train, eval, safety  ->  data  ->  model  ->  encoders, projectors, llm  ->  ground
    (ground: config, registry, errors, paths, quiet, text_embed, objectives, _version)

Every import is counted, also those inside functions. The package root (`anymal/__init__.py`) is the
public facade on top of everything.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "anymal"
LAYERS = {"cli": 5, "serve": 5, "train": 4, "eval": 4, "safety": 4, "data": 3, "model": 2,
          "encoders": 1, "projectors": 1, "llm": 1}  # everything else at the top level: ground (0)


def _unit(parts: tuple[str, ...]) -> str:
    """The layer unit of a module path inside the package: its subpackage, or '' for a top-level module."""
    return parts[0] if len(parts) > 1 and (PACKAGE / parts[0]).is_dir() else ""


def module_imports() -> dict[str, set[str]]:
    """Module -> the package modules it imports (relative imports, also inside functions)."""
    out: dict[str, set[str]] = {}
    for f in PACKAGE.rglob("*.py"):
        rel = f.relative_to(PACKAGE).with_suffix("").parts
        here, deps = rel[:-1], set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = here[:len(here) - node.level + 1] + tuple(node.module.split(".") if node.module else ())
                for alias in node.names:
                    if (PACKAGE.joinpath(*target, alias.name + ".py")).is_file():
                        deps.add(".".join(target + (alias.name,)))
                    elif PACKAGE.joinpath(*target).with_suffix(".py").is_file():
                        deps.add(".".join(target))
                    elif target:
                        deps.add(".".join(target + ("__init__",)))
        out[".".join(rel)] = deps
    return out


def imports() -> list[tuple[str, str, str]]:
    """(importing module, its unit, imported unit) for every relative import between units."""
    out = []
    for f in PACKAGE.rglob("*.py"):
        rel = f.relative_to(PACKAGE).with_suffix("").parts
        if rel == ("__init__",):
            continue  # the facade
        here = rel[:-1]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = here[:len(here) - node.level + 1]
                target = base + tuple(node.module.split(".") if node.module else ())
                unit = _unit(target + ("x",)) if target and (PACKAGE / target[0]).is_dir() else ""
                if unit != _unit(rel):
                    out.append((".".join(rel), _unit(rel), unit))
    return out


def test_no_import_points_up_the_layers():
    up = [(m, a, b) for m, a, b in imports() if LAYERS.get(b, 0) > LAYERS.get(a, 0)]
    assert up == [], up


def test_packages_do_not_import_each_other_in_a_loop():
    edges: dict[str, set[str]] = {}
    for _, a, b in imports():
        edges.setdefault(a, set()).add(b)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in edges.get(start, ()))

    loops = sorted(a for a in edges if reaches(a, a, {a}))
    assert loops == [], {a: sorted(edges[a]) for a in loops}


def test_no_two_modules_import_each_other_even_through_others():
    graph = module_imports()

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for n in graph.get(todo.pop(), ()):
                if n == goal:
                    return True
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        return False

    assert [m for m in sorted(graph) if reaches(m, m)] == []
