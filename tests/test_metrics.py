import numpy as np
import pandas as pd
import pytest

from utils.metrics import apk, evaluate, map_at_k, paired_bootstrap, per_query_ap, recall_at_k, recall_curve


def test_apk_hand_computed():
    assert apk([5, 3, 9], 5) == 1.0
    assert apk([1, 2, 3, 7], 7) == 0.25
    assert apk(list(range(100)), 30, k=25) == 0.0  # beyond k
    assert apk(list(range(100)), 24, k=25) == 1 / 25
    assert apk([], 3) == 0.0


def test_apk_counts_duplicates_once():
    # Kaggle's apk skips a prediction already seen: the gold repeated after a miss scores once.
    assert apk([1, 1, 2], 2) == pytest.approx(1 / 3)
    assert apk([2, 2, 2], 2) == 1.0


def test_map_and_recall_hand_computed():
    preds = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    gold = [1, 6, 10]
    assert map_at_k(preds, gold) == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert recall_at_k(preds, gold, 1) == pytest.approx(1 / 3)
    assert recall_at_k(preds, gold, 3) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        map_at_k(preds, gold[:2])


def _ranking(lists):
    rows = [(q, m, r + 1, -r) for q, ms in lists.items() for r, m in enumerate(ms)]
    return pd.DataFrame(rows, columns=["query_id", "item_id", "rank", "score"])


def test_evaluate_skips_unlabelled_and_uses_rank_order():
    ranking = _ranking({"1_A": [3, 4, 5], "1_B": [9, 8], "2_C": [1]})
    ranking = ranking.sample(frac=1, random_state=0)  # row order must not matter
    pairs = pd.DataFrame({"query_id": ["1_A", "1_B", "2_C"], "positives": [(4,), (8,), ()]})
    out = evaluate(ranking, pairs)
    assert out["n_queries"] == 2
    assert out["map@25"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert out["recall@1"] == 0.0 and out["recall@5"] == 1.0
    curve = recall_curve(ranking, pairs, max_k=3)
    assert curve.tolist() == [0.0, 1.0, 1.0]


def test_map_matches_ranx():
    ranx = pytest.importorskip("ranx")
    rng = np.random.default_rng(0)
    lists = {f"q{i}": list(rng.permutation(60)[:40]) for i in range(50)}
    gold = {q: int(rng.integers(0, 60)) for q in lists}
    ours = map_at_k([lists[q] for q in lists], [gold[q] for q in lists], 25)
    qrels = ranx.Qrels({q: {str(g): 1} for q, g in gold.items()})
    run = ranx.Run({q: {str(m): float(100 - r) for r, m in enumerate(ms)} for q, ms in lists.items()})
    assert ours == pytest.approx(ranx.evaluate(qrels, run, "map@25"), abs=1e-9)


def test_several_relevant_ids_hand_computed():
    # relevant {2, 5, 9}: hits at ranks 2 and 4 -> (1/2 + 2/4) / 3; recall@4 = 2/3
    assert apk([1, 2, 3, 5, 7], (2, 5, 9), k=20) == pytest.approx((1 / 2 + 2 / 4) / 3)
    # k cuts: only the hit at rank 2 counts, divided by min(3 relevant, k=2) = 2
    assert apk([1, 2, 3, 5], [2, 5, 9], k=2) == pytest.approx((1 / 2) / 2)
    assert apk([5, 5, 2], (2, 5)) == pytest.approx((1 + 2 / 3) / 2)  # a duplicate counts once
    preds = [[1, 2, 3, 5], [4, 6]]
    gold = [(2, 5, 9), (6,)]
    assert recall_at_k(preds, gold, 4) == pytest.approx((2 / 3 + 1) / 2)
    assert recall_at_k(preds, gold, 1) == pytest.approx(0.0)
    ranking = _ranking({"a": [1, 2, 3, 5], "b": [4, 6]})
    pairs = pd.DataFrame({"query_id": ["a", "b"], "positives": [(2, 5, 9), (6,)]})
    out = evaluate(ranking, pairs, ks=(1, 4), k=20)
    assert out["map@20"] == pytest.approx(((1 / 2 + 2 / 4) / 3 + 1 / 2) / 2)
    assert out["recall@4"] == pytest.approx((2 / 3 + 1) / 2) and "map@25" not in out
    assert recall_curve(ranking, pairs, max_k=4).tolist() == pytest.approx([0, (1 / 3 + 1) / 2, (1 / 3 + 1) / 2, (2 / 3 + 1) / 2])


def test_multi_positive_map_and_recall_match_ranx():
    ranx = pytest.importorskip("ranx")
    rng = np.random.default_rng(1)
    lists = {f"q{i}": [int(x) for x in rng.permutation(60)[:40]] for i in range(50)}
    gold = {q: [int(x) for x in rng.choice(60, size=int(rng.integers(1, 4)), replace=False)] for q in lists}
    preds, golds = [lists[q] for q in lists], [gold[q] for q in lists]
    qrels = ranx.Qrels({q: {str(g): 1 for g in gs} for q, gs in gold.items()})
    run = ranx.Run({q: {str(m): float(100 - r) for r, m in enumerate(ms)} for q, ms in lists.items()})
    assert map_at_k(preds, golds, 20) == pytest.approx(ranx.evaluate(qrels, run, "map@20"), abs=1e-9)
    assert recall_at_k(preds, golds, 10) == pytest.approx(ranx.evaluate(qrels, run, "recall@10"), abs=1e-9)


def test_per_query_ap_averages_to_map():
    ranking = _ranking({"1_A": [3, 4, 5], "1_B": [9, 8], "2_C": [1, 2]})
    pairs = pd.DataFrame({"query_id": ["1_A", "1_B", "2_C", "3_D"], "positives": [(4,), (8,), (), (7,)]})
    ap = per_query_ap(ranking, pairs)
    assert ap.tolist() == [0.5, 0.5, 0.0]  # unlabelled row skipped; 3_D has no ranking at all
    assert ap.mean() == pytest.approx(evaluate(ranking, pairs)["map@25"])


def test_paired_bootstrap_gain_and_interval():
    a = np.array([0.0, 0.5, 1.0, 0.2, 0.0, 0.25])
    b = a + np.array([0.5, 0.5, 0.0, 0.3, 0.5, 0.25])  # b never worse: the interval stays above 0
    out = paired_bootstrap(a, b, n_boot=500)
    assert out["gain"] == pytest.approx(np.mean(b - a)) and 0 < out["lo"] <= out["gain"] <= out["hi"] <= 0.5
    assert out["p_worse"] == 0.0
    same = paired_bootstrap(a, a, n_boot=200)
    assert same["gain"] == same["lo"] == same["hi"] == 0.0 and same["p_worse"] == 1.0
    # whole groups are resampled: one group holding all the gain gives resamples with no gain
    c = a + np.array([0.9, 0.9, 0, 0, 0, 0])
    grouped = paired_bootstrap(a, c, groups=[1, 1, 2, 3, 4, 5], n_boot=2000, seed=1)
    assert grouped["lo"] == 0.0 and 0.2 < grouped["p_worse"] < 0.5  # P(group 1 never drawn in 5) = 0.8^5 = 0.33
    with pytest.raises(ValueError):
        paired_bootstrap(a, b[:3])
