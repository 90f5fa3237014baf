"""06 · Rerank the validation and test candidates; blend with retrieval (alpha and item prior tuned on validation)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from utils import io
from utils.metrics import evaluate, paired_bootstrap, per_query_ap
from utils.rerank.base import get_reranker
from utils.stages.context import RunContext
from utils.stages.train_reranker import rerank_config


def score_reranker(ctx: RunContext, candidates: pd.DataFrame, pairs: pd.DataFrame) -> np.ndarray:
    """Reranker scores for the top-``top_k`` rows of ``candidates`` (in their row order)."""
    from utils.rerank.data import build_rerank_candidates

    rc = rerank_config(ctx)
    rows = build_rerank_candidates(candidates, pairs, ctx.corpus, rc["top_k"])
    return get_reranker(rc).score(rows, ctx.reranker_dir, rc)


ITEM_PRIOR_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)



def reranker_item_prior(ctx: RunContext, candidates: pd.DataFrame) -> np.ndarray:
    """Fitted bias of each head candidate's misconception (rows as ``score_reranker``'s); 0 where none.

    Only a cross-encoder trained with ``item_bias_l2`` has biases; any other reranker gets zeros.
    """
    rc = rerank_config(ctx)
    head = candidates[candidates["rank"] <= rc["top_k"]]
    names = dict(zip(ctx.corpus["item_id"].astype(int), ctx.corpus["item_text"]))
    return get_reranker(rc).item_prior([names[int(m)] for m in head["item_id"]], ctx.reranker_dir)


def _item_prior_weights(rc: dict, has_prior: bool) -> tuple[float, ...]:
    """Prior weights 06 tries: the configured one, the grid for "tune", only 0 without fitted biases."""
    weight = rc["item_prior_weight"]
    if weight == "tune":
        weights = ITEM_PRIOR_GRID
    else:
        try:
            weights = (float(weight),)
        except (TypeError, ValueError):
            raise ValueError(f"rerank.item_prior_weight {weight!r}: a number or 'tune'") from None
    return weights if has_prior else (0.0,)


# Blend weight of the reranker when it cannot be tuned (split full): the reranker alone ranks below
# the fine-tuned retriever in nearly every measured run, so an untuned run must still blend. With the
# cross-encoder of configs/gpu_retrieval.yaml and no item prior, 0.4 is the best fixed alpha averaged over
# four v2 splits (+0.014 MAP@25) and close to the best over three v1 splits (+0.011 against +0.013 at 0.3)
# (benchmarks/results/bench_rerank_seeds/).
UNTUNED_BLEND_ALPHA = 0.4



def blend_setting(rc: dict) -> float | None:
    """``rerank.blend`` as a fixed alpha, or None when it is to be tuned on validation."""
    value = rc["blend"]
    if value is True:
        return None
    if value is False:
        return 1.0
    try:
        alpha = float(value)
    except (TypeError, ValueError):
        alpha = float("nan")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"rerank.blend {value!r}: true (tune alpha on validation), false (reranker alone) "
                         "or an alpha in [0, 1]")
    return alpha



def rerank_all(ctx: RunContext) -> dict:
    """Rerank validation and test candidates; tune the blend (and the item-prior weight) on validation; save rankings."""
    from utils.rerank.blend import final_ranking, out_of_fold_ap, rerank, tune_prior_and_blend

    rc = rerank_config(ctx)
    out: dict = {}
    parts = {"val": ctx.val_pairs, "test": ctx.test_pairs}
    scores, priors = {}, {}
    for part, pairs in parts.items():
        cands = pd.read_parquet(ctx.run_dir / f"candidates_{part}.parquet")
        scores[part] = (cands, score_reranker(ctx, cands, pairs) if len(cands) else np.array([]))
        priors[part] = reranker_item_prior(ctx, cands) if len(cands) else np.array([])
    weights = _item_prior_weights(rc, any(np.any(p != 0) for p in priors.values()))
    prior_weight, fixed_alpha = weights[0], blend_setting(rc)
    tuned = bool(len(ctx.val_pairs)) and (fixed_alpha is None or len(weights) > 1)
    if tuned:
        prior_weight, alpha, _, table = tune_prior_and_blend(*scores["val"], priors["val"], weights, ctx.val_pairs,
                                                             rc["top_k"], fixed_alpha, k=ctx.k)
        if table is not None:
            out["blend_table"] = table
    else:  # nothing to tune on (split full) or nothing to tune
        alpha = UNTUNED_BLEND_ALPHA if fixed_alpha is None else fixed_alpha
    out["choice"] = {"blend_alpha": alpha, "item_prior_weight": prior_weight, "tuned_on_validation": tuned}
    out["val_scores_without_prior"] = scores["val"][1]
    if len(scores["val"][0]):  # raw head scores, for choosing alpha and the prior weight by CV (utils.run.cv)
        cands = scores["val"][0]
        head = cands[cands["rank"] <= rc["top_k"]]
        io.write_parquet(ctx.run_dir / "rerank_scores_val.parquet", pd.DataFrame({
            "query_id": head["query_id"].to_numpy(), "item_id": head["item_id"].to_numpy(),
            "reranker_score": scores["val"][1], "item_prior": priors["val"], "top_k": rc["top_k"]}))
    scores = {part: (c, s + prior_weight * priors[part]) for part, (c, s) in scores.items()}
    for part, (cands, s) in scores.items():
        ranking = final_ranking(cands, s, alpha, rc["top_k"]) if len(cands) else cands
        io.write_parquet(ctx.run_dir / f"rerank_{part}.parquet", ranking)
        out[part] = ranking
        out[f"candidates_{part}"] = cands
    if len(ctx.val_pairs):
        val = ctx.val_pairs
        reranked_only = rerank(scores["val"][0], scores["val"][1], rc["top_k"])
        out["val_scores"] = scores["val"][1]
        k = ctx.k
        retrieval_ap, groups, seed = per_query_ap(scores["val"][0], val, k), val["group"].to_numpy(), ctx.config["seed"]
        summary = {"retrieval": evaluate(scores["val"][0], val, k=k),
                   "reranker_only": evaluate(reranked_only, val, k=k),
                   "reranked": evaluate(out["val"], val, k=k), "blend_alpha": alpha,
                   "item_prior_weight": prior_weight,
                   # per-group bootstrap of the MAP@k gain (optimistic when alpha was tuned on these pairs)
                   "gain_ci": paired_bootstrap(retrieval_ap, per_query_ap(out["val"], val, k), groups=groups, seed=seed)}
        if tuned and len(np.unique(groups)) >= 2:  # the same tuning done out of fold: the gain to expect on new questions
            oof = out_of_fold_ap(scores["val"][0], out["val_scores_without_prior"], priors["val"], weights, val,
                                 rc["top_k"], fixed_alpha, seed=seed, k=k)
            summary["gain_out_of_fold"] = paired_bootstrap(retrieval_ap, oof, groups=groups, seed=seed)
            out["val_ap_out_of_fold"] = oof
        out["summary"] = summary
    # what infer / 07_export reproduce, also when there was no validation to tune on
    ctx.metrics("06_rerank", {**out.get("summary", {}), **out["choice"]})
    return out
