"""Teacher-forced scoring of response tokens, the engine's inner loop.

A row is `context + [EOS] + response + [EOS]`; its score uses the probabilities of the response
tokens and the closing EOS only. Hidden states are projected to the vocabulary only at those
positions, and the closing EOS is not run at all (its hidden state predicts nothing). Rows that
share a prefix attend to its KV cache, run once; several prefixes run as one right-padded batch
(`encode_prefixes`), which may itself continue a head that all of them share, and one forward
call can score rows that continue different prefixes of that batch (`score_rows_after_prefixes`).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from delift_core.models import LanguageModel

# Vocabulary projections are done in chunks of this many positions to bound memory.
_PROJECTION_CHUNK = 1024
# plan_batches makes least-cost cuts for up to this many rows (a Python loop over the rows, about
# 10 microseconds each); larger plans are filled in order.
_LEAST_COST_ROWS = 20_000


@dataclass(frozen=True)
class PrefixBlock:
    """Key/value states of several prefixes run as one right-padded batch.

    lengths[b]: real tokens of prefix b; layers: per decoder layer (keys, values), each
    (prefixes, kv_heads, width, head_dim) with width = max(lengths). The slots of prefix b from
    lengths[b] on hold padding, which rows continuing prefix b must not attend to.
    """

    lengths: list[int]
    layers: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def width(self) -> int:
        return max(self.lengths)


@dataclass(frozen=True)
class RowScores:
    """Per row: rms = sqrt(mean_t (1 - p_t)^2); logp = sum_t log p_t; (rows,) float64 each."""

    rms: np.ndarray
    logp: np.ndarray


def encode_prefixes(
    lm: LanguageModel, prefixes: Sequence[Sequence[int]], head: PrefixBlock | None = None
) -> PrefixBlock:
    """Run the prefixes in one forward call and keep their KV cache.

    With `head` (a block of one prefix), every prefix continues it: the block returned holds
    head + prefixes[b] for each b, and the head's tokens are not run again.
    Right padding needs no attention mask: with causal attention no real token sees a padding
    token after it, so every real slot holds what the prefix alone would give.
    """
    from transformers import DynamicCache

    kwargs: dict[str, Any] = {"input_ids": _right_padded(lm, prefixes), "use_cache": True}
    start = 0
    if head is not None:
        if len(head.lengths) != 1:
            raise ValueError(f"a head block holds one prefix; this one holds {len(head.lengths)}")
        start = head.width
        owners = [0] * len(prefixes)
        layers = [_prefix_rows(k, v, owners, start) for k, v in head.layers]
        kwargs["cache"] = DynamicCache(layers, config=lm.model.config)
    with torch.inference_mode():
        out = _decoder(lm)(**kwargs)
    layers = [(layer.keys, layer.values) for layer in out.cache.layers]
    return PrefixBlock([start + len(p) for p in prefixes], layers)


def merge_blocks(blocks: Sequence[PrefixBlock]) -> PrefixBlock:
    """One block holding the prefixes of `blocks`, in order; the narrower blocks' caches are
    padded to the widest (padding slots, as within a block).

    Consumes `blocks`: each layer of theirs is released once copied, so that the memory held
    grows by about one layer, not by the whole cache, while merging.
    """
    if len(blocks) == 1:
        return blocks[0]
    width = max(b.width for b in blocks)
    layers = []
    for i in range(len(blocks[0].layers)):
        parts = [b.layers[i] for b in blocks]
        merged = []
        for t in (0, 1):  # keys, values: (prefixes, kv_heads, slots, head_dim)
            first = parts[0][t]
            shape = (sum(p[t].shape[0] for p in parts), first.shape[1], width, first.shape[3])
            out = first.new_zeros(shape)
            row = 0
            for p in parts:
                out[row : row + p[t].shape[0], :, : p[t].shape[2]] = p[t]
                row += p[t].shape[0]
            merged.append(out)
        layers.append((merged[0], merged[1]))
        for b in blocks:
            b.layers[i] = None  # type: ignore[call-overload]
    return PrefixBlock([n for b in blocks for n in b.lengths], layers)


def shared_head_length(rows: Sequence[Sequence[int]], limit: int) -> int:
    """How many leading tokens all rows have in common, at most `limit`."""
    if not rows:
        return 0
    # os.path.commonprefix compares item by item, so it serves lists of token ids as well.
    return min(limit, len(os.path.commonprefix([list(r) for r in rows])))


def _decoder(lm: LanguageModel) -> Any:
    return lm.model.get_decoder() if hasattr(lm.model, "get_decoder") else lm.model.base_model


def _inputs(rows: Sequence[Sequence[int]]) -> list[Sequence[int]]:
    """The tokens a scored row must run: all but its closing EOS, whose hidden state would
    predict the token after the row, which is never scored."""
    return [row[:-1] for row in rows]


def _right_padded(lm: LanguageModel, rows: Sequence[Sequence[int]]) -> torch.Tensor:
    """(rows, max length) token ids on the model's device, padded on the right with EOS."""
    ids = torch.full((len(rows), max(len(r) for r in rows)), lm.eos_id, dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, : len(row)] = torch.tensor(list(row), dtype=torch.long)
    return ids.to(lm.device)


def _project(lm: LanguageModel, hidden: torch.Tensor) -> torch.Tensor:
    """Logits (float32) for hidden states (positions, hidden)."""
    logits = lm.model.get_output_embeddings()(hidden).float()
    cap = getattr(lm.model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def score_rows(
    lm: LanguageModel, rows: Sequence[Sequence[int]], context_lengths: Sequence[int]
) -> RowScores:
    """Score a batch of whole rows.

    rows[b] = context_b + [EOS] + response_b + [EOS] (token ids); context_lengths[b] =
    len(context_b). Rows are right-padded, so with causal attention no real token ever sees
    padding and no attention mask is needed.
    """
    with torch.inference_mode():
        hidden = _decoder(lm)(input_ids=_right_padded(lm, _inputs(rows)), use_cache=False)
        return _score_hidden(lm, hidden.last_hidden_state, rows, context_lengths)


def score_rows_after_prefixes(
    lm: LanguageModel,
    block: PrefixBlock,
    owners: Sequence[int],
    rows: Sequence[Sequence[int]],
    context_lengths: Sequence[int],
) -> RowScores:
    """Score rows that each continue one prefix of `block`: row b continues prefix owners[b].

    rows and context_lengths as for `score_rows`, without the prefix. Each row gets its own copy
    of its prefix's keys and values, cut to the longest prefix in the batch. Where prefix
    lengths differ, a 2-D attention mask hides the padding slots of the shorter ones and the
    row's tokens take positions lengths[owner] onwards, as they would after the prefix alone.
    """
    from transformers import DynamicCache

    lengths = torch.tensor([block.lengths[o] for o in owners], dtype=torch.long)
    width = int(lengths.max())
    ids = _right_padded(lm, _inputs(rows))
    batch, row_width = ids.shape
    layers = [_prefix_rows(k, v, owners, width) for k, v in block.layers]
    kwargs: dict[str, Any] = {
        "input_ids": ids,
        "use_cache": True,
        "cache": DynamicCache(layers, config=lm.model.config),
    }
    if int(lengths.min()) < width:
        slots = torch.arange(width + row_width)
        keep = (slots[None, :] < lengths[:, None]) | (slots[None, :] >= width)
        kwargs["attention_mask"] = keep.to(dtype=torch.long, device=lm.device)
        positions = lengths[:, None] + torch.arange(row_width)[None, :]
        kwargs["position_ids"] = positions.to(lm.device)
    with torch.inference_mode():
        hidden = _decoder(lm)(**kwargs).last_hidden_state
        return _score_hidden(lm, hidden, rows, context_lengths)


def _prefix_rows(
    keys: torch.Tensor, values: torch.Tensor, owners: Sequence[int], width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values of prefixes `owners`, one row each, cut to `width` slots."""
    keys, values = keys[:, :, :width], values[:, :, :width]
    if len(set(owners)) == 1:  # one prefix: a view, no copy
        o = owners[0]
        shape = (len(owners), -1, -1, -1)
        return keys[o : o + 1].expand(shape), values[o : o + 1].expand(shape)
    index = torch.tensor(list(owners), dtype=torch.long, device=keys.device)
    return keys.index_select(0, index), values.index_select(0, index)


def _score_hidden(
    lm: LanguageModel,
    hidden: torch.Tensor,
    rows: Sequence[Sequence[int]],
    context_lengths: Sequence[int],
) -> RowScores:
    """Scores of `rows` from their last hidden states (rows, width, hidden)."""
    row_index, positions, golds = [], [], []
    for b, (row, n_ctx) in enumerate(zip(rows, context_lengths, strict=True)):
        # The hidden state at position t predicts token t + 1: from the separator EOS on.
        scored = range(n_ctx, len(row) - 1)
        row_index.extend([b] * len(scored))
        positions.extend(scored)
        golds.extend(row[t + 1] for t in scored)
    row_t = torch.tensor(row_index, device=lm.device)
    pos_t = torch.tensor(positions, device=lm.device)
    gold_t = torch.tensor(golds, device=lm.device)
    gold_logp = torch.empty(len(golds), dtype=torch.float32, device=lm.device)
    for start in range(0, len(golds), _PROJECTION_CHUNK):
        sl = slice(start, start + _PROJECTION_CHUNK)
        logits = _project(lm, hidden[row_t[sl], pos_t[sl]])
        logp = torch.log_softmax(logits, dim=-1)
        gold_logp[sl] = logp.gather(1, gold_t[sl, None]).squeeze(1)
    batch = len(rows)
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
    lengths: Sequence[int],
    batch_size: int,
    max_tokens: int,
    extra_tokens: int = 0,
    call_tokens: float | None = None,
) -> list[list[int]]:
    """Group row indices into batches of similar length.

    Each batch has at most batch_size rows and rows * (max length + extra_tokens) <= max_tokens
    (extra_tokens: the prefix each row attends to), but always at least one row. Rows are
    sorted by length and cut into runs of neighbours. With call_tokens=None the runs are filled
    in order (the fewest calls: generation, where a call's steps cost more than its rows).
    With call_tokens, the fixed cost of a forward call in tokens, the cuts are the ones that
    make the padded tokens run plus call_tokens per batch least (`_least_cost_cuts`), for up to
    _LEAST_COST_ROWS rows; more rows are filled in order, which leaves little padding there
    (many rows per length).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    if call_tokens is not None and len(lengths) <= _LEAST_COST_ROWS:
        cuts = _least_cost_cuts(
            [lengths[i] for i in order], batch_size, max_tokens, extra_tokens, call_tokens
        )
        return [order[a:b] for a, b in itertools.pairwise(cuts)]
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


def _least_cost_cuts(
    lengths: Sequence[int], batch_size: int, max_tokens: int, extra_tokens: int, call_tokens: float
) -> list[int]:
    """Cut points 0 = c_0 < ... < c_m = n of ascending `lengths` that make
    sum over batches of (rows * longest + call_tokens) least, within the limits of
    `plan_batches`. Dynamic programming over the last cut: best[e] = min over feasible s of
    best[s] + (e - s) * lengths[e - 1] + call_tokens; O(n * batch_size)."""
    n = len(lengths)
    best = np.zeros(n + 1)
    back = np.zeros(n + 1, dtype=np.int64)
    for e in range(1, n + 1):
        widest = lengths[e - 1]
        rows = max(1, min(batch_size, max_tokens // (widest + extra_tokens)))
        starts = np.arange(max(0, e - rows), e)
        cost = best[starts] + (e - starts) * widest
        pick = int(np.argmin(cost))  # ties go to the earliest start (the larger last batch)
        best[e], back[e] = cost[pick] + call_tokens, starts[pick]
    cuts = [n]
    while cuts[-1] > 0:
        cuts.append(int(back[cuts[-1]]))
    return cuts[::-1]
