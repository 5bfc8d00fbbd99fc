"""Utility engine on a CUDA GPU: pairs/s, achieved TFLOP/s against the device's peak, and
agreement of bf16 with fp32.

    python bench/gpu_throughput.py [--data PATH] [--n 256] [--sparse-n 2000 --k 8]
                                   [--peak-tflops 989] [--write docs/benchmarks.md]

Runs exact mode on n samples in bf16 with batch limits sized from free GPU memory, counts the
FLOPs the engine must spend (as bench/utility_throughput.py does), and compares a 16 x 16 block
with the same block in fp32. With --sparse-n it also times sparse mode (k candidates) and counts
its forward calls, the figures bench/scaling.py's 100k projection assumes. Exits with a message
where no GPU is present.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.utility_throughput import DEFAULT_DATA, ideal_flops, write_section  # noqa: E402
from delift_core.config import ScoringConfig  # noqa: E402
from delift_core.data.dataset import load_dataset  # noqa: E402
from delift_core.models import default_lm_file, wrap_model  # noqa: E402
from delift_core.prompts import plan_prompts  # noqa: E402
from delift_core.resources import suggest_batch_limits  # noqa: E402
from delift_core.utility import compute_utility  # noqa: E402

# Dense bf16 tensor-core peaks (TFLOP/s) by device name; pass --peak-tflops for others.
PEAKS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def load_default(dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = default_lm_file()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    return wrap_model(model.to("cuda"), tok, f"smollm2:{dtype}")


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--sparse-n", type=int, default=0, help="also time sparse mode at this n")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--peak-tflops", type=float)
    parser.add_argument("--write")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device here: this benchmark runs on a GPU machine only")
        return
    name = torch.cuda.get_device_name()
    peak = args.peak_tflops or next((v for k, v in PEAKS.items() if k in name), None)
    records = load_dataset(args.data, limit=args.n).records
    lm = load_default(torch.bfloat16)
    batch, tokens = suggest_batch_limits(lm.model.config, torch.cuda.mem_get_info()[0])
    config = ScoringConfig(batch_size=batch, max_batch_tokens=tokens)
    compute_utility(lm, records[:8], records[:8], config)  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = compute_utility(lm, records, records, config)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    plan = plan_prompts(lm.encode, config.template, records, records, config.max_response_tokens)
    _, flops = ideal_flops(lm, records, plan)
    tflops = flops / seconds / 1e12
    fp32 = load_default(torch.float32)
    block = records[:16]
    exact32 = compute_utility(fp32, block, block, ScoringConfig()).rms
    diff = float(np.max(np.abs(result.rms[:16, :16] - exact32)))
    corr = float(np.corrcoef(result.rms[:16, :16].ravel(), exact32.ravel())[0, 1])
    lines = [
        "## GPU",
        "",
        f"Command: `python bench/gpu_throughput.py --n {args.n}` on {name}, bf16, batch"
        f" {batch} rows / {tokens} tokens (sized from free memory).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| pairs (n^2) | {len(records) ** 2} |",
        f"| seconds | {seconds:.1f} |",
        f"| pairs/s | {len(records) ** 2 / seconds:.0f} |",
        f"| achieved TFLOP/s | {tflops:.1f}"
        + (f" ({tflops / peak:.1%} of {peak:.0f} peak) |" if peak else " |"),
        f"| bf16 vs fp32, 16x16 block: max abs diff / correlation | {diff:.3f} / {corr:.4f} |",
    ]
    if args.sparse_n:
        sparse = time_sparse(
            lm, load_dataset(args.data, limit=args.sparse_n).records, args.k, config
        )
        lines += [
            f"| sparse k={args.k}, n={args.sparse_n}: seconds / pairs/s | {sparse['seconds']:.1f}"
            f" / {sparse['pairs'] / sparse['seconds']:.0f} |",
            f"| sparse: achieved TFLOP/s | {sparse['tflops']:.1f} |",
            f"| sparse: forward calls / mean ms per call | {sparse['calls']} /"
            f" {1000 * sparse['seconds'] / sparse['calls']:.1f} |",
        ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(Path(args.write), "## GPU", text)


def time_sparse(lm, records, k: int, config: ScoringConfig) -> dict:
    """Sparse-mode scoring time, achieved TFLOP/s and forward calls (embeddings untimed)."""
    import torch

    from bench.scaling import count_forward_calls, sparse_flops
    from delift_core.embeddings import embed_records, find_candidates
    from delift_core.models import embedder_id, load_embedder

    emb = embed_records(records, load_embedder(device="cuda"), embedder_id())
    candidates = find_candidates(emb, emb, k, same_set=True)
    sparse = ScoringConfig(
        mode="sparse", k=k, batch_size=config.batch_size, max_batch_tokens=config.max_batch_tokens
    )
    with count_forward_calls(lm) as calls:
        torch.cuda.synchronize()
        start = time.perf_counter()
        result = compute_utility(lm, records, records, sparse, candidates=candidates)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    plan = plan_prompts(lm.encode, sparse.template, records, records, sparse.max_response_tokens)
    flops = sparse_flops(lm, plan, candidates)
    return {"seconds": seconds, "pairs": result.pairs_total, "calls": calls[0],
            "tflops": flops / seconds / 1e12}  # fmt: skip


if __name__ == "__main__":
    main()
