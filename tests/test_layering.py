"""The architecture, checked on the source (documentation/architecture.md): packages import only their own
layer or lower ones (so no package-level cycle), no module outside ``lesionnet/methods/`` names a
registered method, and no module is longer than 450 lines."""
from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

from lesionnet.methods import REGISTRY

PACKAGE = Path(__file__).resolve().parents[1] / "lesionnet"
#: bottom to top; a package may import its own layer and the ones before it
LAYERS = ("__init__", "paths", "utils", "datasets", "registration", "preprocessing", "planning", "networks",
          "training", "inference", "evaluation", "methods", "cli")
MAX_LINES = 450


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).parts
        yield path, rel, (rel[0][:-3] if len(rel) == 1 else rel[0])


def _imported_packages(tree: ast.AST, rel: tuple) -> set:
    """Top-level lesionnet packages a module imports (``from lesionnet import paths`` counts as ``paths``)."""
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ["lesionnet", *rel[:-1]][: len(rel) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [f"{module}.{a.name}" for a in node.names] if module == "lesionnet" else [module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "lesionnet" and len(parts) > 1:
                found.add(parts[1])
    return found


def package_imports() -> dict:
    """``{package: {package it imports}}`` over ``lesionnet/``, and where each import is."""
    edges: dict = defaultdict(dict)
    for path, rel, package in _modules():
        for target in _imported_packages(ast.parse(path.read_text(), str(path)), rel):
            if target != package:
                edges[package].setdefault(target, path.relative_to(PACKAGE.parent).as_posix())
    return edges


def test_every_package_has_a_layer():
    packages = {package for _, _, package in _modules()}
    assert packages <= set(LAYERS), sorted(packages - set(LAYERS))


def test_packages_import_only_lower_layers_so_there_is_no_cycle():
    upward = [f"{where}: {package} imports {target}" for package, targets in package_imports().items()
              for target, where in targets.items() if LAYERS.index(target) > LAYERS.index(package)]
    assert not upward, "\n".join(upward)


def _method_mentions(tree: ast.AST, names: set) -> list:
    word = re.compile(r"(^|_)(" + "|".join(map(re.escape, sorted(names))) + r")(_|$)", re.IGNORECASE)
    found = []
    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.Name):
            text = node.id
        elif isinstance(node, ast.Attribute):
            text = node.attr
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            text = node.name
        elif isinstance(node, ast.arg):
            text = node.arg
        elif isinstance(node, ast.alias):
            text = node.asname or node.name.split(".")[-1]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lower() in names:
            found.append(f"line {node.lineno}: {node.value!r}")
        if text and word.search(text):
            found.append(f"line {getattr(node, 'lineno', '?')}: {text}")
    return found


@pytest.mark.parametrize("names", [{"tlt", "dlt", "lntracker", "ln_tracker"}], ids=["built-in methods"])
def test_no_generic_module_names_a_method(names):
    # the registration baselines carry the names of registration priors ("affine", "deformable"), which the
    # registration layer and the planner's prior rule know by kind; every other registered method is checked
    names = names | {name for name in REGISTRY if name not in ("affine", "deformable", "identity")}
    mentions = []
    for path, rel, package in _modules():
        if package != "methods":
            mentions += [f"{path.relative_to(PACKAGE.parent)}: {m}"
                         for m in _method_mentions(ast.parse(path.read_text(), str(path)), names)]
    assert not mentions, "\n".join(mentions)


def test_every_package_folder_is_a_regular_package():
    """``setup.py``'s ``find_packages`` installs only folders with an ``__init__.py``."""
    missing = [folder.relative_to(PACKAGE.parent).as_posix() for folder in [PACKAGE, *PACKAGE.rglob("*")]
               if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py"))
               and not (folder / "__init__.py").is_file()]
    assert not missing, missing


def test_no_module_is_longer_than_the_limit():
    long = [f"{path.relative_to(PACKAGE.parent)}: {n} lines" for path, _, _ in _modules()
            if (n := path.read_text().count("\n")) > MAX_LINES]
    assert not long, "\n".join(long)


def test_the_checks_see_what_they_look_for():
    """The detectors on small sources: an upward import, a method name, a relative import."""
    tree = ast.parse("from lesionnet import paths\nfrom ..methods.tlt import build_tlt\nx = 'dlt'\n")
    assert _imported_packages(tree, ("training", "trainer.py")) == {"paths", "methods"}
    mentions = _method_mentions(tree, {"tlt", "dlt"})
    assert any("build_tlt" in m for m in mentions) and any("'dlt'" in m for m in mentions)
