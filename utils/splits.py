"""Validation splits, deterministic from a seed; no query group is on both sides.

Splits deal *groups* (``group`` of the query table: an Eedi question with its wrong answers, an
OAG-AQA question), described by ``query_groups``: one row per group, in order of first
appearance, with the union of its queries' relevant ids.

- ``v1``: groups in K-fold, one fold held out.
- ``v2``: unseen items: a random share of the relevant items (Eedi: misconceptions) occurs only in
  validation (every group using one goes to validation), as in Eedi's test set.
- ``v3``: K-fold by a task field (``group_by``, e.g. Eedi's ``SubjectId``): whole topics held out.
- ``full``: all labelled groups train; the task's test queries are predicted.
- ``cv``: fold ``fold`` of a K-fold partition of the groups (``cv_folds``), for cross-validation:
  ``cv_scheme`` ``v1`` is v1's K-fold, ``v2`` gives each fold its own share of relevant items.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

SPLITS = ("v1", "v2", "v3", "full", "cv")
CV_SCHEMES = ("v1", "v2")


def query_groups(queries: pd.DataFrame) -> pd.DataFrame:
    """One row per ``group`` (first appearance order): ``positives`` = the union of its queries'
    relevant ids, and every other column's first value (what ``v3`` groups by)."""
    g = queries.groupby("group", sort=False)
    out = g.first().reset_index()
    out["positives"] = [tuple(sorted({int(i) for pos in grp for i in pos})) for _, grp in g["positives"]]
    return out


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
    """Return ``group, fold`` with fold in {"train", "val"} for every group of ``train`` (``query_groups``)."""
    qids = train["group"].to_numpy()
    if split == "full":
        return pd.DataFrame({"group": qids, "fold": "train"})
    if split == "cv":
        if not 0 <= fold < n_folds:
            raise ValueError(f"fold {fold} outside 0..{n_folds - 1}")
        assigned = cv_folds(train, cv_scheme, n_folds, seed)
        return pd.DataFrame({"group": qids, "fold": np.where(assigned == fold, "val", "train").astype(object)})
    if split == "v1":
        groups = qids
    elif split == "v3":
        if group_by not in train.columns:
            raise ValueError(f"split v3: group_by field {group_by!r} is not a column of the task's queries")
        groups = train[group_by].to_numpy()
    elif split == "v2":
        return _unseen_misconception_split(train, seed, unseen_share, val_share)
    else:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold {fold} outside 0..{n_folds - 1}")
    assigned = _grouped_kfold(groups, n_folds, seed)
    fold_col = np.where(assigned == fold % len(np.unique(assigned)), "val", "train").astype(object)
    return pd.DataFrame({"group": qids, "fold": fold_col})


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
    """Fold index (0..K-1) of every group of ``train`` (``query_groups``), in its row order.

    ``v1``: v1's K-fold (fold k of ``--split cv`` is ``--split v1`` with ``split.fold: k``).
    ``v2``: relevant items are taken in a seeded random order and each one's not yet placed groups
    go to the fold being filled, until it holds 1/K of the groups; so every fold holds out its own
    items (unseen in its training folds), as v2 does for one split. Unlabelled groups fill the
    smallest folds.
    """
    if scheme not in CV_SCHEMES:
        raise ValueError(f"unknown cv scheme {scheme!r}; choose one of {CV_SCHEMES}")
    qids = train["group"].to_numpy()
    if n_folds < 2 or n_folds > len(qids):
        raise ValueError(f"cv needs 2 <= n_folds <= {len(qids)} groups, got {n_folds}")
    if scheme == "v1":
        return _grouped_kfold(qids, n_folds, seed)
    by_mid = {mid: sorted(set(qs)) for mid, qs in _groups_by_item(train).items()}
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
    by_mid = {mid: set(qs) for mid, qs in _groups_by_item(train).items()}
    mids = np.array(sorted(by_mid), dtype=np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(mids)
    val_q: set[int] = set()
    held = 0
    max_q = val_share * len(train)
    for mid in order:
        if held >= max(1, unseen_share * len(mids)) or (held and len(val_q) >= max_q):
            break
        val_q |= by_mid[mid]
        held += 1
    fold = np.where(train["group"].isin(val_q), "val", "train")
    return pd.DataFrame({"group": train["group"].to_numpy(), "fold": fold})


def _groups_by_item(train: pd.DataFrame) -> dict[int, list]:
    """Each relevant item id -> the groups whose queries have it, in row order."""
    out: dict[int, list] = {}
    for g, pos in zip(train["group"], train["positives"]):
        for mid in pos:
            out.setdefault(int(mid), []).append(g)
    return out


def unseen_share(split_df: pd.DataFrame, pairs: pd.DataFrame) -> float:
    """Share of labelled validation queries none of whose relevant ids occurs in training."""
    fold = pairs["group"].map(split_df.set_index("group")["fold"])
    lab = [(f, set(pos)) for f, pos in zip(fold, pairs["positives"]) if len(pos)]
    train_ids = set().union(*[pos for f, pos in lab if f == "train"])
    val = [pos for f, pos in lab if f == "val"]
    if not val:
        return float("nan")
    return float(np.mean([not (pos & train_ids) for pos in val]))
