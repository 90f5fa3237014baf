"""The CUDA dtype choice: bf16 only from compute capability 8.0 on (Kaggle's T4 / P100 get fp16),
made in one helper, ``utils.retrieval.embed.cuda_dtype``. The GPU is faked by monkeypatching torch.cuda."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from utils import lora
from utils.retrieval import embed
from utils.retrieval.train_embedder import TrainConfig, flagembedding_command

UTILS = Path(embed.__file__).resolve().parent.parent  # utils/


@pytest.fixture
def fake_gpu(monkeypatch):
    """Pretend a CUDA GPU of the given compute capability is present."""

    def install(capability: tuple[int, int]) -> None:
        monkeypatch.setattr(torch.version, "hip", None)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        # torch says True on a T4 too (it counts emulation): the helper must not trust it
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)

    return install


@pytest.mark.parametrize("gpu, capability, want", [
    ("T4", (7, 5), torch.float16),
    ("P100", (6, 0), torch.float16),
    ("V100", (7, 0), torch.float16),
    ("A100", (8, 0), torch.bfloat16),
    ("H100", (9, 0), torch.bfloat16),
])
def test_cuda_dtype_from_compute_capability(fake_gpu, gpu, capability, want):
    fake_gpu(capability)
    assert embed.cuda_dtype() == want
    assert embed.default_dtype("cuda") == want and embed.default_dtype("cuda:0") == want
    assert lora.default_dtype() == want
    name = str(want).replace("torch.", "")
    why = "has no bf16" if want == torch.float16 else "has bf16"
    assert embed.describe_dtype("cuda") == f"dtype: {name} (GPU compute capability {capability[0]}.{capability[1]} {why})"
    flag = flagembedding_command("t.jsonl", "m", "out", TrainConfig(), use_cpu=False)
    assert ("--fp16" in flag) == (want == torch.float16) and ("--bf16" in flag) == (want == torch.bfloat16)


def test_cpu_stays_fp32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert embed.default_dtype("cpu") == torch.float32
    assert lora.default_dtype() == torch.float32
    assert embed.describe_dtype() == "dtype: float32 (no CUDA GPU)"


# Where torch.bfloat16 may still be written, besides the helper itself, and why.
ALLOWED = {
    ("retrieval/embed.py", "cuda_dtype"): "the helper",
    ("rerank/cross_encoder.py", "train_cross_encoder"): "compares cuda_dtype()'s result to set the trainer's bf16 flag",
}


def _bf16_sites() -> list[tuple[str, str, int, bool]]:
    """(file, enclosing function, line, inside a comparison) of each ``torch.bfloat16`` in utils/."""
    sites = []
    for path in sorted(UTILS.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "bfloat16":
                func, compared, up = "<module>", False, node
                while up in parents:
                    up = parents[up]
                    compared = compared or isinstance(up, ast.Compare)
                    if isinstance(up, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        func = up.name
                        break
                sites.append((path.relative_to(UTILS).as_posix(), func, node.lineno, compared))
    return sites


def test_bf16_is_chosen_only_in_the_helper():
    sites = _bf16_sites()
    stray = [s for s in sites if (s[0], s[1]) not in ALLOWED]
    assert not stray, f"torch.bfloat16 outside utils.retrieval.embed.cuda_dtype (use the helper): {stray}"
    assert all(compared for f, _, _, compared in sites if f == "rerank/cross_encoder.py")
    assert {(f, fn) for f, fn, _, _ in sites} >= {("retrieval/embed.py", "cuda_dtype")}
    for name in ("lora.py", "rerank/llm.py", "rerank/cross_encoder.py", "retrieval/train_embedder.py", "kaggle/inference.py"):
        assert "is_bf16_supported" not in (UTILS / name).read_text(encoding="utf-8")  # it says True on a T4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("lora", [{"r": 4, "alpha": 8, "dropout": 0.0}, None])
def test_fp16_training_on_a_real_gpu_posing_as_a_t4(monkeypatch, tmp_path, capsys, lora):
    """On a real GPU: its own dtype; then, capability forced to 7.5, fp16 + loss scaling trains and scores."""
    import numpy as np
    from tiny_models import make_tiny_decoder, synthetic_task

    from utils.rerank import llm as lr
    from utils.retrieval.mining import to_flag_records
    from utils.rerank.data import build_rerank_train
    from utils.retrieval.train_embedder import train_embedder

    major, _ = torch.cuda.get_device_capability()
    assert embed.cuda_dtype() == (torch.bfloat16 if major >= 8 else torch.float16)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    scalers: list = []

    class SpyScaler(torch.amp.GradScaler):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            scalers.append(self)

    monkeypatch.setattr(torch.amp, "GradScaler", SpyScaler)
    dec = make_tiny_decoder(tmp_path / "dec", arch="llama")
    pairs, mis, cands = synthetic_task(seed=1, n_candidates=4)
    rng = np.random.default_rng(0)
    row = {m: i for i, m in enumerate(mis["item_id"])}
    negs = [rng.choice([j for j in range(len(mis)) if j != row[p[0]]], 3, replace=False).tolist()
            for p in pairs["positives"]]
    cfg = {"epochs": 1, "batch_size": 8, "n_negatives": 3, "lr": 1e-3, "max_query_length": 64,
           "max_passage_length": 32, "log_every": 1, "lora": lora}
    log = train_embedder(to_flag_records(pairs, mis, negs), dec, tmp_path / "emb", cfg, device="cuda")
    assert log and all(np.isfinite(r["loss"]) for r in log)
    assert "dtype: float16 (GPU compute capability 7.5 has no bf16)" in capsys.readouterr().out
    assert embed.Embedder(str(tmp_path / "emb"), device="cuda").dtype == torch.float16
    train = build_rerank_train(cands, pairs.iloc[::3], mis, n_negatives=3, top_k=4, seed=0)
    out = lr.train_llm_reranker(train, dec, tmp_path / "rr", r=4, alpha=8, dropout=0.0, target_modules=None,
                                batch_size=4, max_length=48, max_steps=4, log_every=0)
    assert np.isfinite(lr.score_llm_reranker(train, out)).all()
    assert len(scalers) == 2 and all(s.is_enabled() for s in scalers)  # embedder + LLM reranker
