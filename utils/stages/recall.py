"""04 · Top-K candidates of the validation and test pairs from this round's embedder."""

from __future__ import annotations

import pandas as pd

from utils import io
from utils.metrics import evaluate
from utils.stages.context import RunContext
from utils.stages.ops import rank, save_val_pairs


def recall_candidates(ctx: RunContext) -> dict[str, pd.DataFrame]:
    """Top-K candidates of validation and test pairs from this round's embedder (parquet)."""
    emb = ctx.embedder("current")
    out = {}
    for name, pairs in (("val", ctx.val_pairs), ("test", ctx.test_pairs)):
        ranking = rank(ctx, emb, pairs) if len(pairs) else pd.DataFrame(columns=["query_id", "item_id", "rank", "score"])
        io.write_parquet(ctx.run_dir / f"candidates_{name}.parquet", ranking)
        out[name] = ranking
    if len(ctx.val_pairs):
        ctx.metrics("04_recall", {"val": evaluate(out["val"], ctx.val_pairs, k=ctx.k)})
    save_val_pairs(ctx)
    return out
