"""Tests for utils.fusion: hand-computed fusions, ranx agreement, weight tuning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from utils.fusion import fuse, tune_weights, weight_grid
from utils.metrics import evaluate

Q, M, G = "query_id", "item_id", "positives"


def ranking(rows: list[tuple[str, int, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[Q, M, "rank", "score"])


# a ranks q1 only; b ranks q1 (shallower) and q2; c ranks two q1 candidates.
A = ranking([("q1", 1, 1, 0.9), ("q1", 2, 2, 0.5), ("q1", 3, 3, 0.1)])
B = ranking([("q1", 3, 1, 2.0), ("q1", 4, 2, 1.0), ("q2", 1, 1, 5.0)])
C = ranking([("q1", 2, 1, 10.0), ("q1", 4, 2, 0.0)])


def as_lists(df: pd.DataFrame) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for q, g in df.groupby(Q, sort=True):
        assert g["rank"].tolist() == list(range(1, len(g) + 1))
        out[q] = list(zip(g[M].tolist(), g["score"].round(10).tolist()))
    return out


def test_rank_average_equal_weights():
    # depth(a,q1)=3 -> missing = 4; depth(b,q1)=2 -> missing = 3; a lacks q2 -> its overall depth 3 + 1.
    got = as_lists(fuse([A, B], "rank_average"))
    assert got == {
        "q1": [(1, -2.0), (3, -2.0), (2, -2.5), (4, -3.0)],  # 1 and 3 tie -> smaller id first
        "q2": [(1, -2.5)],
    }


def test_rank_average_weighted_three_rankings():
    # weights 2,1,1 (sum 4): item1 (2*1+3+3)/4, item2 (2*2+3+1)/4, item3 (2*3+1+3)/4, item4 (2*4+2+2)/4
    got = as_lists(fuse([A, B, C], "rank_average", weights=[2, 1, 1]))
    assert got["q1"] == [(1, -2.0), (2, -2.0), (3, -2.5), (4, -3.0)]
    # q2: a -> 4, b -> 1, c lacks q2 -> its depth 2 + 1 = 3: (2*4 + 1 + 3)/4
    assert got["q2"] == [(1, -3.0)]


def test_rrf_hand_computed():
    got = as_lists(fuse([A, B], "rrf", weights=[1, 2], k=1))
    # item1 1/2, item2 1/3, item3 1/4 + 2/2, item4 2/3
    assert got["q1"] == [(3, 1.25), (4, round(2 / 3, 10)), (1, 0.5), (2, round(1 / 3, 10))]
    assert got["q2"] == [(1, 1.0)]
    default = fuse([A, B], "rrf")  # k = 60, equal weights
    top = default[default[Q] == "q1"].iloc[0]
    assert top[M] == 3 and top["score"] == pytest.approx(1 / 63 + 1 / 61)


def test_score_sum_three_rankings_min_max():
    # normalised: a q1 {1:1, 2:.5, 3:0}; b q1 {3:1, 4:0}, q2 {1:0 (constant)}; c q1 {2:1, 4:0}
    got = as_lists(fuse([A, B, C], "score_sum", weights=[1, 1, 2]))
    assert got["q1"] == [(2, 2.5), (1, 1.0), (3, 1.0), (4, 0.0)]
    assert got["q2"] == [(1, 0.0)]


def test_top_k_and_output_contract():
    out = fuse([A, B, C], "rrf", top_k=2)
    assert list(out.columns) == [Q, M, "rank", "score"]
    assert out.groupby(Q).size().to_dict() == {"q1": 2, "q2": 1}
    assert out[M].dtype == np.int64 and out["rank"].dtype == np.int64


def _random_rankings(seed: int, n_runs: int = 3, n_q: int = 6, depth: int = 8) -> list[pd.DataFrame]:
    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(n_runs):
        rows = []
        for q in range(n_q):
            items = rng.choice(30, size=depth, replace=False)
            scores = np.sort(rng.random(depth))[::-1]
            rows += [(f"q{q}", int(i), r + 1, float(s)) for r, (i, s) in enumerate(zip(items, scores))]
        runs.append(ranking(rows))
    return runs


def _to_ranx(df: pd.DataFrame):
    from ranx import Run

    return Run({q: {str(i): s for i, s in zip(g[M], g["score"])} for q, g in df.groupby(Q)})


def _assert_matches_ranx(ours: pd.DataFrame, theirs) -> None:
    expected = {(q, int(d)): s for q, docs in theirs.to_dict().items() for d, s in docs.items()}
    got = {(q, i): s for q, i, s in zip(ours[Q], ours[M], ours["score"])}
    assert got.keys() == expected.keys()
    for key, s in expected.items():
        assert got[key] == pytest.approx(s, rel=1e-9, abs=1e-12), key


@pytest.mark.filterwarnings("ignore:unsafe cast")
def test_rrf_matches_ranx():
    ranx = pytest.importorskip("ranx")
    runs = _random_rankings(0)
    theirs = ranx.fuse([_to_ranx(r) for r in runs], norm=None, method="rrf", params={"k": 60})
    _assert_matches_ranx(fuse(runs, "rrf", top_k=1000), theirs)


def test_score_sum_matches_ranx_wsum():
    ranx = pytest.importorskip("ranx")
    runs = _random_rankings(1, n_runs=2)
    theirs = ranx.fuse(
        [_to_ranx(r) for r in runs], norm="min-max", method="wsum", params={"weights": [0.3, 0.7]}
    )
    _assert_matches_ranx(fuse(runs, "score_sum", weights=[0.3, 0.7], top_k=1000), theirs)


def _tuning_case(n_q: int = 20):
    """Ranking `good` puts gold first; `bad` puts good's 2nd item first, so equal RRF loses."""
    good_rows, bad_rows, pairs = [], [], []
    for q in range(n_q):
        gold, distractor = 100 + q, 200 + q
        good_rows += [(f"q{q}", gold, 1, 1.0), (f"q{q}", distractor, 2, 0.9), (f"q{q}", 300 + q, 3, 0.8)]
        bad_rows += [(f"q{q}", distractor, 1, 1.0), (f"q{q}", 400 + q, 2, 0.9), (f"q{q}", gold, 3, 0.1)]
        pairs.append((f"q{q}", (gold,)))
    pairs_df = pd.DataFrame(pairs, columns=[Q, G])
    return ranking(good_rows), ranking(bad_rows), pairs_df


@pytest.mark.parametrize("method", ["rrf", "rank_average", "score_sum"])
def test_tune_weights_favours_better_ranking(method):
    good, bad, pairs = _tuning_case()
    equal_map = evaluate(fuse([bad, good], method), pairs)["map@25"]
    weights, best = tune_weights([bad, good], pairs, method)
    assert weights[1] > weights[0]
    assert best == pytest.approx(1.0)
    assert best >= equal_map
    assert sum(weights) == pytest.approx(1.0)
    assert evaluate(fuse([bad, good], method, weights), pairs)["map@25"] == pytest.approx(best)
    assert tune_weights([bad, good], pairs, method) == (weights, best)  # deterministic


def test_tune_weights_keeps_equal_when_nothing_beats_it():
    good, _, pairs = _tuning_case()
    weights, best = tune_weights([good, good.copy()], pairs, "rrf")
    assert weights == [0.5, 0.5] and best == pytest.approx(1.0)


def test_weight_grid_starts_with_equal_and_dedupes():
    pts = weight_grid(2, grid=(0, 0.5, 1))
    assert pts[0] == (0.5, 0.5)
    assert set(pts) == {(0.5, 0.5), (0.0, 1.0), (1.0, 0.0), (round(1 / 3, 9), round(2 / 3, 9)),
                        (round(2 / 3, 9), round(1 / 3, 9))}
    assert len(pts) == len(set(pts))


def test_unknown_method_raises():
    with pytest.raises(ValueError, match="unknown fusion method 'borda'"):
        fuse([A, B], "borda")
    good, bad, pairs = _tuning_case(3)
    with pytest.raises(ValueError, match="unknown fusion method"):
        tune_weights([good, bad], pairs, "comb_mnz")


def test_bad_input_errors_name_the_field():
    with pytest.raises(ValueError, match=r"rankings\[1\] lacks column\(s\) \['score'\]"):
        fuse([A, B.drop(columns="score")], "rrf")
    with pytest.raises(ValueError, match="weights has 1 entries for 2 rankings"):
        fuse([A, B], "rrf", weights=[1.0])
    with pytest.raises(ValueError, match="not all 0"):
        fuse([A, B], "rrf", weights=[0, 0])
    with pytest.raises(ValueError, match=r"rankings\[0\] lists a item_id twice"):
        fuse([pd.concat([A, A]), B], "rrf")
    _, _, pairs = _tuning_case(3)
    with pytest.raises(ValueError, match="no labelled rows"):
        tune_weights([A, B], pairs.assign(**{G: [()] * len(pairs)}), "rrf")


@pytest.mark.parametrize("method", ["rrf", "rank_average", "score_sum"])
def test_fast_tuning_map_equals_evaluate(method):
    """The grid search's counting MAP@25 agrees with utils.metrics.evaluate at every grid point."""
    from utils.fusion import _align, _fuse_aligned, _GoldIndex, _scores

    runs = _random_rankings(2, n_runs=3, n_q=12, depth=30)
    runs[1]["score"] = runs[1]["score"].round(1)  # ties in score_sum
    rng = np.random.default_rng(3)
    gold = [int(rng.integers(0, 30)) for _ in range(12)]
    positives = [(g,) for g in gold] + [(5,)]
    positives[0] = ()  # unlabelled query is ignored; q99 is unranked and scores 0
    pairs = pd.DataFrame({Q: [f"q{i}" for i in range(12)] + ["q99"], G: positives})
    al = _align(runs, method, 60)
    index = _GoldIndex(al, pairs)
    for point in weight_grid(3):
        w = np.asarray(point)
        expected = evaluate(_fuse_aligned(al, w, top_k=25), pairs)["map@25"]
        assert index.map_at_k(al, _scores(al, w)) == pytest.approx(expected, abs=1e-12), point


def _two_positive_case():
    """score_sum over two rankings X, Y whose scores are already min-max normalised per query, so the
    fused score of an item is w * x + (1 - w) * y for weights (w, 1 - w):

    - ``m`` (positives 1 and 2): X 1: 1.0, 2: 0.45, 3: 0.0; Y 3: 1.0, 1: 0.0, 2: 0.0, so
      1 = w, 2 = 0.45 w, 3 = 1 - w. AP@2: w > 1/1.45 (0.690): 1, 2 on top -> (1/1 + 2/2) / 2 = 1;
      0.5 <= w < 0.690: 1, 3 -> (1/1) / 2 = 0.5 (at w = 0.5 items 1 and 3 tie, the smaller id first);
      w < 0.5: 3, 1 -> (1/2) / 2 = 0.25.
    - ``t`` (positives 7 and 8): X 9: 1.0, 7: 0.8, 8: 0.7, 10: 0.0; Y 7: 1.0, 8: 0.95, 9: 0.0, 10: 0.0, so
      9 = w, 7 = 1 - 0.2 w, 8 = 0.95 - 0.25 w (7 always above 8). AP@2: w < 0.76: 7, 8 -> 1;
      0.76 < w < 0.833: 7, 9 -> 0.5; w > 0.833: 9, 7 -> 0.25.
    - ``s`` (positive 5): both rankings put 6 (1.0) before 5 (0.0): AP@2 = 1/2 at any w.
    - ``u`` is unlabelled (no positives): never scored.
    """
    x = ranking([("m", 1, 1, 1.0), ("m", 2, 2, 0.45), ("m", 3, 3, 0.0),
                 ("t", 9, 1, 1.0), ("t", 7, 2, 0.8), ("t", 8, 3, 0.7), ("t", 10, 4, 0.0),
                 ("s", 6, 1, 1.0), ("s", 5, 2, 0.0), ("u", 1, 1, 1.0), ("u", 2, 2, 0.0)])
    y = ranking([("m", 3, 1, 1.0), ("m", 1, 2, 0.0), ("m", 2, 3, 0.0),
                 ("t", 7, 1, 1.0), ("t", 8, 2, 0.95), ("t", 9, 3, 0.0), ("t", 10, 4, 0.0),
                 ("s", 6, 1, 1.0), ("s", 5, 2, 0.0), ("u", 2, 1, 1.0), ("u", 1, 2, 0.0)])
    pairs = pd.DataFrame({Q: ["m", "t", "s", "u"], G: [(1, 2), (7, 8), (5,), ()]})
    return x, y, pairs


def test_tune_weights_two_positive_queries_hand_computed():
    """Of the grid's X weights (0.5, 0, 1, 1/3, 0.25, 0.2, 2/3, 0.4, 0.75, 0.6, 3/7, 0.8, 4/7) only
    0.75 puts both positives of m and of t in the top 2: MAP@2 = (1 + 1 + 0.5) / 3 = 5/6; every
    other point loses one of them (e.g. equal weights: (0.5 + 1 + 0.5) / 3 = 2/3; X alone: (1 + 0.25 + 0.5) / 3)."""
    from utils.fusion import per_pair_ap

    x, y, pairs = _two_positive_case()
    weights, best = tune_weights([x, y], pairs, "score_sum", at=2)
    assert weights == [0.75, 0.25]
    assert best == pytest.approx(5 / 6, abs=1e-12)
    fused = fuse([x, y], "score_sum", weights)
    assert evaluate(fused, pairs, k=2)["map@2"] == pytest.approx(best, abs=1e-12)
    assert fused[fused[Q] == "m"][M].tolist()[:2] == [1, 2] and fused[fused[Q] == "t"][M].tolist()[:2] == [7, 8]
    # the per-query APs of the fast path, rows m, t, s (u is unlabelled), at three grid points
    ap = per_pair_ap([x, y], pairs, "score_sum", [(0.5, 0.5), (0.75, 0.25), (1.0, 0.0)], at=2)
    assert ap.tolist() == [[0.5, 1.0, 0.5], [1.0, 1.0, 0.5], [1.0, 0.25, 0.5]]
    for point, row in zip([(0.5, 0.5), (0.75, 0.25), (1.0, 0.0)], ap):
        assert evaluate(fuse([x, y], "score_sum", point), pairs, k=2)["map@2"] == pytest.approx(row.mean(), abs=1e-12)
    # at the default cut-off (25) both positives are always found, lower down: other APs, same agreement
    weights25, best25 = tune_weights([x, y], pairs, "score_sum")
    assert evaluate(fuse([x, y], "score_sum", weights25), pairs)["map@25"] == pytest.approx(best25, abs=1e-12)


@pytest.mark.parametrize("method", ["rrf", "rank_average", "score_sum"])
def test_fast_tuning_map_equals_evaluate_several_positives(method):
    """With queries of 0-3 positives the grid search's MAP@k equals utils.metrics.evaluate at every point."""
    from utils.fusion import _align, _fuse_aligned, _GoldIndex, _scores

    runs = _random_rankings(4, n_runs=3, n_q=12, depth=30)
    runs[2]["score"] = runs[2]["score"].round(1)  # ties
    rng = np.random.default_rng(5)
    positives = [tuple(int(i) for i in rng.choice(30, size=i % 4, replace=False)) for i in range(12)]
    pairs = pd.DataFrame({Q: [f"q{i}" for i in range(12)] + ["q99"], G: positives + [(5, 6)]})
    assert any(len(p) >= 2 for p in positives) and any(len(p) == 0 for p in positives)
    al = _align(runs, method, 60)
    for at in (5, 25):
        index = _GoldIndex(al, pairs, at)
        for point in weight_grid(3):
            w = np.asarray(point)
            expected = evaluate(_fuse_aligned(al, w, top_k=at), pairs, k=at)[f"map@{at}"]
            assert index.map_at_k(al, _scores(al, w)) == pytest.approx(expected, abs=1e-12), (at, point)
        weights, best = tune_weights(runs, pairs, method, at=at)
        assert evaluate(fuse(runs, method, weights), pairs, k=at)[f"map@{at}"] == pytest.approx(best, abs=1e-12)
