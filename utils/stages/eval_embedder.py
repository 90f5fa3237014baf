"""03 · Score the base and the fine-tuned embedder on the validation pairs."""

from __future__ import annotations

import pandas as pd

from utils import io
from utils.metrics import evaluate
from utils.stages.context import RunContext
from utils.stages.ops import rank, save_val_pairs


def evaluate_embedders(ctx: RunContext) -> dict[str, pd.DataFrame]:
    """Rankings of the validation pairs by the base and the fine-tuned embedder."""
    val = ctx.val_pairs
    out = {}
    for name in ("base", "current"):
        out["finetuned" if name == "current" else name] = rank(ctx, ctx.embedder(name), val)
    io.write_parquet(ctx.run_dir / "base_val.parquet", out["base"])  # the zero-shot stage of a CV report
    save_val_pairs(ctx)
    ctx.metrics("03_eval_embedder", {k: evaluate(v, val) for k, v in out.items()})
    return out



def per_group_map(ranking: pd.DataFrame, pairs: pd.DataFrame, column: str = "SubjectName") -> pd.DataFrame:
    """MAP@25 per value of ``column`` (e.g. subject), with counts, best first."""
    rows = []
    for value, grp in pairs.groupby(column):
        r = evaluate(ranking[ranking["QuestionId_Answer"].isin(grp["QuestionId_Answer"])], grp)
        rows.append({column: value, "n": len(grp), "map@25": r["map@25"], "recall@25": r["recall@25"]})
    return pd.DataFrame(rows).sort_values(["n", "map@25"], ascending=False).reset_index(drop=True)
