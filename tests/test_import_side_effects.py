"""Importing the library changes nothing in the process: no environment variables set
(beyond what the third-party packages it imports set themselves)."""

from __future__ import annotations

import json
import subprocess
import sys

MODULES = ["delift_core.models", "delift_core.distributed", "delift_core.cli", "delift_core"]


def test_importing_the_library_leaves_the_environment_alone():
    code = (
        "import json, os, importlib\n"
        # third-party packages may set their own variables when imported (Ray does)
        "import ray, torch, transformers, sentence_transformers\n"
        "before = dict(os.environ)\n"
        f"for name in {MODULES!r}: importlib.import_module(name)\n"
        "after = dict(os.environ)\n"
        "print(json.dumps(sorted(k for k in set(before) | set(after)"
        " if before.get(k) != after.get(k))))\n"
    )
    env_free = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env_free
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
