"""Write and validate Kaggle's ``QuestionId_Answer,MisconceptionId`` submission."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from .io import write_csv
from .metrics import ranking_lists

COLUMNS = ["QuestionId_Answer", "MisconceptionId"]


class SubmissionError(ValueError):
    """The submission is not what Kaggle accepts; the message names the row."""


def build_submission(ranking: pd.DataFrame, query_ids: Iterable[str], k: int = 25) -> pd.DataFrame:
    """Top-``k`` unique ids per query, space-separated, in ``query_ids`` order."""
    query_ids = list(query_ids)
    lists = ranking_lists(ranking, query_ids)
    rows = []
    for q, ids in zip(query_ids, lists):
        uniq = list(dict.fromkeys(int(i) for i in ids))[:k]
        if len(uniq) < k:
            raise SubmissionError(f"query {q}: only {len(uniq)} candidates, need {k} (raise recall.k)")
        rows.append({"QuestionId_Answer": q, "MisconceptionId": " ".join(map(str, uniq))})
    return pd.DataFrame(rows, columns=COLUMNS)


def validate_submission(sub: pd.DataFrame | str | Path, expected_ids: Iterable[str], valid_ids: Iterable[int], k: int = 25) -> pd.DataFrame:
    """Check columns, one row per expected query, ``k`` unique known ids per row."""
    name = str(sub) if not isinstance(sub, pd.DataFrame) else "submission"
    df = pd.read_csv(sub, dtype=str) if not isinstance(sub, pd.DataFrame) else sub
    if list(df.columns) != COLUMNS:
        raise SubmissionError(f"{name}: columns {list(df.columns)}, expected {COLUMNS}")
    expected = list(expected_ids)
    dup = df["QuestionId_Answer"].duplicated()
    if dup.any():
        i = int(dup.idxmax())
        raise SubmissionError(f"{name}: row {i + 2}: duplicate QuestionId_Answer {df['QuestionId_Answer'].iloc[i]}")
    missing = sorted(set(expected) - set(df["QuestionId_Answer"]))
    if missing:
        raise SubmissionError(f"{name}: {len(missing)} expected QuestionId_Answer missing, e.g. {missing[:3]}")
    extra = sorted(set(df["QuestionId_Answer"]) - set(expected))
    if extra:
        raise SubmissionError(f"{name}: unexpected QuestionId_Answer, e.g. {extra[:3]}")
    valid = set(int(v) for v in valid_ids)
    for i, (q, ids) in enumerate(zip(df["QuestionId_Answer"], df["MisconceptionId"])):
        parts = str(ids).split()
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise SubmissionError(f"{name}: row {i + 2} ({q}): column 'MisconceptionId' has a non-integer id") from None
        if len(nums) != k or len(set(nums)) != k:
            raise SubmissionError(f"{name}: row {i + 2} ({q}): column 'MisconceptionId' needs {k} unique ids, has {len(set(nums))}")
        bad = [n for n in nums if n not in valid]
        if bad:
            raise SubmissionError(f"{name}: row {i + 2} ({q}): column 'MisconceptionId' has unknown id {bad[0]}")
    return df


def write_submission(ranking: pd.DataFrame, query_ids: Iterable[str], valid_ids: Iterable[int], path: str | Path, k: int = 25) -> Path:
    """Build, validate, then write atomically."""
    query_ids = list(query_ids)
    sub = build_submission(ranking, query_ids, k)
    validate_submission(sub, query_ids, valid_ids, k)
    return write_csv(path, sub)
