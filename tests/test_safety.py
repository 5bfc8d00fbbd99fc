"""Safe defaults: loopback binding, XSRF, upload limit, no HTML from user text, no unpickling."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from delift_core.errors import ModelError
from delift_core.models import load_causal_lm

ROOT = Path(__file__).resolve().parent.parent


def test_streamlit_config_is_locked_down():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["server"]["enableXsrfProtection"] is True
    assert 0 < config["server"]["maxUploadSize"] <= 1024
    assert config["browser"]["gatherUsageStats"] is False


def test_no_raw_html_and_no_pickle_anywhere():
    sources = list((ROOT / "delift_core").rglob("*.py")) + list((ROOT / "ui").glob("*.py"))
    sources += list((ROOT / "pages").glob("*.py")) + [ROOT / "app.py"]
    for path in sources:
        text = path.read_text()
        assert "unsafe_allow_html=True" not in text, path
        assert not re.search(r"allow_pickle\s*=\s*True", text), path
        assert "torch.load(" not in text, path
        assert "trust_remote_code=True" not in text, path
        assert not re.search(r"^\s*import pickle|^\s*from pickle", text, re.M), path


def test_library_never_imports_streamlit_or_prints():
    cli = ROOT / "delift_core" / "cli"  # the command talks to the user
    for path in (ROOT / "delift_core").rglob("*.py"):
        text = path.read_text()
        assert "import streamlit" not in text, path
        if path.parent != cli:
            assert not re.search(r"^\s*print\(", text, re.M), path


def test_model_folder_with_pickled_weights_is_refused(tmp_path):
    import torch

    from delift_core.testing import build_tiny_lm

    lm = build_tiny_lm()
    lm.model.config.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    torch.save(lm.model.state_dict(), tmp_path / "pytorch_model.bin")  # a pickle file
    with pytest.raises(ModelError):
        load_causal_lm(str(tmp_path), "cpu")
