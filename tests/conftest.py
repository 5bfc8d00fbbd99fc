"""Shared fixtures: a tiny random-weight causal LM with an in-process tokenizer (offline, fast)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CORPUS = [
    "Instruction: Please generate a response to the following query.",
    "Use the following example as a guide to answer the query in the same format and style,",
    "providing a clear and concise response. Example: Query: Input: Output:",
    "What is the capital of France? Paris is the capital of France.",
    "Add 12 and 30. The sum of 12 and 30 is 42.",
    "Convert 5 km to miles. 5 km is about 3.1 miles.",
    "Fix the grammar: she go to school. She goes to school.",
    "Write Python code to reverse a string s. s[::-1]",
    "Summarise: The river flooded the town after days of rain. Rain caused a flood.",
]


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


def build_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 3, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def build_tiny_lm(seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from delift_core.models import wrap_model

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    # Larger weights than the default init make probabilities vary across contexts.
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8.0)
    return wrap_model(model, tokenizer, f"tiny-llama-{seed}")


@pytest.fixture(scope="session")
def tiny_lm():
    return build_tiny_lm()


@pytest.fixture()
def samples():
    return list(SAMPLES)
