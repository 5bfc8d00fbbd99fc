"""Process-level objects shared by every browser session, without Streamlit.

Datasets are kept here by content hash so that session state holds only small handles
({spec, hash, label, rows}); a handle's `spec` says how to load the data again (demo set, local
path, or an upload stored in the cache), which is what lets a score run resume after a restart.
Uploads and saved selections are stored per workspace by ui.workspaces.
Job functions (ui/tasks.py) run in the worker thread and use only this module and the library.

Loaded datasets and uploaded files are bounded by bytes, least recently used first out
(ui/memory.py: the limits and their settings); a dataset dropped is loaded again from its spec
when next used. Model folders are named by their resolved path (canonical_model).
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from delift_core.cache import UtilityCache
from delift_core.config import (
    DEFAULT_DUPLICATE_THRESHOLD,
    DEFAULT_QUALITY_GATE,
    DEFAULT_QUALITY_SIGNAL,
    DEFAULT_QUALITY_WEIGHT,
    DEFAULT_SIDE_WEIGHT,
    SelectionConfig,
)
from delift_core.data.dataset import Dataset, load_bytes, load_dataset
from delift_core.embeddings import embed_records
from delift_core.errors import ConfigError, DataError
from delift_core.models import (
    DEFAULT_LM,
    LanguageModel,
    embedder_id,
    load_causal_lm,
    load_embedder,
)
from delift_core.pipeline import Embedder, StageUtilities, load_stage, selection_inputs
from delift_core.projection import load_projection
from delift_core.quality import quality_signals
from delift_core.select.run import run_selection
from delift_core.select.selection import SelectionResult
from ui import memory, workspaces

ROOT = Path(__file__).resolve().parent.parent
DEMO_PATH = ROOT / "assets" / "demo.jsonl"
TEST_MODEL_ENV = "DELIFT_TEST_MODEL"

_lock = threading.RLock()
_datasets = memory.ByteBoundedStore()  # dataset hash -> Dataset
_by_spec: dict[str, str] = {}  # canonical spec -> dataset hash
_stages: OrderedDict[tuple[str, str], StageUtilities] = OrderedDict()
_selections: OrderedDict[tuple, SelectionResult] = OrderedDict()
_signals: OrderedDict[tuple, dict[str, np.ndarray]] = OrderedDict()
_tiny: dict[str, Any] = {}  # the tiny test model, built once
_tiny_lock = threading.Lock()


class EmbeddingsPending(ConfigError):
    """The method needs sentence embeddings the map job has not stored yet (it computes them)."""


def test_mode() -> bool:
    """True when $DELIFT_TEST_MODEL=tiny: a tiny random model and a hashing embedder are used."""
    return os.environ.get(TEST_MODEL_ENV, "") == "tiny"


# -- models ---------------------------------------------------------------------------------


def load_lm(name: str) -> LanguageModel:
    """The causal LM to score with ("default" or a local folder); in test mode "default" is the
    tiny random model."""
    if test_mode() and name in ("", "default"):
        from delift_core.testing import build_tiny_lm

        # A lock of its own: the registry lock must never wait on a model build.
        with _tiny_lock:
            if "tiny" not in _tiny:
                _tiny["tiny"] = build_tiny_lm()
            return _tiny["tiny"]
    return load_causal_lm(canonical_model(name))


def canonical_model(name: str) -> str:
    """'default', or the model folder as an absolute path with symlinks resolved, so that each
    spelling of one folder (`m/`, `m//`, `./m`) is one model, loaded once."""
    name = (name or "").strip()
    if name in ("", DEFAULT_LM):
        return DEFAULT_LM
    return str(Path(name).expanduser().resolve())


def embedder_key() -> str:
    """Cache key of the embedder used for maps, sparse candidates and DELIFT-SE."""
    if test_mode():
        from delift_core.testing import HashEmbedder

        return HashEmbedder.key
    return embedder_id("default")


def load_embedder_handle() -> Embedder:
    """The default sentence embedder (loaded once per process); a hashing one in test mode."""
    if test_mode():
        from delift_core.testing import HashEmbedder

        return Embedder(HashEmbedder(), HashEmbedder.key)
    return Embedder(load_embedder("default"), embedder_id("default"))


# -- datasets -------------------------------------------------------------------------------


def _canonical(spec: dict[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True)


def reset() -> None:
    """Forget every dataset, upload and result held in memory (tests)."""
    with _lock:
        for store in (_datasets, _by_spec, _stages, _selections, _signals):
            store.clear()
    workspaces.forget_uploads()


def source_label(spec: dict[str, Any]) -> str:
    """A short human name for a data source spec."""
    kind = spec.get("kind")
    if kind == "demo":
        base = "demo set"
    elif kind == "upload":
        base = str(spec.get("name", "upload"))
    else:
        base = Path(str(spec.get("path", "?"))).name or str(spec.get("path"))
    offset, limit = int(spec.get("offset") or 0), spec.get("limit")
    # With invalid records skipped, offset and limit count valid records, not file rows.
    unit, note = ("valid rows", ", skipping invalid") if spec.get("skip_invalid") else ("rows", "")
    if offset or limit:
        end = f"{offset + int(limit)}" if limit else "end"
        return f"{base} ({unit} {offset + 1}-{end}{note})"
    return f"{base} (skipping invalid)" if note else base


def load_source(spec: dict[str, Any], cache: UtilityCache | None) -> Dataset:
    """Load (or reuse) the dataset a spec describes.

    spec: {"kind": "demo" | "path" | "upload", "path" (path), "name", "digest" and "workspace"
    (upload; the bytes are found by digest whatever the workspace),
    "offset": rows to skip, "limit": rows to keep (None = all), "field_map": {...} | None,
    "skip_invalid": leave out invalid records with a warning instead of refusing the file}.
    Raises DataError or ConfigError with a message for the user.
    """
    canonical = _canonical(spec)
    with _lock:
        known = _by_spec.get(canonical)
        ds = None if known is None else _datasets.get(known)
    if ds is not None:
        return ds
    kind = spec.get("kind")
    offset = int(spec.get("offset") or 0)
    limit = spec.get("limit")
    if offset < 0 or (limit is not None and int(limit) < 1):
        raise ConfigError("rows to skip must be >= 0 and rows to load >= 1 (or all)")
    field_map = spec.get("field_map") or None
    options = {
        "field_map": field_map,
        "limit": None if limit is None else int(limit),
        "offset": offset,
    }
    if kind == "demo":
        ds = load_dataset(DEMO_PATH, **options)
    elif kind == "path":
        path = str(spec.get("path") or "").strip()
        if not path:
            raise DataError("give a file or folder path")
        ds = load_dataset(path, **options, skip_invalid=bool(spec.get("skip_invalid")))
    elif kind == "upload":
        data = workspaces.upload_bytes(cache, str(spec.get("digest")))
        name = str(spec.get("name"))
        ds = load_bytes(data, name, **options, skip_invalid=bool(spec.get("skip_invalid")))
    else:
        raise ConfigError(f"unknown data source {kind!r}")
    register(ds, canonical)
    return ds


def register(ds: Dataset, canonical: str | None = None) -> None:
    """Keep a dataset in the process registry; the least recently used are dropped once all
    take more than $DELIFT_DATASET_MEMORY_MB (the one just registered always stays)."""
    limit = memory.dataset_limit()
    size = memory.dataset_bytes(ds)
    with _lock:
        dropped = set(_datasets.put(ds.hash, ds, size, limit))
        if canonical is not None:
            _by_spec[canonical] = ds.hash
        for spec in [spec for spec, digest in _by_spec.items() if digest in dropped]:
            del _by_spec[spec]


def memory_in_use() -> dict[str, int]:
    """Bytes held now: {"datasets": estimated, "uploads": file bytes} (for tests and status)."""
    with _lock:
        return {"datasets": _datasets.total_bytes, "uploads": workspaces.uploads_in_memory()}


def make_handle(spec: dict[str, Any], ds: Dataset) -> dict[str, Any]:
    """The small session-state handle of a loaded dataset."""
    return {"spec": spec, "hash": ds.hash, "label": source_label(spec), "rows": len(ds)}


def dataset_for(handle: dict[str, Any], cache: UtilityCache) -> Dataset:
    """The dataset behind a handle, from the registry or loaded again from its spec."""
    with _lock:
        ds = _datasets.get(handle["hash"])
    if ds is None:
        ds = load_source(handle["spec"], cache)
        if ds.hash != handle["hash"]:
            raise DataError(
                f"{handle.get('label', 'the data')} has changed since it was loaded; load it again"
            )
    return ds


# -- cached results -------------------------------------------------------------------------


class _CacheOnly:
    """An embedder that refuses to compute: embed_records then only reads the cache."""

    def encode(self, *_: Any, **__: Any) -> np.ndarray:
        raise LookupError("not cached")

    def get_sentence_embedding_dimension(self) -> int:
        return 0


def cached_embeddings(cache: UtilityCache, ds: Dataset) -> np.ndarray | None:
    """The stored sentence embeddings (n, d) of a dataset, or None when not computed yet."""
    return cached_embeddings_of(cache, ds.records)


def cached_embeddings_of(cache: UtilityCache, records: Sequence[Any]) -> np.ndarray | None:
    """The stored sentence embeddings (n, d) of records, or None when not computed yet."""
    try:
        return embed_records(records, _CacheOnly(), embedder_key(), cache)
    except LookupError:
        return None


def map_key(ds: Dataset) -> str:
    """Cache key of a dataset's 2-D map."""
    return f"{embedder_key()}|{ds.hash}"


def cached_map(cache: UtilityCache, ds: Dataset) -> np.ndarray | None:
    """Stored (n, 2) map coordinates of a dataset, or None."""
    return load_projection(cache, map_key(ds), len(ds), 0)


def stage_utilities(cache: UtilityCache, key: str) -> StageUtilities:
    """A finished stage's matrices (kept in memory for the last few stages)."""
    with _lock:
        cached = _stages.get((str(cache.path), key))
    if cached is not None:
        return cached
    stage = load_stage(cache, key)
    if stage is None:
        raise ConfigError("these scores are not in the cache any more; score again")
    with _lock:
        _stages[(str(cache.path), key)] = stage
        while len(_stages) > 4:
            _stages.popitem(last=False)
    return stage


RESCORE_HINT = (
    "these scores were computed by an older version that did not record the quality signals;"
    " score the pool again on the Score page (the pairs come from the cache, so it is fast)"
)


def pool_quality(
    cache: UtilityCache, key: str, meta: dict[str, Any]
) -> dict[str, np.ndarray] | None:
    """The pool's quality signals of a stage (delift_core.quality.quality_signals), or None when
    the stage was stored before answer scores were.

    max_similarity needs the pool's embeddings: NaN until the map job has stored them. Kept in
    memory per stage and per embeddings-present, since max_similarity is O(n^2) to compute.
    """
    utilities = stage_utilities(cache, key)
    if utilities.answers is None:
        return None
    emb_pool = cached_embeddings(cache, load_source(meta["pool"]["spec"], cache))
    memo = (str(cache.path), key, emb_pool is not None)
    with _lock:
        if memo in _signals:
            _signals.move_to_end(memo)
            return _signals[memo]
    signals = quality_signals(utilities.answers, utilities.pool.matrix("rms"), emb_pool)
    with _lock:
        _signals[memo] = signals
        while len(_signals) > 4:
            _signals.popitem(last=False)
    return signals


def full_selection(
    cache: UtilityCache,
    key: str,
    meta: dict[str, Any],
    *,
    method: str,
    stage: str,
    kernel: str,
    metric: str,
    seed: int,
    quality_weight: float = DEFAULT_QUALITY_WEIGHT,
    quality_gate: float = DEFAULT_QUALITY_GATE,
    quality_signal: str = DEFAULT_QUALITY_SIGNAL,
    pinned: Sequence[int] = (),
    excluded: Sequence[int] = (),
    side_weight: float = DEFAULT_SIDE_WEIGHT,
    duplicate_threshold: float | None = DEFAULT_DUPLICATE_THRESHOLD,
) -> SelectionResult:
    """The complete greedy order of one method on a stage (every budget is a prefix of it).

    quality_weight, quality_gate and quality_signal set delift-q's quality prior, side_weight
    and duplicate_threshold (None = off) its priors from sentence embeddings; the other methods
    ignore them. pinned / excluded: pool indices picked first / never picked (run_selection);
    the order then covers the samples not excluded. Raises ConfigError when delift-q meets a
    stage scored without answer scores (older versions), with the fix; when delift-se, or
    delift-q's embedding priors, need embeddings the map job has not stored yet; or when an
    index is both pinned and excluded.
    """
    # Pins are picked greedily among themselves, so their order does not matter: sorted, the
    # same curation shares one memo entry however it was entered.
    pins, outs = tuple(sorted({int(i) for i in pinned})), tuple(sorted({int(i) for i in excluded}))
    tau = None if duplicate_threshold is None else float(duplicate_threshold)
    # The priors only change delift-q's order: other methods share one memo entry.
    prior = (float(quality_weight), float(quality_gate), quality_signal, float(side_weight), tau)
    memo = (str(cache.path), key, method, stage, kernel, metric, seed, pins, outs)
    memo += prior if method == "delift-q" else ()
    with _lock:
        if memo in _selections:
            _selections.move_to_end(memo)
            return _selections[memo]
    utilities = stage_utilities(cache, key)
    pool = load_source(meta["pool"]["spec"], cache)
    embeddings = {"emb_pool": cached_embeddings(cache, pool)}
    for role, name in (("targets", "emb_targets"), ("existing", "emb_existing")):
        if meta.get(role):
            embeddings[name] = cached_embeddings(cache, load_source(meta[role]["spec"], cache))
    if method == "delift-se" and any(v is None for v in embeddings.values()):
        raise EmbeddingsPending(
            "DELIFT-SE needs sentence embeddings, which are still being computed; try again "
            "when the map has appeared"
        )
    if method == "delift-q" and utilities.answers is None:
        raise ConfigError(f"delift-q needs quality signals, but {RESCORE_HINT}")
    if method == "delift-q":
        _check_prior_embeddings(stage, embeddings, float(side_weight), tau)
    selection = SelectionConfig(
        stage=stage, method=method, kernel=kernel, metric=metric, seed=seed,
        quality_weight=quality_weight, quality_gate=quality_gate, quality_signal=quality_signal,
        side_weight=side_weight, duplicate_threshold=tau,
    )  # fmt: skip
    inputs = selection_inputs(utilities, metric, quality_signal=quality_signal, **embeddings)
    result = run_selection(inputs, selection, pinned=pins, excluded=outs, whole_order=True)
    with _lock:
        _selections[memo] = result
        while len(_selections) > 32:
            _selections.popitem(last=False)
    return result


def _check_prior_embeddings(
    stage: str, embeddings: dict[str, np.ndarray | None], side_weight: float, tau: float | None
) -> None:
    """ConfigError, saying they are on their way, when delift-q's side prior (task and continual
    stages) or near-duplicate gate needs sentence embeddings the map job has not stored yet."""
    side = {"task": "emb_targets", "continual": "emb_existing"}.get(stage)
    uses_side = side_weight > 0 and side is not None
    needed = ["emb_pool"] if uses_side or tau is not None else []
    needed += [side] if uses_side else []
    if any(embeddings.get(name) is None for name in needed):
        uses = (("side weight", uses_side), ("near-duplicate gate", tau is not None))
        parts = [part for part, on in uses if on]
        verb = "need" if len(parts) > 1 else "needs"
        raise EmbeddingsPending(
            f"delift-q's {' and '.join(parts)} {verb} sentence embeddings, which are still being "
            "computed; try again when the map has appeared, or set the side weight to 0 and "
            "untick Gate near-duplicates"
        )


# -- saved selections (stored per workspace: ui.workspaces) --------------------------------


def _session_workspace() -> str | None:
    """The workspace of the browser session running this script; None outside one."""
    from ui import state  # Streamlit: imported only when a page leaves the workspace out

    return state.current_workspace()


def _workspace(workspace: str | None) -> str:
    if not (workspace := workspace or _session_workspace()):
        raise ConfigError("no workspace: name one outside a browser session")
    return workspace


def list_selections(
    cache: UtilityCache, workspace: str | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """(name, meta) of the saved selections of a workspace (default: this session's), newest
    first."""
    return workspaces.list_selections(cache, _workspace(workspace))


def load_selection(
    cache: UtilityCache, name: str, workspace: str | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """A saved selection's pool indices (int64, in pick order) and its meta, from a workspace
    (default: this session's; outside a session, tools and tests: the newest of any)."""
    workspace = workspace or _session_workspace()
    if workspace is None:
        return workspaces.find_selection(cache, name)
    return workspaces.load_selection(cache, workspace, name)


def save_selection(
    cache: UtilityCache,
    name: str,
    indices: np.ndarray,
    gains: np.ndarray,
    meta: dict[str, Any],
    workspace: str | None = None,
) -> None:
    """Store a named selection in a workspace (default: this session's)."""
    workspaces.save_selection(cache, _workspace(workspace), name, indices, gains, meta)
