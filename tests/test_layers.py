"""The layout's layers point one way (docs/architecture.md): core (edgevlm_eval/core) at the bottom;
tasks, model_adapters and collab above it, independent of each other; the application
(edgevlm_eval/app) on top. Nothing imports upward, nothing imports in a cycle, and a function-local
import of the toolkit's own code is only for a module that loads a heavy optional dependency (torch,
transformers, fastapi)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"edgevlm_eval/core": "edgevlm_eval.core", "edgevlm_eval/app": "edgevlm_eval.app", "tasks": "edgevlm_eval.tasks",
         "collab": "edgevlm_eval.collab", "model_adapters": "edgevlm_eval.model_adapters"}
LAYER = {"core": 1, "tasks": 2, "collab": 2, "model_adapters": 2, "app": 3}
# Modules that import torch / transformers / fastapi at their top: loaded only when needed.
HEAVY = {"edgevlm_eval.model_adapters.qwen2_5_vl", "edgevlm_eval.model_adapters.hf_generic",
         "edgevlm_eval.model_adapters.tiny", "edgevlm_eval.model_adapters.focus", "edgevlm_eval.model_adapters.serve"}


def _modules():
    for folder, pkg in ROOTS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            yield ".".join([pkg, *parts]), path, path.name == "__init__.py"


def _imports():
    """(module, target, local?) for every import of the toolkit's own modules."""
    out = []
    for mod, path, is_pkg in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        pkg = mod if is_pkg else mod.rsplit(".", 1)[0]
        local_nodes = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[:len(pkg.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                targets = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                if t.startswith("edgevlm_eval."):
                    out.append((mod, t, id(node) in local_nodes))
    return out


def _part(mod: str) -> str:
    return mod.split(".")[1]


def test_imports_point_down():
    bad = []
    for mod, target, _ in _imports():
        a, b = _part(mod), _part(target)
        if b not in LAYER:
            continue
        if LAYER[b] > LAYER[a] or (LAYER[a] == LAYER[b] == 2 and a != b):
            bad.append(f"{mod} -> {target}")
    assert not bad, "imports that point up or sideways:\n" + "\n".join(bad)


def test_no_import_cycles():
    known = {m for m, _, _ in _modules()}
    graph = defaultdict(set)
    for mod, target, local in _imports():
        if local:
            continue
        while target not in known and "." in target:
            target = target.rsplit(".", 1)[0]  # `from pkg import name`: the package
        if target in known and target != mod:
            graph[mod].add(target)
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for n in sorted(graph[m]):
            if not n.startswith(m + "."):  # a package importing its own submodules is not a cycle
                visit(n)
        stack.pop()

    for m in sorted(graph):
        visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_function_local_imports_only_for_heavy_modules():
    bad = [f"{mod} -> {target}" for mod, target, local in _imports()
           if local and mod not in HEAVY and not any(target == h or target.startswith(h + ".") for h in HEAVY)]
    assert not bad, "function-local imports of light modules (import them at the top):\n" + "\n".join(bad)
