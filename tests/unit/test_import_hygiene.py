"""The core never imports Textual: only queuewatch.tui may."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import queuewatch

SRC = Path(queuewatch.__file__).parent


def core_modules() -> list[str]:
    names = []
    for mod in pkgutil.walk_packages([str(SRC)], prefix="queuewatch."):
        if mod.name.startswith("queuewatch.tui") or mod.name == "queuewatch.__main__":
            continue
        names.append(mod.name)
    return names


def test_importing_the_core_does_not_import_textual():
    # Given every module of the core, imported in a fresh interpreter
    modules = core_modules()
    assert "queuewatch.config" in modules and "queuewatch.topology" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'textual')\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # Then textual was not loaded. (rich may be: httpx's __init__ imports its own CLI, which
    # uses rich, whenever rich is installed; our sources never import it - next test.)
    assert out.stdout.strip() == "", out.stdout


def test_no_core_source_mentions_textual_imports():
    offenders = []
    for path in SRC.rglob("*.py"):
        if "tui" in path.relative_to(SRC).parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] in ("textual", "rich") for n in names):
                offenders.append(str(path))
    assert offenders == []
