"""Score the scenario pools of bench/scenarios.py and keep what selection needs in bundles.

    python bench/quality_scoring.py --split val             # S1, S2, S3 validation pools
    python bench/quality_scoring.py --split test            # test pools and the demo
    python bench/quality_scoring.py --split test2           # the second test split

Each scenario's matrices, answer scores, embeddings and labels go to
`<bundles>/<split>/<scenario>.npz` (default bundles folder ~/.cache/delift/quality), so that
bench/quality.py can compare methods and settings without loading a model. Utility pairs are
cached in DuckDB (--cache), so a rerun after an interruption resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.scenarios import SPLITS, Scenario, build_scenarios  # noqa: E402
from delift_core.cache import UtilityCache, default_cache_path  # noqa: E402
from delift_core.config import ScoringConfig  # noqa: E402
from delift_core.data.dataset import dataset_from_rows  # noqa: E402
from delift_core.embeddings import embed_records  # noqa: E402
from delift_core.models import embedder_id, load_causal_lm, load_embedder  # noqa: E402
from delift_core.pipeline import Embedder, score_stage  # noqa: E402

DEFAULT_BUNDLES = default_cache_path().parent / "quality"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    default_data = os.environ.get("DELIFT_DATASETS", str(REPO.parent / "shared" / "datasets"))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--split", choices=SPLITS, required=True)
    p.add_argument("--scenarios", nargs="+", default=["S1", "S2", "S3", "demo"])
    p.add_argument("--datasets", default=default_data)
    p.add_argument("--k", type=int, default=4, help="candidates per row (sparse mode)")
    p.add_argument("--demo-k", type=int, default=8, help="candidates per row for the demo")
    p.add_argument("--cache", default=str(default_cache_path().with_name("quality.duckdb")))
    p.add_argument("--bundles", default=str(DEFAULT_BUNDLES))
    return p.parse_args(argv)


def _pack(prefix: str, matrix: np.ndarray | sp.csr_matrix, out: dict[str, np.ndarray]) -> None:
    csr = sp.csr_matrix(matrix)
    out[f"{prefix}_data"] = csr.data.astype(np.float32)
    out[f"{prefix}_indices"] = csr.indices.astype(np.int64)
    out[f"{prefix}_indptr"] = csr.indptr.astype(np.int64)
    out[f"{prefix}_shape"] = np.asarray(csr.shape, dtype=np.int64)


def score_scenario(scenario: Scenario, lm, embedder: Embedder, cache: UtilityCache, k: int):
    pool = dataset_from_rows(scenario.pool, source=scenario.name)
    targets = dataset_from_rows(scenario.targets) if scenario.targets else None
    existing = dataset_from_rows(scenario.existing) if scenario.existing else None
    config = ScoringConfig(mode="sparse", k=k)
    started = time.perf_counter()
    utilities = score_stage(
        lm, pool.records, config,
        targets=targets.records if targets else None,
        existing=existing.records if existing else None,
        embedder=embedder, cache=cache,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    arrays: dict[str, np.ndarray] = {}
    for name, result in utilities.results().items():
        _pack(f"{name}_rms", result.rms, arrays)
    arrays["answers"] = utilities.answers.to_array()
    arrays["emb_pool"] = embed_records(pool.records, embedder.model, embedder.key, cache)
    if targets:
        arrays["emb_targets"] = embed_records(targets.records, embedder.model, embedder.key, cache)
    if existing:
        arrays["emb_existing"] = embed_records(
            existing.records, embedder.model, embedder.key, cache
        )
    meta = {
        "name": scenario.name, "split": scenario.split, "stage": scenario.stage,
        "labels": scenario.labels, "duplicate_of": scenario.duplicate_of,
        "on_target": scenario.on_target, "new_sources": list(scenario.new_sources),
        "n": len(pool), "k": k, "seconds": round(seconds, 1),
        "pairs_computed": sum(r.pairs_computed for r in utilities.results().values()),
        "targets": len(targets) if targets else 0, "existing": len(existing) if existing else 0,
    }  # fmt: skip
    return arrays, meta


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out_dir = Path(args.bundles) / args.split
    out_dir.mkdir(parents=True, exist_ok=True)
    lm = load_causal_lm("default", "auto")
    embedder = Embedder(load_embedder("default", "auto"), embedder_id("default"))
    with UtilityCache(args.cache) as cache:
        for scenario in build_scenarios(Path(args.datasets), args.split, args.scenarios):
            k = args.demo_k if scenario.name == "demo" else args.k
            arrays, meta = score_scenario(scenario, lm, embedder, cache, k)
            np.savez(out_dir / f"{scenario.name}.npz", meta=np.array(json.dumps(meta)), **arrays)
            logging.info("%s/%s scored in %.0f s", args.split, scenario.name, meta["seconds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
