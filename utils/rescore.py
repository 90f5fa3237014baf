"""Re-score a final ranking with two cheap terms (08, and the Kaggle kernel after reranking).

Each query's scores are min-max scaled to [0, 1] over its list, so one weight fits any source
(recall cosines, blended reranker scores, fusion scores); then

    score = scaled + prior_weight * log(1 + times the item is a positive in the training pairs)
                   + sibling_weight * (sum of the item's scaled scores for the other queries of its group)

An item absent from a sibling's list adds 0. Eedi: a group is a question, its queries its wrong answers;
a negative ``sibling_weight`` lowers a misconception that is strong for another wrong answer of the same
question. The weights are chosen by CV (``utils.run.cv`` scores every grid point out of fold and
writes the pick to ``choices.yaml``); both 0 (the default) leaves a ranking as it is.
Written here: a few lines of pandas, no library does this.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from utils.metrics import ITEM, QUERY

# the grid CV chooses from (pairs (prior, sibling); (0, 0) is the ranking as it is)
PRIOR_GRID = (0.0, 0.02, 0.05, 0.1)
SIBLING_GRID = (0.0, -0.1, -0.2)


def item_counts(train_pairs: pd.DataFrame) -> pd.Series:
    """How often each item is a positive in ``train_pairs`` (``positives`` lists)."""
    return pd.Series([p for ps in train_pairs["positives"] for p in ps], dtype="int64").value_counts()


def rescore(ranking: pd.DataFrame, queries: pd.DataFrame, counts: pd.Series, prior_weight: float,
            sibling_weight: float) -> pd.DataFrame:
    """``ranking`` (query_id, item_id, rank, score) re-scored and re-ranked; ``queries`` maps query_id to group.

    Rows keep their items, ranks restart at 1 per query by the new score (ties: the old rank first).
    """
    if not prior_weight and not sibling_weight:
        return ranking
    missing = set(ranking[QUERY]) - set(queries[QUERY])
    if missing:
        raise ValueError(f"rescore: {len(missing)} ranked queries have no group (e.g. {sorted(missing)[0]!r})")
    df = ranking[[QUERY, ITEM, "rank", "score"]].merge(queries[[QUERY, "group"]].drop_duplicates(QUERY), on=QUERY)
    lo, hi = df.groupby(QUERY)["score"].transform("min"), df.groupby(QUERY)["score"].transform("max")
    scaled = (df["score"] - lo) / (hi - lo).replace(0, 1)
    score = scaled.to_numpy(np.float64)
    if prior_weight:
        score = score + prior_weight * np.log1p(df[ITEM].map(counts).fillna(0).to_numpy(np.float64))
    if sibling_weight:
        same = scaled.groupby([df["group"], df[ITEM]]).transform("sum")
        score = score + sibling_weight * (same - scaled).to_numpy(np.float64)
    df["score"] = score
    df = df.sort_values([QUERY, "score", "rank"], ascending=[True, False, True], kind="stable")
    df["rank"] = df.groupby(QUERY).cumcount() + 1
    return df[[QUERY, ITEM, "rank", "score"]].reset_index(drop=True)
