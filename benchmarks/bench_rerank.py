"""Cross-encoder variants on real data: does reranking beat the fine-tuned retriever?

Per split: one round of mine -> fine-tune -> recall (the config's recipe), then each reranker
variant is trained on that round's candidates and scored on validation. Reported per variant:
MAP@k (the task's k, Eedi 25) of the retriever alone, of the reranker's own order (head reranked, tail kept), and of
the retrieval/reranker blend tuned on validation (with its alpha), of the same tuning done
out-of-fold (``utils.rerank.blend.out_of_fold_ap``: the honest estimate of the tuned gain), plus seconds.
``--ensembles a+b`` also scores the z-scored mean of variants a and b.

    python benchmarks/bench_rerank.py --config configs/gpu_retrieval.yaml --splits v1,v2          # GPU
    python benchmarks/bench_rerank.py --variants mean_minilm --splits v1 --limit-train 200  # CPU smoke
    python benchmarks/bench_rerank.py --splits v2 --variants poe0.1_15neg_4ep,mean_embedder_15neg_8ep \
        --ensembles poe0.1_15neg_4ep+mean_embedder_15neg_8ep --seed 2

Results are written after every variant, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, default_data_dir, machine_info, resolve_model_arg, write_results  # noqa: E402

from utils import stages  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.metrics import evaluate, paired_bootstrap, per_query_ap  # noqa: E402
from utils.rerank.blend import blend, combine, out_of_fold_ap, rerank, tune_blend  # noqa: E402

# name -> rerank-config overrides on top of the config file's rerank section and SHORT (so a
# variant means the same whatever the config's own epochs / negatives are); "default" = MiniLM.
SHORT = {"model": "default", "head": "mean", "num_layers": None, "max_groups": None, "epochs": 1, "n_negatives": 7,
         "candidates": "current", "item_bias_l2": None}
VARIANTS = {
    "cls_minilm": {**SHORT, "head": "cls"},  # the earlier default: [CLS] sequence-classification head
    "mean_minilm": SHORT,
    "mean_minilm_3layers": {**SHORT, "num_layers": 3},  # the CPU default's shape
    "mean_embedder": {**SHORT, "model": "embedder"},  # init from this round's fine-tuned embedder
    "mean_embedder_15neg_2ep": {**SHORT, "model": "embedder", "n_negatives": 15, "epochs": 2},
    "mean_embedder_15neg_4ep": {**SHORT, "model": "embedder", "n_negatives": 15, "epochs": 4},  # configs/gpu_retrieval.yaml
    "mean_minilm_15neg_4ep": {**SHORT, "n_negatives": 15, "epochs": 4},
    "mean_embedder_15neg_8ep": {**SHORT, "model": "embedder", "n_negatives": 15, "epochs": 8},
    # training candidates from the mining model instead of this round's (out-of-fold "crossfit" candidates and the
    # residual head were measured here too, no better than "current", and removed from the suite)
    "mining_cands_15neg_4ep": {**SHORT, "model": "embedder", "n_negatives": 15, "epochs": 4, "candidates": "mining"},
    # product of experts with a fitted per-misconception bias (item_bias_l2): no memorised gold prior
    # (06 tunes the bias's weight at scoring, item_prior_weight "tune"; the fixed-alpha columns score without it)
    "poe0.1_15neg_8ep": {**SHORT, "model": "embedder", "n_negatives": 15, "epochs": 8, "item_bias_l2": 0.1},
    "poe1_15neg_8ep": {**SHORT, "model": "embedder", "n_negatives": 15, "epochs": 8, "item_bias_l2": 1.0},
    "poe0.1_15neg_4ep": {**SHORT, "model": "embedder", "n_negatives": 15, "epochs": 4, "item_bias_l2": 0.1},
    # the same, reranking (and drawing training negatives from) the top 50 instead of the config's top_k
    "poe0.1_15neg_4ep_top50": {**SHORT, "model": "embedder", "n_negatives": 15, "epochs": 4, "item_bias_l2": 0.1,
                               "top_k": 50},
    "poe0.01_15neg_8ep": {**SHORT, "model": "embedder", "n_negatives": 15, "epochs": 8, "item_bias_l2": 0.01},
    "poe0.01_15neg_4ep": {**SHORT, "model": "embedder", "n_negatives": 15, "epochs": 4, "item_bias_l2": 0.01},
}
for _name, _variant in VARIANTS.items():  # with a fitted bias, 06 tunes its weight beside the blend's alpha
    if _variant.get("item_bias_l2") is not None:
        _variant["item_prior_weight"] = "tune"
FIXED_ALPHA = 0.5  # a blend weight chosen before looking at validation, next to the tuned one


def _records(table) -> list | None:
    return None if table is None else table.to_dict("records")


def _by_gold_seen(rankings: dict, val, train, k: int = 25) -> dict:
    """MAP@k of each ranking on validation queries with / without a positive that was a training positive.

    A reranker that memorised which misconceptions were gold in training ranks the unseen ones
    (split v2's point, and much of the competition's test set) too low. "Unseen" = none of the
    query's positives occurs in training (``utils.splits.unseen_share``).
    """
    train_ids = {int(i) for pos in train["positives"] for i in pos}
    seen = np.array([any(int(i) in train_ids for i in pos) for pos in val["positives"]], dtype=bool)
    out = {"unseen_share": float(1 - seen.mean())}
    for name, ranking in rankings.items():
        ap = per_query_ap(ranking, val, k)
        out[name] = {"seen": float(ap[seen].mean()) if seen.any() else None,
                     "unseen": float(ap[~seen].mean()) if (~seen).any() else None}
    return out


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/gpu_retrieval.yaml")
    ap.add_argument("--splits", default="v1,v2")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {list(VARIANTS)}")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--model", default=None, help="embedder and cross-encoder init (default: bundled MiniLM)")
    ap.add_argument("--limit-train", type=int, default=None, help="smoke runs: keep the first N labelled training queries")
    ap.add_argument("--seed", type=int, default=None, help="override the config's seed (split, mining, training)")
    ap.add_argument("--ensembles", default="", help="comma-separated a+b combos of --variants to score as an ensemble")
    ap.add_argument("--work", default=None)
    ap.add_argument("--out", default=str(RESULTS / "bench_rerank.json"))
    args = ap.parse_args(argv)

    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; known: {list(VARIANTS)}")
    model = resolve_model_arg(args.model)
    run_variants = {n: VARIANTS[n] for n in args.variants.split(",")}
    cfg = load_config(args.config)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir(cfg["data"]["task"])
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_rerank_"))
    work.mkdir(parents=True, exist_ok=True)
    cfg["embedder"]["model"] = model
    if args.seed is not None:
        cfg["seed"] = args.seed
    base_rerank = dict(cfg.get("rerank", {}))
    cfg["submission"]["dir"] = None
    cfg_path = work / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    machine = machine_info("cuda" if __import__("torch").cuda.is_available() else "cpu")
    detail: dict = {}
    for split in args.splits.split(","):
        ctx = stages.context.load_context(work / split / "round_1", data_dir, split, 1, cfg_path)
        if args.limit_train:  # smoke runs: the other training pairs leave the run
            drop = set(ctx.train_pairs["query_id"].iloc[args.limit_train:])
            ctx.pairs = ctx.pairs[~ctx.pairs["query_id"].isin(drop)].reset_index(drop=True)
        t0 = time.perf_counter()
        stages.mine_hn.mine(ctx)
        stages.train_embedder.train(ctx)
        stages.eval_embedder.evaluate_embedders(ctx)
        stages.recall.recall_candidates(ctx)
        round_s = time.perf_counter() - t0
        kept: dict = {}  # variant -> validation scores without the item prior (for --ensembles)
        for name in args.variants.split(","):
            rc = {**base_rerank, **VARIANTS[name]}
            rc["model"] = model if rc["model"] == "default" else rc["model"]
            ctx.config["rerank"] = rc
            t0 = time.perf_counter()
            stages.train_reranker.train_reranker(ctx)
            t_train = time.perf_counter() - t0
            log = json.loads((ctx.reranker_dir / "train_log.json").read_text())
            t0 = time.perf_counter()
            rr = stages.rerank.rerank_all(ctx)
            t_score = time.perf_counter() - t0
            kept[name] = rr["val_scores_without_prior"]
            s = rr["summary"]
            # 06 tunes nothing when the config fixes alpha and the prior weight (configs/gpu_retrieval.yaml): no
            # optimism to remove, so the out-of-fold AP is the fixed ranking's own
            cv_ap = rr.get("val_ap_out_of_fold")
            if cv_ap is None:
                cv_ap = per_query_ap(rr["val"], ctx.val_pairs, ctx.k)
            row, extra = _measure(ctx, rr["candidates_val"], rr["val_scores_without_prior"], rr["val"],
                                  cv_ap, s, rc["top_k"])
            row.update({"split": split, "variant": name, "s train": round(t_train, 1), "s score": round(t_score, 1)})
            detail[f"{split}/{name}"] = {"rerank_config": rc, "summary": s, "seconds_train": t_train,
                                         "seconds_score": t_score, "round_seconds": round_s, "train_log": log,
                                         "blend_table": _records(rr.get("blend_table")), **extra}
            _report(args, row, machine, cfg, data_dir, detail, run_variants, model)
        for combo in filter(None, args.ensembles.split(",")):
            members = combo.split("+")
            if not set(members) <= set(kept):
                raise SystemExit(f"ensemble {combo}: run its members ({members}) in --variants too")
            cands = pd.read_parquet(ctx.run_dir / "candidates_val.parquet")
            top_k = base_rerank.get("top_k", 25)
            mixed = combine(cands, [kept[m] for m in members], top_k)
            val, k = ctx.val_pairs, ctx.k
            alpha, _, table = tune_blend(cands, mixed, val, top_k, k=k)
            tuned = blend(cands, mixed, alpha, top_k)
            s = {"retrieval": evaluate(cands, val, k=k), "reranker_only": evaluate(rerank(cands, mixed, top_k), val, k=k),
                 "reranked": evaluate(tuned, val, k=k), "blend_alpha": alpha, "item_prior_weight": 0.0,
                 "gain_ci": paired_bootstrap(per_query_ap(cands, val, k), per_query_ap(tuned, val, k),
                                             groups=val["group"].to_numpy(), seed=cfg["seed"])}
            cv_ap = out_of_fold_ap(cands, mixed, np.zeros(len(mixed)), (0.0,), val, top_k, seed=cfg["seed"], k=k)
            row, extra = _measure(ctx, cands, mixed, tuned, cv_ap, s, top_k)
            row.update({"split": split, "variant": f"ensemble:{combo}"})
            detail[f"{split}/ensemble:{combo}"] = {"members": members, "summary": s, "blend_table": _records(table), **extra}
            _report(args, row, machine, cfg, data_dir, detail, run_variants, model)


def _measure(ctx, cands, raw, tuned_ranking, cv_ap, s: dict, top_k: int) -> tuple[dict, dict]:
    """(table row, detail) of one reranker's validation scores: fixed-alpha, tuned, out-of-fold gains, seen/unseen.

    ``cv_ap``: per-query AP of the tuning done out of fold (06's ``val_ap_out_of_fold``).
    """
    val, k = ctx.val_pairs, ctx.k
    retrieval_ap = per_query_ap(cands, val, k)
    groups = val["group"].to_numpy()
    fixed = blend(cands, raw, FIXED_ALPHA, top_k)  # the (debiased) model alone, alpha chosen blind
    fixed_ap = per_query_ap(fixed, val, k)
    ci = paired_bootstrap(retrieval_ap, fixed_ap, groups=groups)
    ci_cv = paired_bootstrap(retrieval_ap, cv_ap, groups=groups)
    ci_tuned = s["gain_ci"]  # 06's own interval for its tuned ranking
    by_seen = _by_gold_seen({"retrieval": cands, "reranker": rerank(cands, raw, top_k), "blend": fixed,
                             "tuned": tuned_ranking}, val, ctx.train_pairs, k)
    m = f"map@{k}"
    row = {"seed": ctx.config["seed"], "val_pairs": len(val),
           f"retrieval MAP@{k}": s["retrieval"][m],
           f"reranker-only MAP@{k}": s["reranker_only"][m],
           f"blend MAP@{k}": s["reranked"][m], "alpha": s["blend_alpha"],
           "prior weight": s.get("item_prior_weight", 0.0),
           f"blend@{FIXED_ALPHA} MAP@{k}": float(fixed_ap.mean()),
           f"gain@{FIXED_ALPHA} 95% CI": f"{ci['lo']:+.3f} .. {ci['hi']:+.3f}",
           "gain (tuned) 95% CI": f"{ci_tuned['lo']:+.3f} .. {ci_tuned['hi']:+.3f}",
           "gain (cv-tuned)": ci_cv["gain"], "gain (cv-tuned) 95% CI": f"{ci_cv['lo']:+.3f} .. {ci_cv['hi']:+.3f}",
           "gain (reranker-only)": s["reranker_only"][m] - s["retrieval"][m],
           "gain (blend)": s["reranked"][m] - s["retrieval"][m],
           f"R@{k}": s["reranked"][f"recall@{k}"],
           "unseen golds": f"{by_seen['unseen_share']:.0%}",
           "MAP unseen: retr / rerank / blend@0.5 / tuned": " / ".join(
               _fmt(by_seen[k]["unseen"]) for k in ("retrieval", "reranker", "blend", "tuned")),
           "MAP seen: retr / rerank / blend@0.5 / tuned": " / ".join(
               _fmt(by_seen[k]["seen"]) for k in ("retrieval", "reranker", "blend", "tuned"))}
    extra = {"gain_fixed_alpha": ci, "gain_tuned": ci_tuned, "gain_cv_tuned": ci_cv, "by_gold_seen": by_seen,
             "per_query_ap": {"retrieval": retrieval_ap.tolist(), "tuned": per_query_ap(tuned_ranking, val, k).tolist(),
                              "cv_tuned": cv_ap.tolist(), "fixed": fixed_ap.tolist()},
             "val_questions": groups.tolist(), "k": k}
    return row, extra


def _report(args, row: dict, machine: dict, cfg: dict, data_dir, detail: dict, run_variants: dict, model: str) -> None:
    print(row, flush=True)
    result = {"machine": machine, "config": cfg, "data_dir": str(data_dir), "k": int(cfg["submission"]["k"]),
              "runs": detail}
    write_results(args.out, result, "Cross-encoder variants on real data: retriever vs reranked (validation)",
                  [row], notes=[f"config {args.config}; model {model}; variants: {run_variants}; ensembles: {args.ensembles or '-'}",
                                f"gain@{FIXED_ALPHA} 95% CI: MAP@k gain of the blend at the fixed alpha over retrieval, "
                                "bootstrap over validation questions (utils.metrics.paired_bootstrap)",
                                "gain (cv-tuned): 06's prior weight and alpha tuned on half the validation questions and "
                                "scored on the other half (2 folds, 5 random deals): the tuned gain without its optimism",
                                "ensemble:a+b: the members' scores (without prior) z-scored per query and averaged, then "
                                "blended with retrieval at a tuned alpha",
                                "MAP unseen / seen: validation queries none of whose positives was / one of whose "
                                "positives was a positive of a training query; retr = retrieval, rerank = reranker alone, blend at the fixed alpha, tuned = 06's ranking "
                                "(alpha and, with a fitted bias, its weight tuned on validation)"])

if __name__ == "__main__":
    main()
