"""How the utility engine turns the rows it must score into forward calls (docs/design.md §3).

Baselines (no example) are whole rows in length-bucketed batches. A pair (target i, example j)
takes one of two paths, chosen per example by `plan_pair_paths`:

- shared prefixes: examples are grouped by prefix length, each group's prefixes
  (`template head + example j`) run in one padded forward call, then the query + response
  suffixes of all their pairs run in length-bucketed batches that mix examples, each row
  attending to its own example's KV cache. Forward calls per pair fall to about
  1 / batch_size + 1 / (batch_size * pairs per example).
- full rows: the pair's whole sequence, prefix included, in length-bucketed batches with no KV
  cache. It recomputes the prefix once per pair, and pays off where an example has a single
  pair to score. Pairs whose text does not split at the template boundary always go this way,
  tokenised as one string.

Whole rows (baselines, full-row pairs, the quality and evaluation passes) and prefixes alike
share their template's head: the tokens every row or prefix of the run begins with run once, and
the rest continue its KV cache (`score_row_batches`, `shared_head`), where that saves more than
the extra forward call costs. With the default template the head is half of every prefix.

Both paths give the values of the per-pair reference (delift_core/reference.py) up to float
rounding. Every batch is handed to a `ScoreSink` as soon as it is scored, and cancellation is
checked before every forward call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from delift_core.config import ScoringConfig
from delift_core.models import LanguageModel
from delift_core.prompts import PromptPlan, TextPair, with_example_text
from delift_core.scoring import (
    PrefixBlock,
    RowScores,
    encode_prefixes,
    merge_blocks,
    plan_batches,
    score_rows,
    score_rows_after_prefixes,
    shared_head_length,
)

# Fixed cost of one forward call, in tokens: (time of a call - time of its tokens) / time of one
# token, for the embedded SmolLM2-135M (`bench/utility_throughput.py --call-cost` measures it).
# CPU, 2 cores, fp32: 35 ms per call + 1.0 ms per token on a quiet machine (35 tokens); about
# 145 tokens while other jobs loaded the cores. With the default batch limits the rule below
# makes the same choices for any value in that range (prefixes of 5 tokens or more). The GPU
# figures are an estimate (about
# 10 ms per eager call of a 30-layer model against a few microseconds per token), not measured.
CALL_COST_TOKENS: dict[str, float] = {"cpu": 35.0, "cuda": 3000.0, "mps": 1000.0}
# Full-row pairs are planned this many at a time, so that whole-string rows of a large run
# are never all held at once.
_FULL_ROW_CHUNK = 4096
# A prefix group (the examples whose pairs' rows may share a forward call) holds at most this
# many times batch_size examples, and examples * longest prefix <= max_batch_tokens KV slots:
# more rows to cut into batches of like length leave less padding (on HotpotQA, 8% of the pair
# tokens with groups of 32 examples, 1% with 128 and least-cost cuts).
_GROUP_BATCHES = 4


class ScoreSink(Protocol):
    """Where scored rows go: indices (k,) with rms (k,) and logp (k,)."""

    def check_cancel(self) -> None: ...

    def add_baselines(self, targets: np.ndarray, rms: np.ndarray, logp: np.ndarray) -> None: ...

    def add_pairs(self, pairs: np.ndarray, rms: np.ndarray, logp: np.ndarray) -> None: ...

    def flush(self) -> None: ...


@dataclass(frozen=True)
class PairPaths:
    """Indices into the run's pair arrays, split by path; each ascending."""

    shared: np.ndarray
    full: np.ndarray


def call_cost_tokens(device: str) -> float:
    """CALL_COST_TOKENS for a torch device string ("cuda:1" counts as "cuda")."""
    return CALL_COST_TOKENS.get(device.split(":")[0], CALL_COST_TOKENS["cpu"])


def score_missing(
    lm: LanguageModel,
    plan: PromptPlan,
    config: ScoringConfig,
    targets: Sequence[TextPair],
    examples: Sequence[TextPair],
    pair_t: np.ndarray,
    pair_e: np.ndarray,
    base_todo: np.ndarray,
    pair_todo: np.ndarray,
    sink: ScoreSink,
) -> None:
    """Score the baselines of targets `base_todo` and the pairs `pair_todo` (indices into
    pair_t/pair_e), handing every batch to `sink`; the sink is flushed at the end."""
    try:
        score_baselines(lm, plan, config, base_todo, sink)
        paths = plan_pair_paths(
            plan, config, pair_t, pair_e, pair_todo, call_cost_tokens(str(lm.device))
        )
        score_pairs_on_shared_prefixes(lm, plan, config, pair_t, pair_e, paths.shared, sink)
        score_pairs_as_full_rows(
            lm, plan, config, targets, examples, pair_t, pair_e, paths.full, sink
        )
    finally:
        sink.flush()


def shared_head(
    lm: LanguageModel,
    rows: Sequence[Sequence[int]],
    limit: int,
    before_call: Callable[[], None] = lambda: None,
) -> tuple[int, PrefixBlock | None]:
    """The leading tokens (at most `limit`) that all rows share, run once when that saves more
    tokens than a forward call costs: (head length, its KV block), or (0, None).
    before_call() runs before the forward call, if one is made."""
    head = shared_head_length(rows, limit)
    if head < 1 or (len(rows) - 1) * head <= call_cost_tokens(str(lm.device)):
        return 0, None
    before_call()
    return head, encode_prefixes(lm, [rows[0][:head]])


def score_row_batches(
    lm: LanguageModel,
    rows: Sequence[Sequence[int]],
    context_lengths: Sequence[int],
    batch_size: int,
    max_batch_tokens: int,
    before_call: Callable[[], None] = lambda: None,
) -> Iterator[tuple[list[int], RowScores]]:
    """Score whole rows (context + EOS + response + EOS, as `score_rows`) in length-bucketed
    batches, yielding (indices into rows, their scores) batch by batch.

    The head that every context begins with runs once, and each row continues its KV cache,
    where `shared_head` finds that cheaper. before_call() runs before every forward call (a
    cancellation check raises there).
    """
    if not rows:
        return
    head, block = shared_head(lm, rows, min(context_lengths), before_call)
    tails = [row[head:] for row in rows]
    call_tokens = call_cost_tokens(str(lm.device))
    for batch in plan_batches(
        [len(t) - 1 for t in tails], batch_size, max_batch_tokens, head, call_tokens
    ):
        before_call()
        contexts = [context_lengths[b] - head for b in batch]
        if block is None:
            scores = score_rows(lm, [rows[b] for b in batch], contexts)
        else:
            scores = score_rows_after_prefixes(
                lm, block, [0] * len(batch), [tails[b] for b in batch], contexts
            )
        yield batch, scores


def score_baselines(
    lm: LanguageModel,
    plan: PromptPlan,
    config: ScoringConfig,
    todo: np.ndarray,
    sink: ScoreSink,
) -> None:
    """Score each target of `todo` after the no-example template."""
    eos = lm.eos_id
    rows = [plan.baselines[i] + [eos] + plan.responses[i] + [eos] for i in todo]
    contexts = [len(plan.baselines[i]) for i in todo]
    for batch, scores in score_row_batches(
        lm, rows, contexts, config.batch_size, config.max_batch_tokens, sink.check_cancel
    ):
        sink.add_baselines(todo[batch], scores.rms, scores.logp)


def plan_pair_paths(
    plan: PromptPlan,
    config: ScoringConfig,
    pair_t: np.ndarray,
    pair_e: np.ndarray,
    todo: np.ndarray,
    call_tokens: float,
) -> PairPaths:
    """Split the pairs `todo` between the shared-prefix and the full-row path.

    Cost model, in tokens: cost = tokens run + calls * call_tokens (CALL_COST_TOKENS). For an
    example j with m pairs to score and a prefix of P tokens, full rows run (m - 1) * P tokens
    more (the prefix once per pair instead of once), while the shared path spends its share of
    one prefix call, which serves G = min(batch_size, max_batch_tokens // P) examples.
    Both put the same m rows into batches of up to batch_size, so their other calls are
    about equal. Example j takes full rows when (m - 1) * P < call_tokens / G: in practice
    exactly the examples with one pair, unless calls are very dear and prefixes very short.
    Pairs whose target or example is tokenised whole (PromptPlan.joined_*) take full rows.
    """
    if not len(todo):
        return PairPaths(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    todo = np.asarray(todo, dtype=np.int64)
    joined = np.array(
        [
            int(pair_t[p]) in plan.joined_targets or int(pair_e[p]) in plan.joined_examples
            for p in todo
        ]
    )
    clean = todo[~joined]
    examples, counts = np.unique(pair_e[clean], return_counts=True)
    full_examples = [
        int(j)
        for j, m in zip(examples.tolist(), counts.tolist(), strict=True)
        if _full_rows_cheaper(len(plan.prefixes[j]), m, config, call_tokens)
    ]
    to_full = np.isin(pair_e[clean], full_examples)
    full = np.sort(np.concatenate([todo[joined], clean[to_full]]))
    return PairPaths(clean[~to_full], full)


def _full_rows_cheaper(
    prefix_tokens: int, pairs: int, config: ScoringConfig, call_tokens: float
) -> bool:
    """The cost rule of plan_pair_paths for one example."""
    per_group = max(1, min(config.batch_size, config.max_batch_tokens // max(1, prefix_tokens)))
    return (pairs - 1) * prefix_tokens < call_tokens / per_group


def score_pairs_on_shared_prefixes(
    lm: LanguageModel,
    plan: PromptPlan,
    config: ScoringConfig,
    pair_t: np.ndarray,
    pair_e: np.ndarray,
    todo: np.ndarray,
    sink: ScoreSink,
) -> None:
    """Score pairs `todo` group by group: the group's prefixes (after the head they all share,
    run once) in a few calls, then its pairs' suffixes in batches that mix examples.

    The tokens that every target's query begins with join the end of every prefix, so that
    they run once per example rather than once per pair; the tokens of each pair are those of
    `prefix + query + EOS + response + EOS` all the same.
    """
    if not len(todo):
        return
    eos = lm.eos_id
    call_tokens = call_cost_tokens(str(lm.device))
    queries = {i: plan.queries[i] for i in np.unique(pair_t[todo]).tolist()}
    moved = shared_head_length(list(queries.values()), min(len(q) for q in queries.values()))
    moved_tokens = list(next(iter(queries.values()))[:moved])
    # A suffix depends on the target only: one token list per target, shared by its pairs.
    suffix_of = {i: q[moved:] + [eos] + plan.responses[i] + [eos] for i, q in queries.items()}
    by_example = _pairs_by_example(pair_e, todo)
    prefix_of = {j: plan.prefixes[j] + moved_tokens for j in by_example}
    # Every prefix keeps at least one token of its own, so that a group's call has tokens to run.
    head, head_block = shared_head(
        lm, list(prefix_of.values()), min(len(p) for p in prefix_of.values()) - 1,
        sink.check_cancel,
    )  # fmt: skip
    for group in prefix_groups(plan, config, list(by_example), extra_tokens=moved):
        tails = [prefix_of[j][head:] for j in group]
        blocks, order = [], []
        for part in plan_batches(
            [len(t) for t in tails], config.batch_size, config.max_batch_tokens,
            head, call_tokens,
        ):  # fmt: skip
            sink.check_cancel()
            blocks.append(encode_prefixes(lm, [tails[b] for b in part], head_block))
            order.extend(group[b] for b in part)
        block = merge_blocks(blocks)  # releases the parts' caches as it copies them
        del blocks
        pairs = np.concatenate([by_example[j] for j in group])
        owner = {j: b for b, j in enumerate(order)}
        owners = [owner[j] for j in pair_e[pairs].tolist()]
        target_ids = pair_t[pairs].tolist()
        lengths = [len(suffix_of[i]) - 1 for i in target_ids]
        for batch in plan_batches(
            lengths, config.batch_size, config.max_batch_tokens, block.width, call_tokens
        ):
            sink.check_cancel()
            scores = score_rows_after_prefixes(
                lm,
                block,
                [owners[b] for b in batch],
                [suffix_of[target_ids[b]] for b in batch],
                [len(queries[target_ids[b]]) - moved for b in batch],
            )
            sink.add_pairs(pairs[batch], scores.rms, scores.logp)
        del block  # the group's cache goes before the next group's is made


def prefix_groups(
    plan: PromptPlan, config: ScoringConfig, examples: list[int], extra_tokens: int = 0
) -> list[list[int]]:
    """Examples in groups whose pairs' rows are batched together.

    Sorted by prefix length (little padding); a group has at most _GROUP_BATCHES * batch_size
    examples and examples * (longest prefix + extra_tokens) <= max_batch_tokens, so that the
    KV cache held for a group has no more slots than a batch has tokens. extra_tokens: tokens
    every prefix gains in the run (the queries' common head).
    """
    lengths = [len(plan.prefixes[j]) + extra_tokens for j in examples]
    size = _GROUP_BATCHES * config.batch_size
    return [
        [examples[b] for b in batch]
        for batch in plan_batches(lengths, size, config.max_batch_tokens)
    ]


def _pairs_by_example(pair_e: np.ndarray, todo: np.ndarray) -> dict[int, np.ndarray]:
    """Pair indices of `todo` keyed by their example (ascending), each in `todo` order."""
    order = np.argsort(pair_e[todo], kind="stable")
    ordered = todo[order]
    cuts = np.flatnonzero(np.diff(pair_e[ordered])) + 1
    return {int(pair_e[part[0]]): part for part in np.split(ordered, cuts)}


def score_pairs_as_full_rows(
    lm: LanguageModel,
    plan: PromptPlan,
    config: ScoringConfig,
    targets: Sequence[TextPair],
    examples: Sequence[TextPair],
    pair_t: np.ndarray,
    pair_e: np.ndarray,
    todo: np.ndarray,
    sink: ScoreSink,
) -> None:
    """Score pairs `todo` as whole sequences (template with example, EOS, response, EOS), with
    no KV cache, in length-bucketed batches planned a chunk of pairs at a time."""
    eos = lm.eos_id
    for start in range(0, len(todo), _FULL_ROW_CHUNK):
        chunk = todo[start : start + _FULL_ROW_CHUNK]
        heads = [
            pair_head(lm, plan, config, targets, examples, i, j)
            for i, j in zip(pair_t[chunk].tolist(), pair_e[chunk].tolist(), strict=True)
        ]
        rows = [
            h + [eos] + plan.responses[i] + [eos]
            for h, i in zip(heads, pair_t[chunk].tolist(), strict=True)
        ]
        for batch, scores in score_row_batches(
            lm, rows, [len(h) for h in heads], config.batch_size, config.max_batch_tokens,
            sink.check_cancel,
        ):  # fmt: skip
            sink.add_pairs(chunk[batch], scores.rms, scores.logp)


def pair_head(
    lm: LanguageModel,
    plan: PromptPlan,
    config: ScoringConfig,
    targets: Sequence[TextPair],
    examples: Sequence[TextPair],
    i: int,
    j: int,
) -> list[int]:
    """Template tokens of pair (target i, example j): prefix + query where the text splits
    cleanly at the template boundary, else the whole string tokenised."""
    if i in plan.joined_targets or j in plan.joined_examples:
        return lm.encode(with_example_text(config.template, targets[i], examples[j]))
    return plan.prefixes[j] + plan.queries[i]
