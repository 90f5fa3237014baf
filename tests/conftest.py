"""Shared fixtures: a tiny copy of the bundled sample data and a fast config."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from utils.config import REPO_ROOT, SAMPLE_DATA_DIR

TINY_CONFIG = """\
seed: 0
mining: {n: 3, range_min: 2, range_max: 30}
train: {epochs: 1, batch_size: 8, n_negatives: 3, lr: 1.0e-4, max_query_length: 64, max_passage_length: 32, log_every: 1}
recall: {k: 30}
embedder: {batch_size: 32}
submission: {dir: null}
rerank: {epochs: 1, n_negatives: 3, top_k: 10, max_length: 96, batch_size: 16}
notebooks: [01_mine_hn, 02_train_embedder, 03_eval_embedder, 04_recall, 05_train_reranker, 06_rerank, 08_fuse_submit]
"""


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """40 training and 6 test questions of the bundled sample, with the full mapping."""
    out = tmp_path_factory.mktemp("tiny_data")
    train = pd.read_csv(SAMPLE_DATA_DIR / "train.csv")
    test = pd.read_csv(SAMPLE_DATA_DIR / "test.csv")
    train.head(40).to_csv(out / "train.csv", index=False)
    test.head(6).to_csv(out / "test.csv", index=False)
    (out / "misconception_mapping.csv").write_bytes((SAMPLE_DATA_DIR / "misconception_mapping.csv").read_bytes())
    return out


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(TINY_CONFIG)
    return path


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, tiny_data, tiny_config):
    """Two rounds of the whole chain (01-06, 08) on tiny data, through the CLI and papermill.

    Returns (out_dir, stdout, seconds). Shared by the notebook and export tests; tests that
    change it work on copies, except the resume test, which only touches round_2.
    """
    reuse = os.environ.get("SUITE_TEST_RUN")  # a finished run of this fixture, to iterate on tests quickly
    if reuse:
        return Path(reuse), f"submission: {Path(reuse) / 'submission.csv'}", 600.0
    out = tmp_path_factory.mktemp("run") / "v1"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "utils", "run", "--data-dir", str(tiny_data), "--config", str(tiny_config),
         "--out", str(out), "--split", "v1", "--rounds", "2"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout, time.perf_counter() - t0


@pytest.fixture
def light_compile(monkeypatch):
    """``Module.compile`` with the ``aot_eager`` backend: dynamo traces and AOTAutograd splits forward and backward
    as with Inductor, without its C++ code generation (~40 s a test on 2 cores, and Inductor's own tests cover it)."""
    import torch

    orig = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: orig(self, *a, **{**k, "backend": "aot_eager"}))
