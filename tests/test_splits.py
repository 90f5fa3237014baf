import pandas as pd
import pytest

from utils.config import SAMPLE_DATA_DIR
from utils.tasks.eedi import load_competition, to_pairs
from utils.splits import make_split, unseen_share


@pytest.fixture(scope="module")
def comp():
    return load_competition(SAMPLE_DATA_DIR)


@pytest.mark.parametrize("split", ["v1", "v2", "v3"])
def test_split_deterministic_and_disjoint(comp, split):
    a = make_split(comp.train, split, seed=1)
    b = make_split(comp.train, split, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert set(a["fold"]) == {"train", "val"}
    assert a["QuestionId"].is_unique and len(a) == len(comp.train)
    assert 0.05 < (a["fold"] == "val").mean() < 0.5


def test_seed_changes_split(comp):
    assert not make_split(comp.train, "v1", seed=1).equals(make_split(comp.train, "v1", seed=2))


def test_v1_folds_cover_every_question_once(comp):
    vals = [set(make_split(comp.train, "v1", n_folds=4, fold=f).query("fold == 'val'")["QuestionId"]) for f in range(4)]
    assert sum(len(v) for v in vals) == len(comp.train)
    assert set().union(*vals) == set(comp.train["QuestionId"])


def test_v2_holds_out_misconceptions(comp):
    pairs = to_pairs(comp.train)
    s = make_split(comp.train, "v2", unseen_share=0.2)
    v1 = make_split(comp.train, "v1")
    assert unseen_share(s, pairs) > unseen_share(v1, pairs)
    assert unseen_share(s, pairs) > 0.3


def test_v3_groups_subjects(comp):
    s = make_split(comp.train, "v3").merge(comp.train[["QuestionId", "SubjectId"]])
    per_subject = s.groupby("SubjectId")["fold"].nunique()
    assert (per_subject == 1).all()


def test_full_and_unknown(comp):
    assert (make_split(comp.train, "full")["fold"] == "train").all()
    with pytest.raises(ValueError, match="unknown split"):
        make_split(comp.train, "v9")
