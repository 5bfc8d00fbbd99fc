"""Home page: explains the app, links every page, and loads the demo pool on first visit."""

from __future__ import annotations

from apptools import messages, page


def test_home_renders_links_and_loads_the_demo_pool():
    at = page("app.py").run()
    assert not at.exception, messages(at.exception)
    assert at.title[0].value == "DELIFT Studio"
    labels = [link.proto.label for link in at.page_link]
    assert [label.split(".")[0] for label in labels] == ["1", "2", "3", "4", "5"]
    assert any("Data" in label for label in labels) and any("Export" in label for label in labels)
    pool = at.session_state["data"]["pool"]
    assert pool["rows"] == 60 and pool["spec"]["kind"] == "demo"
    assert "pool: demo set (rows 1-60) · 60 rows" in messages(at.sidebar.text)


def test_home_keeps_data_the_user_removed():
    at = page("app.py")
    at.session_state["data"] = {}
    at.run()
    assert at.session_state["data"] == {}
    assert "nothing loaded" in messages(at.sidebar.text)
