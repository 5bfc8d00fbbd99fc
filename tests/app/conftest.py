"""Fixtures of the AppTest suite: a tiny random model and a fresh cache per test (offline);
every test here is marked `app`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # pages import the `ui` package from the repository root
    sys.path.insert(0, str(ROOT))
HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by mark
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/app as `app`, so that `-m "not app"` (make test-fast)
    leaves the slow page runs out. The hook sees the whole session's items: only ours."""
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.app)


@pytest.fixture(autouse=True)
def app_env(tmp_path, monkeypatch):
    """Test model, a temporary cache, and clean process-level state around each test."""
    from ui import estimates, registry, services

    monkeypatch.setenv("DELIFT_TEST_MODEL", "tiny")
    monkeypatch.setenv("DELIFT_CACHE", str(tmp_path / "cache.duckdb"))
    monkeypatch.chdir(tmp_path)
    registry.reset()
    estimates.forget_rates()
    yield tmp_path
    services.shutdown()
    registry.reset()
    estimates.forget_rates()
