"""Validation splits, deterministic from a seed; no question is on both sides.

- ``v1``: questions in grouped K-fold (group = QuestionId), one fold held out.
- ``v2``: unseen misconceptions: a random share of misconceptions occurs only in validation
  (every question using one goes to validation), as in the competition's test set.
- ``v3``: grouped K-fold by ``SubjectId`` (or ``ConstructId``): whole topics held out.
- ``full``: all labelled questions train; ``test.csv`` is predicted.
- ``cv``: fold ``fold`` of a K-fold partition of the questions (``cv_folds``), for cross-validation:
  ``cv_scheme`` ``v1`` is v1's grouped K-fold, ``v2`` gives each fold its own share of misconceptions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

SPLITS = ("v1", "v2", "v3", "full", "cv")
CV_SCHEMES = ("v1", "v2")


def make_split(
    train: pd.DataFrame,
    split: str,
    seed: int = 42,
    n_folds: int = 5,
    fold: int = 0,
    unseen_share: float = 0.2,
    val_share: float = 0.2,
    group_by: str = "SubjectId",
    cv_scheme: str = "v1",
) -> pd.DataFrame:
    """Return ``QuestionId, fold`` with fold in {"train", "val"} for every question."""
    qids = train["QuestionId"].to_numpy()
    if split == "full":
        return pd.DataFrame({"QuestionId": qids, "fold": "train"})
    if split == "cv":
        if not 0 <= fold < n_folds:
            raise ValueError(f"fold {fold} outside 0..{n_folds - 1}")
        assigned = cv_folds(train, cv_scheme, n_folds, seed)
        return pd.DataFrame({"QuestionId": qids, "fold": np.where(assigned == fold, "val", "train").astype(object)})
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
    assigned = _grouped_kfold(groups, n_folds, seed)
    fold_col = np.where(assigned == fold % len(np.unique(assigned)), "val", "train").astype(object)
    return pd.DataFrame({"QuestionId": qids, "fold": fold_col})


def _grouped_kfold(groups: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold index (0..K-1) of each row; rows of one group share a fold."""
    # Shuffle groups deterministically: GroupKFold itself is not seeded.
    rng = np.random.default_rng(seed)
    uniq = np.unique(groups)
    perm = dict(zip(uniq, rng.permutation(len(uniq))))
    shuffled = np.array([perm[g] for g in groups])
    out = np.zeros(len(groups), dtype=np.int64)
    for k, (_, val_idx) in enumerate(GroupKFold(n_splits=min(n_folds, len(uniq))).split(groups, groups=shuffled)):
        out[val_idx] = k
    return out


def cv_folds(train: pd.DataFrame, scheme: str = "v1", n_folds: int = 5, seed: int = 42) -> np.ndarray:
    """Fold index (0..K-1) of every question of ``train``, in its row order: each question in one fold.

    ``v1``: v1's grouped K-fold (fold k of ``--split cv`` is ``--split v1`` with ``split.fold: k``).
    ``v2``: misconceptions are taken in a seeded random order and each one's not yet placed questions
    go to the fold being filled, until it holds 1/K of the questions; so every fold holds out its own
    misconceptions (unseen in its training folds), as v2 does for one split. Unlabelled questions fill
    the smallest folds.
    """
    if scheme not in CV_SCHEMES:
        raise ValueError(f"unknown cv scheme {scheme!r}; choose one of {CV_SCHEMES}")
    qids = train["QuestionId"].to_numpy()
    if n_folds < 2 or n_folds > len(qids):
        raise ValueError(f"cv needs 2 <= n_folds <= {len(qids)} questions, got {n_folds}")
    if scheme == "v1":
        return _grouped_kfold(qids, n_folds, seed)
    label_cols = [c for c in train.columns if c.startswith("Misconception") and c.endswith("Id")]
    long = train.melt(id_vars="QuestionId", value_vars=label_cols, value_name="mid").dropna(subset=["mid"])
    by_mid = long.groupby(long["mid"].astype(int))["QuestionId"].apply(lambda s: sorted(set(s))).to_dict()
    rng = np.random.default_rng(seed)
    fold_of: dict = {}
    sizes = np.zeros(n_folds, dtype=np.int64)
    target, current = len(qids) / n_folds, 0
    for mid in rng.permutation(np.array(sorted(by_mid), dtype=np.int64)):
        new = [q for q in by_mid[int(mid)] if q not in fold_of]
        if not new:
            continue
        for q in new:
            fold_of[q] = current
        sizes[current] += len(new)
        if sizes[current] >= target and current < n_folds - 1:
            current += 1
    for q in qids:
        if q not in fold_of:
            k = int(np.argmin(sizes))
            fold_of[q] = k
            sizes[k] += 1
    return np.array([fold_of[q] for q in qids], dtype=np.int64)


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
