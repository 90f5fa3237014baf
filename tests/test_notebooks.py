"""Execute the real notebooks with papermill on tiny data, through the CLI, then resume."""

from __future__ import annotations

import json
import time

import nbformat
import pandas as pd
import pytest

from utils.config import REPO_ROOT, load_config
from utils.io import read_jsonl
from utils.tasks import get_task
from utils.run.runner import run_chain, run_notebook
from utils.tasks.eedi import validate_submission


def test_chain_writes_every_artifact(finished_run, tiny_data, tiny_config):
    out, stdout, _ = finished_run
    rnd = out / "round_1"
    for name in load_config(tiny_config)["notebooks"]:
        nb = nbformat.read(rnd / f"{name}.ipynb", as_version=4)
        assert nb.metadata["kernelspec"]["name"] == "python3"
        assert nb.metadata["papermill"]["parameters"]["round_idx"] == 1  # typed, not "1"
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors
    assert f"submission: {out / 'submission.csv'}" in stdout
    for f in ["config.yaml", "hard_negatives.jsonl", "embedder/embedder_config.json", "candidates_val.parquet",
              "candidates_test.parquet", "reranker/train_log.json", "rerank_val.parquet", "rerank_test.parquet",
              "metrics.json", "submission.csv", "timings.json"]:
        assert (rnd / f).exists(), f
    assert (out / "split.parquet").exists()


def test_submission_is_valid_for_test_csv(finished_run, tiny_data):
    out, _, _ = finished_run
    task = get_task("eedi")
    data = task.load(tiny_data)
    expected = data.test["query_id"].tolist()
    sub = validate_submission(out / "submission.csv", expected, data.corpus["item_id"])
    assert len(sub) == 3 * 6
    task.validate_submission(out / "submission.csv", data)  # the task's own check agrees


def test_hard_negatives_follow_the_config(finished_run):
    out, _, _ = finished_run
    recs = read_jsonl(out / "round_1" / "hard_negatives.jsonl")
    split = pd.read_parquet(out / "split.parquet")
    assert len(recs) > 0
    train_q = set(split.query("fold == 'train'")["group"])
    for r in recs:
        assert len(r["neg_ids"]) == 3 and r["pos_ids"] and set(r["pos_ids"]).isdisjoint(r["neg_ids"])
        assert int(r["query_id"].split("_")[0]) in train_q  # never a validation question


def test_metrics_are_real_numbers(finished_run):
    out, _, _ = finished_run
    m = json.loads((out / "round_1" / "metrics.json").read_text())
    base, tuned = m["03_eval_embedder"]["base"], m["03_eval_embedder"]["finetuned"]
    for r in (base, tuned):
        assert 0 < r["map@25"] <= 1 and r["recall@1"] <= r["recall@25"] <= r["recall@100"] <= 1
    assert tuned["map@25"] != base["map@25"]  # the fine-tuned model is really used
    assert m["04_recall"]["val"] == tuned  # same model, same queries
    rr = m["06_rerank"]
    assert rr["retrieval"] == tuned and 0.0 <= rr["blend_alpha"] <= 1.0
    assert rr["reranked"]["map@25"] >= rr["retrieval"]["map@25"] - 1e-9  # tuned blend includes alpha=0
    g = rr["gain_ci"]
    assert g["gain"] == pytest.approx(rr["reranked"]["map@25"] - rr["retrieval"]["map@25"], abs=1e-9)
    assert g["lo"] <= g["gain"] <= g["hi"]
    nb = json.loads((out / "round_1" / "06_rerank.ipynb").read_text())
    printed = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    assert "MAP@25 gain over retrieval" in printed
    oof = rr["gain_out_of_fold"]  # alpha tuned on the other questions (utils.rerank.blend.out_of_fold_ap)
    assert oof["lo"] <= oof["gain"] <= oof["hi"] and f"tuned out of fold (alpha chosen on the other half of the questions): " \
        f"{oof['gain']:+.4f}" in printed
    assert rr["item_prior_weight"] == 0.0 and "item prior weight: 0.0" in printed  # no fitted bias by default
    assert m["08_fuse_submit"]["final"]["map@25"] == pytest.approx(rr["reranked"]["map@25"])  # one round: no fusion


def test_round_two_mines_with_round_one_and_fuses(finished_run):
    out, _, _ = finished_run
    m2 = json.loads((out / "round_2" / "metrics.json").read_text())
    assert m2["01_mine_hn"]["mining_model"] == str(out / "round_1" / "embedder")
    fused = m2["08_fuse_submit"]
    assert fused["inputs"] == ["round_1/rerank", "round_2/rerank"]
    assert fused["method"] in ("rrf", "rank_average", "score_sum") and len(fused["weights"]) == 2
    singles = [json.loads((out / f"round_{r}" / "metrics.json").read_text())["06_rerank"]["reranked"]["map@25"] for r in (1, 2)]
    assert fused["final"]["map@25"] >= max(singles) - 1e-9  # tuned weights include each round alone


def test_rerun_resumes_without_redoing(finished_run, tiny_data, tiny_config):
    out, _, first = finished_run
    before = (out / "round_1" / "submission.csv").stat().st_mtime_ns
    t0 = time.perf_counter()
    results = run_chain(out, tiny_data, "v1", 2, tiny_config, verbose=False)
    assert {r.status for r in results} == {"skipped"}
    assert time.perf_counter() - t0 < first / 3
    assert (out / "round_1" / "submission.csv").stat().st_mtime_ns == before


def test_interrupted_round_two_resumes_with_same_numbers(finished_run, tiny_data, tiny_config):
    out, _, _ = finished_run
    rnd = out / "round_2"
    before = json.loads((rnd / "metrics.json").read_text())
    # What a kill inside 06 leaves: 06 and 08 unfinished, a partial temp notebook of 06.
    (rnd / "06_rerank.ipynb").unlink()
    (rnd / "08_fuse_submit.ipynb").unlink()
    (rnd / ".06_rerank.running.ipynb").write_text("{partial")
    results = run_chain(out, tiny_data, "v1", 2, tiny_config, verbose=False)
    assert [(r.round_idx, r.notebook) for r in results if r.status == "ran"] == [(2, "06_rerank"), (2, "08_fuse_submit")]
    after = json.loads((rnd / "metrics.json").read_text())
    assert after["06_rerank"] == before["06_rerank"]
    assert after["08_fuse_submit"] == before["08_fuse_submit"]


def test_unknown_parameter_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="not declared"):
        run_notebook(REPO_ROOT / "notebooks" / "01_mine_hn.ipynb", tmp_path / "x.ipynb", {"run_dirr": "x"})
    assert not (tmp_path / "x.ipynb").exists()
