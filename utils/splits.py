"""Validation splits, deterministic from a seed; no question is on both sides.

- ``v1``: questions in grouped K-fold (group = QuestionId), one fold held out.
- ``v2``: unseen misconceptions: a random share of misconceptions occurs only in validation
  (every question using one goes to validation), as in the competition's test set.
- ``v3``: grouped K-fold by ``SubjectId`` (or ``ConstructId``): whole topics held out.
- ``full``: all labelled questions train; ``test.csv`` is predicted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

SPLITS = ("v1", "v2", "v3", "full")


def make_split(
    train: pd.DataFrame,
    split: str,
    seed: int = 42,
    n_folds: int = 5,
    fold: int = 0,
    unseen_share: float = 0.2,
    val_share: float = 0.2,
    group_by: str = "SubjectId",
) -> pd.DataFrame:
    """Return ``QuestionId, fold`` with fold in {"train", "val"} for every question."""
    qids = train["QuestionId"].to_numpy()
    if split == "full":
        return pd.DataFrame({"QuestionId": qids, "fold": "train"})
    if split == "v1":
        groups = qids
    elif split == "v3":
        if group_by not in train.columns:
            raise ValueError(f"split v3: group_by column {group_by!r} not in train.csv")
        groups = train[group_by].to_numpy()
    elif split == "v2":
        return _unseen_misconception_split(train, seed, unseen_share, val_share)
    else:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold {fold} outside 0..{n_folds - 1}")
    # Shuffle groups deterministically: GroupKFold itself is not seeded.
    rng = np.random.default_rng(seed)
    uniq = np.unique(groups)
    perm = dict(zip(uniq, rng.permutation(len(uniq))))
    shuffled = np.array([perm[g] for g in groups])
    n_splits = min(n_folds, len(uniq))
    val_idx = list(GroupKFold(n_splits=n_splits).split(qids, groups=shuffled))[fold % n_splits][1]
    fold_col = np.full(len(qids), "train", dtype=object)
    fold_col[val_idx] = "val"
    return pd.DataFrame({"QuestionId": qids, "fold": fold_col})


def _unseen_misconception_split(train: pd.DataFrame, seed: int, unseen_share: float, val_share: float) -> pd.DataFrame:
    """Pick misconceptions at random; each one's questions go to validation.

    Stops once ``unseen_share`` of the labelled misconceptions are held out or validation
    holds ``val_share`` of the questions, whichever comes first (at least one).
    """
    label_cols = [c for c in train.columns if c.startswith("Misconception") and c.endswith("Id")]
    long = train.melt(id_vars="QuestionId", value_vars=label_cols, value_name="mid").dropna(subset=["mid"])
    mids = np.sort(long["mid"].astype(int).unique())
    rng = np.random.default_rng(seed)
    order = rng.permutation(mids)
    by_mid = long.groupby(long["mid"].astype(int))["QuestionId"].apply(set).to_dict()
    val_q: set[int] = set()
    held = 0
    max_q = val_share * len(train)
    for mid in order:
        if held >= max(1, unseen_share * len(mids)) or (held and len(val_q) >= max_q):
            break
        val_q |= by_mid[mid]
        held += 1
    fold = np.where(train["QuestionId"].isin(val_q), "val", "train")
    return pd.DataFrame({"QuestionId": train["QuestionId"].to_numpy(), "fold": fold})


def unseen_share(split_df: pd.DataFrame, pairs: pd.DataFrame) -> float:
    """Share of labelled validation pairs whose misconception never occurs in training."""
    fold = pairs["QuestionId"].map(split_df.set_index("QuestionId")["fold"])
    lab = pairs[pairs["MisconceptionId"].notna()]
    train_ids = set(lab.loc[fold[lab.index] == "train", "MisconceptionId"].astype(int))
    val = lab[fold[lab.index] == "val"]
    if len(val) == 0:
        return float("nan")
    return float((~val["MisconceptionId"].astype(int).isin(train_ids)).mean())
