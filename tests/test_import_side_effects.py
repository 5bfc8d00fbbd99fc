"""Importing the library changes nothing in the process: no environment variables set
(beyond what the third-party packages it imports set themselves), and the `delift` command's
parser and help load no heavy package."""

from __future__ import annotations

import json
import subprocess
import sys

MODULES = ["delift_core.models", "delift_core.distributed", "delift_core.cli", "delift_core"]
# Third-party packages that set their own variables when imported (Ray does): imported before
# the library, so that only what the library itself sets is left.
THIRD_PARTY = ["ray", "torch", "transformers"]
# sentence_transformers sets variables too, but the library imports it only when it embeds, and
# importing it costs several seconds of CPU: it is imported first only if the library's modules
# turn out to import it.
LAZY = "sentence_transformers"


def _changed_variables(first: list[str]) -> tuple[list[str], bool]:
    """The variables importing MODULES changes after importing `first`, and whether LAZY was
    imported along the way."""
    code = (
        "import json, os, importlib, sys\n"
        f"for name in {first!r}: importlib.import_module(name)\n"
        "before = dict(os.environ)\n"
        f"for name in {MODULES!r}: importlib.import_module(name)\n"
        "after = dict(os.environ)\n"
        "changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))\n"
        f"print(json.dumps([changed, {LAZY!r} in sys.modules]))\n"
    )
    changed, lazy_loaded = _run_fresh(code)
    return changed, lazy_loaded


def _run_fresh(code: str):
    """Run `code` in a fresh interpreter with a bare environment; the JSON its last line prints."""
    env_free = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env_free
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_library_leaves_the_environment_alone():
    changed, lazy_loaded = _changed_variables(THIRD_PARTY)
    if lazy_loaded:
        changed, _ = _changed_variables([*THIRD_PARTY, LAZY])
    assert changed == []


# Packages that take seconds to import: the `delift` parser and its --help need none of them
# (each command imports what it runs when it runs).
HEAVY = ["torch", "transformers", "sentence_transformers", "ray", "streamlit"]
HELP_ARGV = [["--help"], ["score", "--help"], ["select", "--help"], ["eval", "--help"]]


def test_the_cli_parser_and_its_help_import_no_heavy_package():
    code = (
        "import contextlib, io, json, sys\n"
        "from delift_core.cli import build_parser\n"
        "parser = build_parser()\n"
        "helps = []\n"
        f"for argv in {HELP_ARGV!r}:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
        "        parser.parse_args(argv)\n"
        "    helps.append(out.getvalue())\n"
        f"print(json.dumps([helps, sorted(m for m in {HEAVY!r} if m in sys.modules)]))\n"
    )
    helps, loaded = _run_fresh(code)
    assert [h.startswith("usage: delift") for h in helps] == [True] * len(HELP_ARGV)
    assert "--side-weight" in helps[2]
    assert loaded == [], f"importing delift_core.cli and printing its help imported {loaded}"
