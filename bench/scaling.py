"""Growth curve of the sparse path: time and peak memory against n, and a projection to 100k.

    python bench/scaling.py [--data PATH] [--sizes 250 500 1000 2000 4000] [--k 8]
                            [--at-scale 100000] [--write docs/benchmarks.md]

Each size runs in a fresh interpreter (so peak memory is that size's own) on the first n rows of
--data, with no cache: sentence embeddings, candidate search (k nearest), sparse utility scoring
with the embedded model (fp32, this CPU), DELIFT selection of 30% (FL on the min-max kernel) and
the UMAP map. Results are kept per size in docs/scaling.json, so an interrupted run resumes at
the first size not yet measured (--force reruns them). The growth exponent b is fitted to
time = a * n^b over the measured sizes. --at-scale N also times, on N synthetic unit vectors
(no language model), the parts whose cost does not depend on text: candidate search, selection
on an N x (k+1) sparse kernel and the UMAP map. The 100k scoring projection counts the model
FLOPs each forward row costs at the largest measured size; its assumptions are printed with it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "hotpotqa_cb.train.jsonl"
RESULTS = ROOT / "docs" / "scaling.json"
HEADING = "## Scaling (sparse path)"
# Assumptions of the GPU projection (not measurements; bench/gpu_throughput.py measures them).
GPU_PEAK_TFLOPS = 989.0  # H100/H200 SXM dense bf16
GPU_SHARES = (0.05, 0.20)  # share of peak a 135M-parameter model plausibly reaches
MULTI_GPU_EFFICIENCY = 0.9  # Ray shards are independent; the driver only writes rows
GPU_CALL_MS = 10.0  # latency of one small forward call of a 30-layer model, eager PyTorch


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def count_forward_calls(lm) -> Iterator[list[int]]:
    """Count the decoder's forward calls inside the block: `with ... as calls:`, then calls[0]."""
    from delift_core.scoring import _decoder

    calls = [0]
    hook = _decoder(lm).register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        yield calls
    finally:
        hook.remove()


def sparse_flops(lm, plan, candidates) -> float:
    """Model FLOPs the engine must spend on these candidate pairs plus all baselines."""
    from bench.utility_throughput import FlopModel

    fm = FlopModel(lm)
    total = 0.0
    for i in range(len(plan.baselines)):
        base = len(plan.baselines[i]) + len(plan.responses[i]) + 2
        total += fm.tokens(base) + fm.head * (len(plan.responses[i]) + 1)
    for j in sorted({int(j) for row in candidates for j in row}):
        total += fm.tokens(len(plan.prefixes[j]))
    for i, row in enumerate(candidates):
        s = len(plan.queries[i]) + len(plan.responses[i]) + 2
        for j in row:
            total += fm.tokens(s, start=len(plan.prefixes[int(j)]))
            total += fm.head * (len(plan.responses[i]) + 1)
    return total


def measure_one(data: str, n: int, k: int) -> dict:
    """All stages at one size, in this process."""
    import torch

    from delift_core.config import ScoringConfig
    from delift_core.data.dataset import load_dataset
    from delift_core.embeddings import embed_records, find_candidates
    from delift_core.models import embedder_id, load_causal_lm, load_embedder
    from delift_core.projection import project_2d
    from delift_core.prompts import plan_prompts
    from delift_core.select.selection import SelectionInputs, select_subset
    from delift_core.utility import compute_utility

    records = load_dataset(data, limit=n).records
    if len(records) < n:
        raise SystemExit(f"{data} has only {len(records)} usable rows; asked for {n}")
    lm = load_causal_lm("default", "cpu")
    embedder = load_embedder(device="cpu")
    # Warm up one-time costs (first forward passes, numba compilation of UMAP) untimed: a
    # long-running process, like the app, pays them once.
    warm = records[:8]
    compute_utility(lm, warm, warm, ScoringConfig())
    project_2d(embed_records(warm, embedder, embedder_id()))
    base_mib = _rss_mib()
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    emb = embed_records(records, embedder, embedder_id())
    seconds["embed"] = time.perf_counter() - start
    start = time.perf_counter()
    candidates = find_candidates(emb, emb, k, same_set=True)
    seconds["candidates"] = time.perf_counter() - start
    config = ScoringConfig(mode="sparse", k=k)
    with count_forward_calls(lm) as calls:
        start = time.perf_counter()
        result = compute_utility(lm, records, records, config, candidates=candidates)
        seconds["scoring"] = time.perf_counter() - start
    start = time.perf_counter()
    chosen = select_subset(
        SelectionInputs(n, u_pool=result.rms),
        method="delift",
        stage="instruction",
        max_budget=round(0.3 * n),
    )
    seconds["selection"] = time.perf_counter() - start
    start = time.perf_counter()
    project_2d(emb)
    seconds["umap"] = time.perf_counter() - start

    plan = plan_prompts(lm.encode, config.template, records, records, config.max_response_tokens)
    flops = sparse_flops(lm, plan, candidates)
    rows = result.pairs_total + result.baselines_computed
    return {
        "n": n,
        "k": k,
        "data": Path(data).name,
        "threads": torch.get_num_threads(),
        "seconds": seconds,
        "total_s": sum(seconds.values()),
        "pairs": result.pairs_total,
        "forward_rows": rows,
        "forward_calls": calls[0],
        "selected": len(chosen.take(round(0.3 * n))),
        "model_gflop": flops / 1e9,
        "scoring_gflops": flops / seconds["scoring"] / 1e9,
        "rss_after_models_mib": base_mib,
        "peak_rss_mib": _peak_mib(),
    }


def measure_at_scale(n: int, k: int, dim: int = 384) -> dict:
    """Candidate search, sparse selection and UMAP on n synthetic unit vectors (no model)."""
    import scipy.sparse as sp

    from delift_core.embeddings import find_candidates
    from delift_core.projection import project_2d
    from delift_core.select.selection import SelectionInputs, select_subset

    rng = np.random.default_rng(0)
    # Clustered vectors, closer to real embeddings than uniform noise.
    centres = rng.standard_normal((max(n // 200, 2), dim)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, dim)).astype(
        np.float32
    )
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    project_2d(x[:50])  # numba compilation, untimed
    seconds = {}
    start = time.perf_counter()
    candidates = find_candidates(x, x, k, same_set=True)
    seconds["candidates"] = time.perf_counter() - start
    rows = np.concatenate([np.full(len(c), i) for i, c in enumerate(candidates)])
    cols = np.concatenate(candidates)
    values = rng.normal(0.05, 0.1, len(rows)).astype(np.float32)
    u = sp.csr_matrix((values, (rows, cols)), shape=(n, n))
    start = time.perf_counter()
    select_subset(
        SelectionInputs(n, u_pool=u), method="delift", stage="instruction",
        max_budget=round(0.3 * n),
    )  # fmt: skip
    seconds["selection"] = time.perf_counter() - start
    start = time.perf_counter()
    project_2d(x)
    seconds["umap"] = time.perf_counter() - start
    return {"n": n, "k": k, "seconds": seconds, "peak_rss_mib": _peak_mib()}


def run_child(args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def fit_exponent(ns: list[int], ts: list[float]) -> tuple[float, float]:
    """(a, b) of t = a * n^b by least squares in log-log space."""
    b, log_a = np.polyfit(np.log(ns), np.log(ts), 1)
    return float(np.exp(log_a)), float(b)


def report(results: dict, k: int, command: str) -> str:
    sizes = sorted(results["sizes"].values(), key=lambda r: r["n"])
    lines = [
        HEADING,
        "",
        f"Command: `{command}`  ",
        f"Data: first n rows of `{sizes[0]['data']}`; k = {k}; {sizes[0]['threads']} CPU threads,"
        " fp32, embedded SmolLM2-135M-Instruct and MiniLM; no cache (every row computed).",
        "",
        "| n | forward rows | embed (s) | candidates (s) | scoring (s) | selection (s) | UMAP (s)"
        " | total (s) | scoring GFLOP/s | peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sizes:
        s = r["seconds"]
        lines.append(
            f"| {r['n']} | {r['forward_rows']} | {s['embed']:.1f} | {s['candidates']:.2f}"
            f" | {s['scoring']:.0f} | {s['selection']:.2f} | {s['umap']:.1f} | {r['total_s']:.0f}"
            f" | {r['scoring_gflops']:.0f} | {r['peak_rss_mib']:.0f} |"
        )
    ns = [r["n"] for r in sizes]
    if len(ns) >= 2:
        _, b_total = fit_exponent(ns, [r["total_s"] for r in sizes])
        _, b_score = fit_exponent(ns, [r["seconds"]["scoring"] for r in sizes])
        _, b_mem = fit_exponent(ns, [r["peak_rss_mib"] - r["rss_after_models_mib"] for r in sizes])
        lines += [
            "",
            f"Fitted growth t ~ n^b over n = {ns[0]}..{ns[-1]}: total b = {b_total:.2f},"
            f" scoring b = {b_score:.2f}; memory above the loaded models b = {b_mem:.2f}"
            " (1.0 = linear, 2.0 = quadratic as exact mode would be).",
        ]
    big = sizes[-1]
    n_target = 100_000
    per_row = big["model_gflop"] / big["forward_rows"]
    rows_target = n_target * (k + 2)  # k candidates + itself + the no-example baseline
    flop = per_row * 1e9 * rows_target
    cpu_h = flop / (big["scoring_gflops"] * 1e9) / 3600
    lines += [
        "",
        f"**Projection to n = {n_target:,}** (k = {k}, texts like these): {rows_target:,} forward"
        f" rows x {per_row:.2f} GFLOP each (counted at n = {big['n']}) = {flop / 1e15:.1f} PFLOP"
        f" of model work. This CPU at its measured {big['scoring_gflops']:.0f} GFLOP/s:"
        f" {cpu_h:.0f} h.",
    ]
    counted = [r for r in sizes if r.get("forward_calls")]
    projected = None
    if counted:
        calls, at_n = counted[-1]["forward_calls"], counted[-1]["n"]
        calls_target = calls / at_n * n_target
        floor_min = calls_target * GPU_CALL_MS / 1000 / 60
        projected = floor_min
        lines.append(
            f"- forward calls: {calls:,} at n = {at_n} ({calls / at_n:.2f} per sample: in"
            " sparse mode each example runs its prefix, then its k + 1 targets in one small"
            f" batch), so {calls_target:,.0f} at n = {n_target:,}. On a GPU such small calls are"
            f" bound by per-call latency, not FLOPs: at an assumed {GPU_CALL_MS:.0f} ms per call"
            f" of the 30-layer model (eager PyTorch), {floor_min:.0f} min on one GPU and"
            f" {floor_min / 8 / MULTI_GPU_EFFICIENCY:.1f} min on 8."
        )
    for share in GPU_SHARES:
        rate = GPU_PEAK_TFLOPS * share * 1e12
        one = flop / rate / 60
        eight = one / (8 * MULTI_GPU_EFFICIENCY)
        lines.append(
            f"- FLOP-bound: one H100/H200 at {share:.0%} of its {GPU_PEAK_TFLOPS:.0f} TFLOP/s bf16"
            f" peak: {one:.0f} min; 8 GPUs on Ray"
            f" ({MULTI_GPU_EFFICIENCY:.0%} parallel efficiency): {eight:.1f} min."
        )
    if projected is not None:
        one = max(projected, flop / (GPU_PEAK_TFLOPS * min(GPU_SHARES) * 1e12) / 60)
        lines.append(
            f"- projected (the larger bound): about {one:.0f} min on one GPU,"
            f" {one / (8 * MULTI_GPU_EFFICIENCY):.1f} min on 8."
        )
    lines += [
        "",
        "Assumptions: cost per forward row stays as measured (it depends on text length, not n:"
        " sparse mode scores n * (k + 1) pairs); the GPU reaches 5-20% of its bf16 peak on a"
        f" 135M-parameter model and a small forward call costs about {GPU_CALL_MS:.0f} ms (neither"
        " measured here — `bench/gpu_throughput.py --sparse-n N` measures both on a GPU); Ray"
        " shards by example blocks are independent, so 8 GPUs cost one-eighth plus the driver's"
        " cache writes (rows are small). The projected GPU time is the larger of the FLOP-bound"
        " and call-bound figures: for sparse mode on a small model, the call-bound one.",
    ]
    scale = results.get("at_scale")
    if scale:
        s = scale["seconds"]
        lines += [
            "",
            f"Measured at n = {scale['n']:,} on synthetic clustered unit vectors (no model; the"
            f" parts that do not depend on text): candidate search {s['candidates']:.0f} s"
            f" (pynndescent above 20k), DELIFT selection of 30% on the {scale['n']:,} x"
            f" {k + 1} sparse kernel {s['selection']:.1f} s, UMAP map {s['umap']:.0f} s; peak"
            f" RSS {scale['peak_rss_mib']:.0f} MiB.",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000, 2000, 4000])
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--at-scale", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="remeasure sizes already stored")
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--write", help=f"replace the '{HEADING}' section of this file")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--scale-one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        print(json.dumps(measure_one(args.data, args.one, args.k)))
        return
    if args.scale_one:
        print(json.dumps(measure_at_scale(args.scale_one, args.k)))
        return

    path = Path(args.results)
    results = json.loads(path.read_text()) if path.exists() else {}
    if results.get("k") != args.k or results.get("data") != Path(args.data).name:
        results = {"k": args.k, "data": Path(args.data).name, "sizes": {}}
    for n in args.sizes:
        if str(n) in results["sizes"] and not args.force:
            continue
        print(f"n = {n} ...", file=sys.stderr, flush=True)
        results["sizes"][str(n)] = run_child(
            ["--data", args.data, "--k", str(args.k), "--one", str(n)]
        )
        path.write_text(json.dumps(results, indent=1))
    if args.at_scale and (args.force or results.get("at_scale", {}).get("n") != args.at_scale):
        print(f"at scale n = {args.at_scale} ...", file=sys.stderr, flush=True)
        results["at_scale"] = run_child(["--k", str(args.k), "--scale-one", str(args.at_scale)])
        path.write_text(json.dumps(results, indent=1))
    if not results["sizes"]:
        raise SystemExit("no sizes measured")
    command = "python bench/scaling.py --sizes " + " ".join(
        map(str, sorted(map(int, results["sizes"])))
    )
    command += f" --k {args.k}" + (f" --at-scale {args.at_scale}" if args.at_scale else "")
    text = report(results, args.k, command)
    print(text)
    if args.write:
        from bench.utility_throughput import write_section

        write_section(Path(args.write), HEADING, text)


if __name__ == "__main__":
    main()
