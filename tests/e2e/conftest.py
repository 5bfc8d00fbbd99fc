"""Fixtures of the browser test: Debian's Chromium driven by Playwright, and the app served by
`streamlit run` in a subprocess with a fresh cache and the real embedded models (offline).

Set DELIFT_REQUIRE_BROWSER=1 (CI does, in .ci/run) to turn a missing browser into a failure.
DELIFT_CHROMIUM overrides the browser path (default /usr/bin/chromium).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = os.environ.get("DELIFT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SERVER_START_TIMEOUT = 90.0


def _missing_browser(reason: str) -> None:
    """Fail when the browser is required (CI), skip otherwise."""
    if os.environ.get("DELIFT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (DELIFT_REQUIRE_BROWSER=1: the browser test must run)")
    pytest.skip(f"{reason}; install it with `apt-get install chromium` (CI requires it)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (Playwright Browser), closed after the module."""
    if not os.access(CHROMIUM, os.X_OK):
        _missing_browser(f"Chromium is not installed at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing_browser("the playwright package is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"streamlit did not become healthy in time:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@contextlib.contextmanager
def serve(cache: Path, log_path: Path, port: int | None = None) -> Iterator[str]:
    """`streamlit run app.py` on `cache` with the real default models; yields the base URL and
    stops the server on exit."""
    env = dict(os.environ)
    env.pop("DELIFT_TEST_MODEL", None)  # the real embedded SmolLM2 and MiniLM
    env.update(
        DELIFT_CACHE=str(cache),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    port = port or _free_port()
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "app.py"),
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
    ]
    url = f"http://127.0.0.1:{port}"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_healthy(url, proc, log_path)
            yield url
        finally:
            _stop(proc)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            (ARTIFACTS / log_path.name).write_text(_tail(log_path, 400))


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of the app served with a fresh DuckDB cache and the real default models."""
    tmp = tmp_path_factory.mktemp("e2e")
    with serve(tmp / "cache.duckdb", tmp / "streamlit.log") as url:
        yield url


@pytest.fixture
def server() -> Any:
    """`serve` itself, for tests that stop and start the app (a restart)."""
    return serve
