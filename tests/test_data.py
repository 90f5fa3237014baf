import shutil
from pathlib import Path

import pandas as pd
import pytest

from utils.config import SAMPLE_DATA_DIR
from utils.tasks.base import CORPUS_COLUMNS, QUERY_COLUMNS, check_contract
from utils.tasks.eedi import TASK, DataError, corpus_of, load_competition, queries_of, to_pairs


@pytest.fixture
def data_copy(tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(SAMPLE_DATA_DIR, dst)
    return dst


def test_pairs_skip_correct_answer_and_keep_unlabelled():
    comp = load_competition(SAMPLE_DATA_DIR)
    pairs = to_pairs(comp.train)
    assert len(pairs) == 3 * len(comp.train)
    row = comp.train.iloc[0]
    mine = pairs[pairs["QuestionId"] == row["QuestionId"]]
    assert row["CorrectAnswer"] not in set(mine["Answer"])
    for rec in mine.itertuples():
        expected = row[f"Misconception{rec.Answer}Id"]
        assert (pd.isna(expected) and pd.isna(rec.MisconceptionId)) or expected == rec.MisconceptionId
        assert f"Wrong answer: {row[f'Answer{rec.Answer}Text']}" in rec.query_text
        assert f"Correct answer: {row[f'Answer{row.CorrectAnswer}Text']}" in rec.query_text
    assert pairs["MisconceptionId"].isna().any()  # unlabelled wrong answers are kept (predicted)


def test_contract_tables_follow_the_raw_pairs():
    """queries_of / corpus_of / TASK.load: the task-neutral columns, one-to-one with to_pairs' rows."""
    comp = load_competition(SAMPLE_DATA_DIR)
    pairs, queries = to_pairs(comp.train), queries_of(comp.train)
    assert all(c in queries.columns for c in QUERY_COLUMNS) and "MisconceptionId" not in queries.columns
    assert queries["query_id"].tolist() == pairs["QuestionId_Answer"].tolist()
    assert queries["group"].tolist() == pairs["QuestionId"].tolist()
    assert queries["query_text"].tolist() == pairs["query_text"].tolist()
    assert queries["positives"].tolist() == [() if pd.isna(m) else (int(m),) for m in pairs["MisconceptionId"]]
    assert all(isinstance(p, tuple) for p in queries["positives"])
    assert queries["positives"].map(len).isin([0, 1]).all() and (queries["positives"].map(len) == 0).any()
    corpus = corpus_of(comp.misconceptions)
    assert list(corpus.columns) == CORPUS_COLUMNS
    assert corpus["item_id"].tolist() == comp.misconceptions["MisconceptionId"].tolist()
    assert corpus["item_text"].tolist() == comp.misconceptions["MisconceptionName"].tolist()
    assert corpus["raw_id"].tolist() == [str(m) for m in comp.misconceptions["MisconceptionId"]]
    data = TASK.load(SAMPLE_DATA_DIR)
    check_contract(data, "sample")
    pd.testing.assert_frame_equal(data.queries, queries)
    pd.testing.assert_frame_equal(data.corpus, corpus)
    assert data.test["query_id"].tolist() == to_pairs(comp.test)["QuestionId_Answer"].tolist()
    assert (data.test["positives"].map(len) == 0).all()  # test queries are unlabelled


def test_custom_template_and_unknown_field():
    comp = load_competition(SAMPLE_DATA_DIR)
    pairs = to_pairs(comp.train.head(2), "{SubjectName} | {AnswerText}")
    assert pairs["query_text"].iloc[0] == f"{pairs['SubjectName'].iloc[0]} | {pairs['AnswerText'].iloc[0]}"
    with pytest.raises(DataError, match="NoSuchField"):
        to_pairs(comp.train.head(2), "{NoSuchField}")


def _edit(path: Path, fn):
    df = pd.read_csv(path)
    fn(df)
    df.to_csv(path, index=False)


def test_missing_column_names_file_and_column(data_copy):
    _edit(data_copy / "train.csv", lambda df: df.drop(columns=["MisconceptionAId"], inplace=True))
    with pytest.raises(DataError, match=r"train.csv.*MisconceptionAId"):
        load_competition(data_copy)


def test_unknown_misconception_names_row(data_copy):
    def f(df):
        df["MisconceptionBId"] = df["MisconceptionBId"].astype(float)
        df.loc[3, "MisconceptionBId"] = 999999
    _edit(data_copy / "train.csv", f)
    with pytest.raises(DataError, match=r"train.csv: column 'MisconceptionBId', line 5: misconception id 999999"):
        load_competition(data_copy)


def test_bad_correct_answer(data_copy):
    _edit(data_copy / "train.csv", lambda df: df.__setitem__("CorrectAnswer", df["CorrectAnswer"].where(df.index != 2, "E")))
    with pytest.raises(DataError, match=r"column 'CorrectAnswer', line 4: 'E' is not one of A, B, C, D"):
        load_competition(data_copy)


def test_duplicate_question_ids(data_copy):
    def f(df):
        df.loc[5, "QuestionId"] = df.loc[1, "QuestionId"]
    _edit(data_copy / "test.csv", f)
    with pytest.raises(DataError, match=r"test.csv: column 'QuestionId', line 7: duplicate"):
        load_competition(data_copy)


def test_empty_test_csv(data_copy):
    _edit(data_copy / "test.csv", lambda df: df.drop(index=df.index, inplace=True))
    with pytest.raises(DataError, match=r"test.csv: no rows"):
        load_competition(data_copy)


def test_missing_mapping_file(data_copy):
    (data_copy / "misconception_mapping.csv").unlink()
    with pytest.raises(DataError, match="misconception_mapping.csv: file not found"):
        load_competition(data_copy)


def test_real_data_shape():
    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "eedi"
    if not (real / "train.csv").exists():
        pytest.skip("shared Eedi data not present")
    comp = load_competition(real)
    pairs = to_pairs(comp.train)
    assert len(comp.train) == 1308 and len(pairs) == 3924
    assert pairs["MisconceptionId"].notna().sum() == 3062
    data = TASK.load(real)
    assert len(data.queries) == 3924 and (data.queries["positives"].map(len) > 0).sum() == 3062
    assert data.queries["group"].nunique() == 1308


def test_truncation_keeps_the_wrong_answer():
    """Long questions are cut from the question text, so wrong answers stay distinguishable."""
    from transformers import AutoTokenizer

    from utils.retrieval.embed import resolve_model

    comp = load_competition(SAMPLE_DATA_DIR)
    q = comp.train.head(1).copy()
    q["QuestionText"] = "a very long question " * 100
    pairs = to_pairs(q)
    tok = AutoTokenizer.from_pretrained(resolve_model(None))
    cut = [tok.decode(tok(t, truncation=True, max_length=64)["input_ids"]) for t in pairs["query_text"]]
    assert len(set(cut)) == 3
