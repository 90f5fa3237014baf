"""01 · Mine hard negatives for the labelled training pairs with the round's mining model."""

from __future__ import annotations

import numpy as np

from utils import io
from utils.metrics import evaluate
from utils.retrieval.recall import retrieve
from utils.stages.context import RunContext
from utils.stages.ops import corpus_ids, mine_records


def mine(ctx: RunContext) -> tuple[list[dict], dict]:
    """Mine hard negatives for the labelled training pairs; write ``hard_negatives.jsonl``."""
    m = ctx.config["mining"]
    emb = ctx.embedder("mining")
    train = ctx.train_pairs
    if train.empty:
        raise ValueError("no labelled training pairs in this split")
    records, q, c, pos_scores, neg_scores = mine_records(ctx, emb, train)
    io.write_jsonl(ctx.run_dir / "hard_negatives.jsonl", records)
    ranking = retrieve(train["query_id"].tolist(), q, corpus_ids(ctx), c, 100)
    stats = {"mining_model": emb.name_or_path, "n_queries": len(records), "n_negatives": m["n"],
             f"train_map@{ctx.k}_of_mining_model": evaluate(ranking, train, k=ctx.k)[f"map@{ctx.k}"],
             "mean_pos_score": float(np.mean(pos_scores)),
             "mean_neg_score": float(np.mean([s for r in neg_scores for s in r]))}
    ctx.metrics("01_mine_hn", stats)
    return records, stats
