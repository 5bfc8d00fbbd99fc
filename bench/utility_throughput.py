"""Utility engine throughput on the embedded model: against the per-pair reference, and before
and after a change of the engine.

    python bench/utility_throughput.py [--short PATH] [--long PATH] [--n 16] [--ref-pairs 24]
                                       [--write docs/benchmarks.md]
    python bench/utility_throughput.py --before REV [--short PATH] [--sparse-n 300] [--k 8]
                                       [--exact-n 30] [--repeats 3] [--write docs/benchmarks.md]
    python bench/utility_throughput.py --call-cost
    python bench/utility_throughput.py --planned-calls 300 1000 5000 [--short PATH] [--k 8]

Default mode, per data set (short texts and long texts): exact mode on the first n samples,
the reference timed on --ref-pairs random pairs; pairs/s of both, the measured speed-up, the
FLOP-ideal speed-up (the ratio of model FLOPs each method must spend, counted from token
lengths: the reference runs header + example + query + response through the whole model with
the vocabulary projection at every position; the engine runs each example prefix once, each
query + response per pair, and the projection only at scored positions) and the share of it
reached, with the engine's forward calls and its largest difference from the reference.

--before REV: the engine of git revision REV (its delift_core/utility.py and scoring.py, loaded
in this process next to the current one; the rest of the library is shared) against the
current engine, on sparse mode (k candidates, first --sparse-n rows of --short) and exact mode
(first --exact-n rows), runs interleaved old/new --repeats times; forward calls, median wall
and CPU seconds, the 1-minute load average around each run, and the largest difference
between the two engines' values.

--call-cost: the fixed time of a forward call against the time per token (the constant of the
engine's cost model, batching.CALL_COST_TOKENS). --planned-calls: the forward calls sparse mode
makes at each n, counted with the model calls stubbed out (the batching code runs as it is).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from delift_core.config import ScoringConfig  # noqa: E402
from delift_core.data.dataset import load_dataset  # noqa: E402
from delift_core.embeddings import embed_records, find_candidates  # noqa: E402
from delift_core.models import embedder_id, load_causal_lm, load_embedder  # noqa: E402
from delift_core.prompts import plan_prompts  # noqa: E402
from delift_core.reference import reference_utility  # noqa: E402
from delift_core.scoring import _decoder  # noqa: E402
from delift_core.utility import compute_utility  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
DEFAULT_DATA = DATASETS / "dolly_openqa.train.jsonl"
SHORT_DATA = DATASETS / "hotpotqa_cb.train.jsonl"
HEADING = "## Utility engine"
BEFORE_HEADING = "## Utility engine: batching across examples, before and after"


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


@contextmanager
def count_forward_calls(lm) -> Iterator[list[int]]:
    """Count the decoder's forward calls inside the block: `with ... as calls:`, then calls[0]."""
    calls = [0]
    hook = _decoder(lm).register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        yield calls
    finally:
        hook.remove()


def run_exact(lm, records, ref_pairs: int | None) -> dict:
    """Exact mode on `records` against the reference on `ref_pairs` random pairs (all if None)."""
    n = len(records)
    plan = plan_prompts(lm.encode, ScoringConfig().template, records, records, 512)
    ref_flops, eng_flops = ideal_flops(lm, records, plan)
    with count_forward_calls(lm) as calls:
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
    # The reference also ran n no-example passes; they are charged to its time like the engine's.
    rows, cols = zip(*pairs, strict=True)
    ref_rate, eng_rate = len(pairs) / ref_s, n * n / engine_s
    return {
        "n": n,
        "prefix_tokens": float(np.mean([len(p) for p in plan.prefixes])),
        "suffix_tokens": float(
            np.mean(
                [len(q) + len(r) + 2 for q, r in zip(plan.queries, plan.responses, strict=True)]
            )
        ),
        "engine_pairs_s": eng_rate,
        "calls": calls[0],
        "ref_pairs": len(pairs),
        "ref_pairs_s": ref_rate,
        "speedup": eng_rate / ref_rate,
        "ideal": ref_flops / eng_flops,
        "engine_gflops": eng_flops / engine_s / 1e9,
        "max_abs_err": float(np.max(np.abs(engine.rms[rows, cols] - ref_rms[rows, cols]))),
    }


def reference_section(lm, args: argparse.Namespace) -> str:
    gemm = gemm_gflops()
    lines = [
        HEADING,
        "",
        f"Command: `python bench/utility_throughput.py --short {Path(args.short).name}"
        f" --long {Path(args.long).name} --n {args.n}"
        + (f" --ref-pairs {args.ref_pairs}" if args.ref_pairs else "")
        + "`  ",
        f"Machine: {machine()}; fp32 GEMM rate (2048^3, this run) {gemm:.0f} GFLOP/s; "
        f"load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| data set | tokens: prefix / query + answer | n (pairs) | forward calls | reference"
        " pairs/s | engine pairs/s | speed-up | FLOP-ideal | share of ideal | engine GFLOP/s"
        " | max abs diff (rms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, path in (("short", args.short), ("long", args.long)):
        r = run_exact(lm, load_dataset(path, limit=args.n).records, args.ref_pairs)
        lines.append(
            f"| {label}: {Path(path).name} | {r['prefix_tokens']:.0f} / {r['suffix_tokens']:.0f}"
            f" | {r['n']} ({r['n'] ** 2}) | {r['calls']} | {r['ref_pairs_s']:.2f}"
            f" ({r['ref_pairs']} timed) | {r['engine_pairs_s']:.2f} | {r['speedup']:.2f}x"
            f" | {r['ideal']:.2f}x | {r['speedup'] / r['ideal']:.0%}"
            f" | {r['engine_gflops']:.0f} ({r['engine_gflops'] / gemm:.0%} of GEMM)"
            f" | {r['max_abs_err']:.1e} |"
        )
    lines += [
        "",
        "Reference: whole-string tokenisation, one full forward pass per pair, logits at every",
        "position. Engine: prefixes run once each (the head they all share once per run),",
        "several per padded forward call, their KV caches serving all targets in length-bucketed",
        "batches that mix examples; vocabulary projection only at scored positions. The",
        "FLOP-ideal speed-up is the ratio of the FLOPs",
        "each must spend, counted from token lengths (dense layers, attention, vocabulary",
        "projection); the engine's GFLOP/s counts only the FLOPs it must spend.",
    ]
    return "\n".join(lines)


def machine() -> str:
    return (
        f"{torch.get_num_threads()} CPU threads, {platform.processor() or platform.machine()},"
        f" torch {torch.__version__}, fp32; embedded SmolLM2-135M-Instruct"
    )


def load_engine_at(rev: str) -> types.ModuleType:
    """The `utility` module of git revision `rev`, with that revision's `scoring` module,
    loaded under private names (the current ones stay as they are)."""
    modules: dict[str, types.ModuleType] = {}
    for name in ("scoring", "utility"):
        source = subprocess.run(
            ["git", "show", f"{rev}:delift_core/{name}.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        source = source.replace(
            "from delift_core.scoring import", "from delift_core._before_scoring import"
        )
        module = types.ModuleType(f"delift_core._before_{name}")
        module.__file__ = f"{rev}:delift_core/{name}.py"
        sys.modules[module.__name__] = module
        exec(compile(source, module.__file__, "exec"), module.__dict__)
        modules[name] = module
    return modules["utility"]


def timed_run(lm, compute: Callable, records, config, candidates) -> dict:
    load = os.getloadavg()[0]
    with count_forward_calls(lm) as calls:
        wall, cpu = time.perf_counter(), time.process_time()
        result = compute(lm, records, records, config, candidates=candidates)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    load = (load + os.getloadavg()[0]) / 2
    return {"calls": calls[0], "wall": wall, "cpu": cpu, "load": load, "result": result}


def listed(runs: list[dict], key: str, spec: str) -> str:
    return ", ".join(format(r[key], spec) for r in runs)


def dense(matrix) -> np.ndarray:
    return matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)


def compare_case(lm, engines: dict, records, config, candidates, repeats: int) -> dict:
    """Interleaved runs of each engine on one case; per engine its runs, plus the largest
    difference between the engines' U_rms and U_logprob."""
    runs: dict[str, list[dict]] = {name: [] for name in engines}
    for repeat in range(repeats):
        for name, compute in engines.items():
            run = timed_run(lm, compute, records, config, candidates)
            runs[name].append(run)
            print(
                f"run {repeat + 1}/{repeats} {name}: {run['calls']} calls, {run['wall']:.1f} s"
                f" wall, {run['cpu']:.1f} s CPU, load {run['load']:.1f}",
                flush=True,
            )
    (a, *_), (b, *_) = runs.values()
    diff = {
        metric: float(
            np.max(np.abs(dense(a["result"].matrix(metric)) - dense(b["result"].matrix(metric))))
        )
        for metric in ("rms", "logprob")
    }
    return {"runs": runs, "diff": diff}


def before_after_section(lm, args: argparse.Namespace) -> str:
    before = load_engine_at(args.before)
    engines = {f"before ({args.before})": before.compute_utility, "after": compute_utility}
    warm = load_dataset(args.short, limit=8).records
    for compute in engines.values():  # one-time costs (first calls, allocations) untimed
        compute(lm, warm, warm, ScoringConfig())
    sparse_records = load_dataset(args.short, limit=args.sparse_n).records
    embedder = load_embedder(device="cpu")
    emb = embed_records(sparse_records, embedder, embedder_id())
    candidates = find_candidates(emb, emb, args.k, same_set=True)
    exact_records = load_dataset(args.short, limit=args.exact_n).records
    cases = [
        (f"sparse k={args.k}, n={args.sparse_n}", sparse_records,
         ScoringConfig(mode="sparse", k=args.k), candidates),
        (f"exact, n={args.exact_n}", exact_records, ScoringConfig(), None),
    ]  # fmt: skip
    lines = [
        BEFORE_HEADING,
        "",
        f"Command: `python bench/utility_throughput.py --before {args.before}"
        f" --short {Path(args.short).name} --sparse-n {args.sparse_n} --k {args.k}"
        f" --exact-n {args.exact_n} --repeats {args.repeats}`  ",
        f"Machine: {machine()}; no cache (every row computed). Old and new engines ran in one",
        f"process, interleaved, {args.repeats} times each; times are medians (all runs listed).",
        "",
        "| case | engine | forward calls | calls per sample | wall s (median) | wall s (runs)"
        " | CPU s (median) | load average | speed-up (wall) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    diffs = []
    for label, records, config, cands in cases:
        case = compare_case(lm, engines, records, config, cands, args.repeats)
        medians = {
            name: statistics.median(r["wall"] for r in runs) for name, runs in case["runs"].items()
        }
        first = next(iter(medians.values()))
        for name, runs in case["runs"].items():
            lines.append(
                f"| {label} | {name} | {runs[0]['calls']} | {runs[0]['calls'] / len(records):.2f}"
                f" | {medians[name]:.0f} | {listed(runs, 'wall', '.0f')}"
                f" | {statistics.median(r['cpu'] for r in runs):.0f}"
                f" | {listed(runs, 'load', '.1f')}"
                f" | {first / medians[name]:.2f}x |"
            )
        diffs.append(
            f"{label}: {case['diff']['rms']:.1e} (rms), {case['diff']['logprob']:.1e} (logprob)"
        )
    lines += [
        "",
        "Largest difference between the two engines' utilities: " + "; ".join(diffs) + ".",
        "Forward calls are counted on the decoder (every prefix, batch and baseline call).",
        "Load average: the 1-minute figure around each run (start and end averaged); other",
        "jobs shared the 2 cores, so wall times carry their noise, CPU seconds less of it.",
    ]
    return "\n".join(lines)


def call_cost(lm, repeats: int = 7) -> str:
    """Fixed time of a forward call and time per token, fitted over several batch shapes.

    Shapes are timed round-robin `repeats` times; the fit uses each shape's fastest run (the
    least disturbed by other jobs) and, for comparison, its median run.
    """
    shapes = [(1, 8), (1, 32), (1, 128), (4, 32), (8, 64)]
    times: dict[tuple[int, int], list[float]] = {shape: [] for shape in shapes}
    decoder = _decoder(lm)
    with torch.inference_mode():
        for shape in shapes:  # warm-up
            decoder(input_ids=torch.full(shape, lm.eos_id))
        for _ in range(repeats):
            for shape in shapes:
                ids = torch.full(shape, lm.eos_id)
                start = time.perf_counter()
                decoder(input_ids=ids)
                times[shape].append(time.perf_counter() - start)
    tokens = np.array([rows * width for rows, width in shapes], dtype=float)
    lines = [f"Forward calls of the decoder, {machine()}; {repeats} rounds over {shapes}."]
    for label, pick in (("fastest", min), ("median", statistics.median)):
        per_token, fixed = np.polyfit(tokens, [pick(times[shape]) for shape in shapes], 1)
        lines.append(
            f"{label} runs: {fixed * 1e3:.0f} ms per call + {per_token * 1e3:.2f} ms per token"
            f" -> one call costs {fixed / per_token:.0f} tokens"
        )
    lines.append(f"load average {os.getloadavg()[0]:.1f} at the end")
    return "\n".join(lines)


def planned_calls(lm, path: str, sizes: list[int], k: int) -> str:
    """Forward calls of sparse mode at each size, counted with the model calls stubbed out
    (the engine's batching runs as it is; no forward pass is made)."""
    from delift_core import batching
    from delift_core.scoring import PrefixBlock, RowScores

    calls = [0]

    def counted(make):
        def stub(*args):
            calls[0] += 1
            return make(*args)

        return stub

    def no_scores(*args) -> RowScores:
        rows = args[-2]
        return RowScores(np.zeros(len(rows)), np.zeros(len(rows)))

    saved = (batching.encode_prefixes, batching.score_rows_after_prefixes, batching.score_rows)
    batching.encode_prefixes = counted(
        lambda _, p, head=None: PrefixBlock([len(x) + (head.width if head else 0) for x in p], [])
    )
    batching.score_rows_after_prefixes = counted(no_scores)
    batching.score_rows = counted(no_scores)
    embedder = load_embedder(device="cpu")
    lines = ["| n | pairs | forward calls | per sample |", "|---|---|---|---|"]
    try:
        for n in sizes:
            records = load_dataset(path, limit=n).records
            emb = embed_records(records, embedder, embedder_id())
            candidates = find_candidates(emb, emb, k, same_set=True)
            calls[0] = 0
            config = ScoringConfig(mode="sparse", k=k)
            result = compute_utility(lm, records, records, config, candidates=candidates)
            lines.append(f"| {n} | {result.pairs_total} | {calls[0]} | {calls[0] / n:.2f} |")
    finally:
        batching.encode_prefixes, batching.score_rows_after_prefixes, batching.score_rows = saved
    return "\n".join(lines)


def write_section(path: Path, heading: str, text: str, after: str | None = None) -> None:
    """Replace the section starting at `heading` up to the next '## '; a missing section goes
    after the section `after` when that exists, else at the end."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    start = old.find(heading)
    if start < 0:
        anchor = old.find(after) if after else -1
        end = old.find("\n## ", anchor + 1) if anchor >= 0 else -1
        if end < 0:
            new = old.rstrip() + "\n\n" + text + "\n"
        else:
            new = old[: end + 1] + "\n" + text + "\n" + old[end:]
    else:
        end = old.find("\n## ", start + len(heading))
        new = old[:start] + text + "\n" + (old[end:] if end >= 0 else "")
    path.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", default=str(SHORT_DATA), help="data set with short texts")
    parser.add_argument("--long", default=str(DEFAULT_DATA), help="data set with long texts")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--ref-pairs", type=int, help="time the reference on this many pairs")
    parser.add_argument("--before", help="git revision whose engine to compare against")
    parser.add_argument("--sparse-n", type=int, default=300)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--exact-n", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--call-cost", action="store_true", help="only time forward calls")
    parser.add_argument(
        "--planned-calls", type=int, nargs="+", help="only count sparse-mode calls at these n"
    )
    parser.add_argument("--write", help="replace this script's section of this file")
    args = parser.parse_args()

    lm = load_causal_lm("default", "cpu")
    if args.call_cost or args.planned_calls:
        print(
            call_cost(lm)
            if args.call_cost
            else planned_calls(lm, args.short, args.planned_calls, args.k)
        )
        return
    if args.before:
        text = before_after_section(lm, args)
        heading, after = BEFORE_HEADING, HEADING
    else:
        text, heading, after = reference_section(lm, args), HEADING, None
    print(text)
    if args.write:
        write_section(Path(args.write), heading, text, after)


if __name__ == "__main__":
    main()
