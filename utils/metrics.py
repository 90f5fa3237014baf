"""Ranking metrics: MAP@k and Recall@k over any number of relevant ids per query.

AP@k = sum of precision@i at each relevant hit i <= k, divided by min(#relevant, k) (Kaggle's
definition; ranx divides by #relevant, the same whenever a query has at most k relevant ids).
With one relevant id per query (Eedi) MAP@k is the mean of 1/rank of the gold id (0 when it is
not in the top k). Recall@k is the share of a query's relevant ids in its top k. Written here
rather than via ranx because it runs in every notebook and must not pull numba's compile time
in; the tests check it against ranx.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

QUERY = "query_id"
ITEM = "item_id"
GOLD = "positives"  # tuple of relevant item ids per query (empty: unlabelled)


def _as_set(gold) -> set[int]:
    if isinstance(gold, (int, np.integer)):
        return {int(gold)}
    return {int(g) for g in gold}


def labelled(pairs: pd.DataFrame) -> pd.DataFrame:
    """The rows of a query table that have at least one relevant id."""
    return pairs[[len(g) > 0 for g in pairs[GOLD]]] if len(pairs) else pairs


def apk(pred: Sequence[int], gold: int | Iterable[int], k: int = 25) -> float:
    """Average precision at k of one query (``gold``: its relevant id or ids).

    Duplicate predictions are counted once, at their first position.
    """
    relevant = _as_set(gold)
    if not relevant:
        return 0.0
    seen: set[int] = set()
    score, hits = 0.0, 0
    for i, p in enumerate(list(pred)[:k]):
        if p in relevant and p not in seen:
            hits += 1
            score += hits / (i + 1.0)
        seen.add(p)
    return score / min(len(relevant), k)


def map_at_k(predictions: Sequence[Sequence[int]], gold: Sequence, k: int = 25) -> float:
    """Mean average precision at k (``gold``: one id or a collection of ids per query)."""
    if len(predictions) != len(gold):
        raise ValueError(f"{len(predictions)} prediction lists for {len(gold)} gold entries")
    if len(gold) == 0:
        return float("nan")
    return float(np.mean([apk(p, g, k) for p, g in zip(predictions, gold)]))


def recall_at_k(predictions: Sequence[Sequence[int]], gold: Sequence, k: int) -> float:
    """Mean over queries of the share of their relevant ids in the top k."""
    if len(gold) == 0:
        return float("nan")
    return float(np.mean([len(_as_set(g) & set(list(p)[:k])) / len(_as_set(g)) for p, g in zip(predictions, gold)]))


def ranking_lists(ranking: pd.DataFrame, queries: Sequence[str]) -> list[list[int]]:
    """Turn a long ranking table into one id list per query, in ``queries`` order."""
    ordered = ranking.sort_values([QUERY, "rank"])
    grouped = ordered.groupby(QUERY, sort=False)[ITEM].apply(list).to_dict()
    return [grouped.get(q, []) for q in queries]


def evaluate(ranking: pd.DataFrame, pairs: pd.DataFrame, ks: Sequence[int] = (1, 5, 10, 25, 50, 100), k: int = 25) -> dict:
    """MAP@k (key ``map@<k>``) and Recall@ks of a ranking over the labelled rows of ``pairs``."""
    lab = labelled(pairs)
    queries = lab[QUERY].tolist()
    gold = lab[GOLD].tolist()
    preds = ranking_lists(ranking, queries)
    out = {"n_queries": len(queries), f"map@{k}": map_at_k(preds, gold, k)}
    for kk in sorted(set(ks) | {k}):
        out[f"recall@{kk}"] = recall_at_k(preds, gold, kk)
    return out


def recall_curve(ranking: pd.DataFrame, pairs: pd.DataFrame, max_k: int = 100) -> pd.Series:
    """Recall@k for k = 1..max_k (index k)."""
    lab = labelled(pairs)
    preds = ranking_lists(ranking, lab[QUERY].tolist())
    ks = np.arange(1, max_k + 1)
    if len(preds) == 0:
        return pd.Series(np.nan, index=ks, name="recall")
    found = np.zeros(max_k + 1)  # found[r]: summed share of relevant ids first hit at rank r
    for p, g in zip(preds, lab[GOLD].tolist()):
        relevant, seen = _as_set(g), set()
        for r, item in enumerate(list(p)[:max_k], start=1):
            if item in relevant and item not in seen:
                found[r] += 1.0 / len(relevant)
            seen.add(item)
    return pd.Series(np.cumsum(found)[1:] / len(preds), index=ks, name="recall")


def per_query_ap(ranking: pd.DataFrame, pairs: pd.DataFrame, k: int = 25) -> np.ndarray:
    """AP@k of each labelled row of ``pairs`` (in its order); their mean is ``evaluate``'s MAP@k."""
    lab = labelled(pairs)
    preds = ranking_lists(ranking, lab[QUERY].tolist())
    return np.array([apk(p, g, k) for p, g in zip(preds, lab[GOLD].tolist())], dtype=np.float64)


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
