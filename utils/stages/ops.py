"""Operations the stages share: encode, rank, mine and fit with the run's config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from utils import io
from utils.config import TrainConfig
from utils.retrieval.embed import Embedder, cached_encode
from utils.retrieval.mining import mine_hard_negatives, to_flag_records
from utils.retrieval.recall import retrieve
from utils.stages.context import RunContext


def corpus_ids(ctx: RunContext) -> np.ndarray:
    return ctx.corpus["item_id"].to_numpy()


def encode_corpus(ctx: RunContext, emb: Embedder) -> np.ndarray:
    e = ctx.config["embedder"]
    return cached_encode(emb, ctx.corpus["item_text"].tolist(), ctx.cache_dir,
                         batch_size=e["batch_size"], show_progress=ctx.config["show_progress"])


def icl_pairs(ctx: RunContext, pairs: pd.DataFrame) -> pd.DataFrame:
    """``pairs`` with ``query_text`` turned into an in-context-examples prompt when ``embedder.icl`` is on."""
    icl = ctx.config["embedder"].get("icl") or {}
    if not icl.get("enabled") or pairs.empty:
        return pairs
    from utils.retrieval.icl import with_icl_queries
    from utils.tasks.base import task_icl_instruction

    return with_icl_queries(pairs, ctx.train_pairs, ctx.corpus, k=icl["k"],
                            task=task_icl_instruction(ctx.task, icl.get("task")), seed=ctx.config["seed"],
                            same_subject=icl.get("same_subject", True))


def encode_queries(ctx: RunContext, emb: Embedder, pairs: pd.DataFrame) -> np.ndarray:
    e = ctx.config["embedder"]
    return emb.encode_queries(icl_pairs(ctx, pairs)["query_text"].tolist(), batch_size=e["batch_size"],
                              show_progress=ctx.config["show_progress"])


def rank(ctx: RunContext, emb: Embedder, pairs: pd.DataFrame, k: int | None = None) -> pd.DataFrame:
    """Rank the corpus for ``pairs`` with ``emb`` (top ``recall.k``)."""
    k = k or ctx.config["recall"]["k"]
    return retrieve(pairs["query_id"].tolist(), encode_queries(ctx, emb, pairs), corpus_ids(ctx), encode_corpus(ctx, emb), k)


def mine_records(ctx: RunContext, emb: Embedder, pairs: pd.DataFrame):
    """The config's mining recipe on labelled ``pairs`` with ``emb``.

    Returns ``(records, query_emb, corpus_emb, pos_scores, neg_scores)``; records are FlagEmbedding's.
    """
    m = ctx.config["mining"]
    q = encode_queries(ctx, emb, pairs)
    c = encode_corpus(ctx, emb)
    id_to_row = {int(v): i for i, v in enumerate(corpus_ids(ctx))}
    positives = [[id_to_row[int(v)] for v in pos] for pos in pairs["positives"]]
    negs, neg_scores, pos_scores = mine_hard_negatives(
        q, c, positives, m["range_min"], m["range_max"], m["n"], m["max_score_ratio"], ctx.config["seed"])
    every_pos = [(np.asarray(c[rows], np.float32) @ np.asarray(q[i], np.float32)).tolist() for i, rows in enumerate(positives)]
    records = to_flag_records(icl_pairs(ctx, pairs), ctx.corpus, negs, neg_scores, every_pos, m["prompt"])
    return records, q, c, pos_scores, neg_scores


def fit_embedder(ctx: RunContext, records_path: Path, out_dir: Path, start: str | None = None) -> tuple[list[dict], str]:
    """The config's training recipe on the records in ``records_path``, saved to ``out_dir``.

    ``start``: the model to fine-tune (default: by ``train.init``). Returns the loss log and the start model.
    """
    from utils.retrieval.train_embedder import train_embedder

    train = dict(ctx.config["train"])
    train["seed"] = ctx.config["seed"] if train["seed"] is None else train["seed"]
    train["truncation_side"] = ctx.truncation_side  # the side 03/04 encode with
    cfg = TrainConfig.from_dict(train)
    gpus = cfg.gpus  # > 1: torchrun, one process per GPU, negatives shared across GPUs
    start = start or (ctx.mining_model if cfg.init == "previous" else ctx.base_model)  # previous: round r continues r-1
    if gpus > 1:
        from utils.retrieval.train_embedder import train_distributed

        log = train_distributed(records_path, start, out_dir, cfg, nproc=gpus)
    else:
        log = train_embedder(io.read_jsonl(records_path), start, out_dir, cfg, show_progress=ctx.config["show_progress"])
    return log, start


def save_val_pairs(ctx: RunContext) -> None:
    """The labelled pairs this round is scored on, so that ``utils.run.cv`` pools folds without the data."""
    io.write_parquet(ctx.run_dir / "val_pairs.parquet", ctx.val_pairs[["query_id", "group", "positives"]])


def length_stats(ctx: RunContext, emb: Embedder) -> pd.DataFrame:
    """Token lengths (p50, p95, max) of the training queries and the corpus under ``emb``'s tokenizer,
    and the share cut by the configured ``train.max_query_length`` / ``max_passage_length``."""
    t = ctx.config["train"]
    rows = []
    for what, texts, limit in (("query", icl_pairs(ctx, ctx.train_pairs)["query_text"], t["max_query_length"]),
                               ("passage", ctx.corpus["item_text"], t["max_passage_length"])):
        lengths = np.array([len(ids) for ids in emb.tokenizer(list(texts), truncation=False)["input_ids"]])
        rows.append({"texts": what, "n": len(lengths), "p50": float(np.percentile(lengths, 50)),
                     "p95": float(np.percentile(lengths, 95)), "max": int(lengths.max()), "train max_length": limit,
                     "share cut": float((lengths > limit).mean())})
    return pd.DataFrame(rows).set_index("texts")
