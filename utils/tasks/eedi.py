"""Eedi, Mining Misconceptions in Mathematics: read and validate Kaggle's layout, one query per
wrong answer, write and validate ``submission.csv``.

Layout: ``train.csv`` (wide: one row per question, four answers, four misconception ids),
``test.csv`` (same, no ids), ``misconception_mapping.csv``, optional ``sample_submission.csv``.
Every validation error names the file, the column and the row.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from utils.io import write_csv
from utils.metrics import ranking_lists
from utils.tasks.base import DataError, TaskData, format_queries

ANSWERS = ("A", "B", "C", "D")
BASE_COLUMNS = [
    "QuestionId", "ConstructId", "ConstructName", "SubjectId", "SubjectName", "CorrectAnswer",
    "QuestionText", "AnswerAText", "AnswerBText", "AnswerCText", "AnswerDText",
]
LABEL_COLUMNS = [f"Misconception{a}Id" for a in ANSWERS]
MAPPING_COLUMNS = ["MisconceptionId", "MisconceptionName"]

# The question text goes last: it is the long part, so truncation to max_length cuts it and never
# the answers (with it in the middle, 128-token queries of long questions lost the wrong answer,
# and every wrong answer of such a question got the same ranking).
# The LLM reranker's wording (utils.rerank.llm.PROMPTS: keys and fields) and the ICL instruction.
PROMPTS = {
    "query": ("Subject: {SubjectName}\nConstruct: {ConstructName}\nQuestion: {QuestionText}\n"
              "Correct answer: {CorrectAnswerText}\nWrong answer: {AnswerText}\n"),
    "pointwise": "Misconception: {candidate}\nDoes this misconception explain the wrong answer?\nAnswer:",
    "listwise": "Options:\n{options}\nWhich option is the misconception behind the wrong answer?\nAnswer:",
}
ICL_TASK = ("Given a math question with its correct answer and a student's wrong answer, "
            "retrieve the misconception that explains the wrong answer.")
DEFAULT_QUERY_TEMPLATE = (
    "Construct: {ConstructName}\nSubject: {SubjectName}\nCorrect answer: {CorrectAnswerText}\n"
    "Wrong answer: {AnswerText}\nQuestion: {QuestionText}"
)


@dataclass
class Competition:
    """The competition's tables, validated."""

    data_dir: Path
    train: pd.DataFrame
    misconceptions: pd.DataFrame
    test: pd.DataFrame | None = None
    sample_submission: pd.DataFrame | None = field(default=None, repr=False)


def _where(path: Path, column: str, row: int | None = None) -> str:
    # Rows are reported as CSV line numbers (header = line 1) so users can open the file there.
    at = f", line {row + 2}" if row is not None else ""
    return f"{path.name}: column '{column}'{at}"


def _require_columns(df: pd.DataFrame, path: Path, columns: list[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")


def _read_csv(path: Path) -> pd.DataFrame:
    """``pd.read_csv`` whose errors name the file.

    Non-UTF-8 bytes are an error naming the line (header = line 1), never a fallback to
    another encoding: a guessed encoding can silently mis-decode the text that gets embedded.
    """
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file (no header row)") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: {_first_bad_utf8(path) or e}; re-save the file as UTF-8") from None


def _first_bad_utf8(path: Path) -> str | None:
    # Physical lines (b"\n" never occurs inside a UTF-8 sequence), so an editor opens the file there.
    for n, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as e:
            return f"line {n}, column {e.start + 1}: byte 0x{line[e.start]:02x} is not UTF-8"
    return None


def read_misconceptions(path: str | Path) -> pd.DataFrame:
    """Read and validate ``misconception_mapping.csv``."""
    path = Path(path)
    df = _read_csv(path)
    _require_columns(df, path, MAPPING_COLUMNS)
    ids = pd.to_numeric(df["MisconceptionId"], errors="coerce")
    bad = ids.isna() | (ids % 1 != 0)
    if bad.any():
        i = int(bad.idxmax())
        raise DataError(f"{_where(path, 'MisconceptionId', i)}: not an integer id: {df['MisconceptionId'].iloc[i]!r}")
    dup = ids.duplicated()
    if dup.any():
        i = int(dup.idxmax())
        raise DataError(f"{_where(path, 'MisconceptionId', i)}: duplicate id {int(ids.iloc[i])}")
    names = df["MisconceptionName"]
    empty = names.isna() | (names.astype(str).str.strip() == "")
    if empty.any():
        i = int(empty.idxmax())
        raise DataError(f"{_where(path, 'MisconceptionName', i)}: empty name")
    return pd.DataFrame({"MisconceptionId": ids.astype(int), "MisconceptionName": names.astype(str)})


def read_questions(path: str | Path, *, labelled: bool, valid_ids: set[int] | None = None) -> pd.DataFrame:
    """Read and validate a wide questions file (``train.csv`` or ``test.csv``)."""
    path = Path(path)
    df = _read_csv(path)
    if len(df) == 0:
        raise DataError(f"{path}: no rows")
    _require_columns(df, path, BASE_COLUMNS + (LABEL_COLUMNS if labelled else []))
    qid = pd.to_numeric(df["QuestionId"], errors="coerce")
    if qid.isna().any():
        i = int(qid.isna().idxmax())
        raise DataError(f"{_where(path, 'QuestionId', i)}: not an integer: {df['QuestionId'].iloc[i]!r}")
    dup = qid.duplicated()
    if dup.any():
        i = int(dup.idxmax())
        raise DataError(f"{_where(path, 'QuestionId', i)}: duplicate QuestionId {int(qid.iloc[i])}")
    df["QuestionId"] = qid.astype(int)
    correct = df["CorrectAnswer"].astype(str).str.strip()
    bad = ~correct.isin(ANSWERS)
    if bad.any():
        i = int(bad.idxmax())
        raise DataError(f"{_where(path, 'CorrectAnswer', i)}: {df['CorrectAnswer'].iloc[i]!r} is not one of A, B, C, D")
    df["CorrectAnswer"] = correct
    for col in ["QuestionText"] + [f"Answer{a}Text" for a in ANSWERS]:
        empty = df[col].isna()
        if empty.any():
            i = int(empty.idxmax())
            raise DataError(f"{_where(path, col, i)}: empty text")
    if labelled:
        for col in LABEL_COLUMNS:
            ids = pd.to_numeric(df[col], errors="coerce")
            bad = df[col].notna() & (ids.isna() | (ids % 1 != 0))
            if bad.any():
                i = int(bad.idxmax())
                raise DataError(f"{_where(path, col, i)}: not an integer id: {df[col].iloc[i]!r}")
            if valid_ids is not None:
                unknown = ids.notna() & ~ids.isin(valid_ids)
                if unknown.any():
                    i = int(unknown.idxmax())
                    raise DataError(
                        f"{_where(path, col, i)}: misconception id {int(ids.iloc[i])} "
                        "is not in misconception_mapping.csv"
                    )
            df[col] = ids.astype("Int64")
        wrong = pd.concat([df[f"Misconception{a}Id"].notna() & (correct != a) for a in ANSWERS], axis=1)
        if not wrong.to_numpy().any():
            raise DataError(f"{path}: no labelled training pairs: "
                            f"{', '.join(LABEL_COLUMNS)} are empty for every wrong answer")
    return df


def load_competition(data_dir: str | Path, require_test: bool = False) -> Competition:
    """Load the competition folder (Kaggle's layout) and validate every file."""
    data_dir = Path(data_dir)
    for name in ("train.csv", "misconception_mapping.csv"):
        if not (data_dir / name).exists():
            raise DataError(f"{data_dir / name}: file not found (expected Kaggle's Eedi layout)")
    misconceptions = read_misconceptions(data_dir / "misconception_mapping.csv")
    valid = set(misconceptions["MisconceptionId"].tolist())
    train = read_questions(data_dir / "train.csv", labelled=True, valid_ids=valid)
    test = None
    if (data_dir / "test.csv").exists():
        test = read_questions(data_dir / "test.csv", labelled=False)
        _warn_overlap(data_dir / "test.csv", test, train)
    elif require_test:
        raise DataError(f"{data_dir / 'test.csv'}: file not found (needed to predict)")
    sample = None
    if (data_dir / "sample_submission.csv").exists():
        sample = _read_csv(data_dir / "sample_submission.csv")
    return Competition(data_dir, train, misconceptions, test, sample)


def _warn_overlap(path: Path, test: pd.DataFrame, train: pd.DataFrame) -> None:
    """Warn when test questions are also training questions (Kaggle's test never overlaps train)."""
    both = sorted(int(q) for q in set(test["QuestionId"]) & set(train["QuestionId"]))
    if both:
        more = f" (+{len(both) - 5} more)" if len(both) > 5 else ""
        warnings.warn(f"{path}: {len(both)} QuestionId(s) also in train.csv: {both[:5]}{more}; "
                      "Kaggle's test never overlaps train", UserWarning, stacklevel=3)


def to_pairs(questions: pd.DataFrame, template: str = DEFAULT_QUERY_TEMPLATE) -> pd.DataFrame:
    """One row per (question, wrong answer); the correct answer is skipped.

    ``MisconceptionId`` is a nullable Int64 (``<NA>`` for unlabelled wrong answers and for
    test questions). ``query_text`` is ``template`` filled from the row's fields.
    """
    rows = []
    labelled = all(c in questions.columns for c in LABEL_COLUMNS)
    for rec in questions.to_dict("records"):
        correct = rec["CorrectAnswer"]
        for a in ANSWERS:
            if a == correct:
                continue
            label = rec[f"Misconception{a}Id"] if labelled else pd.NA
            rows.append({
                "QuestionId_Answer": f"{rec['QuestionId']}_{a}",
                "QuestionId": rec["QuestionId"],
                "Answer": a,
                "ConstructId": rec["ConstructId"],
                "ConstructName": rec["ConstructName"],
                "SubjectId": rec["SubjectId"],
                "SubjectName": rec["SubjectName"],
                "QuestionText": rec["QuestionText"],
                "CorrectAnswerText": rec[f"Answer{correct}Text"],
                "AnswerText": rec[f"Answer{a}Text"],
                "MisconceptionId": label,
            })
    pairs = pd.DataFrame(rows)
    pairs["MisconceptionId"] = pairs["MisconceptionId"].astype("Int64")
    pairs["query_text"] = format_queries(pairs, template)
    return pairs


# -- submission: Kaggle's QuestionId_Answer,MisconceptionId ------------------------------------
SUBMISSION_COLUMNS = ["QuestionId_Answer", "MisconceptionId"]


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
    return pd.DataFrame(rows, columns=SUBMISSION_COLUMNS)


def validate_submission(sub: pd.DataFrame | str | Path, expected_ids: Iterable[str], valid_ids: Iterable[int], k: int = 25) -> pd.DataFrame:
    """Check columns, one row per expected query, ``k`` unique known ids per row."""
    name = str(sub) if not isinstance(sub, pd.DataFrame) else "submission"
    df = pd.read_csv(sub, dtype=str) if not isinstance(sub, pd.DataFrame) else sub
    if list(df.columns) != SUBMISSION_COLUMNS:
        raise SubmissionError(f"{name}: columns {list(df.columns)}, expected {SUBMISSION_COLUMNS}")
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


# -- the task: Kaggle's files <-> the suite's tables (utils.tasks.base) ------------------------------
def queries_of(questions: pd.DataFrame, template: str = DEFAULT_QUERY_TEMPLATE) -> pd.DataFrame:
    """``to_pairs`` with the contract's columns: ``query_id`` (= QuestionId_Answer), ``group``
    (= QuestionId: the wrong answers of a question share a fold), ``positives`` (the misconception)."""
    pairs = to_pairs(questions, template)
    pairs.insert(0, "query_id", pairs["QuestionId_Answer"])
    pairs.insert(1, "group", pairs["QuestionId"].astype(int))
    pairs["positives"] = [() if pd.isna(m) else (int(m),) for m in pairs["MisconceptionId"]]
    return pairs.drop(columns=["MisconceptionId"])


def corpus_of(misconceptions: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"item_id": misconceptions["MisconceptionId"].astype(int).to_numpy(),
                         "item_text": misconceptions["MisconceptionName"].astype(str).to_numpy(),
                         "raw_id": misconceptions["MisconceptionId"].astype(str).to_numpy()})


class EediTask:
    """Eedi: one query per (question, wrong answer), 2,587 misconceptions, MAP@25."""

    name = "eedi"
    metric_k = 25
    submission_file = "submission.csv"
    sample_dir = Path(__file__).resolve().parents[2] / "data" / "sample"
    query_template = DEFAULT_QUERY_TEMPLATE
    config_defaults: dict = {}  # utils.config.DEFAULTS are Eedi's
    prompts = PROMPTS
    icl_task = ICL_TASK
    kaggle_competition = "eedi-mining-misconceptions-in-mathematics"  # the kernel's data source on export

    def load(self, data_dir: Path, require_test: bool = False) -> TaskData:
        comp = load_competition(data_dir, require_test=require_test)
        test = queries_of(comp.test) if comp.test is not None else None
        return TaskData(Path(data_dir), queries_of(comp.train), corpus_of(comp.misconceptions), test)

    def write_submission(self, ranking: pd.DataFrame, data: TaskData, path: Path) -> Path:
        if data.test is None:
            raise ValueError("no test.csv questions to write a submission for")
        return write_submission(ranking, data.test["query_id"].tolist(), data.corpus["item_id"].tolist(), path,
                                self.metric_k)

    def validate_submission(self, path: Path, data: TaskData) -> None:
        try:
            validate_submission(path, data.test["query_id"].tolist(), data.corpus["item_id"].tolist(), self.metric_k)
        except SubmissionError as e:
            raise DataError(str(e)) from None


TASK = EediTask()
