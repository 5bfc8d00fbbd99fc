"""What a score run will cost before it starts: passes left after the cache, speed, memory.

The speed (forward passes per second) is kept per model in memory and in the cache, so that a
restarted server does not measure it again; a running job updates it from its own progress, so
the estimate corrects itself. A pass costs about in proportion to the text it reads, so each
speed is kept with the mean length of the records it was measured on (`mean_chars`), and an
estimate for other data is scaled by their lengths: a pool of long answers takes longer than one
of short answers with as many rows. Nothing here loads a model: the model's cache id and weight
size come from its files, and sparse candidates from embeddings already in the cache.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from delift_core.cache import UtilityCache
from delift_core.config import ScoringConfig
from delift_core.data.dataset import Dataset
from delift_core.errors import CacheError, DeliftError
from delift_core.models import DEFAULT_LM, causal_lm_id, causal_lm_weight_bytes
from delift_core.pipeline import StagePlan, plan_stage
from delift_core.prompts import TextPair
from ui import registry

log = logging.getLogger(__name__)

RATE_KIND = "speed"
# A live rate is trusted once a job has computed this many passes.
MIN_LIVE_PASSES = 20


@dataclass(frozen=True)
class Speed:
    """A measured speed: forward passes per second on records of `chars` characters on average
    (prompt and response, as the model reads them; None when not recorded)."""

    passes_per_second: float
    chars: float | None = None

    def scale(self, chars: float | None) -> float:
        """How much longer a pass over records of `chars` characters takes (1.0 when unknown)."""
        if not chars or not self.chars:
            return 1.0
        return chars / self.chars

    def seconds(self, passes: int, chars: float | None) -> float:
        """Seconds for `passes` forward passes over records of `chars` characters on average."""
        return passes / self.passes_per_second * self.scale(chars)


_lock = threading.Lock()
_rates: dict[str, Speed] = {}  # canonical model name -> its speed
_lengths: dict[str, int] = {}  # dataset hash -> characters of its records (pages rerun often)


def _total_chars(records: Sequence[TextPair]) -> int:
    return sum(len(record.prompt) + len(record.response) for record in records)


def mean_chars(*groups: Dataset | Sequence[TextPair] | None) -> float | None:
    """Mean characters per record (prompt + response) over the records of all `groups` (datasets
    or record lists; None is skipped); None when there are none."""
    count, total = 0, 0
    for group in groups:
        if isinstance(group, Dataset):
            with _lock:
                known = _lengths.get(group.hash)
            if known is None:
                known = _total_chars(group.records)
                with _lock:
                    if len(_lengths) > 256:
                        _lengths.clear()
                    _lengths[group.hash] = known
            total, count = total + known, count + len(group)
        elif group:
            total, count = total + _total_chars(group), count + len(group)
    return total / count if count else None


def set_rate(
    model: str,
    passes_per_second: float,
    cache: UtilityCache | None = None,
    *,
    chars: float | None = None,
) -> None:
    """Remember a measured speed (and store it in the cache when one is given); `chars`: the
    mean_chars of the records it was measured on."""
    model = registry.canonical_model(model)
    with _lock:
        _rates[model] = Speed(float(passes_per_second), chars)
    if cache is not None:
        stored = np.array([passes_per_second, math.nan if chars is None else chars])
        try:
            cache.put_array(RATE_KIND, model, stored.astype(np.float64))
        except CacheError as exc:
            log.warning("cannot store the speed of %s: %s", model, exc)


def get_speed(model: str, cache: UtilityCache | None = None) -> Speed | None:
    """The speed measured for a model, here or by an earlier server."""
    model = registry.canonical_model(model)
    with _lock:
        if model in _rates:
            return _rates[model]
    stored = cache.get_array(RATE_KIND, model) if cache is not None else None
    if stored is None or not stored.size or not np.isfinite(stored[0]) or stored[0] <= 0:
        return None
    # Speeds stored before lengths were recorded hold one number.
    chars = float(stored[1]) if stored.size > 1 and np.isfinite(stored[1]) else None
    with _lock:
        return _rates.setdefault(model, Speed(float(stored[0]), chars))


def get_rate(model: str, cache: UtilityCache | None = None) -> float | None:
    """Forward passes per second measured for a model, here or by an earlier server."""
    speed = get_speed(model, cache)
    return None if speed is None else speed.passes_per_second


def forget_rates() -> None:
    """Forget the speeds held in memory (tests)."""
    with _lock:
        _rates.clear()


def model_id(model: str) -> str:
    """The cache id of a model name, without loading it (DeliftError for a bad folder)."""
    if registry.test_mode() and registry.canonical_model(model) == DEFAULT_LM:
        return registry.load_lm(DEFAULT_LM).model_id  # the tiny test model builds in ms
    return causal_lm_id(registry.canonical_model(model))


def model_bytes(model: str) -> int | None:
    """Bytes the model's weights take in memory, or None when unknown."""
    if registry.test_mode() and registry.canonical_model(model) == DEFAULT_LM:
        return None
    try:
        return causal_lm_weight_bytes(registry.canonical_model(model))
    except DeliftError:
        return None


def plan(
    cache: UtilityCache,
    lm_id: str,
    config: ScoringConfig,
    datasets: dict[str, Dataset | None],
) -> StagePlan | None:
    """Passes of scoring these datasets with the model `lm_id` (see model_id) and how many the
    cache already holds; None when that cannot be known yet (sparse mode before the embeddings
    exist)."""
    pool = datasets.get("pool")
    if pool is None:
        return None

    def cached_embeddings(records: list[TextPair]) -> np.ndarray:
        vectors = registry.cached_embeddings_of(cache, records)
        if vectors is None:
            raise LookupError("embeddings not computed yet")
        return vectors

    targets, existing = datasets.get("targets"), datasets.get("existing")
    try:
        return plan_stage(
            lm_id,
            pool.records,
            config,
            cache,
            targets=targets.records if targets else None,
            existing=existing.records if existing else None,
            embed=cached_embeddings,
        )
    except LookupError:
        return None
