"""The shipped synthetic sample in data/sample/ has Kaggle's Eedi layout and is reproducible."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
FILES = ["train.csv", "test.csv", "misconception_mapping.csv", "sample_submission.csv"]

TEST_COLS = ["QuestionId", "ConstructId", "ConstructName", "SubjectId", "SubjectName", "CorrectAnswer", "QuestionText",
             "AnswerAText", "AnswerBText", "AnswerCText", "AnswerDText"]
TRAIN_COLS = TEST_COLS + ["MisconceptionAId", "MisconceptionBId", "MisconceptionCId", "MisconceptionDId"]
LETTERS = "ABCD"


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_sample_data", ROOT / "scripts" / "make_sample_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def train():
    return pd.read_csv(SAMPLE / "train.csv")


@pytest.fixture(scope="module")
def test():
    return pd.read_csv(SAMPLE / "test.csv")


@pytest.fixture(scope="module")
def mapping():
    return pd.read_csv(SAMPLE / "misconception_mapping.csv")


@pytest.fixture(scope="module")
def submission():
    return pd.read_csv(SAMPLE / "sample_submission.csv")


def _wrong_answers(df):
    return [(row.QuestionId, L) for row in df.itertuples() for L in LETTERS if L != row.CorrectAnswer]


def test_files_exist():
    for name in FILES:
        assert (SAMPLE / name).is_file(), name


def test_columns(train, test, mapping, submission):
    assert list(train.columns) == TRAIN_COLS
    assert list(test.columns) == TEST_COLS
    assert list(mapping.columns) == ["MisconceptionId", "MisconceptionName"]
    assert list(submission.columns) == ["QuestionId_Answer", "MisconceptionId"]


def test_dtypes_like_kaggle(train):
    for col in ["QuestionId", "ConstructId", "SubjectId"]:
        assert pd.api.types.is_integer_dtype(train[col]), col
    for L in LETTERS:
        assert pd.api.types.is_float_dtype(train[f"Misconception{L}Id"]), L
    # ids are written as floats ("12.0"), empty where there is no label
    with open(SAMPLE / "train.csv", newline="", encoding="utf-8") as f:
        raw = list(csv.DictReader(f))
    ids = [row[f"Misconception{L}Id"] for row in raw for L in LETTERS]
    assert all(v == "" or (v.endswith(".0") and v[:-2].isdigit()) for v in ids)
    assert any(v == "" for v in ids) and any(v != "" for v in ids)


def test_mapping_ids(mapping):
    assert mapping.MisconceptionId.tolist() == list(range(len(mapping)))
    assert mapping.MisconceptionName.notna().all()
    assert mapping.MisconceptionName.is_unique


def test_labels_exist_in_mapping(train, mapping):
    known = set(mapping.MisconceptionId)
    for L in LETTERS:
        labels = train[f"Misconception{L}Id"].dropna().astype(int)
        assert set(labels) <= known


def test_correct_answer_never_labelled(train):
    assert train.CorrectAnswer.isin(list(LETTERS)).all()
    for L in LETTERS:
        on_correct = train.loc[train.CorrectAnswer == L, f"Misconception{L}Id"]
        assert on_correct.isna().all(), L


def test_answers_distinct_within_question(train, test):
    for df in (train, test):
        texts = df[[f"Answer{L}Text" for L in LETTERS]]
        assert texts.notna().all().all()
        assert (texts.nunique(axis=1) == 4).all()


def test_some_wrong_answers_unlabelled_and_some_misconceptions_unused(train, mapping):
    labels = pd.concat([train[f"Misconception{L}Id"] for L in LETTERS])
    n_wrong = 3 * len(train)
    unlabelled = 1 - labels.notna().sum() / n_wrong
    assert 0.05 <= unlabelled <= 0.25
    used = set(labels.dropna().astype(int))
    assert len(used) < len(mapping)


def test_question_ids(train, test):
    assert train.QuestionId.is_unique
    assert test.QuestionId.is_unique
    assert not set(train.QuestionId) & set(test.QuestionId)


def test_submission_one_row_per_wrong_answer(test, submission):
    expected = {f"{q}_{L}" for q, L in _wrong_answers(test)}
    assert submission.QuestionId_Answer.is_unique
    assert set(submission.QuestionId_Answer) == expected
    assert len(submission) == 3 * len(test)
    for preds in submission.MisconceptionId:
        assert len(str(preds).split()) == 25


def test_regenerating_is_byte_identical(tmp_path):
    gen = _load_generator()
    gen.write_dataset(tmp_path, seed=0)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes(), name


def test_other_seed_differs(tmp_path):
    gen = _load_generator()
    gen.write_dataset(tmp_path, seed=1)
    assert (tmp_path / "train.csv").read_bytes() != (SAMPLE / "train.csv").read_bytes()
