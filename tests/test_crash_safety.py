"""SIGKILL while exporting: the export file is always either the previous one or complete."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

CHILD = r"""
import sys
from delift_core.export import export_subset
path = sys.argv[1]
version = 0
print("ready", flush=True)
while True:
    version += 1
    rows = [{"version": version, "row": i, "text": "x" * 200} for i in range(20000)]
    export_subset(path, rows, {"version": version, "rows": len(rows)}, overwrite=True)
"""


@pytest.mark.parametrize("delay", [0.3, 0.9, 1.7])
def test_sigkill_during_export_never_leaves_a_partial_file(tmp_path, delay):
    target = tmp_path / "subset.jsonl"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "ready"
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait()
    if not target.exists():
        return  # killed before the first rename: nothing visible, which is fine
    lines = target.read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 20000
    assert len({r["version"] for r in rows}) == 1
    manifest = tmp_path / "subset.manifest.json"
    if manifest.exists():
        assert json.loads(manifest.read_text())["rows"] == 20000
    # Leftovers of an interrupted write are hidden temporary files, never the target name.
    for path in tmp_path.iterdir():
        assert path.name in {"subset.jsonl", "subset.manifest.json"} or path.name.startswith(".")
