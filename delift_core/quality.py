"""Per-sample quality signals from the scoring model, and the quality score selection uses.

DELIFT's pairwise utility says how much one sample helps another in context. With a small
scoring model that matrix is dominated by its diagonal (a sample "helps itself" by being copied),
so facility location on it mostly ranks rows by how surprising their own answer is, which favours
corrupted rows. A per-sample signal from the same model separates good from bad answers much
better: how much the sample's own prompt helps the model predict its answer (the IFD idea of
Cherry LLM / Superfiltering, Li et al. 2024).

For every pool row i the answer (response tokens plus the closing EOS, as in the utility) is
scored teacher-forced twice:

    prompt:  tokens(no-example template with prompt_i) + [EOS] + response_i + [EOS]
             (the utility's no-example baseline row: read from the cache, not recomputed)
    plain:   [EOS] + response_i + [EOS]                   (one extra forward per sample)

Signals, each (n,) float64 (the table `quality_table` writes):

    help_logprob  = (logp_prompt - logp_plain) / tokens    mean log-prob the prompt adds per token
    help_rms      = rms_plain - rms_prompt                 RMS distance the prompt removes
    ifd_logprob   = logp_prompt / logp_plain               IFD: mean NLL with prompt / without
    ifd_rms       = rms_prompt / rms_plain
    self_utility  = U[i, i]                                the utility's diagonal (rms)
    max_similarity= max_{j != i} cos(e_i, e_j)             near-duplicate signal (embeddings)

A swapped, off-topic or refused answer is one the prompt does not make more likely: low help, IFD
near or above 1. `quality_score` turns one signal into a score in [0, 1] (higher = better) by
its rank within the pool, so that a weight on it means the same on every dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

from delift_core.cache import UtilityCache, scope_key
from delift_core.config import DEFAULT_QUALITY_SIGNAL, ScoringConfig
from delift_core.errors import ConfigError
from delift_core.models import LanguageModel
from delift_core.prompts import TextPair, no_example_text
from delift_core.utility import CancelFn, ProgressFn, RunTracker

log = logging.getLogger(__name__)

# Signals a quality score can rank by: larger is better for help, smaller for IFD.
HIGHER_IS_BETTER: tuple[str, ...] = ("help_logprob", "help_rms")
LOWER_IS_BETTER: tuple[str, ...] = ("ifd_logprob", "ifd_rms")
SIGNALS: tuple[str, ...] = (
    "help_logprob",
    "help_rms",
    "ifd_logprob",
    "ifd_rms",
    "self_utility",
    "max_similarity",
)
DEFAULT_SIGNAL = DEFAULT_QUALITY_SIGNAL


@dataclass(frozen=True)
class AnswerScores:
    """Each row's answer scored with its prompt and after EOS alone; (n,) float64 each.

    rms_*: sqrt(mean_t (1 - p_t)^2); logp_*: sum_t log p_t; tokens: scored tokens (response
    tokens after truncation plus the closing EOS).
    """

    rms_prompt: np.ndarray
    logp_prompt: np.ndarray
    rms_plain: np.ndarray
    logp_plain: np.ndarray
    tokens: np.ndarray

    def __post_init__(self) -> None:
        arrays = [np.asarray(getattr(self, f), dtype=np.float64) for f in self._fields()]
        if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1:
            raise ConfigError("answer scores must be 1-D arrays of one length")
        for name, array in zip(self._fields(), arrays, strict=True):
            object.__setattr__(self, name, array)

    @staticmethod
    def _fields() -> tuple[str, ...]:
        return ("rms_prompt", "logp_prompt", "rms_plain", "logp_plain", "tokens")

    def __len__(self) -> int:
        return len(self.tokens)

    def to_array(self) -> np.ndarray:
        """(n, 5) float64 in the order of the fields, for storage."""
        return np.stack([getattr(self, f) for f in self._fields()], axis=1)

    @classmethod
    def from_array(cls, array: np.ndarray) -> AnswerScores:
        array = np.asarray(array, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != 5:
            raise ConfigError(f"stored answer scores have shape {array.shape}; expected (n, 5)")
        return cls(*(array[:, c] for c in range(5)))


def plain_scope(model_id: str, config: ScoringConfig) -> str:
    """Cache scope of answers scored after EOS alone: no template is involved."""
    return scope_key(model_id, f"plain:r{config.max_response_tokens}")


def prompt_scope(model_id: str, config: ScoringConfig) -> str:
    """The utility's baseline scope (utility.plan_work), so those rows are shared."""
    return scope_key(model_id, f"{config.template.hash}:r{config.max_response_tokens}")


def score_answers(
    lm: LanguageModel,
    records: Sequence[TextPair],
    config: ScoringConfig | None = None,
    *,
    cache: UtilityCache | None = None,
    on_progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> AnswerScores:
    """Score every record's answer after its prompt and after EOS alone (cached by content).

    Rows already in the cache (the prompt rows of a finished utility run, for instance) are
    read, not recomputed. Raises CancelledError when should_cancel() turns true between batches.
    """
    # Imported here: batching imports torch, which `delift --help` and the parsers do not need.
    from delift_core.batching import score_row_batches

    config = config or ScoringConfig()
    if not records:
        raise ConfigError("quality signals need at least one record")
    eos = lm.eos_id
    hashes = [r.hash for r in records]
    responses = [lm.encode(r.response)[: config.max_response_tokens] for r in records]
    tokens = np.array([len(r) + 1 for r in responses], dtype=np.float64)
    scopes = (prompt_scope(lm.model_id, config), plain_scope(lm.model_id, config))
    values = np.full((2, len(records), 2), np.nan)
    for s, scope in enumerate(scopes):
        stored = cache.load_baselines(scope, hashes) if cache is not None else {}
        for i, h in enumerate(hashes):
            if h in stored:
                values[s, i] = stored[h]
    todo = [np.flatnonzero(np.isnan(values[s, :, 0])) for s in range(2)]
    total = 2 * len(records)
    tracker = RunTracker(total, total - sum(len(t) for t in todo), on_progress, should_cancel)
    tracker.report()
    for s, scope in enumerate(scopes):
        if not len(todo[s]):
            continue
        contexts = {
            int(i): (lm.encode(no_example_text(config.template, records[i])) if s == 0 else [])
            for i in todo[s]
        }
        rows = [contexts[int(i)] + [eos] + responses[i] + [eos] for i in todo[s]]
        for batch, scores in score_row_batches(
            lm, rows, [len(contexts[int(i)]) for i in todo[s]], config.batch_size,
            config.max_batch_tokens, tracker.check_cancel,
        ):  # fmt: skip
            idx = todo[s][batch]
            values[s, idx, 0], values[s, idx, 1] = scores.rms, scores.logp
            if cache is not None:
                cache.store_baselines(scope, [hashes[i] for i in idx], scores.rms, scores.logp)
            tracker.advance(len(idx))
    log.info("quality: %d answers, %d rows computed", len(records), sum(len(t) for t in todo))
    return AnswerScores(values[0, :, 0], values[0, :, 1], values[1, :, 0], values[1, :, 1], tokens)


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=np.abs(den) > 1e-12)
    return out


def quality_signals(
    answers: AnswerScores,
    u_pool: np.ndarray | sp.spmatrix | None = None,
    embeddings: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The signals of the module docstring, each (n,) float64; self_utility needs the pool's
    (n, n) RMS utility and max_similarity the pool's unit-norm embeddings (n, d) (NaN without)."""
    n = len(answers)
    signals = {
        "help_logprob": (answers.logp_prompt - answers.logp_plain) / answers.tokens,
        "help_rms": answers.rms_plain - answers.rms_prompt,
        "ifd_logprob": _safe_ratio(answers.logp_prompt, answers.logp_plain),
        "ifd_rms": _safe_ratio(answers.rms_prompt, answers.rms_plain),
        "self_utility": np.full(n, np.nan),
        "max_similarity": np.full(n, np.nan),
    }
    if u_pool is not None:
        if u_pool.shape != (n, n):
            raise ConfigError(f"u_pool has shape {u_pool.shape}; expected ({n}, {n})")
        diagonal = u_pool.diagonal() if sp.issparse(u_pool) else np.diagonal(u_pool)
        signals["self_utility"] = np.asarray(diagonal, dtype=np.float64)
    if embeddings is not None:
        if embeddings.shape[0] != n:
            raise ConfigError(f"embeddings have {embeddings.shape[0]} rows; expected {n}")
        signals["max_similarity"] = max_similarity(embeddings)
    return signals


def max_similarity(embeddings: np.ndarray, block: int = 2048) -> np.ndarray:
    """max_{j != i} cos(e_i, e_j) per row of unit-norm embeddings (n, d); -1 when n = 1."""
    emb = np.asarray(embeddings, dtype=np.float32)
    n = emb.shape[0]
    out = np.full(n, -1.0)
    for start in range(0, n, block):
        sims = emb[start : start + block] @ emb.T
        rows = np.arange(sims.shape[0])
        sims[rows, rows + start] = -np.inf
        if n > 1:
            out[start : start + block] = sims.max(axis=1)
    return out


def quality_score(signals: dict[str, np.ndarray], signal: str = DEFAULT_SIGNAL) -> np.ndarray:
    """Score in [0, 1] per row, higher = better: the row's rank by `signal` within the pool
    (ties share their mean rank; NaN ranks lowest). float64 (n,)."""
    if signal not in HIGHER_IS_BETTER + LOWER_IS_BETTER:
        raise ConfigError(
            f"quality signal must be one of {', '.join(HIGHER_IS_BETTER + LOWER_IS_BETTER)};"
            f" got {signal!r}"
        )
    values = np.asarray(signals[signal], dtype=np.float64)
    oriented = values if signal in HIGHER_IS_BETTER else -values
    oriented = np.where(np.isnan(oriented), -np.inf, oriented)
    n = len(oriented)
    if n == 1:
        return np.ones(1)
    return (rankdata(oriented, method="average") - 1.0) / (n - 1)


def quality_rows(
    ids: Sequence[str], signals: dict[str, np.ndarray], score: np.ndarray | None = None
) -> list[dict[str, object]]:
    """One JSON-ready row per sample: {"id", each signal (None where unknown), "quality"}."""
    rows = []
    for i, sample_id in enumerate(ids):
        row: dict[str, object] = {"id": sample_id}
        for name in SIGNALS:
            value = float(signals[name][i])
            row[name] = None if np.isnan(value) else round(value, 6)
        if score is not None:
            row["quality"] = round(float(score[i]), 6)
        rows.append(row)
    return rows
