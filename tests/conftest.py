"""Shared fixtures: a tiny random-weight causal LM with an in-process tokenizer (offline, fast)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import pytest

from delift_core.testing import build_tiny_lm

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@dataclass(frozen=True)
class Sample:
    """A minimal record for engine tests (data.Record has the same properties)."""

    instruction: str
    input: str
    output: str

    @property
    def prompt(self) -> str:
        return f"Instruction: {self.instruction}\nInput: {self.input}\n"

    @property
    def response(self) -> str:
        return " " + self.output

    @property
    def hash(self) -> str:
        blob = json.dumps([self.instruction, self.input, self.output], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()


SAMPLES = [
    Sample("What is the capital of France?", "", "Paris."),
    Sample("Add 12 and 30.", "", "The sum is 42."),
    Sample("Convert 5 km to miles.", "", "About 3.1 miles."),
    Sample("Fix the grammar.", "she go to school", "She goes to school."),
    Sample("Reverse a string in Python.", "s = 'abc'", "s[::-1]"),
    Sample("Summarise.", "The river flooded the town after days of rain.", "Rain caused a flood."),
    Sample("What is the capital of Italy?", "", "Rome is the capital of Italy."),
]


@pytest.fixture(scope="session")
def tiny_lm():
    return build_tiny_lm()


@pytest.fixture()
def samples():
    return list(SAMPLES)
