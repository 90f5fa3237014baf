"""Fuse several rankings of the same queries into one, and tune the fusion weights.

Rankings are long tables (``query_id, item_id, rank, score``; see
docs/DESIGN.md). Three weighted methods:

* ``rank_average`` -- weighted mean of ranks; a candidate missing from a ranking counts as
  rank ``depth + 1`` where depth is that ranking's deepest rank for the query.
  Fused score = minus the weighted mean rank (higher = better, as everywhere).
* ``rrf`` -- reciprocal rank fusion, ``sum_i w_i / (k + rank_i)``; missing contributes 0.
* ``score_sum`` -- ``sum_i w_i * minmax_i(score)`` with per-query min-max normalisation
  (a constant-score query normalises to 0, as in ranx); missing contributes 0.

Written with pandas/numpy rather than ``ranx.fuse``: ranx re-derives ranks from scores
(our explicit ``rank`` column may carry ties/rerank order), has no weighted RRF, and its
numba compile time would hit every notebook; tests check RRF and score_sum against ranx.
Every method is linear in the weights, so each ranking is turned once into a column of
per-candidate contributions and a weight vector costs one matrix product -- which keeps
``tune_weights``' grid search cheap.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from utils.metrics import GOLD, ITEM, QUERY, evaluate, labelled, per_query_ap

METHODS = ("rank_average", "rrf", "score_sum")
COLUMNS = (QUERY, ITEM, "rank", "score")
DEFAULT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class _Aligned:
    """Union of candidates over all rankings with one contribution column per ranking."""

    queries: np.ndarray  # query id per row
    query_codes: np.ndarray  # int code per row, codes follow sorted query ids
    items: np.ndarray  # item id per row
    contrib: np.ndarray  # (rows, n_rankings)
    method: str


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown fusion method {method!r}; choose one of {METHODS}")


def _check_ranking(df: pd.DataFrame, i: int) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"rankings[{i}] is {type(df).__name__}, expected a pandas DataFrame")
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"rankings[{i}] lacks column(s) {missing}; expected {list(COLUMNS)}")
    out = df[list(COLUMNS)].copy()
    if out[list(COLUMNS)].isna().any().any():
        bad = [c for c in COLUMNS if out[c].isna().any()]
        raise ValueError(f"rankings[{i}] has missing values in column(s) {bad}")
    if out.duplicated([QUERY, ITEM]).any():
        raise ValueError(f"rankings[{i}] lists a {ITEM} twice for the same {QUERY}")
    out[QUERY] = out[QUERY].astype(str)
    out[ITEM] = out[ITEM].astype(np.int64)
    out["rank"] = out["rank"].astype(np.int64)
    out["score"] = out["score"].astype(np.float64)
    if (out["rank"] < 1).any():
        raise ValueError(f"rankings[{i}] column 'rank' must be >= 1 (1 = best)")
    return out


def _check_weights(weights: Sequence[float] | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = np.asarray(list(weights), dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weights has {w.size} entries for {n} rankings")
    if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all 0; got {list(w)}")
    return w


def _contribution(df: pd.DataFrame, method: str, k: int) -> pd.Series:
    """Per-candidate contribution of one ranking (before weighting), indexed by (query, item)."""
    if method == "rrf":
        values = 1.0 / (k + df["rank"].to_numpy(np.float64))
    elif method == "score_sum":
        grp = df.groupby(QUERY)["score"]
        lo, hi = grp.transform("min"), grp.transform("max")
        # Same convention as ranx.min_max_norm: a zero range normalises to 0.
        values = ((df["score"] - lo) / np.maximum(hi - lo, 1e-9)).to_numpy()
    else:  # rank_average
        values = df["rank"].to_numpy(np.float64)
    return pd.Series(values, index=pd.MultiIndex.from_arrays([df[QUERY], df[ITEM]]))


def _align(rankings: Sequence[pd.DataFrame], method: str, k: int) -> _Aligned:
    _check_method(method)
    if len(rankings) == 0:
        raise ValueError("fuse needs at least one ranking")
    checked = [_check_ranking(df, i) for i, df in enumerate(rankings)]
    cols = [_contribution(df, method, k) for df in checked]
    table = pd.concat(cols, axis=1, keys=range(len(cols)), join="outer", sort=True)
    queries = table.index.get_level_values(0).to_numpy()
    if method == "rank_average":
        for i, df in enumerate(checked):
            # depth + 1 for a missing candidate; depth = this ranking's deepest rank for the
            # query, or its deepest rank overall when it does not rank the query at all.
            depth = df.groupby(QUERY)["rank"].max()
            fill = pd.Series(queries).map(depth).fillna(df["rank"].max()).to_numpy() + 1
            col = table[i].to_numpy()
            table[i] = np.where(np.isnan(col), fill, col)
    else:
        table = table.fillna(0.0)
    return _Aligned(
        queries=queries,
        query_codes=pd.factorize(queries, sort=True)[0],
        items=table.index.get_level_values(1).to_numpy(np.int64),
        contrib=table.to_numpy(np.float64),
        method=method,
    )


def _scores(al: _Aligned, w: np.ndarray) -> np.ndarray:
    score = al.contrib @ w
    return -score / w.sum() if al.method == "rank_average" else score


def _fuse_aligned(al: _Aligned, w: np.ndarray | None = None, top_k: int = 100, score: np.ndarray | None = None) -> pd.DataFrame:
    score = _scores(al, w) if score is None else score
    # Sort by query, then score (desc), then item id (asc) so ties are deterministic.
    order = np.lexsort((al.items, -score, al.query_codes))
    codes = al.query_codes[order]
    starts = np.r_[0, np.flatnonzero(np.diff(codes)) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)])) + 1
    keep = rank <= top_k
    sel = order[keep]
    return pd.DataFrame(
        {QUERY: al.queries[sel], ITEM: al.items[sel], "rank": rank[keep].astype(np.int64), "score": score[sel]}
    ).reset_index(drop=True)


def fuse(
    rankings: list[pd.DataFrame],
    method: str,
    weights: list[float] | None = None,
    top_k: int = 100,
    k: int = 60,
) -> pd.DataFrame:
    """Fuse ``rankings`` into one ranking (top ``top_k`` per query, sorted by query then rank).

    ``method`` is one of ``rank_average``, ``rrf``, ``score_sum``; ``weights`` (one per
    ranking, >= 0) default to equal; ``k`` is the RRF constant. Queries are the union over
    the rankings; ties are broken by ascending item id.
    """
    _check_method(method)
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    w = _check_weights(weights, len(rankings))
    return _fuse_aligned(_align(rankings, method, k), w, top_k)


def weight_grid(n: int, grid: Sequence[float] = DEFAULT_GRID) -> list[tuple[float, ...]]:
    """Distinct weight directions from ``grid``^n, each normalised to sum 1, equal weights first.

    All three methods are invariant to scaling the weights, so proportional vectors are
    dropped (the first occurrence, in itertools.product order, is kept).
    """
    equal = tuple([round(1.0 / n, 9)] * n)
    out, seen = [equal], {equal}
    for combo in itertools.product(sorted(set(float(g) for g in grid)), repeat=n):
        total = sum(combo)
        if total <= 0 or min(combo) < 0:
            continue
        point = tuple(round(c / total, 9) for c in combo)
        if point not in seen:
            seen.add(point)
            out.append(point)
    return out


class _GoldIndex:
    """Where each labelled query's gold id sits among the aligned rows (for fast MAP@k).

    ``utils.metrics.evaluate`` sorts every candidate list, which made a grid of ~100 weight
    points over ~1.8k x 3 x 100 candidates take ~45 s on two cores. The search instead
    counts, per query, the candidates that beat the gold id (higher fused score, or equal
    score and smaller item id -- the tie-break of ``fuse``): the same MAP@k in O(rows).
    The winner is re-scored with ``evaluate`` and the two must agree. Queries with several
    relevant ids take the exact path instead (``single`` is False): fuse, then ``per_query_ap``.
    """

    def __init__(self, al: _Aligned, pairs: pd.DataFrame, at: int = 25):
        lab = labelled(pairs)
        if lab.empty:
            raise ValueError(f"pairs_val has no labelled rows ({GOLD} all empty); nothing to tune on")
        qids = lab[QUERY].astype(str)
        if qids.duplicated().any():
            raise ValueError(f"pairs_val lists {QUERY} {qids[qids.duplicated()].iloc[0]!r} twice")
        self.at, self.pairs, self.labelled_ids = at, lab, qids.to_numpy()
        self.single = all(len(g) == 1 for g in lab[GOLD])
        gold = dict(zip(qids, [int(g[0]) for g in lab[GOLD]]))
        uniq = np.unique(al.queries)  # code order (factorize with sort=True)
        self.n_labelled = len(lab)
        self.row_gold = np.array([gold.get(q, -1) for q in uniq], dtype=np.int64)[al.query_codes]
        is_gold = al.items == self.row_gold
        self.gold_row = np.full(len(uniq), -1, dtype=np.int64)
        self.gold_row[al.query_codes[is_gold]] = np.flatnonzero(is_gold)

    def query_ap(self, al: _Aligned, score: np.ndarray) -> np.ndarray:
        """AP@k of each query (code order): 1 / rank of its gold id, 0 past k or when absent."""
        if not self.single:
            ap = dict(zip(self.labelled_ids, per_query_ap(_fuse_aligned(al, score=score, top_k=self.at), self.pairs, self.at)))
            return np.array([ap.get(q, 0.0) for q in np.unique(al.queries)])
        has = self.gold_row >= 0
        gold_score = np.where(has, score[np.maximum(self.gold_row, 0)], np.nan)[al.query_codes]
        beats = (score > gold_score) | ((score == gold_score) & (al.items < self.row_gold))
        rank = 1 + np.bincount(al.query_codes, weights=beats, minlength=len(has))
        return np.where(has & (rank <= self.at), 1.0 / rank, 0.0)

    def map_at_k(self, al: _Aligned, score: np.ndarray) -> float:
        return float(self.query_ap(al, score).sum() / self.n_labelled)


def tune_weights(
    rankings_val: list[pd.DataFrame],
    pairs_val: pd.DataFrame,
    method: str,
    grid: Sequence[float] = DEFAULT_GRID,
    k: int = 60,
    at: int = 25,
) -> tuple[list[float], float]:
    """Grid-search fusion weights maximising MAP@``at`` on validation pairs (``k``: RRF's constant).

    Returns ``(weights, map@at)`` with weights summing to 1 and the MAP from
    ``utils.metrics.evaluate``. Equal weights are tried first and only a strictly better
    point replaces the incumbent, so the result is deterministic and never worse on
    validation than equal weights.
    """
    _check_method(method)
    for col in (QUERY, GOLD):
        if col not in pairs_val.columns:
            raise ValueError(f"pairs_val lacks column {col!r}")
    al = _align(rankings_val, method, k)
    gold = _GoldIndex(al, pairs_val, at)
    best_w: tuple[float, ...] | None = None
    best_map = -np.inf
    for point in weight_grid(len(rankings_val), grid):
        score = gold.map_at_k(al, _scores(al, np.asarray(point)))
        if score > best_map + 1e-12:
            best_w, best_map = point, score
    assert best_w is not None
    checked = evaluate(_fuse_aligned(al, np.asarray(best_w), top_k=at), pairs_val, ks=(), k=at)[f"map@{at}"]
    if not np.isclose(checked, best_map, rtol=0, atol=1e-9):
        raise RuntimeError(f"internal MAP@{at} {best_map} disagrees with utils.metrics.evaluate {checked}")
    return [float(x) for x in best_w], float(checked)


def per_pair_ap(
    rankings: list[pd.DataFrame], pairs: pd.DataFrame, method: str, points: Sequence[Sequence[float]], k: int = 60,
    at: int = 25,
) -> np.ndarray:
    """AP@``at`` of every labelled row of ``pairs`` (in order) under each weight point: shape (points, pairs).

    The fast path of ``tune_weights`` (no fused table is built), for choosing fusions by
    cross-validation over many weight points at once.
    """
    al = _align(rankings, method, k)
    gold = _GoldIndex(al, pairs, at)
    lab = gold.labelled_ids
    uniq = np.unique(al.queries)
    pos = np.searchsorted(uniq, lab)
    found = (pos < len(uniq)) & (uniq[np.minimum(pos, len(uniq) - 1)] == lab)
    out = np.zeros((len(points), len(lab)))
    for i, point in enumerate(points):
        w = _check_weights(point, len(rankings))
        out[i, found] = gold.query_ap(al, _scores(al, w))[pos[found]]
    return out
