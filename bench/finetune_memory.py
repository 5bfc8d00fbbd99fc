"""Peak memory and speed of one LoRA fine-tuning run (delift_core.evaluation.finetune), in a fresh process.

    python bench/finetune_memory.py --rows 8 --max-batch-tokens 1024
    python bench/finetune_memory.py --rows 8 --max-batch-tokens 100000   # one pass per batch

Trains the model on the --rows longest rows of --data (cut to --max-tokens tokens each, so that
every batch is as large as the settings allow) for one epoch with the library's defaults but for
--max-batch-tokens, and prints one JSON line: peak RSS of the process after loading the model and
after training (getrusage, so a fresh process per setting), real tokens through forward and
backward per second, seconds per optimizer step, and the first and last loss.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from delift_core.data.dataset import load_dataset  # noqa: E402
from delift_core.evaluation.finetune import finetune  # noqa: E402
from delift_core.evaluation.finetune_types import FinetuneConfig  # noqa: E402
from delift_core.models import load_causal_lm  # noqa: E402


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    default_data = Path(os.environ.get("DELIFT_DATASETS", REPO.parent / "shared" / "datasets"))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(default_data / "dolly_openqa.train.jsonl"))
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--max-batch-tokens", type=int, default=FinetuneConfig.max_batch_tokens)
    p.add_argument("--model", default="default")
    args = p.parse_args(argv)
    lm = load_causal_lm(args.model, "cpu")
    records = load_dataset(args.data, skip_invalid=True).records
    longest = sorted(records, key=lambda r: -len(r.prompt) - len(r.response))[: args.rows]
    loaded = peak_mib()
    config = FinetuneConfig(
        epochs=1, max_tokens=args.max_tokens, max_batch_tokens=args.max_batch_tokens
    )
    started = time.perf_counter()
    result = finetune(lm, longest, config)
    report = {
        "rows": result.rows,
        "max_tokens": args.max_tokens,
        "max_batch_tokens": args.max_batch_tokens,
        "peak_rss_mib_after_load": round(loaded),
        "peak_rss_mib": round(peak_mib()),
        "tokens": result.tokens,
        "tokens_per_second": round(result.tokens_per_second, 1),
        "seconds_per_step": [round(s, 1) for s in result.step_seconds],
        "wall_seconds": round(time.perf_counter() - started, 1),
        "losses": [round(x, 4) for x in result.losses],
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
