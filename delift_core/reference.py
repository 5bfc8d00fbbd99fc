"""Plain per-pair reference of docs/design.md §2, the yardstick for every engine optimisation.

One whole-string tokenisation and one full forward pass (logits at every position) per pair,
no prefix cache, no batching. Slow by design; used by tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from delift_core.config import TemplateConfig
from delift_core.models import LanguageModel
from delift_core.prompts import TextPair, no_example_text, with_example_text


def reference_distance(
    lm: LanguageModel, template_text: str, response: str, max_response_tokens: int = 512
) -> tuple[float, float]:
    """(rms distance, sum log p) of `response` after `template_text`, scored the plain way."""
    eos = lm.eos_id
    head = lm.encode(template_text)
    resp = lm.encode(response)[:max_response_tokens]
    ids = torch.tensor([head + [eos] + resp + [eos]], device=lm.device)
    with torch.inference_mode():
        logits = lm.model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits[:-1], dim=-1)
    gold = ids[0, 1:]
    token_logp = logp.gather(1, gold[:, None]).squeeze(1)[len(head) :]
    p = token_logp.exp()
    return float(torch.sqrt(torch.mean((1 - p) ** 2))), float(token_logp.sum())


def reference_utility(
    lm: LanguageModel,
    targets: Sequence[TextPair],
    examples: Sequence[TextPair],
    template: TemplateConfig | None = None,
    pairs: Sequence[tuple[int, int]] | None = None,
    max_response_tokens: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """(U_rms, U_logprob), (n_targets, n_examples) float64; pairs not listed are 0."""
    template = template or TemplateConfig()
    n_t, n_e = len(targets), len(examples)
    if pairs is None:
        pairs = [(i, j) for j in range(n_e) for i in range(n_t)]
    base = [
        reference_distance(lm, no_example_text(template, t), t.response, max_response_tokens)
        for t in targets
    ]
    u_rms = np.zeros((n_t, n_e))
    u_logp = np.zeros((n_t, n_e))
    for i, j in pairs:
        text = with_example_text(template, targets[i], examples[j])
        rms, logp = reference_distance(lm, text, targets[i].response, max_response_tokens)
        u_rms[i, j] = base[i][0] - rms
        u_logp[i, j] = logp - base[i][1]
    return u_rms, u_logp
