"""02 · Fine-tune the embedder on this round's hard negatives."""

from __future__ import annotations

from utils.stages.context import RunContext
from utils.stages.ops import fit_embedder


def train(ctx: RunContext) -> list[dict]:
    """Fine-tune the base model (or the previous round's, see ``train.init``) on this round's negatives."""
    log, start = fit_embedder(ctx, ctx.run_dir / "hard_negatives.jsonl", ctx.embedder_dir)
    ctx.metrics("02_train_embedder", {"start_model": start, "steps": log[-1]["step"] + 1,
                                      "final_loss": log[-1]["loss"], "texts_per_s": log[-1]["texts_per_s"]})
    return log
