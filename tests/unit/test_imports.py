"""The import graph of ``diadem_ray``, read from the source (every ``import``, at module top or inside
a function): no cycle between modules, and no arrow against the layering of docs/architecture.md."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

ROOT = Path(__file__).resolve().parents[2] / "diadem_ray"

# importer prefix -> prefixes it must never import (the layers, bottom to top: types/scene/config,
# grpo/packing/rewards, data/models, actors, cluster, driver/serve/cli)
# the layers of docs/architecture.md, bottom to top: a module imports from lower layers only; units of
# one layer do not import each other, except in the top (glue) layer, where every layer meets
LAYERS = [
    ["diadem_ray.types", "diadem_ray.scene"],
    ["diadem_ray.config"],
    ["diadem_ray.grpo", "diadem_ray.packing", "diadem_ray.rewards"],
    ["diadem_ray.data", "diadem_ray.models"],
    ["diadem_ray.actors", "diadem_ray.annotate"],
    ["diadem_ray.cluster"],
    ["diadem_ray.driver", "diadem_ray.serve", "diadem_ray.cli"],
]


def _unit(module: str) -> Tuple[int, str]:
    """(layer, unit) of a module; (-1, "") for modules outside the layers."""
    for level, units in enumerate(LAYERS):
        for unit in units:
            if module == unit or module.startswith(unit + "."):
                return level, unit
    return -1, ""


# the one arrow into a higher layer: config validation asks the (standard-library-only) family registry
ALLOWED = {("diadem_ray.config.rules", "diadem_ray.models.families")}


def modules() -> Dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        name = ".".join(p.relative_to(ROOT.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def import_graph() -> Dict[str, Set[str]]:
    """module -> the package modules it imports (``from pkg import mod`` resolves to ``pkg.mod``)."""
    mods = modules()
    graph: Dict[str, Set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t.startswith("diadem_ray") and t != name:
                    graph[name].add(t)
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    found: List[List[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_no_import_cycle_between_modules():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def violations(graph: Dict[str, Set[str]]) -> List[str]:
    """``importer -> imported`` arrows against :data:`LAYERS` (into a higher layer, or between two
    units of one layer below the top), less :data:`ALLOWED`."""
    bad = []
    top = len(LAYERS) - 1
    for src, targets in sorted(graph.items()):
        (ls, us) = _unit(src)
        for t in sorted(targets):
            (lt, ut) = _unit(t)
            if ls < 0 or lt < 0 or us == ut or (src, t) in ALLOWED:
                continue
            if lt > ls or (lt == ls and ls != top):
                bad.append(f"{src} -> {t}")
    return sorted(set(bad))


def test_no_import_against_the_layering():
    assert violations(import_graph()) == []


def test_the_layering_check_names_an_arrow_that_runs_back_up():
    graph = {
        "diadem_ray.models.tiny_av_frontend": {"diadem_ray.data.render"},
        "diadem_ray.config.rules": {"diadem_ray.models.families"},
    }
    assert violations(graph) == ["diadem_ray.models.tiny_av_frontend -> diadem_ray.data.render"]


def test_models_families_keeps_to_the_standard_library_at_its_top():
    tree = ast.parse((ROOT / "models" / "families.py").read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in top if isinstance(n, ast.ImportFrom)}
    assert names <= {"__future__", "abc", "typing"}
