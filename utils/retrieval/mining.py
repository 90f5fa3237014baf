"""Hard-negative mining from the current model, written as FlagEmbedding's jsonl.

Candidates are the corpus items ranked in ``[range_min, range_max)`` (1-based) for each
query; every positive is dropped; optionally items scoring above ``max_score_ratio`` × the
(first) positive's score are dropped too (likely false negatives, as in NV-Retriever); then ``n``
are sampled. Written here rather than with FlagEmbedding's ``hn_mine`` (absent from its
wheel) or sentence-transformers' ``mine_hard_negatives`` (re-encodes, no id output) so the
search is one faiss/torch call over cached embeddings.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from utils.retrieval.recall import topk


def mine_hard_negatives(
    query_emb: np.ndarray,
    corpus_emb: np.ndarray,
    positives: Sequence[int | Sequence[int]],
    range_min: int = 2,
    range_max: int = 100,
    n: int = 15,
    max_score_ratio: float | None = None,
    seed: int = 42,
    backend: str | None = None,
) -> tuple[list[list[int]], list[list[float]], np.ndarray]:
    """Return per query: sampled negative corpus *indices*, their scores, and the first positive's score.

    ``positives``: per query, the corpus index of its positive or a sequence of several (none is
    ever a negative). When fewer than ``n`` candidates survive, all are kept and the rest is
    filled with random non-positive items outside the candidate range, so every query gets
    ``n`` negatives (``n`` must be below the corpus size).
    """
    if range_min < 1 or range_max <= range_min:
        raise ValueError(f"need 1 <= range_min < range_max, got [{range_min}, {range_max})")
    n_corpus = len(corpus_emb)
    if n >= n_corpus:
        raise ValueError(f"cannot sample {n} negatives from a corpus of {n_corpus}")
    depth = min(range_max - 1, n_corpus)
    scores, idx = topk(query_emb, corpus_emb, depth, backend)
    pos_lists = [[int(p)] if np.ndim(p) == 0 else [int(x) for x in p] for p in positives]
    if any(not p for p in pos_lists):
        raise ValueError("every query needs at least one positive")
    width = max(len(p) for p in pos_lists)
    pos_pad = np.array([p + [-1] * (width - len(p)) for p in pos_lists], dtype=np.int64)  # -1: no item
    first = pos_pad[:, 0]
    pos_scores = np.einsum("ij,ij->i", np.asarray(query_emb, np.float32), np.asarray(corpus_emb, np.float32)[first])
    rng = np.random.default_rng(seed)
    cand, cand_s = idx[:, range_min - 1:], scores[:, range_min - 1:]
    keep = ~(cand[:, :, None] == pos_pad[:, None, :]).any(-1)
    if max_score_ratio is not None:
        keep &= cand_s < max_score_ratio * pos_scores[:, None]
    # Vectorised sampling without replacement (a per-query rng.choice loop took ~0.1-0.2 s for
    # 3k queries): random keys, excluded candidates keyed +inf, the n smallest keys win; the
    # winners are put back in rank order.
    keys = rng.random(cand.shape)
    keys[~keep] = np.inf
    take = min(n, cand.shape[1])
    pick = np.sort(np.argpartition(keys, take - 1, axis=1)[:, :take], axis=1) if take else np.zeros((len(cand), 0), int)
    picked_ok = np.take_along_axis(keep, pick, axis=1)
    negs = np.take_along_axis(cand, pick, axis=1).tolist()
    neg_scores = np.take_along_axis(cand_s, pick, axis=1).astype(np.float64).tolist()
    corpus32 = None
    for qi in np.flatnonzero(picked_ok.sum(1) < n):  # too few candidates survived: keep them all, fill up
        chosen = cand[qi][keep[qi]].tolist()
        chosen_s = cand_s[qi][keep[qi]].astype(np.float64).tolist()
        banned = set(idx[qi].tolist()) | set(pos_lists[qi])
        pool = np.array([i for i in range(n_corpus) if i not in banned])
        if len(pool) < n - len(chosen):  # tiny corpus: allow the excluded top ranks back
            pool = np.array([i for i in range(n_corpus) if i not in pos_lists[qi] and i not in chosen])
        extra = rng.choice(pool, size=n - len(chosen), replace=False)
        corpus32 = np.asarray(corpus_emb, np.float32) if corpus32 is None else corpus32
        chosen += extra.tolist()
        chosen_s += (corpus32[extra] @ np.asarray(query_emb[qi], np.float32)).astype(np.float64).tolist()
        negs[qi], neg_scores[qi] = [int(c) for c in chosen], chosen_s
    return negs, neg_scores, pos_scores


def to_flag_records(
    pairs: pd.DataFrame,
    corpus: pd.DataFrame,
    neg_idx: list[list[int]],
    neg_scores: list[list[float]] | None = None,
    pos_scores: Sequence | None = None,
    prompt: str = "",
) -> list[dict]:
    """FlagEmbedding finetune records: ``query``, ``pos`` (every positive), ``neg``, ``prompt`` (+ ids, scores).

    ``pairs`` must be labelled (``positives``) and aligned with ``neg_idx``; ``pos_scores[j]`` is
    one score or one per positive.
    """
    names = corpus["item_text"].tolist()
    ids = corpus["item_id"].astype(int).tolist()
    id_to_row = {m: i for i, m in enumerate(ids)}
    records = []
    for j, rec in enumerate(pairs.to_dict("records")):
        pos = [int(p) for p in rec["positives"]]
        r = {
            "query": rec["query_text"],
            "pos": [names[id_to_row[p]] for p in pos],
            "neg": [names[i] for i in neg_idx[j]],
            "prompt": prompt,
            "query_id": rec["query_id"],
            "pos_ids": pos,
            "neg_ids": [ids[i] for i in neg_idx[j]],
        }
        if neg_scores is not None and pos_scores is not None:
            r["pos_scores"] = [float(x) for x in np.atleast_1d(pos_scores[j])]
            r["neg_scores"] = [float(s) for s in neg_scores[j]]
        records.append(r)
    return records
