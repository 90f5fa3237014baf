import numpy as np
import pandas as pd
import pytest

from utils.config import SAMPLE_DATA_DIR
from utils.tasks.eedi import load_competition, queries_of
from utils.splits import cv_folds, make_split, query_groups, unseen_share


@pytest.fixture(scope="module")
def comp():
    return load_competition(SAMPLE_DATA_DIR)


@pytest.fixture(scope="module")
def queries(comp):
    return queries_of(comp.train)


@pytest.fixture(scope="module")
def groups(queries):
    """What ``query_groups(queries)`` returns (built here without it, so the split tests below
    test the splits alone): each group's first row, first-appearance order, positives united."""
    united: dict = {}
    for g, pos in zip(queries["group"], queries["positives"]):
        united.setdefault(g, set()).update(int(p) for p in pos)
    out = queries.drop_duplicates("group").reset_index(drop=True)
    out["positives"] = [tuple(sorted(united[g])) for g in out["group"]]
    return out


def test_query_groups_one_row_per_question(comp, queries, groups):
    got = query_groups(queries)
    assert got["group"].tolist() == comp.train["QuestionId"].tolist()  # first-appearance order
    assert got["positives"].tolist() == groups["positives"].tolist()
    assert got["SubjectId"].tolist() == comp.train["SubjectId"].tolist()  # what v3 groups by
    for row in got.head(20).itertuples():
        own = comp.train[comp.train["QuestionId"] == row.group].iloc[0]
        labels = {int(own[f"Misconception{a}Id"]) for a in "ABCD"
                  if a != own["CorrectAnswer"] and pd.notna(own[f"Misconception{a}Id"])}
        assert row.positives == tuple(sorted(labels))
        assert row.SubjectId == own["SubjectId"]


@pytest.mark.parametrize("split", ["v1", "v2", "v3"])
def test_split_deterministic_and_disjoint(comp, groups, split):
    a = make_split(groups, split, seed=1)
    b = make_split(groups, split, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert set(a["fold"]) == {"train", "val"}
    assert a["group"].is_unique and len(a) == len(comp.train)
    assert 0.05 < (a["fold"] == "val").mean() < 0.5


def test_seed_changes_split(groups):
    assert not make_split(groups, "v1", seed=1).equals(make_split(groups, "v1", seed=2))


def test_v1_folds_cover_every_question_once(comp, groups):
    vals = [set(make_split(groups, "v1", n_folds=4, fold=f).query("fold == 'val'")["group"]) for f in range(4)]
    assert sum(len(v) for v in vals) == len(comp.train)
    assert set().union(*vals) == set(comp.train["QuestionId"])


def test_v2_holds_out_misconceptions(groups, queries):
    s = make_split(groups, "v2", unseen_share=0.2)
    v1 = make_split(groups, "v1")
    assert unseen_share(s, queries) > unseen_share(v1, queries)
    assert unseen_share(s, queries) > 0.3


def test_v3_groups_subjects(comp, groups):
    s = make_split(groups, "v3").merge(comp.train[["QuestionId", "SubjectId"]], left_on="group", right_on="QuestionId")
    assert len(s) == len(comp.train)
    per_subject = s.groupby("SubjectId")["fold"].nunique()
    assert (per_subject == 1).all()


def test_full_and_unknown(groups):
    assert (make_split(groups, "full")["fold"] == "train").all()
    with pytest.raises(ValueError, match="unknown split"):
        make_split(groups, "v9")


# Fold assignments of the pre-contract implementation (``git show HEAD:utils/splits.py`` before the
# task-neutral contract, called as ``make_split(comp.train, ...)`` / ``cv_folds(comp.train, ...)`` on
# the wide train.csv of data/sample), computed once and written down here: one character per
# question of train.csv, in its row order. v1 / v3: the fold ``f`` whose ``make_split(..., fold=f)``
# holds the question out; v2: 1 = validation; cv: ``cv_folds``' fold index.
OLD_FOLDS = {
    ('v1', 42, 5): '2320233432304423404221024212420144403144334001141320001310324311230022030221313432110322044121230444'
                   '1104221440120040131120104114141123113114303334020343013222313040401423214432210343402330100414220324'
                   '02342010214303032143',
    ('v1', 1, 4): '2301112202302332020212200313203330321301212002132133000031123132112122231001221110210011321101212230'
                  '1031103201310030020300233301000302323303023132323000010130001110203323220223333212121322220323031131'
                  '31211113103233211201',
    ('v3', 42, 5): '1120422014422223111013104242312132320201443211430040143442023032401302134200422241423033341000020312'
                   '4040142131120210111213421140440312443230344114413111230333132330334403321224433101102043100233100042'
                   '00233442424104420033',
    ('v3', 7, 3): '1120222011222102111010200212212102020201200211002000120122000021111202111200222201220012211000120112'
                  '1020102101102210211210101121220010220000111112012111201002102100001000021221221201122210100221100212'
                  '10221202221101120020',
}
OLD_V2_VAL = {
    (42, 0.2, 0.2): '0010000000011100100000000100011100100100000100001000000001001001100000001100000100000000000000110000'
                    '0010100000001010100100101000110000011000011000000100000100000000000000000110000000011100000000100100'
                    '00100100000000000000',
    (1, 0.3, 0.25): '0000000100000001001000100101100000000110000100101100000100000010000101000110000010000001110100000000'
                    '1111010000001000000101000000111000010000000001001000000011001000001000000110010000110110000100000110'
                    '00010100011001101100',
}
OLD_CV = {
    ('v1', 42, 5): '2320233432304423404221024212420144403144334001141320001310324311230022030221313432110322044121230444'
                   '1104221440120040131120104114141123113114303334020343013222313040401423214432210343402330100414220324'
                   '02342010214303032143',
    ('v2', 42, 5): '2202433411100021023114413012100033024041434031340431121230420230021123210042132034431143122412001333'
                   '2302033431330204024011030122001132100312100113311042222013132341144324132001233413300021121211014023'
                   '22033032243112234121',
    ('v2', 3, 4): '0223022313230002013312031230200130022033133013111213313020200320011233111233222210123202301333133012'
                  '0211010030101312313022201220112113210003011212103101200022130013313221302023220233312102133031132100'
                  '13023112230130022203',
}


def test_fold_assignments_equal_the_previous_implementation(comp, groups):
    """The move to query groups changed no split: every v1/v2/v3/cv assignment on the sample is as before."""
    n = len(comp.train)
    assert all(len(s) == n for s in [*OLD_FOLDS.values(), *OLD_V2_VAL.values(), *OLD_CV.values()])
    qids = comp.train["QuestionId"].tolist()
    for (split, seed, k), digits in OLD_FOLDS.items():
        expected = np.array([int(c) for c in digits])
        for f in range(k):
            s = make_split(groups, split, seed=seed, n_folds=k, fold=f)
            assert s["group"].tolist() == qids
            assert s["fold"].tolist() == np.where(expected == f, "val", "train").tolist(), (split, seed, k, f)
    for (seed, share, val_share), bits in OLD_V2_VAL.items():
        s = make_split(groups, "v2", seed=seed, unseen_share=share, val_share=val_share)
        assert s["group"].tolist() == qids
        assert s["fold"].tolist() == ["val" if c == "1" else "train" for c in bits], (seed, share, val_share)
    for (scheme, seed, k), digits in OLD_CV.items():
        expected = np.array([int(c) for c in digits])
        assert cv_folds(groups, scheme, k, seed).tolist() == expected.tolist(), (scheme, seed, k)
        for f in range(k):
            s = make_split(groups, "cv", seed=seed, n_folds=k, fold=f, cv_scheme=scheme)
            assert s["group"].tolist() == qids
            assert s["fold"].tolist() == np.where(expected == f, "val", "train").tolist(), (scheme, seed, k, f)
