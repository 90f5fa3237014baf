"""utils.rescore: 08's re-scoring of a final ranking (item prior, same-group siblings), hand-computed."""

import math

import pandas as pd
import pytest

from utils.rescore import item_counts, rescore


def _ranking() -> pd.DataFrame:
    rows = [("q1", 10, 1, 0.9), ("q1", 20, 2, 0.5), ("q1", 30, 3, 0.1),  # scaled 1, 0.5, 0
            ("q2", 20, 1, 0.8), ("q2", 40, 2, 0.2),                      # scaled 1, 0
            ("q3", 10, 1, 0.3), ("q3", 20, 2, 0.3)]                      # one score: scaled 0, 0
    return pd.DataFrame(rows, columns=["query_id", "item_id", "rank", "score"])


QUERIES = pd.DataFrame({"query_id": ["q1", "q2", "q3"], "group": [1, 1, 2]})


def test_counts_prior_and_siblings_by_hand():
    train = pd.DataFrame({"positives": [[10], [10, 30], [10], []]})
    counts = item_counts(train)
    assert counts.to_dict() == {10: 3, 30: 1}
    out = rescore(_ranking(), QUERIES, counts, prior_weight=0.5, sibling_weight=-1.0)
    got = {q: list(zip(g["item_id"], g["rank"], g["score"].round(4))) for q, g in out.groupby("query_id")}
    ln2, ln4 = math.log(2), math.log(4)
    # q1: 10 = 1 + 0.5 ln 4 (q2 has no 10); 20 = 0.5 - q2's scaled 20 (1); 30 = 0 + 0.5 ln 2
    assert got["q1"] == [(10, 1, round(1 + 0.5 * ln4, 4)), (30, 2, round(0.5 * ln2, 4)), (20, 3, -0.5)]
    # q2: 20 = 1 - q1's scaled 20 (0.5); 40 = 0
    assert got["q2"] == [(20, 1, 0.5), (40, 2, 0.0)]
    # q3 (its own group, no siblings): 10 = 0.5 ln 4, 20 = 0
    assert got["q3"] == [(10, 1, round(0.5 * ln4, 4)), (20, 2, 0.0)]


def test_zero_weights_leave_the_ranking_and_ungrouped_queries_are_refused():
    ranking = _ranking()
    assert rescore(ranking, QUERIES, pd.Series(dtype="int64"), 0.0, 0.0) is ranking
    with pytest.raises(ValueError, match="1 ranked queries have no group .*'q3'"):
        rescore(ranking, QUERIES.iloc[:2], pd.Series(dtype="int64"), 0.0, -0.1)
