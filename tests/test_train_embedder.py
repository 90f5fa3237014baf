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


def _two_positive_batch_records(with_ids: bool = True):
    """q0 has two positives, A (id 1) and B (id 2); B is also q1's gold (an in-batch passage) and A is
    one of q2's mined negatives, so whichever positive q0 trains on, the other is in the batch."""
    recs = [
        {"query": "q0", "pos": ["A", "B"], "neg": ["C"], "pos_ids": [1, 2], "neg_ids": [3],
         "pos_scores": [0.9, 0.7], "neg_scores": [0.3]},
        {"query": "q1", "pos": ["B"], "neg": ["D"], "pos_ids": [2], "neg_ids": [4], "pos_scores": [0.8], "neg_scores": [0.2]},
        {"query": "q2", "pos": ["E"], "neg": ["A"], "pos_ids": [5], "neg_ids": [1], "pos_scores": [0.6], "neg_scores": [0.1]},
    ]
    if not with_ids:  # passages keyed by their text instead
        recs = [{k: v for k, v in r.items() if k not in ("pos_ids", "neg_ids")} for r in recs]
    return recs


@pytest.mark.parametrize("with_ids", [True, False])
def test_make_batch_two_positives_trains_on_one_and_masks_the_other(with_ids):
    from utils.retrieval.train_embedder import make_batch

    recs = _two_positive_batch_records(with_ids)
    seen = set()
    for seed in range(20):
        b = make_batch(recs, 5, np.random.default_rng(seed), in_batch=True, with_teacher=True)
        chosen = b.passages[b.targets[0]]
        assert chosen in ("A", "B")
        seen.add(chosen)
        if chosen == "A":
            # passages in first-seen order: q0's A, C; q1's B, D; q2's E (its negative A is already column 0)
            assert b.passages == ["A", "C", "B", "D", "E"] and b.targets.tolist() == [0, 2, 4]
            assert b.groups == [[0, 1], [2, 3], [4, 0]] and b.teacher[0] == [0.9, 0.3]
            # B (column 2) is q1's gold, in-batch: for q0 it is its other positive, never a negative
            assert b.allowed.tolist() == [[True, True, False, True, True]] + [[True] * 5] * 2
        else:
            # q0's B, C; q1's gold B is the same column 0, then D; q2's E, then its negative A
            assert b.passages == ["B", "C", "D", "E", "A"] and b.targets.tolist() == [0, 0, 3]
            assert b.groups == [[0, 1], [0, 2], [3, 4]] and b.teacher[0] == [0.7, 0.3]
            # A (column 4) is q2's mined negative: masked for q0 only, still a negative for q2
            assert b.allowed.tolist() == [[True, True, True, True, False]] + [[True] * 5] * 2
        # without in-batch negatives each query sees its own group only, and q0 never its other positive
        nb = make_batch(recs, 5, np.random.default_rng(seed), in_batch=False)
        assert nb.passages == b.passages and nb.targets.tolist() == b.targets.tolist()
        other = b.passages.index("B" if chosen == "A" else "A")
        assert not nb.allowed[0, other] and nb.allowed[0, b.targets[0]] and nb.allowed[0].sum() == 2
        assert nb.allowed[1].sum() == 2 and nb.allowed[2].sum() == 2
    assert seen == {"A", "B"}  # the positive is drawn at random, not always the first


def test_make_batch_single_positives_need_no_mask():
    from utils.retrieval.train_embedder import make_batch

    recs = [{"query": "q0", "pos": ["A"], "neg": ["C"], "pos_ids": [1], "neg_ids": [3]},
            {"query": "q1", "pos": ["B"], "neg": ["A"], "pos_ids": [2], "neg_ids": [1]}]
    b = make_batch(recs, 5, np.random.default_rng(0), in_batch=True)
    assert b.passages == ["A", "C", "B"] and b.targets.tolist() == [0, 2] and b.allowed is None


def test_masked_other_positive_leaves_the_loss():
    """The masked column takes no part in the softmax: the loss equals InfoNCE over the other columns."""
    from utils.retrieval.train_embedder import make_batch

    recs = _two_positive_batch_records()
    b = make_batch(recs, 5, np.random.default_rng(0), in_batch=True)
    torch.manual_seed(0)
    q, p = torch.randn(3, 4), torch.randn(5, 4)
    got = contrastive_loss(q, p, b.targets, 0.5, b.allowed, reduction="none")
    other = b.passages.index("B" if b.passages[b.targets[0]] == "A" else "A")
    keep = [j for j in range(5) if j != other]
    logits = q[0] @ p[keep].T / 0.5
    expected = -torch.log_softmax(logits, -1)[keep.index(int(b.targets[0]))]
    assert got[0].item() == pytest.approx(expected.item(), rel=1e-5)
    assert got[1].item() == pytest.approx(torch.nn.functional.cross_entropy(q[1:2] @ p.T / 0.5, b.targets[1:2]).item(), rel=1e-5)


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
