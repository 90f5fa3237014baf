"""Ranking metrics as the Eedi competition defines them.

MAP@K with one relevant id per query reduces to the mean of 1/rank of the gold id
(0 when it is not in the top K). Written here (vectorised numpy) rather than via ranx
because it runs in every notebook and must not pull numba's compile time in; the tests
check it against ranx.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

QUERY = "QuestionId_Answer"
ITEM = "MisconceptionId"


def gold_ranks(predictions: Sequence[Sequence[int]] | np.ndarray, gold: Sequence[int]) -> np.ndarray:
    """1-based rank of each gold id in its prediction list, 0 where absent."""
    ranks = np.zeros(len(gold), dtype=np.int64)
    for i, (pred, g) in enumerate(zip(predictions, gold)):
        hits = np.flatnonzero(np.asarray(pred) == g)
        if hits.size:
            ranks[i] = hits[0] + 1
    return ranks


def apk(pred: Sequence[int], gold: int, k: int = 25) -> float:
    """Average precision at k for one query with one relevant item (Kaggle's definition).

    Duplicate predictions are counted once, at their first position.
    """
    seen: set[int] = set()
    score, hits = 0.0, 0
    for i, p in enumerate(list(pred)[:k]):
        if p == gold and p not in seen:
            hits += 1
            score += hits / (i + 1.0)
        seen.add(p)
    return score  # one relevant item: divide by min(1, k) = 1


def map_at_k(predictions: Sequence[Sequence[int]], gold: Sequence[int], k: int = 25) -> float:
    """Mean average precision at k, one relevant id per query."""
    if len(predictions) != len(gold):
        raise ValueError(f"{len(predictions)} prediction lists for {len(gold)} gold ids")
    if len(gold) == 0:
        return float("nan")
    return float(np.mean([apk(p, g, k) for p, g in zip(predictions, gold)]))


def recall_at_k(predictions: Sequence[Sequence[int]], gold: Sequence[int], k: int) -> float:
    """Share of queries whose gold id is in the top k."""
    if len(gold) == 0:
        return float("nan")
    return float(np.mean([g in list(p)[:k] for p, g in zip(predictions, gold)]))


def ranking_lists(ranking: pd.DataFrame, queries: Sequence[str]) -> list[list[int]]:
    """Turn a long ranking table into one id list per query, in ``queries`` order."""
    ordered = ranking.sort_values([QUERY, "rank"])
    grouped = ordered.groupby(QUERY, sort=False)[ITEM].apply(list).to_dict()
    return [grouped.get(q, []) for q in queries]


def evaluate(ranking: pd.DataFrame, pairs: pd.DataFrame, ks: Sequence[int] = (1, 5, 10, 25, 50, 100)) -> dict:
    """MAP@25 and Recall@k of a ranking over the labelled rows of ``pairs``."""
    labelled = pairs[pairs[ITEM].notna()]
    queries = labelled[QUERY].tolist()
    gold = labelled[ITEM].astype(int).tolist()
    preds = ranking_lists(ranking, queries)
    out = {"n_queries": len(queries), "map@25": map_at_k(preds, gold, 25)}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(preds, gold, k)
    return out


def recall_curve(ranking: pd.DataFrame, pairs: pd.DataFrame, max_k: int = 100) -> pd.Series:
    """Recall@k for k = 1..max_k (index k)."""
    labelled = pairs[pairs[ITEM].notna()]
    preds = ranking_lists(ranking, labelled[QUERY].tolist())
    ranks = gold_ranks([p[:max_k] for p in preds], labelled[ITEM].astype(int).tolist())
    ks = np.arange(1, max_k + 1)
    if len(ranks) == 0:
        return pd.Series(np.nan, index=ks, name="recall")
    found = ranks[ranks > 0]
    return pd.Series([(found <= k).sum() / len(ranks) for k in ks], index=ks, name="recall")


def per_query_ap(ranking: pd.DataFrame, pairs: pd.DataFrame, k: int = 25) -> np.ndarray:
    """AP@k of each labelled row of ``pairs`` (in its order); their mean is ``evaluate``'s MAP@k."""
    labelled = pairs[pairs[ITEM].notna()]
    preds = ranking_lists(ranking, labelled[QUERY].tolist())
    return np.array([apk(p, g, k) for p, g in zip(preds, labelled[ITEM].astype(int).tolist())], dtype=np.float64)


def bootstrap_means(values: np.ndarray, groups: Sequence | None, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` means of ``values`` over resamples of whole ``groups`` (of single values when None)."""
    values = np.asarray(values, np.float64)
    keys = np.arange(len(values)) if groups is None else pd.factorize(np.asarray(groups))[0]
    sums, counts = np.bincount(keys, values), np.bincount(keys)
    pick = rng.integers(0, len(sums), size=(n_boot, len(sums)))
    return sums[pick].sum(axis=1) / counts[pick].sum(axis=1)


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, groups: Sequence | None = None, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict:
    """Mean of ``b - a`` (per-query scores of two systems on the same queries) with a bootstrap interval.

    ``groups`` (e.g. QuestionId) resamples whole groups, since the wrong answers of one question
    are not independent. Returns ``gain``, ``lo``, ``hi`` (the ``level`` percentile interval) and
    ``p_worse`` (share of resamples where b does not beat a).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"need two equal-length, non-empty score vectors, got {a.shape} and {b.shape}")
    diff = b - a
    boot = bootstrap_means(diff, groups, n_boot, np.random.default_rng(seed))
    tail = (1.0 - level) / 2 * 100
    return {"gain": float(diff.mean()), "lo": float(np.percentile(boot, tail)), "hi": float(np.percentile(boot, 100 - tail)),
            "p_worse": float((boot <= 0).mean())}
