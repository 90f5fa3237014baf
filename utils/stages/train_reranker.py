"""05 · Train the reranker (cross-encoder or LLM) on this round's recall of the training pairs."""

from __future__ import annotations

import pandas as pd

from utils import io
from utils.config import rerank_config_from
from utils.metrics import ranking_lists, recall_at_k
from utils.stages.context import RunContext
from utils.stages.ops import rank


def rerank_config(ctx: RunContext) -> dict:
    return rerank_config_from(ctx.config)



def train_reranker(ctx: RunContext) -> dict:
    """Training groups from this round's recall on the training pairs, then fine-tune the reranker."""
    from utils.rerank.data import build_rerank_train

    rc = rerank_config(ctx)
    train = ctx.train_pairs
    cands = reranker_train_candidates(ctx, rc)
    n_neg = rc["window"] - 1 if rc["family"] == "llm_listwise" else rc["n_negatives"]
    df = build_rerank_train(cands, train, ctx.misconceptions, n_neg, rc["top_k"], ctx.config["seed"])
    gold_in_head = recall_at_k(ranking_lists(cands, train["QuestionId_Answer"].tolist()),
                               train["MisconceptionId"].astype(int).tolist(), rc["top_k"])
    stats = {"family": rc["family"], "candidates": rc["candidates"], "groups": int(df["group"].nunique()),
             "rows": len(df), "gold_in_top_k_of_train_queries": gold_in_head}
    if rc["family"] == "cross_encoder":
        from utils.rerank.cross_encoder import train_cross_encoder

        model = {"default": None, None: None, "embedder": str(ctx.embedder_dir)}.get(rc["model"], rc["model"])
        train_cross_encoder(df, model, ctx.reranker_dir, epochs=rc["epochs"], lr=rc["lr"], batch_size=rc["batch_size"],
                            max_length=rc["max_length"], loss=rc["loss"], seed=ctx.config["seed"],
                            logging_steps=50, head=rc["head"], num_layers=rc["num_layers"],
                            max_groups=rc["max_groups"], retrieval_weight=rc["retrieval_weight"],
                            item_bias_l2=rc["item_bias_l2"])
    else:
        from utils.rerank.llm import train_llm_reranker

        lora = rc["lora"]
        train_llm_reranker(df, rc["model"], ctx.reranker_dir, mode=rc["family"].split("_")[1],
                           r=lora.get("r", 16), alpha=lora.get("alpha", 32), dropout=lora.get("dropout", 0.05),
                           **({"target_modules": lora["target_modules"]} if "target_modules" in lora else {}),
                           load_in_4bit=rc["load_in_4bit"], epochs=rc["epochs"], lr=rc["lr"],
                           batch_size=rc["batch_size"], max_length=rc["max_length"], seed=ctx.config["seed"])
    log = io.read_json(ctx.reranker_dir / "train_log.json", default={})
    ctx.metrics("05_train_reranker", stats)
    return {"stats": stats, "log": log, "train_df": df}



def reranker_train_candidates(ctx: RunContext, rc: dict) -> pd.DataFrame:
    """Candidates of the training pairs the reranker learns from, by ``rerank.candidates``.

    ``current``: this round's fine-tuned embedder (it was trained on these questions, so the
    gold is nearly always first); ``mining``: the model this round mined with (base model in
    round 1); ``crossfit``: out-of-fold embedders (``utils.rerank.crossfit``), candidates like those
    of unseen questions at the price of ``crossfit_folds`` extra fine-tunes.
    """
    k = max(rc["top_k"], rc["n_negatives"] + 1)
    source = rc["candidates"]
    if source == "crossfit":
        from utils.rerank.crossfit import crossfit_candidates

        return crossfit_candidates(ctx, int(rc["crossfit_folds"]), k)
    if source not in ("current", "mining"):
        raise ValueError(f"rerank.candidates {source!r}: choose current, mining or crossfit")
    return rank(ctx, ctx.embedder(source), ctx.train_pairs, k=k)



def reranker_lengths(ctx: RunContext, train_df: pd.DataFrame) -> dict:
    """Token lengths of the reranker's training inputs and their percentiles."""
    rc = rerank_config(ctx)
    if rc["family"] == "cross_encoder":
        from transformers import AutoTokenizer

        from utils.rerank.llm import length_stats

        tok = AutoTokenizer.from_pretrained(str(ctx.reranker_dir))
        enc = tok(train_df["query_text"].tolist(), train_df["MisconceptionName"].tolist(), truncation=False)
        lengths = [len(x) for x in enc["input_ids"]]
        return {"lengths": lengths, "stats": length_stats(lengths)}
    from utils.rerank.llm import prompt_length_stats
    from utils.lora import load_tokenizer

    stats = prompt_length_stats(train_df, load_tokenizer(str(ctx.reranker_dir)), mode=rc["family"].split("_")[1],
                                window=rc["window"], verbose=False)
    return {"lengths": stats.pop("lengths", []), "stats": stats}



def reranker_losses(log: dict) -> list[dict]:
    """Per-step losses of either reranker family as ``loss_curve`` points (x = fraction of training)."""
    losses = log.get("losses") or []
    return [{"epoch": (i + 1) / len(losses), "loss": float(v)} for i, v in enumerate(losses)]
