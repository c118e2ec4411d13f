"""Rules of genlab's layout that a reader relies on (issue 27): no dataset or model family is
named outside genlab/data/ and genlab/models/, in code or in a message a user sees."""

from __future__ import annotations

import ast
import re

from conftest import REPO

GENLAB = REPO / "genlab"
# The built-in datasets and families, by config name and by class name (as messages might say them).
NAMES = ("shapes", "mnist", "fashion_mnist", "celeba", "vae", "gan", "cgan", "dcgan", "fashion-mnist")
WORD = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, NAMES)) + r")(?![\w-])", re.IGNORECASE)
# A metric whose name is a dataset's: its one registry entry may spell it (`genlab eval metrics=[shapes]`).
ALLOWED = {("genlab/metrics/registry.py", "shapes")}
# `genlab --help`'s examples, like README's, are real command lines (documentation, as docstrings are).
DOCUMENTATION = {("genlab/cli.py", "USAGE")}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (documentation, not code)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                found.add(id(first.value))
    return found


def names_in_code(path, documentation: tuple[str, ...] = ()) -> list[tuple[int, str]]:
    """(line, name) of every dataset or family name inside a string literal of `path` (f-strings'
    text included), docstrings and the module-level constants named in `documentation` excepted."""
    tree = ast.parse(path.read_text())
    docs = _docstrings(tree)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) in documentation for t in node.targets):
            docs |= {id(n) for n in ast.walk(node.value)}
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            hits += [(node.lineno, m.group(1).lower()) for m in WORD.finditer(node.value)]
    return hits


def test_no_dataset_or_family_is_named_outside_their_folders():
    offenders = []
    for path in sorted(GENLAB.rglob("*")):
        relative = path.relative_to(REPO).as_posix()
        if relative.startswith(("genlab/data/", "genlab/models/")) or path.suffix not in (".py", ".html"):
            continue
        if path.suffix == ".py":
            hits = names_in_code(path, tuple(name for file, name in DOCUMENTATION if file == relative))
        else:  # the explorer's page: its text and script
            hits = [(text.count("\n", 0, m.start()) + 1, m.group(1).lower())
                    for text in [path.read_text()] for m in WORD.finditer(text)]
        offenders += [f"{relative}:{line}: {name}" for line, name in hits if (relative, name) not in ALLOWED]
    assert not offenders, "\n".join(offenders)


def test_the_check_finds_a_name_in_a_message(tmp_path):
    code = tmp_path / "x.py"
    code.write_text('"""The VAE module docstring may say vae."""\nx = f"needs a VAE, not {y}"\nz = "model.beta"\n')
    assert names_in_code(code) == [(2, "vae")]
