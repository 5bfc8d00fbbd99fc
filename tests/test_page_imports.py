"""The app (pages and ui) uses the library through its public names only: no private name of
delift_core is imported or reached as an attribute, so the library can change its insides
without breaking the app."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP_FILES = sorted([ROOT / "app.py", *(ROOT / "pages").glob("*.py"), *(ROOT / "ui").glob("*.py")])


def private_uses(source: str) -> list[str]:
    """`delift_core` names starting with an underscore that `source` imports or reaches."""
    tree = ast.parse(source)
    aliases: set[str] = set()  # local names bound to delift_core modules
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("delift_core"):
            parts = node.module.split(".")
            found += [f"{node.module}.{p}" for p in parts if p.startswith("_")]
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"{node.module}.{alias.name}")
                aliases.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("delift_core"):
                    aliases.add((alias.asname or alias.name).split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_the_checker_finds_private_names():
    source = (
        "from delift_core.cache import _LOCKED, UtilityCache\n"
        "from delift_core import pipeline\n"
        "x = pipeline._STORED_NAMES\n"
        "y = UtilityCache.path\n"
    )
    assert private_uses(source) == ["delift_core.cache._LOCKED", "pipeline._STORED_NAMES"]


def test_app_files_use_public_library_names_only():
    assert len(APP_FILES) > 20
    offenders = {
        str(path.relative_to(ROOT)): uses
        for path in APP_FILES
        if (uses := private_uses(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}
