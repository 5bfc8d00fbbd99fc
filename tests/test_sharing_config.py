"""The app's Streamlit settings are safe by default, and the installed Streamlit knows them."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".streamlit" / "config.toml"


def test_error_details_stay_on_the_server_and_host_names_are_checked():
    from streamlit.config import ShowErrorDetailsConfigOptions

    config = tomllib.loads(CONFIG.read_text())
    assert config["client"]["showErrorDetails"] == ShowErrorDetailsConfigOptions.NONE
    # DNS rebinding: only loopback names may open the app's WebSocket.
    assert sorted(config["server"]["allowedHosts"]) == ["127.0.0.1", "::1", "localhost"]
    assert config["server"]["address"] == "127.0.0.1"


def test_the_installed_streamlit_accepts_every_option():
    streamlit = Path(sys.executable).with_name("streamlit")
    shown = subprocess.run(
        [str(streamlit), "config", "show"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    assert "not a valid config option" not in shown.stderr, shown.stderr
    lines = shown.stdout.splitlines()
    assert 'showErrorDetails = "none"' in lines
    start = lines.index("allowedHosts = [")
    assert [line.strip(' ",') for line in lines[start + 1 : start + 4]] == [
        "localhost",
        "127.0.0.1",
        "::1",
    ]


def test_no_forced_garbage_collection_after_each_script_run():
    # gc.collect(2) after every rerun (the Score page reruns its job list every 2 s) held the
    # interpreter from the scoring loop in the same process: a first demo score took about
    # 25 s longer (docs/benchmarks.md). The option is hidden from `streamlit config show`.
    code = (
        "from streamlit import config; config.get_config_options(force_reparse=True); "
        "print(config.get_option('runner.postScriptGC'))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "False"
