import json

import numpy as np
import pandas as pd
import pytest

from utils import io
from utils.retrieval.mining import mine_hard_negatives, to_flag_records
from utils.retrieval.recall import retrieve, topk


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def emb():
    rng = np.random.default_rng(0)
    corpus = _unit(rng.normal(size=(200, 16))).astype(np.float32)
    queries = _unit(rng.normal(size=(30, 16))).astype(np.float32)
    return queries, corpus


def test_negatives_come_from_rank_range_and_exclude_positive(emb):
    q, c = emb
    pos = list(range(30))
    negs, scores, pos_s = mine_hard_negatives(q, c, pos, range_min=3, range_max=20, n=5, seed=0)
    order = np.argsort(-(q @ c.T), axis=1)
    for i, ns in enumerate(negs):
        assert len(ns) == 5 and len(set(ns)) == 5
        assert pos[i] not in ns
        allowed = set(order[i, 2:19].tolist())  # ranks 3..19 (1-based)
        assert set(ns) <= allowed
        assert np.allclose(scores[i], c[ns] @ q[i], atol=1e-5)
    assert np.allclose(pos_s, np.einsum("ij,ij->i", q, c[pos]), atol=1e-5)


def test_deterministic_for_seed(emb):
    q, c = emb
    a = mine_hard_negatives(q, c, list(range(30)), n=5, seed=7)[0]
    b = mine_hard_negatives(q, c, list(range(30)), n=5, seed=7)[0]
    d = mine_hard_negatives(q, c, list(range(30)), n=5, seed=8)[0]
    assert a == b and a != d


def test_margin_filter_drops_near_positive_scores(emb):
    q, c = emb
    pos = np.argmax(q @ c.T, axis=1).tolist()  # gold = top-1, so its score is high
    negs, scores, pos_s = mine_hard_negatives(q, c, pos, range_max=150, n=5, max_score_ratio=0.5, seed=0)
    unfiltered = mine_hard_negatives(q, c, pos, range_max=150, n=5, seed=0)[1]
    assert all(x < 0.5 * pos_s[i] for i, s in enumerate(scores) for x in s)
    assert any(x >= 0.5 * pos_s[i] for i, s in enumerate(unfiltered) for x in s)  # the filter did something


def test_fills_up_when_range_is_short(emb):
    q, c = emb
    negs, _, _ = mine_hard_negatives(q, c, list(range(30)), range_min=2, range_max=4, n=6, seed=0)
    assert all(len(n) == 6 and len(set(n)) == 6 for n in negs)
    with pytest.raises(ValueError):
        mine_hard_negatives(q, c, list(range(30)), range_min=5, range_max=5)


def test_every_positive_is_excluded():
    """Tiny corpus, hand-built: both positives of query 0 rank 1st and 2nd (of 6), so every range
    that starts at rank 1 meets them; neither may ever be a negative, whatever the seed, nor in the fill-up."""
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    angles = np.radians([0, 10, 30, 50, 70, 90])  # cosine to q falls with the angle: ranks 1..6 = items 0..5
    c = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    for seed in range(10):
        negs, scores, pos_s = mine_hard_negatives(q, c, [[1, 0]], range_min=1, range_max=7, n=4, seed=seed)
        assert sorted(negs[0]) == [2, 3, 4, 5]  # 6 items - 2 positives: all four others, never 0 or 1
        assert negs[0] == sorted(negs[0])  # kept in rank order
        assert np.allclose(scores[0], np.cos(angles[negs[0]]), atol=1e-6)
        assert pos_s[0] == pytest.approx(np.cos(np.radians(10)), abs=1e-6)  # the first listed positive's score
        # a range too short (ranks 1-2 hold only the positives): all 4 negatives come from the fill-up
        short, _, _ = mine_hard_negatives(q, c, [[1, 0]], range_min=1, range_max=3, n=4, seed=seed)
        assert sorted(short[0]) == [2, 3, 4, 5]
        # one positive given as an int: only it is excluded, the other is a fair (top-ranked) negative
        single, _, _ = mine_hard_negatives(q, c, [1], range_min=1, range_max=7, n=5, seed=seed)
        assert sorted(single[0]) == [0, 2, 3, 4, 5]


def test_multi_positive_mixed_with_single_positive_queries(emb):
    """Queries with 1, 2 and 3 positives in one call: none of a query's positives is among its negatives."""
    q, c = emb
    order = np.argsort(-(q @ c.T), axis=1)
    positives = [order[i, : 1 + i % 3].tolist() for i in range(30)]  # the top 1, 2 or 3 items are positives
    positives[0] = int(order[0, 0])  # a bare int still works beside lists
    negs, _, pos_s = mine_hard_negatives(q, c, positives, range_min=1, range_max=10, n=5, seed=0)
    for i, ns in enumerate(negs):
        pos = set(np.atleast_1d(positives[i]).tolist())
        assert len(ns) == 5 and len(set(ns)) == 5 and not pos & set(ns)
        assert set(ns) <= set(order[i, :9].tolist()) - pos  # the rest of ranks 1..9 (6 or more left)
    first = [int(np.atleast_1d(p)[0]) for p in positives]
    assert np.allclose(pos_s, np.einsum("ij,ij->i", q, c[first]), atol=1e-5)
    with pytest.raises(ValueError, match="at least one positive"):
        mine_hard_negatives(q[:1], c, [[]], n=5)


def test_flag_jsonl_round_trip(tmp_path):
    pairs = pd.DataFrame({"query_id": ["1_A", "2_B"], "query_text": ["q one", "q two"],
                          "positives": [(10,), (30,)]})
    corpus = pd.DataFrame({"item_id": [10, 20, 30], "item_text": ["ten", "twenty", "thirty"], "raw_id": ["10", "20", "30"]})
    recs = to_flag_records(pairs, corpus, [[1, 2], [0, 1]], [[0.5, 0.4], [0.3, 0.2]], [0.9, 0.8], prompt="Find: ")
    path = io.write_jsonl(tmp_path / "hn.jsonl", recs)
    back = io.read_jsonl(path)
    assert back == json.loads(json.dumps(recs))
    assert back[0] == {"query": "q one", "pos": ["ten"], "neg": ["twenty", "thirty"], "prompt": "Find: ",
                       "query_id": "1_A", "pos_ids": [10], "neg_ids": [20, 30],
                       "pos_scores": [0.9], "neg_scores": [0.5, 0.4]}


def test_flag_records_list_every_positive():
    """A 2-positive query: ``pos``/``pos_ids`` list both (in the query's order), one teacher score each."""
    pairs = pd.DataFrame({"query_id": ["a", "b"], "query_text": ["q a", "q b"], "positives": [(30, 10), (20,)]})
    corpus = pd.DataFrame({"item_id": [10, 20, 30, 40], "item_text": ["ten", "twenty", "thirty", "forty"],
                           "raw_id": ["10", "20", "30", "40"]})
    recs = to_flag_records(pairs, corpus, [[1, 3], [3, 0]], [[0.5, 0.4], [0.3, 0.2]], [[0.9, 0.7], 0.8])
    assert recs[0] == {"query": "q a", "pos": ["thirty", "ten"], "neg": ["twenty", "forty"], "prompt": "",
                       "query_id": "a", "pos_ids": [30, 10], "neg_ids": [20, 40],
                       "pos_scores": [0.9, 0.7], "neg_scores": [0.5, 0.4]}
    assert recs[1] == {"query": "q b", "pos": ["twenty"], "neg": ["forty", "ten"], "prompt": "",
                       "query_id": "b", "pos_ids": [20], "neg_ids": [40, 10],
                       "pos_scores": [0.8], "neg_scores": [0.3, 0.2]}
    plain = to_flag_records(pairs, corpus, [[1, 3], [3, 0]])  # no teacher scores: none written
    assert "pos_scores" not in plain[0] and plain[0]["pos_ids"] == [30, 10]


def test_faiss_and_torch_backends_agree(emb):
    q, c = emb
    s1, i1 = topk(q, c, 10, backend="faiss-cpu")
    s2, i2 = topk(q, c, 10, backend="torch-cpu")
    assert (i1 == i2).all() and np.allclose(s1, s2, atol=1e-5)
    brute = np.argsort(-(q @ c.T), axis=1)[:, :10]
    assert (i1 == brute).all()
    r = retrieve([f"q{i}" for i in range(30)], q, np.arange(200) + 1000, c, k=10)
    assert len(r) == 300 and r["rank"].min() == 1 and r["rank"].max() == 10
    assert list(r.columns) == ["query_id", "item_id", "rank", "score"]
    assert r[r["query_id"] == "q0"]["item_id"].tolist() == (brute[0] + 1000).tolist()
