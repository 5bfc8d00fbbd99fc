"""The app lets the cache go when idle, so a command-line run can use it; while that run holds
it, a page says so instead of failing with a traceback."""

from __future__ import annotations

import subprocess
import sys
import time

from apptools import assert_clean, messages, page, services

# Holds the cache the way a long `delift score` run does, until told to stop.
HOLDER = """
import sys
from delift_core.cache import UtilityCache
with UtilityCache(sys.argv[1], lock_wait=30) as cache:
    cache.acquire()
    print("held", flush=True)
    sys.stdin.readline()
"""


def _wait_released(cache, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while cache.held and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not cache.held, "the app never let its idle cache go"


def test_pages_tell_when_a_command_line_run_holds_the_cache():
    at = page("1_Data.py").run()
    assert_clean(at)
    cache, _ = services()
    _wait_released(cache)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(cache.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        at.run()
        assert not at.exception
        assert any("in use by another process" in m for m in messages(at.error))
    finally:
        holder.communicate("\n", timeout=60)
    at.run()  # the run has ended: the page works again
    assert_clean(at)
