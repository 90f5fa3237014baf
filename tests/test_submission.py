import pandas as pd
import pytest

from utils.tasks.eedi import SubmissionError, build_submission, validate_submission, write_submission


def _ranking(queries, n=30, offset=0):
    rows = [(q, (i + offset) % 40, i + 1, 1.0 - i / 100) for q in queries for i in range(n)]
    return pd.DataFrame(rows, columns=["query_id", "item_id", "rank", "score"])


def test_build_and_write(tmp_path):
    qs = ["1_A", "1_C", "2_D"]
    path = write_submission(_ranking(qs), qs, range(40), tmp_path / "submission.csv")
    df = pd.read_csv(path, dtype=str)
    assert list(df.columns) == ["QuestionId_Answer", "MisconceptionId"]
    assert df["QuestionId_Answer"].tolist() == qs
    assert df["MisconceptionId"].iloc[0] == " ".join(str(i) for i in range(25))


def test_duplicates_in_ranking_are_collapsed():
    r = _ranking(["1_A"], n=30)
    r = pd.concat([r, r.assign(rank=r["rank"] + 0.5)])
    sub = build_submission(r, ["1_A"])
    assert len(sub["MisconceptionId"].iloc[0].split()) == 25


def test_too_few_candidates():
    with pytest.raises(SubmissionError, match="only 10 candidates"):
        build_submission(_ranking(["1_A"], n=10), ["1_A"])


@pytest.mark.parametrize("mutate,msg", [
    (lambda d: d.drop(index=1), "missing"),
    (lambda d: pd.concat([d, d.iloc[[0]]]), "duplicate"),
    (lambda d: d.assign(MisconceptionId=d["MisconceptionId"].str.replace("^0 ", "1 ", regex=True)), "25 unique"),
    (lambda d: d.assign(MisconceptionId=d["MisconceptionId"].str.replace("^0 ", "99 ", regex=True)), "unknown id 99"),
    (lambda d: d.rename(columns={"MisconceptionId": "X"}), "columns"),
])
def test_validation_errors(mutate, msg):
    qs = ["1_A", "1_C", "2_D"]
    sub = mutate(build_submission(_ranking(qs), qs).reset_index(drop=True)).reset_index(drop=True)
    with pytest.raises(SubmissionError, match=msg):
        validate_submission(sub, qs, range(40))


def test_task_writes_kaggle_columns_from_a_contract_ranking(tmp_path):
    """EediTask: a ranking in the suite's columns (query_id, item_id) in, Kaggle's file columns out."""
    from utils.config import SAMPLE_DATA_DIR
    from utils.tasks.base import DataError
    from utils.tasks.eedi import TASK

    data = TASK.load(SAMPLE_DATA_DIR, require_test=True)
    qs = data.test["query_id"].tolist()
    ids = data.corpus["item_id"].tolist()
    rows = [(q, ids[(j + i) % len(ids)], i + 1, 1.0 - i / 100) for j, q in enumerate(qs) for i in range(30)]
    ranking = pd.DataFrame(rows, columns=["query_id", "item_id", "rank", "score"])
    path = TASK.write_submission(ranking, data, tmp_path / TASK.submission_file)
    df = pd.read_csv(path, dtype=str)
    assert list(df.columns) == ["QuestionId_Answer", "MisconceptionId"]
    assert df["QuestionId_Answer"].tolist() == qs
    assert df["MisconceptionId"].iloc[1] == " ".join(str(ids[(1 + i) % len(ids)]) for i in range(25))
    TASK.validate_submission(path, data)
    df.drop(index=0).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(DataError, match="missing"):
        TASK.validate_submission(tmp_path / "short.csv", data)
