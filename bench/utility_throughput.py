"""Utility engine throughput against the plain per-pair reference, on the embedded model.

    python bench/utility_throughput.py [--n 24] [--data PATH] [--sparse-n 200 --k 8] [--write docs/benchmarks.md]

Prints pairs/s of both, their ratio, the engine's achieved GFLOP/s against this machine's fp32
GEMM rate (measured in the same run), and the FLOP-ideal speedup: the ratio of model FLOPs each
method must spend, counted from token lengths. The reference runs header + example + query +
response through the whole model with the vocabulary projection at every position; the engine
runs each example prefix once, each query + response per pair, and the projection only at scored
positions.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from delift_core.config import ScoringConfig  # noqa: E402
from delift_core.data import load_dataset  # noqa: E402
from delift_core.embeddings import find_candidates  # noqa: E402
from delift_core.models import embed_texts, load_causal_lm, load_embedder  # noqa: E402
from delift_core.prompts import plan_prompts  # noqa: E402
from delift_core.reference import reference_utility  # noqa: E402
from delift_core.utility import compute_utility  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "dolly_openqa.train.jsonl"


def gemm_gflops(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


class FlopModel:
    """Forward FLOPs of a decoder: dense layers, attention and the vocabulary projection."""

    def __init__(self, lm) -> None:
        cfg = lm.model.config
        embed = lm.model.get_input_embeddings().weight
        total = sum(p.numel() for p in lm.model.parameters())
        self.body = total - embed.numel()  # tied output embedding counted once, as the head
        self.head = 2 * embed.shape[0] * embed.shape[1]
        self.attn = 4 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_dim

    def tokens(self, count: int, start: int = 0) -> float:
        """Dense + attention FLOPs for `count` tokens after `start` tokens of context."""
        positions = np.arange(start, start + count) + 1
        return 2 * self.body * count + self.attn * positions.sum()


def ideal_flops(lm, records, plan) -> tuple[float, float]:
    """(reference FLOPs, engine FLOPs) for all n x n pairs plus the n no-example passes."""
    fm = FlopModel(lm)
    n = len(records)
    ref = eng = 0.0
    for i in range(n):
        base = len(plan.baselines[i]) + len(plan.responses[i]) + 2
        both = fm.tokens(base) + fm.head * base
        ref += both
        eng += fm.tokens(base) + fm.head * (len(plan.responses[i]) + 1)
    for j in range(n):
        p = len(plan.prefixes[j])
        eng += fm.tokens(p)
        for i in range(n):
            s = len(plan.queries[i]) + len(plan.responses[i]) + 2
            ref += fm.tokens(p + s) + fm.head * (p + s)
            eng += fm.tokens(s, start=p) + fm.head * (len(plan.responses[i]) + 1)
    return ref, eng


def run_exact(lm, records, ref_pairs: int | None) -> dict:
    n = len(records)
    plan = plan_prompts(lm.encode, ScoringConfig().template, records, records, 512)
    ref_flops, eng_flops = ideal_flops(lm, records, plan)
    start = time.perf_counter()
    engine = compute_utility(lm, records, records, ScoringConfig())
    engine_s = time.perf_counter() - start
    pairs = [(i, j) for j in range(n) for i in range(n)]
    if ref_pairs is not None and ref_pairs < len(pairs):
        rng = np.random.default_rng(0)
        pairs = [pairs[k] for k in rng.choice(len(pairs), ref_pairs, replace=False)]
    start = time.perf_counter()
    ref_rms, _ = reference_utility(lm, records, records, pairs=pairs)
    ref_s = time.perf_counter() - start
    # The reference also ran n no-example passes; charge them to its time like the engine's.
    rows, cols = zip(*pairs, strict=True)
    max_err = float(np.max(np.abs(engine.rms[rows, cols] - ref_rms[rows, cols])))
    ref_rate = len(pairs) / ref_s
    eng_rate = n * n / engine_s
    return {
        "n": n,
        "tokens_mean": float(np.mean([len(p) for p in plan.prefixes])),
        "engine_s": engine_s,
        "engine_pairs_s": eng_rate,
        "ref_pairs": len(pairs),
        "ref_s": ref_s,
        "ref_pairs_s": ref_rate,
        "speedup": eng_rate / ref_rate,
        "ideal": ref_flops / eng_flops,
        "engine_gflops": eng_flops / engine_s / 1e9,
        "max_abs_err": max_err,
    }


def run_sparse(lm, records, k: int) -> dict:
    embedder = load_embedder()
    start = time.perf_counter()
    emb = embed_texts(embedder, [r.prompt + r.response for r in records])
    candidates = find_candidates(emb, emb, k, same_set=True)
    result = compute_utility(
        lm, records, records, ScoringConfig(mode="sparse", k=k), candidates=candidates
    )
    seconds = time.perf_counter() - start
    return {"n": len(records), "k": k, "pairs": result.pairs_total, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument(
        "--ref-pairs", type=int, help="time the reference on this many random pairs"
    )
    parser.add_argument("--sparse-n", type=int, default=0, help="also time sparse mode at this n")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--write", help="replace the '## Utility engine' section of this file")
    args = parser.parse_args()

    torch.set_num_threads(torch.get_num_threads())
    lm = load_causal_lm("default", "cpu")
    gemm = gemm_gflops()
    records = load_dataset(args.data, limit=args.n).records
    exact = run_exact(lm, records, args.ref_pairs)
    lines = [
        "## Utility engine",
        "",
        f"Command: `python bench/utility_throughput.py --n {args.n}"
        + (f" --ref-pairs {args.ref_pairs}" if args.ref_pairs else "")
        + (f" --sparse-n {args.sparse_n} --k {args.k}" if args.sparse_n else "")
        + f"` on `{Path(args.data).name}`  ",
        f"Machine: {torch.get_num_threads()} CPU threads, {platform.processor() or platform.machine()},"
        f" torch {torch.__version__}, fp32; embedded SmolLM2-135M-Instruct.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| fp32 GEMM rate (2048^3, this run) | {gemm:.0f} GFLOP/s |",
        f"| samples n (pairs n^2) | {exact['n']} ({exact['n'] ** 2}) |",
        f"| reference pairs/s ({exact['ref_pairs']} pairs timed) | {exact['ref_pairs_s']:.2f} |",
        f"| engine pairs/s (all pairs + baselines) | {exact['engine_pairs_s']:.2f} |",
        f"| measured speedup | {exact['speedup']:.2f}x |",
        f"| FLOP-ideal speedup | {exact['ideal']:.2f}x |",
        f"| share of ideal reached | {exact['speedup'] / exact['ideal']:.0%} |",
        f"| engine achieved | {exact['engine_gflops']:.0f} GFLOP/s ({exact['engine_gflops'] / gemm:.0%} of GEMM) |",
        f"| max abs difference engine vs reference | {exact['max_abs_err']:.1e} |",
    ]
    if args.sparse_n:
        records = load_dataset(args.data, limit=args.sparse_n).records
        sparse = run_sparse(lm, records, args.k)
        lines.append(
            f"| sparse k={sparse['k']}, n={sparse['n']}: {sparse['pairs']} pairs, embeddings included"
            f" | {sparse['seconds']:.0f} s ({sparse['seconds'] / 60:.1f} min) |"
        )
    lines += [
        "",
        "Reference: whole-string tokenisation, one full forward pass per pair, logits at every",
        "position. Engine: one prefix pass per example (KV cache shared by all its targets),",
        "length-bucketed batches, vocabulary projection only at scored positions. The FLOP-ideal",
        "speedup is the ratio of the FLOPs each must spend, counted from token lengths (dense",
        "layers, attention, vocabulary projection); the engine's GFLOP/s counts only the FLOPs",
        "it must spend.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(Path(args.write), "## Utility engine", text)


def write_section(path: Path, heading: str, text: str) -> None:
    """Replace (or append) the section starting at `heading` up to the next '## '."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    start = old.find(heading)
    if start < 0:
        new = old.rstrip() + "\n\n" + text + "\n"
    else:
        end = old.find("\n## ", start + len(heading))
        new = old[:start] + text + "\n" + (old[end:] if end >= 0 else "")
    path.write_text(new)


if __name__ == "__main__":
    main()
