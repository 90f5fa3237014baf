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
    ctx.metrics("03_eval_embedder", {name: evaluate(v, val, k=ctx.k) for name, v in out.items()})
    return out



def per_group_map(ranking: pd.DataFrame, pairs: pd.DataFrame, column: str = "SubjectName", k: int = 25) -> pd.DataFrame:
    """MAP@k per value of ``column`` (a task field, e.g. Eedi's subject), with counts, best first."""
    rows = []
    for value, grp in pairs.groupby(column):
        r = evaluate(ranking[ranking["query_id"].isin(grp["query_id"])], grp, k=k)
        rows.append({column: value, "n": len(grp), f"map@{k}": r[f"map@{k}"], f"recall@{k}": r[f"recall@{k}"]})
    return pd.DataFrame(rows).sort_values(["n", f"map@{k}"], ascending=False).reset_index(drop=True)
