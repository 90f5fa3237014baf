"""Ensembles of finished runs (utils.run.ensemble): the choice out of fold on CV runs, applying it to full runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from utils.config import REPO_ROOT, SAMPLE_DATA_DIR, dump_config, load_config
from utils.io import write_parquet, write_text
from utils.run.ensemble import apply_ensemble, choose_ensemble, last_ranking, parse_members
from utils.tasks import get_task


def _ranking(rows: dict[str, list[int]]) -> pd.DataFrame:
    return pd.DataFrame([{"query_id": q, "item_id": m, "rank": i + 1, "score": 1.0 - 0.01 * i}
                         for q, items in rows.items() for i, m in enumerate(items)])


def _cv_run(root, lists: dict[int, dict[str, list[int]]], gold: dict[str, int], rerank_round: int | None = None) -> None:
    """A two-round CV run whose last round holds ``lists`` (fold -> query -> ranked ids) as its final ranking."""
    for k, rows in lists.items():
        for r in (1, 2):
            d = root / f"fold_{k}" / f"round_{r}"
            qs = list(rows)
            write_parquet(d / "val_pairs.parquet", pd.DataFrame(
                {"query_id": qs, "group": [int(q.split("_")[0]) for q in qs], "positives": [(gold[q],) for q in qs]}))
            # round 1 ranks every gold last: only the last round may be read
            write_parquet(d / "candidates_val.parquet", _ranking(rows if r == 2 else {q: [999, 998, gold[q]] for q in qs}))
            if rerank_round == r:
                write_parquet(d / "rerank_val.parquet", _ranking({q: [gold[q]] + [m for m in v if m != gold[q]]
                                                                 for q, v in rows.items()}))
            write_text(d / "config.yaml", dump_config(load_config(None)))


def _complementary(root, n_questions: int = 40):
    """Run a ranks the gold first on even questions and second on odd ones, run b the other way round,
    each with its own decoy: either alone scores (1 + 1/2) / 2 = 0.75; fused, the gold (in both lists)
    beats each decoy (in one list) on every question: 1.0."""
    gold, a, b = {}, {}, {}
    for k in range(2):
        a[k], b[k] = {}, {}
        for i in range(k * n_questions // 2, (k + 1) * n_questions // 2):
            q = f"{i}_A"
            gold[q] = 100 + i
            first, second = ([gold[q], 1], [2, gold[q]]) if i % 2 == 0 else ([1, gold[q]], [gold[q], 2])
            a[k][q], b[k][q] = first, second
    _cv_run(root / "a", a, gold)
    _cv_run(root / "b", b, gold)
    return gold


def test_a_fusion_that_helps_is_chosen_with_its_hand_computed_gain(tmp_path):
    _complementary(tmp_path)
    result = choose_ensemble({"a": tmp_path / "a", "b": tmp_path / "b"}, tmp_path / "ens")
    singles = {s["name"]: s["map@25"] for s in result["singles"]}
    assert singles == pytest.approx({"a": 0.75, "b": 0.75})
    oof = result["out_of_fold"][0]
    assert oof["map@25"] == pytest.approx(1.0) and oof["gain"] == pytest.approx(0.25) and oof["gain_lo"] > 0
    # every fusion with both weights > 0 scores 1.0; the first added (rank_average, equal weights) wins ties
    assert result["chosen"]["kind"] == "fused"
    assert result["chosen"]["method"] == "rank_average" and result["chosen"]["weights"] == [0.5, 0.5]
    doc = yaml.safe_load((tmp_path / "ens" / "ensemble.yaml").read_text())
    assert doc["runs"] == ["a", "b"] and doc["method"] == "rank_average" and doc["weights"] == [0.5, 0.5]
    assert doc["cv"]["out_of_fold_map@25"][0] == 1.0 and doc["cv"]["gain_over_a"][0] == 0.25
    assert result["read"]["a"] == ["fold_0/round_2/candidates_val.parquet", "fold_1/round_2/candidates_val.parquet"]
    assert "0.2500" in (tmp_path / "ens" / "ensemble.md").read_text()


def test_a_fusion_that_adds_nothing_keeps_the_single_run(tmp_path):
    _complementary(tmp_path)
    # b the same as a: every fusion equals the single run, so the cheaper single is kept
    for k in range(2):
        for name in ("val_pairs", "candidates_val"):
            src = tmp_path / "a" / f"fold_{k}" / "round_2" / f"{name}.parquet"
            write_parquet(tmp_path / "b" / f"fold_{k}" / "round_2" / f"{name}.parquet", pd.read_parquet(src))
    result = choose_ensemble({"a": tmp_path / "a", "b": tmp_path / "b"})
    assert result["chosen"] == {"name": "a", "kind": "single", "method": "none", "runs": ["a"], "weights": [1.0]}
    assert result["out_of_fold"][0]["gain"] == pytest.approx(0.0)


def test_the_last_round_reranked_ranking_is_read(tmp_path):
    gold = _complementary(tmp_path)
    lists = {k: {q: [1, gold[q]] for q in gold if (int(q.split("_")[0]) < 20) == (k == 0)} for k in range(2)}
    _cv_run(tmp_path / "c", lists, gold, rerank_round=2)
    d, source = last_ranking(tmp_path / "c" / "fold_0", "val")
    assert (d.name, source) == ("round_2", "rerank")
    result = choose_ensemble({"a": tmp_path / "a", "c": tmp_path / "c"})
    assert {s["name"]: s["map@25"] for s in result["singles"]}["c"] == pytest.approx(1.0)
    assert result["chosen"]["name"] == "c"


def test_runs_on_other_questions_or_folds_are_refused(tmp_path):
    _complementary(tmp_path)
    other = pd.read_parquet(tmp_path / "b" / "fold_1" / "round_2" / "val_pairs.parquet")
    write_parquet(tmp_path / "b" / "fold_1" / "round_2" / "val_pairs.parquet", other.iloc[1:])
    with pytest.raises(ValueError, match=r"fold_1/round_2/val_pairs.parquet: other validation queries"):
        choose_ensemble({"a": tmp_path / "a", "b": tmp_path / "b"})
    (tmp_path / "b" / "fold_1").rename(tmp_path / "b" / "fold_2")
    with pytest.raises(ValueError, match=r"has folds \[0, 2\]"):
        choose_ensemble({"a": tmp_path / "a", "b": tmp_path / "b"})
    with pytest.raises(ValueError, match="at least two members"):
        choose_ensemble({"a": tmp_path / "a"})


def _full_run(root, ranked_ids: list[int], split: str = "full") -> None:
    """A finished --split full run on the sample data whose last round ranks ``ranked_ids`` for every test query."""
    task = get_task("eedi")
    data = task.load(SAMPLE_DATA_DIR, require_test=True)
    cfg = load_config(None)
    write_text(root / "run.json", json.dumps({"data_dir": str(SAMPLE_DATA_DIR), "data": {"train.csv": "x"},
                                              "split": split, "model": None, "config": cfg}))
    write_parquet(root / "round_1" / "candidates_test.parquet",
                  _ranking({q: ranked_ids for q in data.test["query_id"]}))


def test_apply_fuses_full_runs_into_a_valid_submission(tmp_path):
    ids = list(range(30))
    _full_run(tmp_path / "fa", ids)
    _full_run(tmp_path / "fb", ids[::-1])
    choices = tmp_path / "ensemble.yaml"
    choices.write_text(yaml.safe_dump({"runs": ["a", "b"], "method": "rrf", "weights": [0.5, 0.5], "chosen": "x"}))
    path = apply_ensemble([tmp_path / "fa", tmp_path / "fb"], choices, tmp_path / "out")
    sub = pd.read_csv(path, dtype=str)
    # RRF with equal weights: id i scores 1/(61 + i) + 1/(90 - i), largest at both ends; ties go to the smaller id
    assert sub["MisconceptionId"].iloc[0].split()[:6] == ["0", "29", "1", "28", "2", "27"]
    assert len(sub) == len(get_task("eedi").load(SAMPLE_DATA_DIR, require_test=True).test)
    # method none: the chosen run's own ranking
    choices.write_text(yaml.safe_dump({"runs": ["a", "b"], "method": "none", "weights": [1.0], "chosen": "b"}))
    sub = pd.read_csv(apply_ensemble([tmp_path / "fa", tmp_path / "fb"], choices, tmp_path / "out2"), dtype=str)
    assert sub["MisconceptionId"].iloc[0].split()[:3] == ["29", "28", "27"]


def test_apply_refuses_what_it_cannot_fuse(tmp_path):
    _full_run(tmp_path / "fa", list(range(30)))
    _full_run(tmp_path / "cv", list(range(30)), split="cv")
    choices = tmp_path / "ensemble.yaml"
    choices.write_text(yaml.safe_dump({"runs": ["a", "b"], "method": "rrf", "weights": [0.5, 0.5], "chosen": "x"}))
    with pytest.raises(ValueError, match="fuses 2 members"):
        apply_ensemble([tmp_path / "fa"], choices, tmp_path / "out")
    with pytest.raises(ValueError, match="made with --split cv"):
        apply_ensemble([tmp_path / "fa", tmp_path / "cv"], choices, tmp_path / "out")
    (tmp_path / "bad.yaml").write_text("method: rrf\n")
    with pytest.raises(ValueError, match="not an ensemble.yaml"):
        apply_ensemble([tmp_path / "fa", tmp_path / "fa"], tmp_path / "bad.yaml", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_cli_chooses_then_applies(tmp_path):
    _complementary(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "utils", "ensemble", str(tmp_path / "a"), str(tmp_path / "b"),
                           "--out", str(tmp_path / "ens")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "rank_average" in proc.stdout and (tmp_path / "ens" / "ensemble.yaml").exists()
    _full_run(tmp_path / "fa", list(range(30)))
    proc = subprocess.run([sys.executable, "-m", "utils", "ensemble", str(tmp_path / "fa"), "--choices",
                           str(tmp_path / "ens" / "ensemble.yaml"), "--out", str(tmp_path / "sub")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == ["error: " + str(tmp_path / "ens" / "ensemble.yaml")
                                                                         + " fuses 2 members (a, b); 1 given (name rounds as the CV runs were: RUN@1,2,3)"]


def test_rounds_of_a_run_are_members_of_their_own(tmp_path):
    _complementary(tmp_path)
    members = parse_members([str(tmp_path / "a") + "@all", str(tmp_path / "b")])
    assert members == {"a@r1": (tmp_path / "a", 1), "a@r2": (tmp_path / "a", 2), "b": (tmp_path / "b", None)}
    assert parse_members([str(tmp_path / "a") + "@2,1"]) == {"a@r2": (tmp_path / "a", 2), "a@r1": (tmp_path / "a", 1)}
    result = choose_ensemble(members, tmp_path / "ens")
    # round 1 ranks each gold third behind two decoys: AP 1/3; round 2 and b as in _complementary
    singles = {s["name"]: s["map@25"] for s in result["singles"]}
    assert singles == pytest.approx({"a@r1": 1 / 3, "a@r2": 0.75, "b": 0.75})
    assert result["read"]["a@r1"] == ["fold_0/round_1/candidates_val.parquet", "fold_1/round_1/candidates_val.parquet"]
    assert result["chosen"]["kind"] == "fused" and result["out_of_fold"][0]["map@25"] == pytest.approx(1.0)
    assert result["runs"]["a@r1"] == f"{tmp_path / 'a'}@1"
    doc = yaml.safe_load((tmp_path / "ens" / "ensemble.yaml").read_text())
    assert doc["runs"] == ["a@r1", "a@r2", "b"]
    # each run alone: b is its one member (0.75: the ensemble adds 0.25); a's two rounds fused already rank every
    # gold first (it is in both rounds, each decoy in one), so b adds nothing to a
    alone = {r["name"]: r for r in result["each_run_alone"]}
    assert alone["b alone"]["map@25"] == pytest.approx(0.75) and alone["b alone"]["gain"] == pytest.approx(0.25)
    assert alone["a alone"]["map@25"] == pytest.approx(1.0) and alone["a alone"]["gain"] == pytest.approx(0.0)
    assert all(p.startswith(("rrf(a@r1", "rank_average(a@r1", "score_sum(a@r1")) and "b=0.00" in p
               for p in alone["a alone"]["picks"])
    assert "## Each run alone" in (tmp_path / "ens" / "ensemble.md").read_text()


def test_bad_member_specs_say_what_is_wrong(tmp_path):
    _complementary(tmp_path)
    with pytest.raises(ValueError, match=r"a@x: rounds after @ are numbers"):
        parse_members([str(tmp_path / "a") + "@x"])
    with pytest.raises(FileNotFoundError, match=r"fold_0/round_3 has no rerank_val.parquet or candidates_val.parquet"):
        choose_ensemble(parse_members([str(tmp_path / "a") + "@3", str(tmp_path / "b")]))
    with pytest.raises(ValueError, match="7 members"):
        choose_ensemble(parse_members([str(tmp_path / "a") + "@1,2,1,2,1,2", str(tmp_path / "b")]))


def test_apply_reads_the_named_round_of_a_full_run(tmp_path):
    ids = list(range(30))
    _full_run(tmp_path / "fa", ids)
    write_parquet(tmp_path / "fa" / "round_2" / "candidates_test.parquet",
                  pd.read_parquet(tmp_path / "fa" / "round_1" / "candidates_test.parquet").assign(
                      item_id=lambda d: 29 - d["item_id"]))
    _full_run(tmp_path / "fb", ids)
    choices = tmp_path / "ensemble.yaml"
    choices.write_text(yaml.safe_dump({"runs": ["fa@r1", "fa@r2", "fb"], "method": "none", "weights": [1.0],
                                       "chosen": "fa@r1"}))
    members = list(parse_members([str(tmp_path / "fa") + "@1,2", str(tmp_path / "fb")]).values())
    sub = pd.read_csv(apply_ensemble(members, choices, tmp_path / "out"), dtype=str)
    assert sub["MisconceptionId"].iloc[0].split()[:3] == ["0", "1", "2"]  # round 1, not the last round (29, 28, ...)
    with pytest.raises(ValueError, match=r"fuses 3 members \(fa@r1, fa@r2, fb\); 2 given"):
        apply_ensemble([tmp_path / "fa", tmp_path / "fb"], choices, tmp_path / "out2")
