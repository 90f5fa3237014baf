import pandas as pd
import pytest

from utils.tasks.eedi import SubmissionError, build_submission, validate_submission, write_submission


def _ranking(queries, n=30, offset=0):
    rows = [(q, (i + offset) % 40, i + 1, 1.0 - i / 100) for q in queries for i in range(n)]
    return pd.DataFrame(rows, columns=["QuestionId_Answer", "MisconceptionId", "rank", "score"])


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
