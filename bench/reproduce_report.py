"""Markdown tables and the plot of bench/reproduce.py's results (in-context or fine-tuning
protocol); a record is one stage of the JSON that reproduce.py writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

LABELS = {
    "initial": "Initial (no examples)",
    "existing": "Existing only",
    "random": "Random",
    "delift-se": "DELIFT-SE",
    "fl-only": "FL-only",
    "delift": "DELIFT",
    "delift-q": "DELIFT-Q",
    "full": "Full data",
}
GEN_METRICS = (("rouge1", "ROUGE-1"), ("rougeL", "ROUGE-L"), ("cosine", "cosine"), ("exact", "EM"))


def fmt(entry: dict[str, Any] | None, digits: int = 3) -> str:
    if not entry:
        return "-"
    return f"{entry['mean']:.{digits}f} [{entry['low']:.{digits}f}, {entry['high']:.{digits}f}]"


def is_run(label: str) -> bool:
    """A single seed's run ("random-s1", "delift-t0"), shown only through its mean."""
    return label.startswith("random-s") or "-t" in label and label.rsplit("-t", 1)[1].isdigit()


def label_of(label: str, finetune: bool) -> str:
    return (
        "Initial (no fine-tuning)" if finetune and label == "initial" else LABELS.get(label, label)
    )


def render_stage(stage: str, record: dict[str, Any]) -> str:
    summary, sizes = record["summary"], record["sizes"]
    finetune = record.get("protocol") == "finetune"
    lines = [f"### {stage}", ""]
    middle = (
        "training rows | train loss (first → last epoch)" if finetune else "examples | shots used"
    )
    lines.append(
        f"| method | {middle} | mean log-prob [95% CI] | vs Random [95% CI] | vs Initial [95% CI] |"
    )
    lines.append("|---|---|---|---|---|---|")
    for label, metrics in summary.items():
        if is_run(label):
            continue
        tf = metrics.get("logprob", {})
        vs = tf.get("vs", {})
        if finetune:
            runs = [v for k, v in record["training"].items() if k == label or is_run(k)
                    and k.rsplit("-", 1)[0] == label]  # fmt: skip
            second = "; ".join(f"{r['epoch_losses'][0]:.2f} → {r['epoch_losses'][-1]:.2f}"
                               for r in runs) or "-"  # fmt: skip
        else:
            second = str(record.get("mean_shots", {}).get(label, "-"))
        lines.append(
            f"| {label_of(label, finetune)} | {sizes.get(label, '-')} | {second} | {fmt(tf)} |"
            f" {fmt(vs.get('random'))} | {fmt(vs.get('initial'))} |"
        )
    generated = [m for m in summary.values() if "rouge1" in m]
    if generated:
        n = next(iter(generated))["rouge1"]["n"]
        present = [(k, name) for k, name in GEN_METRICS if any(k in m for m in generated)]
        lines += ["", f"Generation ({n} items):", ""]
        lines.append(
            "| method | " + " | ".join(name for _, name in present) + " | ROUGE-L vs Random |"
        )
        lines.append("|---|" + "---|" * (len(present) + 1))
        for label, metrics in summary.items():
            if is_run(label) or "rouge1" not in metrics:
                continue
            cells = [fmt(metrics.get(k)) for k, _ in present]
            vs = metrics["rougeL"].get("vs", {}).get("random")
            lines.append(f"| {LABELS.get(label, label)} | " + " | ".join(cells) + f" | {fmt(vs)} |")
    diag = record.get("diagnostics")
    if diag:
        lines += ["", "Checks (see 'What was checked'): `" + json.dumps(diag, sort_keys=True) + "`"]
    return "\n".join(lines) + "\n"


def plot_results(records: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = list(records)
    fig, axes = plt.subplots(2, len(stages), figsize=(4.6 * len(stages), 6.4), squeeze=False)
    for col, stage in enumerate(stages):
        summary = records[stage]["summary"]
        labels = [k for k in summary if not is_run(k) and "logprob" in summary[k]]
        for row, key in enumerate(("abs", "random")):
            ax = axes[row][col]
            shown = [k for k in labels if key == "abs" or (k != "random" and "random" in summary)]
            entries = [
                summary[k]["logprob"] if key == "abs" else summary[k]["logprob"]["vs"]["random"]
                for k in shown
            ]
            means = [e["mean"] for e in entries]
            errs = [
                [e["mean"] - e["low"] for e in entries],
                [e["high"] - e["mean"] for e in entries],
            ]
            colors = ["#c44e52" if k == "delift" else "#555555" for k in shown]
            x = np.arange(len(shown))
            if key == "abs":  # absolute values: points, a bar from 0 would mean nothing
                for xi, mean, lo, hi, color in zip(x, means, errs[0], errs[1], colors, strict=True):
                    ax.errorbar(xi, mean, yerr=[[lo], [hi]], fmt="o", color=color, capsize=3)
            else:
                ax.bar(x, means, yerr=errs, color=colors, capsize=3)
            ax.set_xticks(range(len(shown)), [LABELS.get(k, k).split(" (")[0] for k in shown])
            ax.tick_params(axis="x", rotation=45, labelsize=8)
            if key != "abs":
                ax.axhline(0, color="black", linewidth=0.6)
            if row == 0:
                ax.set_title(f"{stage} (n={records[stage]['test_items']})")
                ax.set_ylabel("mean log-prob / token" if col == 0 else "")
            elif col == 0:
                ax.set_ylabel("paired difference vs Random")
    fig.suptitle("Teacher-forced gold-answer log-prob, 95% bootstrap intervals", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
