"""Greedy generation for the evaluation: one prompt at a time against batches.

    python bench/generation.py [--n 16] [--shots 3] [--max-new-tokens 64]
                               [--batch-sizes 1,4,8] [--write docs/benchmarks.md]

Builds --n prompts (Dolly test questions with 0 to --shots of the first Dolly training rows as
examples, in turn, so prompt lengths vary as in an evaluation; at most 512 prompt tokens),
generates with evaluate.generate_answers at batch size 1 and each --batch-sizes (no cache), and
reports seconds per answer, the speed-up over batch size 1 and whether every batched answer
equals the one-at-a-time answer.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.utility_throughput import write_section  # noqa: E402
from delift_core.data.dataset import load_dataset  # noqa: E402
from delift_core.evaluation.evaluate import EvalConfig, fit_prompt, generate_answers  # noqa: E402
from delift_core.models import load_causal_lm  # noqa: E402

DATA = os.environ.get("DELIFT_DATASETS", str(ROOT.parent / "shared" / "datasets"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DATA, help="folder holding dolly_openqa.*.jsonl")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--shots", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-sizes", default="1,4,8")
    p.add_argument("--device", default="auto")
    p.add_argument("--write", help="markdown file to update (section '## Generation')")
    args = p.parse_args(argv)

    test = load_dataset(Path(args.data) / "dolly_openqa.test.jsonl", limit=args.n).records
    shots = load_dataset(Path(args.data) / "dolly_openqa.train.jsonl", limit=args.shots).records
    lm = load_causal_lm("default", args.device)
    base = EvalConfig(shots=args.shots, max_prompt_tokens=512, max_new_tokens=args.max_new_tokens)
    ranked = [range(i % (len(shots) + 1)) for i in range(len(test))]  # 0, 1, .. shots, 0, ..
    prompts = [fit_prompt(lm, q, shots, r, base)[0] for q, r in zip(test, ranked, strict=True)]
    generate_answers(lm, prompts[:1], base)  # warm-up, untimed

    rows, reference = [], None
    sizes = [1] + [b for b in (int(s) for s in args.batch_sizes.split(",")) if b != 1]
    for size in sizes:  # batch size 1 first: the reference
        config = EvalConfig(
            shots=args.shots, max_prompt_tokens=512, max_new_tokens=args.max_new_tokens,
            batch_size=size,
        )  # fmt: skip
        start = time.perf_counter()
        answers = generate_answers(lm, prompts, config)
        seconds = time.perf_counter() - start
        reference = reference or (seconds, answers)
        same = sum(a == b for a, b in zip(answers, reference[1], strict=True))
        rows.append((size, seconds / len(prompts), reference[0] / seconds, same))
        print(f"batch {size}: {seconds / len(prompts):.2f} s/answer, {same}/{len(prompts)} equal")
    n = len(prompts)

    lengths = [len(x) for x in prompts]
    text = "\n".join(
        [
            "## Generation",
            "",
            f"Greedy answers for the evaluation (`evaluate.generate_answers`), {n} Dolly test "
            f"prompts with 0-{args.shots} shots ({min(lengths)}-{max(lengths)} prompt tokens), up "
            f"to {args.max_new_tokens} new tokens, embedded SmolLM2 on {lm.device} "
            f"({platform.machine()}, {sys.platform}). Measured with "
            "`python bench/generation.py --write docs/benchmarks.md`.",
            "",
            "| batch size | s per answer | speed-up | answers equal to batch size 1 |",
            "|---|---|---|---|",
            *[f"| {b} | {s:.2f} | {x:.1f}x | {e}/{n} |" for b, s, x, e in rows],
        ]
    )
    if args.write:
        write_section(Path(args.write), "## Generation", text)
    print(text)


if __name__ == "__main__":
    main()
