import numpy as np
import pytest
import torch

from utils.retrieval.embed import Embedder
from utils.metrics import map_at_k
from utils.retrieval.train_embedder import TrainConfig, build_batch, contrastive_loss, train_embedder


def test_build_batch_dedups_passages_and_targets_gold():
    recs = [
        {"query": "q1", "pos": ["A"], "neg": ["B", "C"], "pos_ids": [1], "neg_ids": [2, 3], "prompt": "P: "},
        {"query": "q2", "pos": ["B"], "neg": ["A", "D"], "pos_ids": [2], "neg_ids": [1, 4], "prompt": "P: "},
    ]
    rng = np.random.default_rng(0)
    q, p, t, allowed = build_batch(recs, 2, rng, in_batch=True)
    assert q == ["P: q1", "P: q2"] and p == ["A", "B", "C", "D"] and t.tolist() == [0, 1] and allowed is None
    _, _, _, allowed = build_batch(recs, 2, rng, in_batch=False)
    assert allowed.tolist() == [[True, True, True, False], [True, True, False, True]]


def test_contrastive_loss_hand_computed():
    q = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = contrastive_loss(q, p, torch.tensor([0]), temperature=1.0)
    assert loss.item() == pytest.approx(-np.log(np.e / (np.e + 1)), rel=1e-6)
    masked = contrastive_loss(q, p, torch.tensor([0]), 1.0, allowed=torch.tensor([[True, False]]))
    assert masked.item() == pytest.approx(0.0, abs=1e-6)


def test_training_lowers_loss_and_improves_ranking(tmp_path):
    # Queries name a colour in code words the base model cannot know; training must learn them.
    colours = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]
    codes = ["zorp", "blick", "frump", "quax", "dreel", "snib", "vark", "plon"]
    recs = []
    for rep in range(4):
        for i, (c, z) in enumerate(zip(colours, codes)):
            negs = [j for j in range(len(colours)) if j != i][:4]
            recs.append({"query": f"item {rep} coded {z}", "pos": [f"the colour {c}"], "neg": [f"the colour {colours[j]}" for j in negs],
                         "pos_ids": [i], "neg_ids": negs, "prompt": ""})
    cfg = TrainConfig(epochs=6, lr=1e-4, batch_size=8, n_negatives=4, warmup_ratio=0.0, log_every=1,
                      max_query_length=16, max_passage_length=8)

    def score(path):
        e = Embedder(path, device="cpu")
        qe = e.encode([f"item 9 coded {z}" for z in codes], show_progress=False)
        ce = e.encode([f"the colour {c}" for c in colours], show_progress=False)
        return map_at_k(np.argsort(-(qe @ ce.T), axis=1).tolist(), list(range(8)), 25)

    before = score(None)
    log = train_embedder(recs, "default", tmp_path / "m", cfg, device="cpu", show_progress=False)
    assert np.mean([r["loss"] for r in log[-3:]]) < 0.5 * np.mean([r["loss"] for r in log[:3]])
    assert score(str(tmp_path / "m")) > before + 0.2
    assert (tmp_path / "m" / "train_log.json").exists()


def test_lora_option_saves_adapter_that_reloads(tmp_path):
    recs = [{"query": f"q{i}", "pos": [f"p{i}"], "neg": [f"p{(i + 1) % 4}"], "pos_ids": [i], "neg_ids": [(i + 1) % 4]} for i in range(4)]
    cfg = TrainConfig(epochs=1, batch_size=4, n_negatives=1, lr=1e-3, lora={"r": 4, "alpha": 8, "target_modules": ["query", "value"]})
    train_embedder(recs, "default", tmp_path / "lora", cfg, device="cpu", show_progress=False)
    assert (tmp_path / "lora" / "adapter_config.json").exists()
    assert not (tmp_path / "lora" / "model.safetensors").exists()
    e = Embedder(str(tmp_path / "lora"), device="cpu")
    base = Embedder(None, device="cpu")
    a, b = e.encode(["q1"], show_progress=False), base.encode(["q1"], show_progress=False)
    assert a.shape == b.shape and not np.allclose(a, b, atol=1e-6)  # the adapter changed the model
