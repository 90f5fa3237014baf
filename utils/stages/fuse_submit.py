"""08 · Fuse the rounds' rankings (weights tuned on validation or chosen by CV) and write the submission."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from utils import io
from utils.config import fusion_config_from
from utils.metrics import evaluate
from utils.stages.context import RunContext, from_root


def fusion_config(ctx: RunContext) -> dict:
    return fusion_config_from(ctx.config)



def round_rankings(ctx: RunContext) -> list[tuple[str, dict[str, pd.DataFrame]]]:
    """(name, {"val": ranking, "test": ranking}) for every round/source to fuse."""
    fc = fusion_config(ctx)
    # rounds not run yet (an earlier round of the run) are left out; none left: this round alone
    rounds = range(1, ctx.round_idx + 1) if fc["rounds"] == "all" else [r for r in fc["rounds"] if r <= ctx.round_idx] or [ctx.round_idx]
    out = []
    for r in rounds:
        d = ctx.round_dir(r)
        found = [s for s in fc["sources"] if (d / f"{s}_val.parquet").exists() or (d / f"{s}_test.parquet").exists()]
        for source in found if fc["all_sources"] else found[:1]:
            parts = {p: pd.read_parquet(d / f"{source}_{p}.parquet") if (d / f"{source}_{p}.parquet").exists() else None
                     for p in ("val", "test")}
            out.append((f"round_{r}/{source}", parts))
    if not out:
        raise FileNotFoundError(f"{ctx.out_dir}: no rankings to fuse (run 04_recall first)")
    return out



def fuse_rounds(ctx: RunContext) -> dict:
    """Fuse the rankings of this and earlier rounds with weights tuned on validation, then re-score the
    result when ``fusion.prior_weight`` / ``sibling_weight`` are set (``utils.rescore``; chosen by CV).

    ``method: auto`` tries RRF, rank average and score sum and keeps the best on validation;
    the tuned weights always include equal weights, and a single ranking passes through.
    """
    from utils.rescore import item_counts, rescore

    fc = fusion_config(ctx)
    out = _fuse(ctx)
    weights = {"prior_weight": float(fc["prior_weight"]), "sibling_weight": float(fc["sibling_weight"])}
    if any(weights.values()):
        counts = item_counts(ctx.train_pairs)
        for part, queries in (("val", ctx.val_pairs), ("test", ctx.test_pairs)):
            if out[part] is not None and len(out[part]):
                out[part] = rescore(out[part], queries, counts, **weights)
        out["rescore"] = weights
    if out["val"] is not None and len(out["val"]):
        io.write_parquet(ctx.run_dir / "fused_val.parquet", out["val"])
    return out


def fusion_plan(ctx: RunContext) -> dict:
    """What 08 submits for this round before re-scoring, as the Kaggle kernel rebuilds it: ``method``,
    ``inputs`` [(round, source)] and one weight each (a single ranking: method ``none``)."""
    res = _fuse(ctx)

    def parse(name: str) -> tuple[int, str]:
        r, source = name.split("/")
        return int(r.split("_")[1]), source

    if res["method"] == "none":
        return {"method": "none", "inputs": [parse(res["source"])], "weights": [1.0]}
    return {"method": res["method"], "inputs": [parse(n) for n in res["inputs"]],
            "weights": [float(w) for w in res["weights"]], "top_k": int(fusion_config(ctx)["top_k"])}


def _fuse(ctx: RunContext) -> dict:
    """The fused (or single chosen) ranking of this and earlier rounds, as 08 makes it before re-scoring."""
    from utils.fusion import fuse, tune_weights

    fc = fusion_config(ctx)
    named = round_rankings(ctx)
    names = [n for n, _ in named]
    has_val = len(ctx.val_pairs) > 0 and all(p["val"] is not None for _, p in named)
    singles = {n: evaluate(p["val"], ctx.val_pairs, k=ctx.k) for n, p in named} if has_val else {}
    if len(named) == 1 or fc["method"] == "none":
        best = max(singles, key=lambda n: singles[n][f"map@{ctx.k}"]) if singles else names[-1]
        pick = dict(named)[best]
        return {"method": "none", "inputs": names, "weights": [1.0], "singles": singles, "val": pick["val"],
                "test": pick["test"], "source": best}
    methods = ["rrf", "rank_average", "score_sum"] if fc["method"] == "auto" else [fc["method"]]
    if fc["weights"] is not None:  # fixed (by CV): the weights of the rounds present
        if fc["method"] == "auto" or fc["rounds"] == "all" or len(fc["weights"]) != len(fc["rounds"]):
            raise ValueError("fusion.weights needs a fusion.method and one weight per entry of fusion.rounds")
        by_round = dict(zip(fc["rounds"], fc["weights"]))
        weights = [float(by_round[int(n.split("/")[0].split("_")[1])]) for n in names]
        method, tuned = fc["method"], {}
        weights = weights if sum(weights) > 0 else [1.0] * len(named)
    elif has_val:
        tuned = {m: tune_weights([p["val"] for _, p in named], ctx.val_pairs, m, at=ctx.k) for m in methods}
        method = max(tuned, key=lambda m: tuned[m][1])
        weights = list(tuned[method][0])
    else:  # split=full: no validation; equal-weight RRF is the safe default
        method, weights, tuned = (methods[0] if fc["method"] != "auto" else "rrf"), [1.0] * len(named), {}
    fused = {p: fuse([r[p] for _, r in named], method, weights, fc["top_k"])
             for p in ("val", "test") if all(r[p] is not None and len(r[p]) for _, r in named)}
    return {"method": method, "inputs": names, "weights": weights, "singles": singles,
            "tuned": {m: v[1] for m, v in tuned.items()}, "val": fused.get("val"), "test": fused.get("test"),
            "source": f"fused({method})"}



def submit(ctx: RunContext, ranking: pd.DataFrame) -> Path | None:
    """Write and validate the task's submission (Eedi: ``submission.csv``) for its test queries in the
    round, in ``<out>/`` and in ``<submission.dir>/<run>/``.

    All or none: built and validated once, staged beside every target, then renamed into place,
    so a failure leaves none of this call's copies.
    """
    from contextlib import ExitStack

    if ctx.test_pairs.empty:
        return None
    name = ctx.task.submission_file
    path = ctx.run_dir / name
    targets = [path, ctx.out_dir / name]
    if ctx.config["submission"].get("dir"):
        targets.append(from_root(ctx.config["submission"]["dir"]) / ctx.out_dir.name / name)
    with ExitStack() as stack:  # each staged file is renamed onto its target only if the block succeeds
        staged = [stack.enter_context(io.atomic_path(t)) for t in targets]
        ctx.task.write_submission(ranking, ctx.data, staged[0])
        ctx.task.validate_submission(staged[0], ctx.data)
        for tmp in staged[1:]:
            tmp.write_bytes(staged[0].read_bytes())
    return path
