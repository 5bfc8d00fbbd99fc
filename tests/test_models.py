"""The embedded models, for real (marked `model`: slower, run in CI)."""

from __future__ import annotations

import copy
import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from delift_core import model_copies, models
from delift_core.config import ScoringConfig
from delift_core.data.dataset import load_dataset
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


@pytest.mark.model
def test_the_model_id_is_known_before_the_model_loads():
    from delift_core.models import causal_lm_id, load_causal_lm

    assert causal_lm_id("default") == load_causal_lm("default").model_id


@pytest.mark.model
def test_the_weight_size_of_the_default_model_is_known_before_it_loads():
    from delift_core.models import causal_lm_weight_bytes, load_causal_lm

    lm = load_causal_lm("default")
    size = sum(p.numel() * p.element_size() for p in lm.model.parameters())
    assert causal_lm_weight_bytes("default") == size


def test_a_model_folder_has_its_id_and_weight_size_without_loading(tmp_path):
    from delift_core.models import causal_lm_id, causal_lm_weight_bytes, load_causal_lm
    from delift_core.testing import build_tiny_lm

    tiny = build_tiny_lm()
    folder = tmp_path / "tiny-model"
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    lm = load_causal_lm(str(folder), device="cpu")
    assert causal_lm_id(f"{tmp_path}/./tiny-model/", device="cpu") == lm.model_id
    size = sum(p.numel() * p.element_size() for p in lm.model.parameters())
    # Tied or buffer weights may be stored once; the estimate is within a few per cent.
    assert abs(causal_lm_weight_bytes(str(folder), device="cpu") - size) <= 0.05 * size
    with pytest.raises(ModelError):
        causal_lm_id(str(tmp_path / "missing"))


# The embedded GGUF model is converted once to a safetensors copy in the cache folder.

SHORT_TEXT = "What is the capital of France? Paris is the capital of France."


def _logits(model, tokenizer, text: str = SHORT_TEXT) -> torch.Tensor:
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        return model(ids).logits


def _use_converter(monkeypatch, tmp_path, convert):
    """Keep model copies under tmp_path, empty the in-process cache, convert with `convert`."""
    monkeypatch.setenv("DELIFT_MODEL_COPIES", str(tmp_path / "cache" / "models"))
    monkeypatch.setattr(models, "_lm_cache", {})
    conversions = []

    def load_gguf(path):
        conversions.append(path)
        return convert()

    monkeypatch.setattr(models, "_load_gguf", load_gguf)
    return conversions


@pytest.fixture()
def fake_gguf(tmp_path, monkeypatch, tiny_lm):
    """A stand-in GGUF file whose conversion gives the tiny model; returns (file, conversions)."""
    gguf = tmp_path / "package" / "Tiny.Q4_1.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF stand-in, first version")
    monkeypatch.setattr(models, "default_lm_file", lambda: gguf)
    conversions = _use_converter(
        monkeypatch, tmp_path, lambda: (tiny_lm.tokenizer, copy.deepcopy(tiny_lm.model))
    )
    return gguf, conversions


def _hidden_entries(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_the_default_model_is_converted_once_then_read_from_its_copy(fake_gguf, tiny_lm):
    gguf, conversions = fake_gguf
    first = load_causal_lm("default", "cpu")
    folder = model_copies.copy_folder(gguf)
    assert (folder / "model.safetensors").is_file()
    assert Path(first.model.name_or_path) == folder
    models._lm_cache.clear()
    second = load_causal_lm("default", "cpu")
    assert len(conversions) == 1
    assert second is not first and Path(second.model.name_or_path) == folder
    assert second.model_id == first.model_id == models.causal_lm_id("default", "cpu")
    expected = _logits(tiny_lm.model, tiny_lm.tokenizer)
    assert torch.equal(_logits(second.model, second.tokenizer), expected)
    assert _hidden_entries(folder.parent) == []


def test_a_truncated_copy_is_detected_and_rebuilt(fake_gguf, tiny_lm, caplog):
    gguf, conversions = fake_gguf
    load_causal_lm("default", "cpu")
    weights = model_copies.copy_folder(gguf) / "model.safetensors"
    size = weights.stat().st_size
    os.truncate(weights, size // 2)
    models._lm_cache.clear()
    with caplog.at_level(logging.WARNING, logger="delift_core.models"):
        lm = load_causal_lm("default", "cpu")
    assert "unreadable" in caplog.text
    assert len(conversions) == 2
    assert weights.stat().st_size == size
    expected = _logits(tiny_lm.model, tiny_lm.tokenizer)
    assert torch.equal(_logits(lm.model, lm.tokenizer), expected)
    assert _hidden_entries(weights.parent.parent) == []


def test_the_copy_is_keyed_by_the_gguf_hash(fake_gguf, monkeypatch):
    gguf, _ = fake_gguf
    reads = []
    file_digest = hashlib.file_digest

    def counted_digest(file, name):
        reads.append(name)
        return file_digest(file, name)

    monkeypatch.setattr(hashlib, "file_digest", counted_digest)
    first = model_copies.copy_folder(gguf)
    assert model_copies.copy_folder(gguf) == first
    assert len(reads) == 1  # remembered by (path, size, mtime)
    gguf.write_bytes(b"GGUF stand-in, second version")
    second = model_copies.copy_folder(gguf)
    assert second != first and second.parent == first.parent
    assert hashlib.sha256(b"GGUF stand-in, second version").hexdigest()[:16] in second.name
    gguf.write_bytes(b"GGUF stand-in, first version")
    assert model_copies.copy_folder(gguf) == first
    assert len(reads) == 3


def test_a_failed_save_leaves_no_partial_copy(fake_gguf, tiny_lm, monkeypatch, caplog):
    gguf, conversions = fake_gguf
    folder = model_copies.copy_folder(gguf)

    def failing_save(tokenizer, model, tmp):
        (tmp / "model.safetensors").write_bytes(b"half written")
        raise OSError("no space left on device")

    monkeypatch.setattr(models, "_save_pretrained", failing_save)
    with pytest.raises(OSError):
        model_copies.write_copy(folder, lambda tmp: failing_save(None, None, tmp))
    assert not folder.exists() and _hidden_entries(folder.parent) == []
    # Loading still works, from the unsaved conversion.
    with caplog.at_level(logging.WARNING, logger="delift_core.models"):
        lm = load_causal_lm("default", "cpu")
    assert "cannot keep a converted copy" in caplog.text
    assert not folder.exists() and _hidden_entries(folder.parent) == []
    assert len(conversions) == 1
    expected = _logits(tiny_lm.model, tiny_lm.tokenizer)
    assert torch.equal(_logits(lm.model, lm.tokenizer), expected)


def test_a_copy_written_meanwhile_by_another_process_is_kept(tmp_path):
    folder = tmp_path / "models" / "Model-0123456789abcdef-v1"

    def save(tmp):
        (tmp / "mine").write_text("mine")
        folder.mkdir()  # another process renames its copy into place first
        (folder / "theirs").write_text("theirs")

    model_copies.write_copy(folder, save)
    assert [p.name for p in folder.iterdir()] == ["theirs"]
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]


@pytest.fixture(scope="module")
def gguf_lm():
    """The embedded model loaded straight from its GGUF file (de-quantised, fp32)."""
    return models._load_gguf(models.default_lm_file())


@pytest.mark.model
def test_the_converted_copy_gives_the_logits_of_the_gguf_load(gguf_lm, tmp_path, monkeypatch):
    tokenizer, model = gguf_lm
    model_id = models.causal_lm_id("default", "cpu")
    conversions = _use_converter(monkeypatch, tmp_path, lambda: gguf_lm)
    lm = load_causal_lm("default", "cpu")
    assert len(conversions) == 1
    assert Path(lm.model.name_or_path) == model_copies.copy_folder(models.default_lm_file())
    assert lm.model_id == model_id and lm.model_id.startswith("smollm2-135m-instruct-q4_1:")
    assert lm.dtype == "float32" and lm.model.dtype == torch.float32
    assert torch.equal(_logits(lm.model, lm.tokenizer), _logits(model, tokenizer))
    assert lm.encode(SHORT_TEXT) == tokenizer(SHORT_TEXT, add_special_tokens=False)["input_ids"]
    assert lm.eos_id == tokenizer.eos_token_id


def _save_tiny(folder: Path) -> Path:
    from delift_core.testing import build_tiny_lm

    tiny = build_tiny_lm()
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    return folder


def test_each_spelling_of_a_model_folder_is_one_model(tmp_path, monkeypatch):
    folder = _save_tiny(tmp_path / "m")
    monkeypatch.setattr(models, "_lm_cache", {})
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link").symlink_to(folder)
    spellings = ["m", "m/", "m//", "./m", str(folder), "link", f"{tmp_path}/m/../m"]
    loaded = {id(load_causal_lm(name, "cpu")) for name in spellings}
    assert len(loaded) == 1
    assert list(models._lm_cache) == [(str(folder.resolve()), "cpu")]


def test_models_are_dropped_oldest_first_past_the_memory_limit(tmp_path, monkeypatch):
    first, second = _save_tiny(tmp_path / "a").resolve(), _save_tiny(tmp_path / "b").resolve()
    monkeypatch.setattr(models, "_lm_cache", {})
    lm = load_causal_lm(str(first), "cpu")
    size = sum(p.numel() * p.element_size() for p in lm.model.parameters())
    monkeypatch.setenv("DELIFT_MODEL_MEMORY_MB", str(1.5 * size / 2**20))  # room for one
    load_causal_lm(str(second), "cpu")
    assert list(models._lm_cache) == [(str(second), "cpu")]
    monkeypatch.setenv("DELIFT_MODEL_MEMORY_MB", str(2.5 * size / 2**20))  # room for two
    again = load_causal_lm(str(first), "cpu")
    assert again is not lm  # loaded again after it was dropped
    load_causal_lm(str(second), "cpu")  # used last: the order follows use, not loading
    assert list(models._lm_cache) == [(str(first), "cpu"), (str(second), "cpu")]
    monkeypatch.setenv("DELIFT_MODEL_MEMORY_MB", "lots")
    with pytest.raises(ModelError, match=r"\$DELIFT_MODEL_MEMORY_MB must be a number"):
        load_causal_lm(str(first), "cpu")
