"""Helpers of the AppTest suite: run pages, put data in a session, score, wait for jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60


def page(name: str):
    """An AppTest of "app.py" or of a file under pages/, opened as in the real app (app.py is
    the entry point, so page links resolve)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    if name != "app.py":
        at.switch_page(f"pages/{name}")
    return at


def demo_handle(rows: int = 6, offset: int = 0) -> dict[str, Any]:
    """The session handle of a slice of the demo set."""
    from ui import registry

    spec = {"kind": "demo", "offset": offset, "limit": rows, "field_map": None}
    return registry.make_handle(spec, registry.load_source(spec, None))


def with_data(at, **handles: dict[str, Any] | None):
    """Put dataset handles (pool=..., targets=..., existing=...) in the app's session."""
    at.session_state["data"] = {role: h for role, h in handles.items() if h is not None}
    return at


def services():
    """(cache, manager) of the current test, shared with the pages it runs."""
    from ui import services as svc

    return svc.get_cache(), svc.get_manager()


def wait_for_jobs(timeout: float = 120.0) -> list:
    """Wait for every job of the current manager; returns their final snapshots."""
    _, manager = services()
    return [manager.wait(job.id, timeout=timeout) for job in manager.list_jobs()]


def score(
    pool: dict,
    targets: dict | None = None,
    existing: dict | None = None,
    config: Any = None,
    *,
    with_map: bool = False,
) -> str:
    """Score a stage through the app's own task code and return its stage key. with_map: also
    compute the pool's map (the job the Score page queues after a run) and wait for it; tests
    that open Select, which draws the map, need it. Without it no map job is queued (UMAP takes
    about 20 s the first time in a process)."""
    from delift_core.config import ScoringConfig
    from ui import tasks

    cache, manager = services()
    handles = {"pool": pool, "targets": targets, "existing": existing}
    params = tasks.score_params(handles, "default", config or ScoringConfig())
    job_id = tasks.submit_score(manager, cache, params, map_after=with_map)
    state = manager.wait(job_id, timeout=180)
    assert state.state == "done", state.error
    for job in manager.list_jobs(kind=tasks.MAP, active_only=True):
        final = manager.wait(job.id, timeout=180)
        assert final.state == "done", final.error
    return state.result["stage_key"]


def messages(elements) -> list[str]:
    return [str(e.value) for e in elements]


def assert_clean(at) -> None:
    """No exception and no error box on the page."""
    assert not at.exception, messages(at.exception)
    assert not at.error, messages(at.error)


def frame(at, *columns: str):
    """The first dataframe on the page that has all the given columns."""
    for element in at.dataframe:
        value = element.value
        if all(c in value.columns for c in columns):
            return value
    raise AssertionError(f"no dataframe with columns {columns}")


def chart_keys(at) -> list[str]:
    """Keys of the Plotly charts on the page."""
    return [e.key for e in at.main if getattr(e, "type", None) == "plotly_chart"]
