"""The embedded models, for real (marked `model`: slower, run in CI)."""

from __future__ import annotations

import numpy as np
import pytest

from delift_core.config import ScoringConfig
from delift_core.data import load_dataset
from delift_core.errors import ModelError
from delift_core.models import choose_device, load_causal_lm
from delift_core.reference import reference_utility
from delift_core.utility import compute_utility

DEMO = "assets/demo.jsonl"


def test_not_a_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="not a Hugging Face model folder"):
        load_causal_lm(str(tmp_path))
    with pytest.raises(ModelError, match="not found"):
        load_causal_lm(str(tmp_path / "missing"))


def test_unknown_device_is_rejected():
    with pytest.raises(ModelError):
        choose_device("tpu")


@pytest.mark.model
def test_smollm2_engine_matches_reference_on_ten_samples():
    lm = load_causal_lm("default", "cpu")
    records = load_dataset(DEMO, limit=10).records
    assert lm.dtype == "float32"
    result = compute_utility(lm, records, records, ScoringConfig(batch_size=4))
    ref_rms, ref_logp = reference_utility(lm, records, records)
    np.testing.assert_allclose(result.rms, ref_rms, atol=1e-4)
    np.testing.assert_allclose(result.logprob, ref_logp, atol=5e-3, rtol=1e-4)
    # A sample shown as its own example helps it more than a random other sample does.
    assert np.mean(np.diag(result.rms)) > np.mean(result.rms)


@pytest.mark.model
def test_smollm2_sparse_matches_reference():
    lm = load_causal_lm("default", "cpu")
    records = load_dataset(DEMO, limit=6).records
    candidates = [[i, (i + 1) % 6, (i + 3) % 6] for i in range(6)]
    config = ScoringConfig(mode="sparse", k=2, batch_size=4)
    result = compute_utility(lm, records, records, config, candidates=candidates)
    pairs = [(i, j) for i, c in enumerate(candidates) for j in c]
    ref_rms, _ = reference_utility(lm, records, records, pairs=pairs)
    np.testing.assert_allclose(result.rms.toarray(), ref_rms, atol=1e-4)
