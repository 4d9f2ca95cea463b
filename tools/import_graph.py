"""The static import graph of ``edgevid``: modules in import cycles, function-local imports, lines.

    .venv/bin/python tools/import_graph.py [--json] [--cycles]

Every ``import``/``from ... import`` of an ``edgevid`` module is an edge, top-level or inside a function. ``from
edgevid.a import b`` points at ``edgevid.a.b`` when that is a module, else at ``edgevid.a``. Importing a
submodule also runs its parent packages' ``__init__``, so an edge to ``edgevid.a.b`` adds one to ``edgevid.a``
(except to the importer's own ancestors, which are already running when it runs). Cycles are the strongly connected
components (Tarjan) of the graph with all edges ("counting local imports") and of the graph with top-level edges
alone.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "edgevid"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def collect(root: Path = ROOT) -> tuple[dict[str, Path], list[tuple[str, str, bool, int]]]:
    """Modules (name -> file) and edges (importer, imported, local, line)."""
    files = {module_name(p): p for p in sorted((root / PACKAGE).rglob("*.py"))}
    edges = []
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_pkg = path.name == "__init__.py"
        for node, local in _imports(tree):
            for target in _targets(node, name, is_pkg, files):
                if target != name:
                    edges.append((name, target, local, node.lineno))
    return files, edges


def _imports(tree: ast.AST):
    """(import node, inside a function?) for every import statement."""
    stack = [(tree, False)]
    while stack:
        node, local = stack.pop()
        for child in ast.iter_child_nodes(node):
            inside = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, local
            else:
                stack.append((child, inside))


def _targets(node, importer: str, is_pkg: bool, files: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            pkg = importer.split(".") if is_pkg else importer.split(".")[:-1]
            pkg = pkg[:len(pkg) - node.level + 1]
            base = ".".join([*pkg, base] if base else pkg)
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
    found = []
    for name in names:
        if not (name == PACKAGE or name.startswith(PACKAGE + ".")):
            continue
        while name not in files and "." in name:
            name = name.rsplit(".", 1)[0]
        parts = name.split(".")
        found += [".".join(parts[:i]) for i in range(2, len(parts) + 1)]  # the parents' __init__ run too
    own = importer.split(".")
    ancestors = {".".join(own[:i]) for i in range(1, len(own) + 1)}  # already running when the importer runs
    return sorted(set(found) - ancestors)


def strongly_connected(nodes, edges) -> list[list[str]]:
    graph = {n: sorted({b for a, b in edges if a == n}) for n in nodes}
    index, low, on_stack, stack, comps, counter = {}, {}, set(), [], [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for n in sorted(nodes):
        if n not in index:
            visit(n)
    return sorted(comps, key=len, reverse=True)


TARGET_NAMES = {"onnx", "openvino", "trt", "tensorrt"}


def format_literals(files: dict[str, Path]) -> dict[str, int]:
    """Copies of format facts written as literals: checkpoint-suffix tuples (``.pt`` with ``.ckpt``), target ->
    suffix dict literals, and ``".bin"`` (an OpenVINO IR's weights file)."""
    counts = {"checkpoint_suffix_literals": 0, "target_suffix_maps": 0, "openvino_bin_literals": 0}
    for path in files.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                values = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                counts["checkpoint_suffix_literals"] += {".pt", ".ckpt"} <= values
            elif isinstance(node, ast.Dict):
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                values = [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
                counts["target_suffix_maps"] += bool(keys & TARGET_NAMES) and any(v.startswith(".") for v in values)
            elif isinstance(node, ast.Constant) and node.value == ".bin":
                counts["openvino_bin_literals"] += 1
    return counts


def measure(root: Path = ROOT) -> dict:
    files, edges = collect(root)
    lines = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in files.items()}
    statements = {(a, line) for a, _, _, line in edges}
    local_statements = {(a, line) for a, _, local, line in edges if local}
    all_edges = {(a, b) for a, b, _, _ in edges}
    top_edges = {(a, b) for a, b, local, _ in edges if not local}
    cycles = strongly_connected(files, all_edges)
    top_cycles = strongly_connected(files, top_edges)
    in_cycles = sorted({m for comp in cycles for m in comp})
    return {
        "modules": len(files),
        "lines": sum(lines.values()),
        "internal_import_statements": len(statements),
        "function_local_internal_imports": len(local_statements),
        "modules_in_cycles": len(in_cycles),
        "lines_in_cycles": sum(lines[m] for m in in_cycles),
        "cycles": cycles,
        "modules_in_top_level_cycles": sum(len(c) for c in top_cycles),
        "top_level_cycles": top_cycles,
        **format_literals(files),
        "local_imports": sorted(f"{files[a].relative_to(root)}:{line}" for a, line in local_statements),
    }


def main(argv: list[str]) -> int:
    result = measure()
    if "--json" in argv:
        print(json.dumps(result, indent=1))
        return 0
    print(f"modules                         {result['modules']}")
    print(f"lines                           {result['lines']}")
    print(f"internal import statements      {result['internal_import_statements']}")
    print(f"  of them function-local        {result['function_local_internal_imports']}")
    print(f"modules in import cycles        {result['modules_in_cycles']} "
          f"({result['lines_in_cycles']} lines, {len(result['cycles'])} cycle(s), counting local imports)")
    print(f"  with top-level imports alone  {result['modules_in_top_level_cycles']}")
    print(f"checkpoint-suffix literals      {result['checkpoint_suffix_literals']}")
    print(f"target -> suffix dict literals  {result['target_suffix_maps']}")
    print(f"'.bin' literals                 {result['openvino_bin_literals']}")
    if "--cycles" in argv:
        for comp in result["cycles"]:
            print("cycle:", " ".join(comp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
