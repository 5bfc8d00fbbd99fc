"""Fixtures of the AppTest suite: a tiny random model and a fresh cache per test (offline)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # pages import the `ui` package from the repository root
    sys.path.insert(0, str(ROOT))


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
