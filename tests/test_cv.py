"""Cross-validation: fold partitions, pooled out-of-fold scores, CV choices, compare, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import TINY_CONFIG

from utils.run import cv
from utils.config import REPO_ROOT, SAMPLE_DATA_DIR, dump_config, load_config
from utils.tasks import get_task
from utils.fusion import per_pair_ap, tune_weights, weight_grid
from utils.io import write_parquet, write_text
from utils.run.runner import untuned_fallbacks
from utils.splits import cv_folds, make_split, query_groups, unseen_share


@pytest.fixture(scope="module")
def data():
    return get_task("eedi").load(SAMPLE_DATA_DIR)


@pytest.fixture(scope="module")
def groups(data):
    """One row per question (the Eedi query group), what splits deal."""
    return query_groups(data.queries)


@pytest.mark.parametrize("scheme", ["v1", "v2"])
def test_cv_folds_put_every_question_in_one_fold(data, groups, scheme):
    assert len(groups) == data.queries["QuestionId"].nunique()  # one group per Eedi question
    folds = cv_folds(groups, scheme, n_folds=4, seed=3)
    assert folds.shape == (len(groups),) and set(folds) == {0, 1, 2, 3}
    np.testing.assert_array_equal(folds, cv_folds(groups, scheme, n_folds=4, seed=3))
    vals = [set(make_split(groups, "cv", n_folds=4, fold=k, seed=3, cv_scheme=scheme).query("fold == 'val'")["group"])
            for k in range(4)]
    assert sum(map(len, vals)) == len(groups) and set().union(*vals) == set(groups["group"])


def test_cv_v1_folds_are_v1_splits(groups):
    for k in range(3):
        a = make_split(groups, "cv", n_folds=3, fold=k, seed=5, cv_scheme="v1")
        b = make_split(groups, "v1", n_folds=3, fold=k, seed=5)
        pd.testing.assert_frame_equal(a, b)


def test_cv_v2_folds_hold_out_their_own_misconceptions(data, groups):
    pairs = data.queries
    v1 = np.mean([unseen_share(make_split(groups, "cv", n_folds=4, fold=k, cv_scheme="v1"), pairs) for k in range(4)])
    v2 = np.mean([unseen_share(make_split(groups, "cv", n_folds=4, fold=k, cv_scheme="v2"), pairs) for k in range(4)])
    assert v2 > v1 + 0.15


def test_bad_cv_arguments(groups):
    with pytest.raises(ValueError, match="unknown cv scheme"):
        cv_folds(groups, "v3")
    with pytest.raises(ValueError, match="fold 5 outside"):
        make_split(groups, "cv", n_folds=5, fold=5)


# -- hand-made CV runs -------------------------------------------------------------------------
def _ranking(rows: dict[str, list[int]], scores: dict[str, list[float]] | None = None) -> pd.DataFrame:
    out = []
    for q, items in rows.items():
        for i, m in enumerate(items):
            s = scores[q][i] if scores else 1.0 - 0.01 * i
            out.append({"query_id": q, "item_id": m, "rank": i + 1, "score": s})
    return pd.DataFrame(out)


def _fold(root, k: int, r: int, gold: dict[str, int | tuple[int, ...]], candidates: dict[str, list[int]], base=None,
          rerank=None, config: dict | None = None) -> None:
    d = root / f"fold_{k}" / f"round_{r}"
    pairs = pd.DataFrame({"query_id": list(gold), "group": [int(q.split("_")[0]) for q in gold],
                          "positives": [(g,) if isinstance(g, int) else tuple(g) for g in gold.values()]})
    write_parquet(d / "val_pairs.parquet", pairs)
    write_parquet(d / "candidates_val.parquet", _ranking(candidates))
    if base:
        write_parquet(d / "base_val.parquet", _ranking(base))
    if rerank is not None:
        write_parquet(d / "rerank_scores_val.parquet", rerank)
    write_text(d / "config.yaml", dump_config(load_config(None, config or {})))


def test_pooled_table_scores_every_pair_once(tmp_path):
    # fold 0: 1_A gold first (AP 1), 1_B gold second (1/2); fold 1: 2_A first (1), 2_C third (1/3)
    _fold(tmp_path, 0, 1, {"1_A": 1, "1_B": 2}, {"1_A": [1, 5], "1_B": [5, 2]}, base={"1_A": [5, 1], "1_B": [2, 5]})
    _fold(tmp_path, 1, 1, {"2_A": 3, "2_C": 4}, {"2_A": [3, 9], "2_C": [9, 8, 4]}, base={"2_A": [9, 3], "2_C": [4, 9]})
    table = cv.stage_table(tmp_path).set_index("stage")
    assert table.loc["retrieval", "map@25"] == pytest.approx((1 + 0.5 + 1 + 1 / 3) / 4)
    assert table.loc["base", "map@25"] == pytest.approx((0.5 + 1 + 0.5 + 1) / 4)
    assert table.loc["retrieval", "folds"] == 2 and table.loc["retrieval", "pairs"] == 4
    result = cv.choose(tmp_path)
    pooled = pd.read_parquet(tmp_path / "cv_pairs.parquet")
    for stage, part in pooled.groupby("stage"):
        assert sorted(part["query_id"]) == ["1_A", "1_B", "2_A", "2_C"], stage  # each pair exactly once
    assert dict(zip(part["query_id"], part["fold"])) == {"1_A": 0, "1_B": 0, "2_A": 1, "2_C": 1}
    assert result["chosen"]["name"] == "round_1/candidates"
    choices = yaml.safe_load((tmp_path / "choices.yaml").read_text())
    assert choices["config"]["fusion"] == {"method": "none", "rounds": [1], "sources": ["candidates"],
                                           "prior_weight": 0.0, "sibling_weight": 0.0}  # not re-scored: off
    assert "05_train_reranker" not in choices["config"]["notebooks"]  # no reranker to choose: the run skips it


def test_cv_reports_seen_and_unseen_items_apart(tmp_path):
    # gold 1 is a positive in both folds (seen by each); golds 2 and 4 only in their own fold (unseen).
    # Retrieval AP: 1_A 1, 1_B 1/2, 2_A 1, 2_C 1/3 -> seen (1 + 1) / 2 = 1, unseen (1/2 + 1/3) / 2 = 5/12
    _fold(tmp_path, 0, 1, {"1_A": 1, "1_B": 2}, {"1_A": [1, 5], "1_B": [5, 2]})
    _fold(tmp_path, 1, 1, {"2_A": 1, "2_C": 4}, {"2_A": [1, 9], "2_C": [9, 8, 4]})
    result = cv.choose(tmp_path)
    assert result["unseen_pairs"] == 2
    stages = {s["stage"]: s for s in result["stages"]}
    assert stages["retrieval"]["map@25_seen"] == pytest.approx(1.0)
    assert stages["retrieval"]["map@25_unseen"] == pytest.approx(5 / 12)
    assert stages["final"]["gain_unseen"] == pytest.approx(0.0)  # final is the retrieval here
    md = (tmp_path / "cv.md").read_text()
    assert "## Seen and unseen items" in md and "2 of 4 pairs have no positive" in md and "0.4167" in md
    # several positives: seen when any of them is another fold's positive
    pairs = pd.DataFrame({"fold": [0, 0, 1, 1], "positives": [(1, 7), (2,), (7,), (3, 8)]})
    assert cv.unseen_pairs(pairs).tolist() == [False, True, False, True]


def test_cv_scores_at_the_runs_k_with_several_positives(tmp_path):
    # an AQA-like run (submission.k 3 in its rounds' config.yaml, several positives per query):
    # 1_A: positives 1 and 7 at ranks 1 and 3 -> AP@3 (1 + 2/3) / 2 = 5/6; 1_B: gold 4th -> 0 at k 3 (1/4 at 25);
    # 2_A: gold second -> 1/2. MAP@3 = (5/6 + 0 + 1/2) / 3 = 4/9; 2 of 3 queries have a positive in the top 3
    k3 = {"submission": {"k": 3}}
    _fold(tmp_path, 0, 1, {"1_A": (1, 7), "1_B": 2}, {"1_A": [1, 5, 7], "1_B": [5, 6, 8, 2]}, config=k3)
    _fold(tmp_path, 1, 1, {"2_A": 3}, {"2_A": [9, 3]}, config=k3)
    table = cv.stage_table(tmp_path).set_index("stage")
    assert "map@25" not in table and table.loc["retrieval", "map@3"] == pytest.approx(4 / 9)
    # hit@3 counts queries with any positive in the top 3 (Recall@3 would be (1/2 + 0 + 1) / 3 here)
    assert table.loc["retrieval", "hit@3"] == pytest.approx(2 / 3) and table.loc["retrieval", "pairs"] == 3
    result = cv.choose(tmp_path)
    assert result["k"] == 3 and result["chosen"]["pooled"]["map@3"] == pytest.approx(4 / 9)
    assert result["one_positive"] is False
    stages = {s["stage"]: s for s in result["stages"]}
    assert stages["retrieval"]["map@3"] == pytest.approx(4 / 9) and "map@25" not in stages["retrieval"]
    pooled = pd.read_parquet(tmp_path / "cv_pairs.parquet")
    retrieval = pooled[pooled["stage"] == "retrieval"].set_index("query_id")["ap"]
    assert retrieval.to_dict() == pytest.approx({"1_A": 5 / 6, "1_B": 0.0, "2_A": 0.5})
    gains = cv.stage_gains(pooled, k=3).set_index("stage")
    assert gains.loc["retrieval", "map@3"] == pytest.approx(4 / 9)
    assert yaml.safe_load((tmp_path / "choices.yaml").read_text())["cv"]["pooled_map@3"] == pytest.approx(0.4444)
    assert "MAP@3 with a 95% bootstrap interval" in (tmp_path / "cv.md").read_text()


def _rerank_run(root, good: bool, n_questions: int = 40) -> None:
    """Two folds; retrieval ranks each gold third; the reranker scores it first (good) or last (bad)."""
    for k in range(2):
        qs = [f"{q}_A" for q in range(k * n_questions // 2, (k + 1) * n_questions // 2)]
        gold = {q: 100 + i for i, q in enumerate(qs)}
        cands = {q: [1, 2, g, 3, 4] for q, g in gold.items()}
        rows = []
        for q, items in cands.items():
            for m in items:
                hit = m == gold[q]
                rows.append({"query_id": q, "item_id": m,
                             "reranker_score": (5.0 if good else -5.0) if hit else 0.0, "item_prior": 0.0, "top_k": 5})
        _fold(root, k, 1, gold, cands, rerank=pd.DataFrame(rows),
              config={"rerank": {"item_prior_weight": 0.0}})


def test_choose_keeps_a_reranker_that_helps(tmp_path):
    _rerank_run(tmp_path, good=True)
    result = cv.choose(tmp_path)
    assert result["chosen"]["kind"] == "reranked" and result["chosen"]["pooled"]["map@25"] == pytest.approx(1.0)
    stages = {s["stage"]: s for s in result["stages"]}
    assert stages["retrieval"]["map@25"] == pytest.approx(1 / 3)
    assert stages["reranked"]["map@25"] == pytest.approx(1.0)  # out of fold: each fold's alpha from the other
    assert stages["final"]["gain"] == pytest.approx(2 / 3) and stages["final"]["gain_lo"] > 0
    config = yaml.safe_load((tmp_path / "choices.yaml").read_text())["config"]
    alpha = float(result["chosen"]["name"].split("a=")[1].rstrip(")"))
    assert config["rerank"] == {"blend": alpha, "item_prior_weight": 0.0} and "notebooks" not in config
    assert config["fusion"] == {"method": "none", "rounds": [1], "sources": ["rerank"], "prior_weight": 0.0,
                                "sibling_weight": 0.0}


def test_choose_drops_a_reranker_that_does_not_help(tmp_path):
    _rerank_run(tmp_path, good=False)
    result = cv.choose(tmp_path)
    assert result["chosen"]["name"] == "round_1/candidates"
    config = cv.read_choices(tmp_path / "choices.yaml")
    assert config["notebooks"] == [n for n in load_config()["notebooks"] if n not in ("05_train_reranker", "06_rerank")]


def test_fusion_of_the_last_round_reranked_with_earlier_recalls(tmp_path):
    """rerank.rounds: last reranks round 2 only; 08's sources [rerank, candidates] then fuse round 2's rerank
    with round 1's recall, and CV must offer that fusion. 1_A (gold 7): round 1 recalls [7, 1, 2], round 2
    [1, 2, 7] and its reranker puts 7 first. Equal-weight RRF (k 60) of the two recalls: 1 scores
    1/62 + 1/61 > 7's 1/61 + 1/63, gold second, AP 1/2; of round 1's recall and round 2's rerank: gold first
    in both, AP 1."""
    rr = pd.DataFrame({"query_id": "1_A", "item_id": [1, 2, 7], "reranker_score": [0.0, 0.0, 5.0],
                       "item_prior": 0.0, "top_k": 3})
    cfg = {"rerank": {"item_prior_weight": 0.0}}
    _fold(tmp_path, 0, 1, {"1_A": 7}, {"1_A": [7, 1, 2]}, config=cfg)
    _fold(tmp_path, 0, 2, {"1_A": 7}, {"1_A": [1, 2, 7]}, rerank=rr, config=cfg)
    alts, info = cv.alternatives(tmp_path)
    by_name = dict(zip(alts.names, zip(alts.ap, alts.specs)))
    assert by_name["fused(rrf,candidates,w=0.50/0.50)"][0].tolist() == [0.5]
    ap, spec = by_name["fused(rrf,rerank+candidates,w=0.50/0.50)"]
    assert ap.tolist() == [1.0]
    assert spec["fusion"] == {"method": "rrf", "rounds": [1, 2], "sources": ["rerank", "candidates"],
                              "weights": [0.5, 0.5]}
    assert spec["rerank"] == info["fusion_rerank_setting"]  # 06's blend for round 2, as the fusion used it
    assert not any(n.startswith("fused(rrf,rerank,") for n in alts.names)  # one reranked round: nothing to fuse


def test_per_pair_ap_matches_tune_weights():
    a = _ranking({"q1": [1, 2, 3], "q2": [4, 5, 6], "q3": [7, 8, 9]})
    b = _ranking({"q1": [3, 2, 1], "q2": [6, 4, 5], "q3": [9, 7, 8]})
    pairs = pd.DataFrame({"query_id": ["q1", "q2", "q3", "q4"], "positives": [(3,), (4,), (8,), (1,)]})
    for method in ("rrf", "rank_average", "score_sum"):
        w, best = tune_weights([a, b], pairs, method)
        ap = per_pair_ap([a, b], pairs, method, [w])[0]
        assert ap.mean() == pytest.approx(best) and ap[3] == 0.0  # q4 is in no ranking
    ap = per_pair_ap([a, b], pairs, "rrf", weight_grid(2))
    assert ap.shape == (len(weight_grid(2)), 4)
    np.testing.assert_allclose(ap[weight_grid(2).index((1.0, 0.0))], [1 / 3, 1.0, 0.5, 0.0])


def test_compare_prints_the_hand_computed_paired_difference(tmp_path):
    # A: AP 1, 1/2, 0, 1/4; B: 1, 1, 1/2, 1/4 -> B - A = (0 + 1/2 + 1/2 + 0) / 4 = 0.25
    for name, ap in (("a", [1.0, 0.5, 0.0, 0.25]), ("b", [1.0, 1.0, 0.5, 0.25]), ("z", [0.0, 0.0, 0.0, 0.0])):
        write_parquet(tmp_path / name / "cv_pairs.parquet", pd.DataFrame({
            "query_id": ["1_A", "1_B", "2_A", "3_A"], "group": [1, 1, 2, 3], "fold": [0, 0, 1, 1],
            "round": 1, "stage": "retrieval", "ap": ap}))
    proc = subprocess.run([sys.executable, "-m", "utils", "compare", "--run", str(tmp_path / "a"), "--run", str(tmp_path / "b"),
                           "--out", str(tmp_path / "cmp")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    table = cv.compare({"a": tmp_path / "a", "b": tmp_path / "b"})
    row = table.iloc[0]
    assert row["b - a"] == pytest.approx(0.25) and row["a map@25"] == pytest.approx(1.75 / 4)
    assert row["b hit@25"] == 1.0 and row["a hit@25"] == 0.75
    # questions resampled whole: question 1's pairs move together, so the gain lies in [0, 0.5]
    assert 0.0 <= row["b - a lo"] <= 0.25 <= row["b - a hi"] <= 0.5
    # three runs: each difference keeps its own interval (z - a = -1.75 / 4; question 1 alone is -1.5 / 2)
    row = cv.compare({"a": tmp_path / "a", "b": tmp_path / "b", "z": tmp_path / "z"}).iloc[0]
    assert row["z - a"] == pytest.approx(-0.4375) and row["z - a lo"] <= -0.4375 <= row["z - a hi"] <= 0
    assert 0.0 <= row["b - a lo"] <= 0.25 <= row["b - a hi"] <= 0.5
    assert "0.2500" in proc.stdout and (tmp_path / "cmp" / "compare.md").read_text().count("0.2500") >= 1
    # a run scored at another cut-off (an AQA run: MAP@20) is refused, not labelled with the first run's k
    write_parquet(tmp_path / "c" / "cv_pairs.parquet", pd.read_parquet(tmp_path / "b" / "cv_pairs.parquet").assign(k=20))
    with pytest.raises(ValueError, match="different MAP cut-offs"):
        cv.compare({"a": tmp_path / "a", "c": tmp_path / "c"})
    write_parquet(tmp_path / "d" / "cv_pairs.parquet", pd.read_parquet(tmp_path / "c" / "cv_pairs.parquet"))
    assert "d map@20" in cv.compare({"c": tmp_path / "c", "d": tmp_path / "d"}).columns


def test_untuned_fallbacks_are_named():
    cfg = load_config(None, {"rerank": {"item_prior_weight": "tune"}})
    said = untuned_fallbacks(cfg, rounds=3)
    assert any("alpha 0.4" in s for s in said) and any("item prior" in s for s in said)
    assert any("equal-weight rrf" in s for s in said)
    assert untuned_fallbacks(cfg, rounds=1)[-1].startswith("06 adds no item prior")
    chosen = load_config(None, {"rerank": {"blend": 0.3}, "fusion": {"method": "none"}})
    assert untuned_fallbacks(chosen, rounds=3) == []


# -- the real notebooks: a tiny CV run, then a full run applying planted choices ----------------------
# the tests' tiny config: two folds, one training epoch, the retrieval chain
CV_CONFIG = (TINY_CONFIG.replace("seed: 0\n", "seed: 0\nsplit: {n_folds: 2}\n").replace("epochs: 2,", "epochs: 1,")
             .replace("05_train_reranker, 06_rerank, ", ""))


def _cli(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "utils", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_cv_run_pools_every_labelled_pair_once(tmp_path, tiny_data):
    config = tmp_path / "cv.yaml"
    config.write_text(CV_CONFIG)
    out = tmp_path / "cv"
    first = _cli("run", "--split", "cv", "--data-dir", str(tiny_data), "--config", str(config), "--out", str(out), "--folds", "1")
    assert "folds [0] have not finished" in first.stdout and not (out / "cv.json").exists()
    fold1_seconds = json.loads((out / "fold_1" / "fold_seconds.json").read_text())["seconds"]
    done = _cli("run", "--split", "cv", "--data-dir", str(tiny_data), "--config", str(config), "--out", str(out))
    assert "round 1 01_mine_hn: done already" in done.stdout.split("== fold 1 of 2")[1]  # fold 1 resumed, not redone
    # its time is the run's, not the resume's (folds run in parallel processes are pooled this way)
    assert json.loads((out / "fold_1" / "fold_seconds.json").read_text())["seconds"] == fold1_seconds > 1
    assert "Stages (choices made out of fold" in done.stdout
    queries = get_task("eedi").load(tiny_data).queries
    labelled = queries[queries["positives"].map(len) > 0]
    pooled = pd.read_parquet(out / "cv_pairs.parquet")
    for stage in ("base", "retrieval", "final"):
        part = pooled[pooled["stage"] == stage]
        assert part["query_id"].is_unique and set(part["query_id"]) == set(labelled["query_id"])
    for k, seen in ((1, 1), (0, 2)):  # each fold scored exactly its own validation questions
        split = pd.read_parquet(out / f"fold_{k}" / "split.parquet")
        held = set(split.loc[split["fold"] == "val", "group"])
        assert set(pooled.loc[pooled["fold"] == k, "group"]) == held
        nb = json.loads((out / f"fold_{k}" / "round_1" / "03_eval_embedder.ipynb").read_text())
        printed = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
        assert f"cross-validation: {seen} of 2 folds pooled" in printed  # fold 1 ran first, alone
    report = json.loads((out / "cv.json").read_text())
    retrieval = next(s for s in report["stages"] if s["stage"] == "retrieval")
    assert retrieval["pairs"] == len(labelled) and retrieval["lo"] <= retrieval["map@25"] <= retrieval["hi"]
    assert (out / "choices.yaml").exists()
    # 08's re-scoring is among the alternatives (the recall at each grid point) and reported as a stage
    names = {a["name"] for a in report["alternatives"]}
    assert "round_1/candidates+rescore(p=0.05,s=-0.1)" in names and "round_1/candidates+rescore(p=0,s=-0.2)" in names
    assert any(s["stage"] == "rescored" and "gain" in s for s in report["stages"])
    # what benchmarks/device_cv.sh copies back from the GPU machine (no notebooks, no models) pools to the same report
    runs, back, results = tmp_path / "runs", tmp_path / "out", tmp_path / "results"
    runs.mkdir(), back.mkdir(), results.mkdir()
    (runs / "init_previous_v1_r1").symlink_to(out, target_is_directory=True)
    res = tmp_path / "res"  # the device's pooled results: none yet

    def collect(**env) -> list:
        subprocess.run(["bash", "benchmarks/device_cv.sh", "collect"], cwd=REPO_ROOT, check=True, timeout=120,
                       env={**os.environ, "OUT": str(back), "RUNS": str(runs), "RES": str(res), **env})
        return sorted(back.glob("init_previous_v1_r1.tgz.part_*"))

    # pooled on the device: res.tgz, then its fold files too while they fit; FOLDS_OF: the named variants' only
    res.mkdir(), (res / "cv_pairs_init_previous.parquet").write_bytes(b"")
    assert collect() and (back / "res.tgz").exists()
    assert collect(FOLDS_OF="mpnet") == []
    assert collect(FOLDS_OF="mpnet,init_previous")
    (res / "cv_pairs_init_previous.parquet").unlink()
    parts = collect()  # not pooled: its fold files come back
    assert parts and not list(back.rglob("*.ipynb"))
    (tmp_path / "copied" / "init_previous_v1_r1").mkdir(parents=True)
    subprocess.run(f"cat {' '.join(map(str, parts))} | tar xz -C {tmp_path / 'copied' / 'init_previous_v1_r1'}",
                   shell=True, check=True)
    subprocess.run([sys.executable, "benchmarks/cv_defaults.py", "--pool-from", str(tmp_path / "copied"), "--variants",
                    "init_previous", "--rounds", "1", "--results", str(results)], cwd=REPO_ROOT, check=True, timeout=600)
    pooled_here = json.loads((results / "cv_init_previous.json").read_text())["cv"]
    assert [s["map@25"] for s in pooled_here["stages"]] == [s["map@25"] for s in report["stages"]]


def test_full_run_applies_planted_choices(tmp_path, tiny_data):
    config = tmp_path / "full.yaml"
    # 03 (zero-shot vs fine-tuned evaluation) plays no part in applying choices: left out to keep CI short
    config.write_text(CV_CONFIG.replace("04_recall, 08_fuse_submit", "04_recall, 05_train_reranker, 06_rerank, 08_fuse_submit")
                      .replace("03_eval_embedder, ", ""))
    choices = tmp_path / "choices.yaml"
    choices.write_text(yaml.safe_dump({"config": {"rerank": {"blend": 0.3, "item_prior_weight": 0.0},
                                                  "fusion": {"method": "none", "prior_weight": 0.1,
                                                             "sibling_weight": -0.2}},
                                       "cv": {"chosen": "planted"}}))
    out = tmp_path / "full"
    proc = _cli("run", "--split", "full", "--data-dir", str(tiny_data), "--config", str(config), "--out", str(out),
                "--choices", str(choices))
    assert "applying the CV choices" in proc.stdout and "WARNING" not in proc.stderr
    snap = yaml.safe_load((out / "round_1" / "config.yaml").read_text())
    assert snap["rerank"]["blend"] == 0.3 and snap["fusion"]["method"] == "none"
    m = json.loads((out / "round_1" / "metrics.json").read_text())
    assert m["06_rerank"]["blend_alpha"] == 0.3 and m["06_rerank"]["tuned_on_validation"] is False
    assert (out / "submission.csv").exists()
    # 08 re-scored the reranked test ranking with the planted weights, counts from every labelled pair
    from utils.metrics import ranking_lists
    from utils.rescore import item_counts, rescore

    assert m["08_fuse_submit"]["rescore"] == {"prior_weight": 0.1, "sibling_weight": -0.2}
    data = get_task("eedi").load(tiny_data)
    want = rescore(pd.read_parquet(out / "round_1" / "rerank_test.parquet"), data.test, item_counts(data.queries), 0.1, -0.2)
    sub = pd.read_csv(out / "submission.csv", dtype=str)
    ids = sub["QuestionId_Answer"].tolist()
    assert [s.split() for s in sub["MisconceptionId"]] == [[str(x) for x in lst[:25]] for lst in ranking_lists(want, ids)]


def test_a_choice_not_rescored_turns_rescoring_off():
    """choices.yaml overrides the config it is applied to: a plain ranking chosen by CV must switch off a
    re-scoring the config sets, and a re-scored one carries its weights."""
    nbs = ["01_mine_hn", "04_recall", "05_train_reranker", "06_rerank", "08_fuse_submit"]
    plain = cv._overrides({"fusion": {"method": "none", "rounds": [3], "sources": ["candidates"]}}, {"notebooks": nbs})
    assert plain["fusion"]["prior_weight"] == 0.0 and plain["fusion"]["sibling_weight"] == 0.0
    assert plain["notebooks"] == ["01_mine_hn", "04_recall", "08_fuse_submit"]
    spec = {"fusion": {"method": "none", "rounds": [3], "sources": ["candidates"], "prior_weight": 0.05,
                       "sibling_weight": -0.1}}
    cfg = load_config(None, {**cv._overrides(spec, {"notebooks": nbs}), "fusion": {**spec["fusion"]}})
    assert (cfg["fusion"]["prior_weight"], cfg["fusion"]["sibling_weight"]) == (0.05, -0.1)


def test_choices_apply_to_the_shipped_gpu_config(tmp_path):
    """The README's loop: CV of a shipped GPU config, then --split full --choices. Whatever CV picks (one round
    alone, re-scored, or another fusion) must load over gpu.yaml (no fusion) and gpu_retrieval.yaml (fusion
    weights fixed for rounds 1-3)."""
    from utils.config import REPO_ROOT

    for name in ("gpu.yaml", "gpu_retrieval.yaml"):
        gpu = load_config(REPO_ROOT / "configs" / name)
        for spec in ({"fusion": {"method": "none", "rounds": [3], "sources": ["candidates"]}},
                     {"fusion": {"method": "none", "rounds": [2], "sources": ["candidates"], "prior_weight": 0.05,
                                 "sibling_weight": -0.1}},
                     {"fusion": {"method": "rrf", "rounds": [2, 3], "sources": ["candidates"], "weights": [0.4, 0.6]}}):
            (tmp_path / "choices.yaml").write_text(yaml.safe_dump({"config": cv._overrides(spec, gpu)}))
            fusion = load_config(REPO_ROOT / "configs" / name, cv.read_choices(tmp_path / "choices.yaml"))["fusion"]
            assert {k: fusion[k] for k in spec["fusion"]} == spec["fusion"]
            assert fusion["weights"] == spec["fusion"].get("weights")


def _depth_run(root, gold_score: float, n_questions: int = 20) -> None:
    """Two folds; retrieval ranks each gold 4th of 5; the reranker scored all 5 (gold ``gold_score``, others 0)."""
    for k in range(2):
        qs = [f"{q}_A" for q in range(k * n_questions // 2, (k + 1) * n_questions // 2)]
        gold = {q: 100 + i for i, q in enumerate(qs)}
        cands = {q: [1, 2, 3, g, 4] for q, g in gold.items()}
        rows = [{"query_id": q, "item_id": m, "reranker_score": gold_score if m == gold[q] else 0.0,
                 "item_prior": 0.0, "top_k": 5} for q, items in cands.items() for m in items]
        _fold(root, k, 1, gold, cands, rerank=pd.DataFrame(rows), config={"rerank": {"item_prior_weight": 0.0}})


def test_rerank_depth_reranks_smaller_heads_with_the_same_scores(tmp_path):
    """Gold 4th: a head of 3 cannot lift it (AP 1/4 = retrieval's); over the head of 5 the blend puts it first
    once alpha > 0.46 (z-scores per query: gold 2 alpha - 0.71 (1 - alpha) against the first item's
    -0.5 alpha + 1.41 (1 - alpha)), AP 1. A second run scoring the gold -5 cancels the first one's z-scores when
    averaged: the retrieval order, AP 1/4."""
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    from rerank_depth import depth_table

    _depth_run(tmp_path / "good", 5.0)
    _depth_run(tmp_path / "bad", -5.0)
    systems, comparisons = depth_table(tmp_path / "good", [3, 5])
    got = dict(zip(systems["system"], systems["map@25"]))
    assert got == pytest.approx({"retrieval": 0.25, "top 3": 0.25, "top 5": 1.0})
    row = comparisons.set_index(["system", "over"]).loc[("top 5", "top 3")]
    assert row["gain"] == pytest.approx(0.75) and row["lo"] == pytest.approx(0.75)
    systems, _ = depth_table(tmp_path / "good", [5], also=tmp_path / "bad")
    got = dict(zip(systems["system"], systems["map@25"]))
    assert got["top 5"] == pytest.approx(1.0) and got["top 5, both runs averaged"] == pytest.approx(0.25)
    with pytest.raises(SystemExit, match="scored the top 5, not 10"):
        depth_table(tmp_path / "good", [5, 10])
