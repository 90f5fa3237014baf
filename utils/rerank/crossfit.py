"""Out-of-fold recall candidates for the reranker's training questions (cross-fitting).

The round's embedder was fine-tuned on the training questions, so its top-K for them puts the
gold first almost every time, and its negatives are what that fit left behind. At validation and
test time the reranker sees something else: the gold is missing from the top 25 for a quarter to
a third of the queries and sits lower when present. Cross-fitting gives training candidates like
those: the training questions are split into K folds (grouped by question), an embedder is
fine-tuned on K-1 folds with the round's own mining and training recipe, and it ranks the
held-out fold. Each fold's candidates are saved (``<round>/crossfit/fold_<i>/candidates.parquet``)
before the next fold starts, so an interrupted run resumes; the fold embedders are deleted once
their fold is ranked. With in-context examples on, a held-out query's examples still come from
all training questions (the same pool the round's embedder used).

Cost: K extra fine-tunes on (K-1)/K of the data each, i.e. about K-1 round trainings.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import pandas as pd

from utils import io
from utils.splits import make_split

if TYPE_CHECKING:
    from utils.stages.context import RunContext


def crossfit_folds(questions: pd.DataFrame, folds: int, seed: int) -> list[set[int]]:
    """``folds`` disjoint sets of QuestionIds covering ``questions`` (grouped K-fold, seeded)."""
    if folds < 2:
        raise ValueError(f"rerank.crossfit_folds must be >= 2, got {folds}")
    if questions["QuestionId"].nunique() < folds:
        raise ValueError(f"cross-fitting needs at least {folds} training questions, got {questions['QuestionId'].nunique()}")
    out = []
    for i in range(folds):
        split = make_split(questions, "v1", seed=seed, n_folds=folds, fold=i)
        out.append(set(split.loc[split["fold"] == "val", "QuestionId"].astype(int)))
    return out


def crossfit_candidates(ctx: "RunContext", folds: int, k: int) -> pd.DataFrame:
    """Top-``k`` candidates of every training pair, each from an embedder that never saw its question."""
    from utils.stages.ops import fit_embedder, mine_records, rank

    train = ctx.train_pairs
    questions = ctx.comp.train[ctx.comp.train["QuestionId"].isin(train["QuestionId"])]
    root = ctx.run_dir / "crossfit"
    parts = []
    for i, held in enumerate(crossfit_folds(questions, folds, ctx.config["seed"])):
        fold_dir = root / f"fold_{i}"
        path = fold_dir / "candidates.parquet"
        held_out = train[train["QuestionId"].astype(int).isin(held)]
        if not path.exists():
            fit = train[~train["QuestionId"].astype(int).isin(held)]
            # from the base model: later rounds' embedders were trained on the held-out questions too
            records = mine_records(ctx, ctx.embedder("base"), fit)[0]
            io.write_jsonl(fold_dir / "hard_negatives.jsonl", records)
            fit_embedder(ctx, fold_dir / "hard_negatives.jsonl", fold_dir / "embedder", start=ctx.base_model)
            io.write_parquet(path, rank(ctx, ctx.embedder(fold_dir / "embedder"), held_out, k))
            shutil.rmtree(fold_dir / "embedder", ignore_errors=True)
        cands = pd.read_parquet(path)
        if set(cands["QuestionId_Answer"]) != set(held_out["QuestionId_Answer"]) or (
                cands["rank"].max() < min(k, len(ctx.misconceptions))):
            raise ValueError(f"{path} was made for other training pairs or a smaller top-k; remove {root} and rerun")
        parts.append(cands)
    return pd.concat(parts, ignore_index=True)
