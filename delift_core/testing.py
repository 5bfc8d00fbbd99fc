"""Small offline stand-ins for tests and demos: a tiny random-weight causal LM with an
in-process tokenizer, and a hashing sentence embedder. Nothing here downloads anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from delift_core.models import LanguageModel, wrap_model

TINY_CORPUS: tuple[str, ...] = (
    "Instruction: Please generate a response to the following query.",
    "Use the following example as a guide to answer the query in the same format and style,",
    "providing a clear and concise response. Example: Query: Input: Output:",
    "What is the capital of France? Paris is the capital of France.",
    "Add 12 and 30. The sum of 12 and 30 is 42.",
    "Convert 5 km to miles. 5 km is about 3.1 miles.",
    "Fix the grammar: she go to school. She goes to school.",
    "Write Python code to reverse a string s. s[::-1]",
    "Summarise: The river flooded the town after days of rain. Rain caused a flood.",
)


def build_tiny_tokenizer() -> Any:
    """A byte-level BPE tokenizer (vocabulary 400) trained in-process on TINY_CORPUS."""
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
    tok.train_from_iterator(list(TINY_CORPUS) * 3, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def build_tiny_lm(seed: int = 0) -> LanguageModel:
    """A 2-layer Llama (hidden size 16) with random weights, wrapped as a LanguageModel.

    The weights are scaled up so that probabilities vary visibly between contexts; the model is
    meaningless but fast and deterministic for a given seed. model_id is "tiny-llama-{seed}".
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

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
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8.0)
    return wrap_model(model, tokenizer, f"tiny-llama-{seed}")


class HashEmbedder:
    """A sentence-embedder stand-in: hashed character trigrams, unit-norm, (n, dim) float32.

    Texts sharing many trigrams get similar vectors, so neighbour search behaves sensibly. It has
    the two methods the library uses of a sentence-transformers model.
    """

    key = "hash-trigram-embedder"

    def __init__(self, dim: int = 32) -> None:
        self.dim = dim

    def get_sentence_embedding_dimension(self) -> int:
        return self.dim

    def encode(self, texts: Sequence[str], **_: Any) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            padded = f"  {text.lower()}  "
            for start in range(len(padded) - 2):
                gram = padded[start : start + 3].encode("utf-8")
                bucket = int.from_bytes(hashlib.blake2b(gram, digest_size=4).digest(), "little")
                out[row, bucket % self.dim] += 1.0
            norm = np.linalg.norm(out[row])
            out[row] = out[row] / norm if norm > 0 else 1.0 / np.sqrt(self.dim)
        return out
