"""05 · Train the reranker (cross-encoder or LLM) on this round's recall of the training pairs."""

from __future__ import annotations

import pandas as pd

from utils import io
from utils.config import rerank_config_from
from utils.metrics import ranking_lists, recall_at_k
from utils.rerank.base import get_reranker
from utils.stages.context import RunContext
from utils.stages.ops import rank


def rerank_config(ctx: RunContext) -> dict:
    """This round's ``rerank`` config section over the defaults; ``prompts``: the task's wording under the config's."""
    from utils.tasks.base import task_prompts

    rc = rerank_config_from(ctx.config)
    return {**rc, "prompts": task_prompts(ctx.task, rc["prompts"])}


def train_reranker(ctx: RunContext) -> dict:
    """Training groups from this round's recall on the training pairs, then fine-tune the reranker."""
    from utils.rerank.data import build_rerank_train

    rc = rerank_config(ctx)
    reranker = get_reranker(rc)
    train = ctx.train_pairs
    cands = reranker_train_candidates(ctx, rc)
    df = build_rerank_train(cands, train, ctx.corpus, reranker.n_negatives(rc), rc["top_k"], ctx.config["seed"])
    gold_in_head = recall_at_k(ranking_lists(cands, train["query_id"].tolist()), train["positives"].tolist(), rc["top_k"])
    stats = {"family": rc["family"], "candidates": rc["candidates"], "groups": int(df["group"].nunique()),
             "rows": len(df), "gold_in_top_k_of_train_queries": gold_in_head}
    reranker.train(df, ctx.reranker_dir, rc, ctx.config["seed"], embedder_dir=ctx.embedder_dir)
    log = io.read_json(ctx.reranker_dir / "train_log.json", default={})
    ctx.metrics("05_train_reranker", stats)
    return {"stats": stats, "log": log, "train_df": df}


CANDIDATE_SOURCES = ("current", "mining")


def reranker_train_candidates(ctx: RunContext, rc: dict) -> pd.DataFrame:
    """Candidates of the training pairs the reranker learns from, by ``rerank.candidates``.

    ``current``: this round's fine-tuned embedder (it was trained on these questions, so the
    gold is nearly always first); ``mining``: the model this round mined with (base model in round 1).
    """
    k = max(rc["top_k"], rc["n_negatives"] + 1)
    source = rc["candidates"]
    if source not in CANDIDATE_SOURCES:
        raise ValueError(f"rerank.candidates {source!r}: choose {' or '.join(CANDIDATE_SOURCES)}")
    return rank(ctx, ctx.embedder(source), ctx.train_pairs, k=k)


def reranker_lengths(ctx: RunContext, train_df: pd.DataFrame) -> dict:
    """Token lengths of the reranker's training inputs and their percentiles."""
    rc = rerank_config(ctx)
    return get_reranker(rc).length_stats(train_df, ctx.reranker_dir, rc)


def reranker_losses(log: dict) -> list[dict]:
    """Per-step losses of either reranker family as ``loss_curve`` points (x = fraction of training)."""
    losses = log.get("losses") or []
    return [{"epoch": (i + 1) / len(losses), "loss": float(v)} for i, v in enumerate(losses)]
