"""Shared fixtures: a tiny random-weight causal LM with an in-process tokenizer (offline, fast)."""

from __future__ import annotations

import os

import pytest

from delift_core.data.dataset import dataset_from_rows
from delift_core.testing import build_tiny_lm

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROWS = [
    ("What is the capital of France?", "", "Paris."),
    ("Add 12 and 30.", "", "The sum is 42."),
    ("Convert 5 km to miles.", "", "About 3.1 miles."),
    ("Fix the grammar.", "she go to school", "She goes to school."),
    ("Reverse a string in Python.", "s = 'abc'", "s[::-1]"),
    ("Summarise.", "The river flooded the town after days of rain.", "Rain caused a flood."),
    ("What is the capital of Italy?", "", "Rome is the capital of Italy."),
]
SAMPLES = dataset_from_rows(
    [{"instruction": i, "input": x, "output": o} for i, x, o in ROWS]
).records


@pytest.fixture(scope="session")
def tiny_lm():
    return build_tiny_lm()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny random model saved as a Hugging Face folder (for `--model DIR`)."""
    folder = tmp_path_factory.mktemp("tiny-model")
    lm = build_tiny_lm()
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture()
def samples():
    return list(SAMPLES)
