"""`delift score` from the command line: outputs, manifest, bad input, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from delift_core.cli import main

ROWS = [
    {
        "instruction": f"Question number {i}: what is {i} plus {i + 1}?",
        "input": "",
        "output": f"{2 * i + 1}",
    }
    for i in range(30)
]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "delift_core.cli", *args], capture_output=True, text=True, env=env
    )


def test_score_writes_matrices_and_manifest(tmp_path, tiny_model_dir):
    pool = write_jsonl(tmp_path / "pool.jsonl", ROWS[:5])
    targets = write_jsonl(tmp_path / "targets.jsonl", ROWS[5:8])
    existing = write_jsonl(tmp_path / "existing.jsonl", ROWS[8:12])
    out = tmp_path / "out"
    code = main([
        "score", str(pool), "--out", str(out), "--model", str(tiny_model_dir),
        "--targets", str(targets), "--existing", str(existing), "--cache", str(tmp_path / "c.duckdb"),
    ])  # fmt: skip
    assert code == 0
    assert np.load(out / "utility.npy").shape == (5, 5)
    assert np.load(out / "utility_targets.npy").shape == (3, 5)
    assert np.load(out / "utility_existing.npy").shape == (5, 4)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pairs_computed"] == 25 + 15 + 20
    assert manifest["inputs"]["pool"]["rows"] == 5
    assert manifest["matrices"]["pool"]["pairs_per_second"] > 0
    # The quality table: one row per pool sample, in pool order, with every signal.
    quality = [json.loads(line) for line in (out / "quality.jsonl").read_text().splitlines()]
    assert len(quality) == 5 and manifest["files"]["quality"] == "quality.jsonl"
    assert sorted(q["quality"] for q in quality) == [0.0, 0.25, 0.5, 0.75, 1.0]
    diagonal = np.diagonal(np.load(out / "utility.npy"))
    np.testing.assert_allclose([q["self_utility"] for q in quality], diagonal, atol=1e-6)
    assert all(q["max_similarity"] is None for q in quality)  # exact mode: no embeddings


def test_sparse_score_writes_npz(tmp_path, tiny_model_dir):
    pool = write_jsonl(tmp_path / "pool.jsonl", ROWS[:8])
    out = tmp_path / "out"
    code = main([
        "score", str(pool), "--out", str(out), "--model", str(tiny_model_dir), "--mode", "sparse",
        "--k", "2", "--cache", str(tmp_path / "c.duckdb"),
    ])  # fmt: skip
    assert code == 0
    from delift_core.files import load_matrix

    matrix = load_matrix(out / "utility.npz")
    assert matrix.shape == (8, 8)
    assert matrix.nnz == 8 * 3  # k neighbours plus the sample itself
    assert np.all(matrix.diagonal() != 0)


BAD_INPUTS = {
    "malformed.jsonl": (b'{"instruction": "a", "output": "b"}\n{"instruction": "a",\n', "line 2"),
    "no_output.jsonl": (b'{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n', "output"),
    "empty.jsonl": (b"", "empty"),
    "latin1.jsonl": ('{"instruction": "caf\u00e9", "output": "b"}\n'.encode("latin-1"), "UTF-8"),
    "data.xlsx": (b"PK\x03\x04", "unsupported file type"),
}


def test_module_entry_point_shows_every_command():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for command in ("score", "select", "eval"):
        assert command in result.stdout


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_is_one_clear_line_and_cache_untouched(tmp_path, tiny_model_dir, name, capsys):
    content, expected = BAD_INPUTS[name]
    path = tmp_path / name
    path.write_bytes(content)
    cache = tmp_path / "c.duckdb"
    code = main([
        "score", str(path), "--out", str(tmp_path / "out"), "--model", str(tiny_model_dir),
        "--cache", str(cache),
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert name in lines[0] and expected.lower() in lines[0].lower()
    assert not cache.exists() and not (tmp_path / "out").exists()


def test_missing_path_and_bad_model_folder(tmp_path, capsys):
    assert main(["score", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    pool = write_jsonl(tmp_path / "pool.jsonl", ROWS[:3])
    cache = tmp_path / "c.duckdb"
    code = main(
        [
            "score",
            str(pool),
            "--out",
            str(tmp_path / "o"),
            "--model",
            str(tmp_path),
            "--cache",
            str(cache),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "not a Hugging Face model folder" in err
    assert not cache.exists()


def test_sigkill_midway_then_resume_equals_uninterrupted(tmp_path, tiny_model_dir):
    pool = write_jsonl(tmp_path / "pool.jsonl", ROWS[:20])
    cache = tmp_path / "c.duckdb"
    args = [
        "score", str(pool), "--out", str(tmp_path / "out"), "--model", str(tiny_model_dir),
        "--cache", str(cache), "--batch-size", "2",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "delift_core.cli", *args],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    # Wait until a good part of the pairs is done (the bar reports passes), then kill hard.
    seen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        chunk = os.read(proc.stderr.fileno(), 4096)
        seen += chunk
        if not chunk or any(f"scoring pool:  {d}".encode() in seen for d in (7, 8, 9)):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "out" / "utility.npy").exists()

    # The kill is what needs a separate process; resuming and the uninterrupted reference run
    # in this one (the same command through main), which saves two interpreter starts.
    assert main(args) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    stats = manifest["matrices"]["pool"]
    # Rows stored before the kill (baselines first, then pairs) are reused, not recomputed.
    assert manifest["pairs_reused"] > 0 or stats["baselines_computed"] < 20
    assert manifest["pairs_reused"] + manifest["pairs_computed"] == 20 * 20

    fresh_args = [a if a != str(cache) else str(tmp_path / "fresh.duckdb") for a in args]
    fresh_args[fresh_args.index("--out") + 1] = str(tmp_path / "fresh")
    assert main(fresh_args) == 0
    np.testing.assert_allclose(
        np.load(tmp_path / "out" / "utility.npy"),
        np.load(tmp_path / "fresh" / "utility.npy"),
        atol=1e-6,
    )


def test_a_file_with_other_column_names_is_told_about_the_field_option(tmp_path, capsys):
    data = tmp_path / "qa.csv"
    data.write_text("question,answer\nWhat is 2+2?,4\n")
    assert main(["score", str(data), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "field map, e.g. instruction=question" in err and "--field CANONICAL=SOURCE" in err
