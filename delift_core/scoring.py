"""Teacher-forced scoring of response tokens, the engine's inner loop.

A row is `context + [EOS] + response + [EOS]`; its score uses the probabilities of the response
tokens and the closing EOS only. Hidden states are projected to the vocabulary only at those
positions, and rows sharing a prefix attend to one KV cache of it, run once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from delift_core.models import LanguageModel

# Vocabulary projections are done in chunks of this many positions to bound memory.
_PROJECTION_CHUNK = 1024


@dataclass(frozen=True)
class Prefix:
    """Key/value states of a shared prefix, batch size 1. length: its number of tokens."""

    length: int
    layers: list[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class RowScores:
    """Per row: rms = sqrt(mean_t (1 - p_t)^2); logp = sum_t log p_t; (rows,) float64 each."""

    rms: np.ndarray
    logp: np.ndarray


def encode_prefix(lm: LanguageModel, ids: Sequence[int]) -> Prefix:
    """Run the prefix once and keep its KV cache."""
    tokens = torch.tensor([list(ids)], dtype=torch.long, device=lm.device)
    with torch.inference_mode():
        out = _decoder(lm)(input_ids=tokens, use_cache=True)
    layers = [(layer.keys, layer.values) for layer in out.cache.layers]
    return Prefix(len(ids), layers)


def _decoder(lm: LanguageModel) -> Any:
    return lm.model.get_decoder() if hasattr(lm.model, "get_decoder") else lm.model.base_model


def _project(lm: LanguageModel, hidden: torch.Tensor) -> torch.Tensor:
    """Logits (float32) for hidden states (positions, hidden)."""
    logits = lm.model.get_output_embeddings()(hidden).float()
    cap = getattr(lm.model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def score_rows(
    lm: LanguageModel,
    rows: Sequence[Sequence[int]],
    context_lengths: Sequence[int],
    prefix: Prefix | None = None,
) -> RowScores:
    """Score a batch of rows after an optional shared prefix.

    rows[b] = context_b + [EOS] + response_b + [EOS] (token ids, prefix excluded);
    context_lengths[b] = len(context_b). Rows are right-padded, so with causal attention no real
    token ever sees padding and no attention mask is needed.
    """
    batch = len(rows)
    width = max(len(r) for r in rows)
    ids = torch.full((batch, width), lm.eos_id, dtype=torch.long)
    row_index, positions, golds = [], [], []
    for b, (row, n_ctx) in enumerate(zip(rows, context_lengths, strict=True)):
        ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        # The hidden state at position t predicts token t + 1: from the separator EOS on.
        scored = range(n_ctx, len(row) - 1)
        row_index.extend([b] * len(scored))
        positions.extend(scored)
        golds.extend(row[t + 1] for t in scored)
    ids = ids.to(lm.device)
    kwargs: dict[str, Any] = {"input_ids": ids, "use_cache": prefix is not None}
    if prefix is not None:
        from transformers import DynamicCache

        expanded = [
            (k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in prefix.layers
        ]
        kwargs["cache"] = DynamicCache(expanded, config=lm.model.config)
    with torch.inference_mode():
        hidden = _decoder(lm)(**kwargs).last_hidden_state
        row_t = torch.tensor(row_index, device=lm.device)
        pos_t = torch.tensor(positions, device=lm.device)
        gold_t = torch.tensor(golds, device=lm.device)
        gold_logp = torch.empty(len(golds), dtype=torch.float32, device=lm.device)
        for start in range(0, len(golds), _PROJECTION_CHUNK):
            sl = slice(start, start + _PROJECTION_CHUNK)
            logits = _project(lm, hidden[row_t[sl], pos_t[sl]])
            logp = torch.log_softmax(logits, dim=-1)
            gold_logp[sl] = logp.gather(1, gold_t[sl, None]).squeeze(1)
        sq = (1.0 - gold_logp.exp()) ** 2
        counts = torch.zeros(batch, dtype=torch.float64, device=lm.device)
        counts.index_add_(0, row_t, torch.ones_like(sq, dtype=torch.float64))
        sq_sum = torch.zeros(batch, dtype=torch.float64, device=lm.device)
        sq_sum.index_add_(0, row_t, sq.double())
        logp_sum = torch.zeros(batch, dtype=torch.float64, device=lm.device)
        logp_sum.index_add_(0, row_t, gold_logp.double())
    rms = torch.sqrt(sq_sum / counts)
    return RowScores(rms.cpu().numpy(), logp_sum.cpu().numpy())


def plan_batches(
    lengths: Sequence[int], batch_size: int, max_tokens: int, extra_tokens: int = 0
) -> list[list[int]]:
    """Group row indices into batches of similar length (fewer padded tokens).

    Each batch has at most batch_size rows and rows * (max length + extra_tokens) <= max_tokens
    (extra_tokens: the shared prefix each row attends to), but always at least one row.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = lengths[i] + extra_tokens  # sorted ascending: the newest row is the widest
        if current and (len(current) >= batch_size or (len(current) + 1) * width > max_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
