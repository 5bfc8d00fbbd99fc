"""The package's public API: every name in __all__ resolves to the object of its module, and
importing the package stays light (no torch)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import delift_core


@pytest.mark.parametrize("name", delift_core.__all__)
def test_every_public_name_is_its_modules_object(name):
    module = importlib.import_module(f"delift_core.{delift_core._PUBLIC[name]}")
    assert getattr(delift_core, name) is getattr(module, name)


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        delift_core.no_such_name  # noqa: B018


def test_importing_the_package_does_not_import_torch():
    code = "import sys, delift_core, delift_core.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_readme_example_needs_one_import_line():
    names = ["load_dataset", "load_causal_lm", "score_stage", "selection_inputs"]
    names += ["ScoringConfig", "select_subset"]
    assert set(names) <= set(delift_core.__all__)
