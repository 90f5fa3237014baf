"""Turn reranker scores into final rankings: rerank the head, blend with retrieval, tune the blend.

``scores`` arguments align either with every row of ``candidates`` (rows past ``top_k`` are
ignored and may be NaN) or with its head rows (``rank <= top_k``) in their order in
``candidates`` — the order ``utils.rerank.data.build_rerank_candidates`` yields.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from utils.metrics import evaluate, labelled, per_query_ap

QUERY = "query_id"
ITEM = "item_id"
DEFAULT_GRID = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))


def _head_scores(candidates: pd.DataFrame, scores: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """(boolean head mask over candidates rows, scores of the head rows)."""
    scores = np.asarray(scores, dtype=np.float64)
    head = candidates["rank"].to_numpy() <= top_k
    if len(scores) == len(candidates):
        return head, scores[head]
    if len(scores) == head.sum():
        return head, scores
    raise ValueError(f"{len(scores)} scores for {len(candidates)} candidates ({head.sum()} in the top {top_k})")


def _reorder(candidates: pd.DataFrame, head_mask: np.ndarray, head_scores: np.ndarray) -> pd.DataFrame:
    """Head sorted by ``head_scores`` (ties keep retrieval order), then the tail in retrieval order."""
    df = candidates[[QUERY, ITEM, "rank", "score"]].reset_index(drop=True).copy()
    df["score"] = df["score"].astype(np.float64)  # recall writes float32; reranker scores are float64
    df["_head"] = head_mask
    df["_key"] = np.where(head_mask, 0.0, np.nan)
    df.loc[head_mask, "_key"] = -head_scores
    df.loc[head_mask, "score"] = head_scores
    if np.isnan(head_scores).any():
        raise ValueError("NaN reranker score inside the top_k head")
    df = df.sort_values([QUERY, "_head", "_key", "rank"], ascending=[True, False, True, True], kind="stable")
    df["rank"] = df.groupby(QUERY, sort=False).cumcount() + 1
    return df.drop(columns=["_head", "_key"]).reset_index(drop=True)


def rerank(candidates: pd.DataFrame, scores: np.ndarray, top_k: int = 25) -> pd.DataFrame:
    """Reorder each query's top-``top_k`` candidates by ``scores``; the tail keeps its order.

    Returns a ranking table (``query_id``, ``item_id``, ``rank`` renumbered
    1..n, ``score`` = reranker score in the head, retrieval score in the tail).
    """
    mask, s = _head_scores(candidates, scores, top_k)
    return _reorder(candidates, mask, s)


def _normalise(values: np.ndarray, groups: np.ndarray, how: str) -> np.ndarray:
    df = pd.DataFrame({"g": groups, "v": values})
    grp = df.groupby("g", sort=False)["v"]
    if how == "zscore":
        std = grp.transform("std", ddof=0).to_numpy()
        return (values - grp.transform("mean").to_numpy()) / np.where(std > 1e-12, std, 1.0)
    if how == "minmax":
        lo, hi = grp.transform("min").to_numpy(), grp.transform("max").to_numpy()
        return (values - lo) / np.where(hi - lo > 1e-12, hi - lo, 1.0)
    raise ValueError(f"unknown normalisation {how!r}")


def blend(
    candidates: pd.DataFrame, rerank_scores: np.ndarray, alpha: float, top_k: int = 25, norm: str = "zscore"
) -> pd.DataFrame:
    """Rerank the head by ``alpha * reranker + (1 - alpha) * retrieval``, both normalised per query.

    ``alpha = 1`` is the reranker alone, ``alpha = 0`` keeps the retrieval order.
    ``norm``: ``"zscore"`` or ``"minmax"`` over each query's head.
    """
    mask, s = _head_scores(candidates, rerank_scores, top_k)
    groups = candidates[QUERY].to_numpy()[mask]
    retrieval = candidates["score"].to_numpy(dtype=np.float64)[mask]
    mixed = alpha * _normalise(s, groups, norm) + (1.0 - alpha) * _normalise(retrieval, groups, norm)
    return _reorder(candidates, mask, mixed)


def combine(
    candidates: pd.DataFrame, member_scores: Sequence[np.ndarray], top_k: int = 25,
    weights: Sequence[float] | None = None, norm: str = "zscore",
) -> np.ndarray:
    """Head scores of an ensemble: the weighted mean of each member's scores normalised per query.

    Members' logits live on different scales (a debiased model is flatter than a plainly trained
    one), so each is z-scored (or min-max scaled) within a query's head before averaging.
    Returns one score per head row, in ``candidates`` order (``blend`` and ``rerank`` take it).
    """
    if not len(member_scores):
        raise ValueError("combine: no member scores")
    w = np.ones(len(member_scores)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(member_scores),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"combine: need {len(member_scores)} non-negative weights with a positive sum, got {weights}")
    mixed = None
    for weight, scores in zip(w / w.sum(), member_scores):
        mask, s = _head_scores(candidates, scores, top_k)
        z = weight * _normalise(s, candidates[QUERY].to_numpy()[mask], norm)
        mixed = z if mixed is None else mixed + z
    return mixed


def tune_blend(
    candidates: pd.DataFrame,
    rerank_scores: np.ndarray,
    pairs: pd.DataFrame,
    top_k: int = 25,
    grid: Sequence[float] = DEFAULT_GRID,
    norm: str = "zscore",
    k: int = 25,
) -> tuple[float, float, pd.DataFrame]:
    """Pick the ``alpha`` in ``grid`` (0 and 1 always added) maximising MAP@k on labelled ``pairs``.

    Returns ``(best_alpha, best_map, table)`` with one row per alpha (``alpha``, ``map@<k>``,
    ``recall@1``); ties go to the smaller alpha (the cheaper, retrieval-leaning choice).
    """
    alphas = sorted({float(a) for a in grid} | {0.0, 1.0})
    rows = []
    m_key = f"map@{k}"
    for a in alphas:
        m = evaluate(blend(candidates, rerank_scores, a, top_k, norm), pairs, ks=(1,), k=k)
        rows.append({"alpha": a, m_key: m[m_key], "recall@1": m["recall@1"]})
    table = pd.DataFrame(rows)
    best = table.loc[table[m_key].idxmax()]  # idxmax returns the first (smallest) alpha on ties
    return float(best["alpha"]), float(best[m_key]), table


def final_ranking(candidates: pd.DataFrame, scores: np.ndarray, alpha: float, top_k: int = 25) -> pd.DataFrame:
    """06's ranking: the blend at ``alpha``, or the reranker's own order when ``alpha`` is 1."""
    return blend(candidates, scores, alpha, top_k) if alpha < 1.0 else rerank(candidates, scores, top_k)


def tune_prior_and_blend(
    candidates: pd.DataFrame, scores: np.ndarray, prior: np.ndarray, weights: Sequence[float],
    pairs: pd.DataFrame, top_k: int = 25, alpha: float | None = None, k: int = 25,
) -> tuple[float, float, float, pd.DataFrame | None]:
    """Best (prior weight, alpha) for the score ``scores + weight * prior`` on labelled ``pairs``.

    ``alpha=None`` tunes the blend for every weight (``tune_blend``); a number keeps it fixed.
    Ties keep the smaller weight. Returns ``(weight, alpha, map@k, table)``; ``table`` (one row
    per weight and alpha) only when alpha was tuned.
    """
    scores, prior = np.asarray(scores, np.float64), np.asarray(prior, np.float64)
    tables, best = [], None
    for w in weights:
        if alpha is None:
            a, m, table = tune_blend(candidates, scores + w * prior, pairs, top_k, k=k)
            tables.append(table.assign(item_prior_weight=w) if len(weights) > 1 else table)
        else:
            a, m = alpha, evaluate(final_ranking(candidates, scores + w * prior, alpha, top_k), pairs, k=k)[f"map@{k}"]
        if best is None or m > best[2] + 1e-12:
            best = (float(w), float(a), float(m))
    return (*best, pd.concat(tables, ignore_index=True) if tables else None)


def _spread(candidates: pd.DataFrame, scores: np.ndarray, top_k: int) -> np.ndarray:
    """Scores over every candidate row (NaN past the head), so that rows can be subset by query."""
    mask, s = _head_scores(candidates, scores, top_k)
    full = np.full(len(candidates), np.nan)
    full[mask] = s
    return full


def out_of_fold_ap(
    candidates: pd.DataFrame, scores: np.ndarray, prior: np.ndarray, weights: Sequence[float],
    pairs: pd.DataFrame, top_k: int = 25, alpha: float | None = None,
    folds: int = 2, repeats: int = 5, seed: int = 0, k: int = 25,
) -> np.ndarray:
    """Per-query AP@k (``pairs`` order) of ``tune_prior_and_blend``'s choice made out of fold.

    Groups (questions) are dealt into ``folds``; each fold is ranked with the (weight, alpha) tuned on the
    other folds' questions, and AP is averaged over ``repeats`` random deals. Its mean estimates
    what the tuned blend gains on new questions, without the optimism of tuning and scoring on
    the same pairs. (Written here because the choice spans two knobs and whole questions.)
    """
    pairs = labelled(pairs).reset_index(drop=True)
    rows_s, rows_p = _spread(candidates, scores, top_k), _spread(candidates, prior, top_k)
    qids = pairs["group"].to_numpy()
    question_of = dict(zip(pairs[QUERY], qids))
    questions = np.unique(qids)
    if len(questions) < folds:
        raise ValueError(f"out_of_fold_ap: {len(questions)} questions for {folds} folds")
    cand_q = candidates[QUERY].map(question_of).to_numpy()
    total = np.zeros(len(pairs))
    rng = np.random.default_rng(seed)
    for _ in range(repeats):
        fold_of = dict(zip(questions, rng.permutation(len(questions)) % folds))
        pair_fold = np.array([fold_of[q] for q in qids])
        cand_fold = np.array([fold_of.get(q, -1) for q in cand_q])
        for f in range(folds):
            fit, held = cand_fold != f, cand_fold == f
            w, a, _, _ = tune_prior_and_blend(candidates[fit], rows_s[fit], rows_p[fit], weights,
                                              pairs[pair_fold != f], top_k, alpha, k)
            ranked = final_ranking(candidates[held], rows_s[held] + w * rows_p[held], a, top_k)
            total[pair_fold == f] += per_query_ap(ranked, pairs[pair_fold == f], k)
    return total / repeats
