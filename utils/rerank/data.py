"""Reranker data: training groups (gold + hard negatives) and scoring frames from recall candidates.

Both outputs are long tables with the texts attached, so every reranker (cross-encoder, LLM
pointwise, LLM listwise) reads the same columns:
``query_id``, ``query_text``, ``item_id``, ``item_text`` (+ the task's other query columns, e.g.
Eedi's ``QuestionText``, which a task's LLM prompt may name).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from utils.metrics import labelled

QUERY = "query_id"
ITEM = "item_id"
NAME = "item_text"
# Columns of ``pairs`` not carried along: labels, folds and names the reranker tables use themselves.
NOT_CARRIED = {"positives", "group", "fold", ITEM, NAME, "label", "rank", "score", "retrieval_score", "gold_injected"}


def _query_columns(pairs: pd.DataFrame) -> pd.DataFrame:
    """The query columns prompts may name (``query_text`` and any task field), one row per query."""
    cols = [QUERY, "query_text"] + [c for c in pairs.columns if c not in NOT_CARRIED and c not in (QUERY, "query_text")]
    return pairs[cols].drop_duplicates(QUERY)


def build_rerank_train(
    candidates: pd.DataFrame,
    pairs: pd.DataFrame,
    corpus: pd.DataFrame,
    n_negatives: int = 7,
    top_k: int = 25,
    seed: int = 0,
) -> pd.DataFrame:
    """One group per (labelled query, positive): the positive + ``n_negatives`` hard negatives
    sampled from the query's top-``top_k`` candidates.

    No positive of the query is ever a negative; a positive its recall missed is still trained on
    (injected). Queries with fewer than ``n_negatives`` non-positive candidates keep what they have.
    Sampling is seeded per call, so the same inputs give the same table. Output columns:
    ``group`` (int, one per query and positive), ``query_id``, ``query_text``, ``item_id``,
    ``item_text``, ``label`` (1 positive / 0 negative), ``retrieval_score`` (the candidate's
    score; for an injected positive the lowest head score, an upper bound; NaN when ``candidates``
    has no ``score``), ``gold_injected``, plus the context columns of ``pairs``; within a group
    the positive row comes first.
    """
    lab = labelled(pairs).drop_duplicates(QUERY)
    head = candidates[candidates["rank"] <= top_k].sort_values([QUERY, "rank"])
    has_score = "score" in head.columns
    cands = {q: (g[ITEM].astype(int).tolist(), g["score"].astype(float).tolist() if has_score else None)
             for q, g in head.groupby(QUERY, sort=False)}
    rng = np.random.default_rng(seed)
    rows = []
    group = 0
    for qid, positives in zip(lab[QUERY], lab["positives"]):
        positives = [int(p) for p in positives]
        ids, scores = cands.get(qid, ([], None))
        score_of = dict(zip(ids, scores)) if scores else {}
        pool = [c for c in ids if c not in positives]
        for g in positives:
            take = min(n_negatives, len(pool))
            negs = [pool[i] for i in sorted(rng.choice(len(pool), size=take, replace=False))] if take else []
            # an injected positive ranked below the head: its score is at most the head's lowest
            gold_score = score_of.get(g, min(scores) if scores else np.nan)
            rows.append((group, qid, g, 1, gold_score, g not in score_of))
            rows.extend((group, qid, n, 0, score_of.get(n, np.nan), False) for n in negs)
            group += 1
    out = pd.DataFrame(rows, columns=["group", QUERY, ITEM, "label", "retrieval_score", "gold_injected"])
    return _attach_texts(out, pairs, corpus)


def build_rerank_candidates(
    candidates: pd.DataFrame, pairs: pd.DataFrame, corpus: pd.DataFrame, top_k: int = 25
) -> pd.DataFrame:
    """Top-``top_k`` candidates of each query with texts attached, in ``candidates``' row order.

    Scorers return scores in this row order, which is what ``utils.rerank.blend.rerank`` / ``blend``
    expect for head-aligned scores, so they can be passed straight on.
    """
    head = candidates[candidates["rank"] <= top_k]
    return _attach_texts(head.reset_index(drop=True), pairs, corpus)


def _attach_texts(df: pd.DataFrame, pairs: pd.DataFrame, corpus: pd.DataFrame) -> pd.DataFrame:
    names = corpus[[ITEM, NAME]].astype({ITEM: int})
    out = df.astype({ITEM: int}).merge(_query_columns(pairs), on=QUERY, how="left", validate="many_to_one")
    out = out.merge(names, on=ITEM, how="left", validate="many_to_one")
    missing = out[NAME].isna() | out["query_text"].isna()
    if missing.any():
        raise KeyError(f"{int(missing.sum())} rows lack a query text or item text")
    return out
