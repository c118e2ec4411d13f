"""No import cycle in genlab: among its modules, and among its folders (commands/, config/, data/,
models/, training/, metrics/, sweep/, explore/ and the top-level modules), counting the imports a
module makes when it is imported (module level; those inside functions run later, on use)."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import REPO

GENLAB = REPO / "genlab"


def module_name(path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(GENLAB.rglob("*.py"))}


def imported_at_module_level(path) -> set[str]:
    """The genlab modules `path` imports when it is imported (statements outside functions and classes)."""
    found = set()
    pending = list(ast.parse(path.read_text()).body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from genlab.x import y`: y may be a module of the package x
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        else:
            pending += [child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)]
    return {name for name in found if name in MODULES}


def folder(module: str) -> str:
    """genlab.sweep.jobs → genlab.sweep; a top-level module (genlab.files) is its own node."""
    parts = module.split(".")
    return ".".join(parts[:2])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def graphs() -> tuple[dict, dict]:
    modules = {name: imported_at_module_level(path) - {name} for name, path in MODULES.items()}
    folders: dict[str, set[str]] = {}
    for name, targets in modules.items():
        folders.setdefault(folder(name), set()).update(folder(t) for t in targets if folder(t) != folder(name))
    # A package's modules import its __init__ first: not an edge that says anything about layering.
    return modules, folders


def test_no_module_imports_itself_back():
    assert cycles(graphs()[0]) == []


def test_no_two_folders_import_each_other():
    assert cycles(graphs()[1]) == []


def test_every_module_imports_on_its_own():
    # Each in a fresh interpreter would take minutes; one interpreter importing all of them in turn
    # still fails on an import-order cycle the ast check could miss (e.g. through __import__).
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    done = subprocess.run([sys.executable, "-c", code, *sorted(MODULES)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
