"""The real notebooks under papermill for the other tasks (OAG-AQA, a BEIR folder) on tiny data, through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from utils.config import REPO_ROOT
from utils.io import read_jsonl
from utils.tasks import get_task

TINY = """\
seed: 0
data: {{task: {task}}}
mining: {{n: 3, range_min: 2, range_max: 30}}
train: {{epochs: {epochs}, batch_size: 8, n_negatives: 3, lr: 1.0e-4, max_query_length: 64, max_passage_length: 64, log_every: 1}}
recall: {{k: 30}}
embedder: {{batch_size: 32}}
submission: {{dir: null}}
rerank: {{epochs: 1, n_negatives: 3, top_k: 10, max_length: 128, batch_size: 16, max_groups: 40}}
notebooks: {notebooks}
"""


def _tiny_aqa(out):
    """The first 48 train questions of the bundled OAG-AQA sample, 10 test questions, the papers they cite + 60 more."""
    src = get_task("aqa").sample_dir
    out.mkdir()
    train = src.joinpath("qa_train.txt").read_text().splitlines()[:48]
    test = src.joinpath("qa_test_wo_ans.txt").read_text().splitlines()[:10]
    papers = json.loads(src.joinpath("pid_to_title_abs_update_filter.json").read_text())
    cited = {p for line in train for p in json.loads(line)["pids"]}
    keep = cited | set(list(papers)[:60])
    (out / "qa_train.txt").write_text("\n".join(train) + "\n")
    (out / "qa_test_wo_ans.txt").write_text("\n".join(test) + "\n")
    (out / "pid_to_title_abs_update_filter.json").write_text(json.dumps({p: v for p, v in papers.items() if p in keep}))
    return out


def _run(tmp_path, task, data_dir, notebooks, epochs=2):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY.format(task=task, notebooks=notebooks, epochs=epochs))
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "utils", "run", "--task", task, "--data-dir", str(data_dir),
                           "--config", str(cfg), "--out", str(out), "--quiet"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


@pytest.mark.parametrize("notebooks", [["01_mine_hn", "02_train_embedder", "03_eval_embedder", "04_recall",
                                        "05_train_reranker", "06_rerank", "08_fuse_submit"]])
def test_aqa_chain_writes_a_valid_submission(tmp_path, notebooks):
    task = get_task("aqa")
    data_dir = _tiny_aqa(tmp_path / "aqa")
    out, stdout = _run(tmp_path, "aqa", data_dir, notebooks, epochs=1)
    data = task.load(data_dir)
    sub = out / "submission.txt"
    assert f"submission: {sub}" in stdout
    task.validate_submission(sub, data)  # one line per test question, 20 distinct known pids
    lines = sub.read_text().splitlines()
    assert len(lines) == 10 and all(len(line.split(",")) == 20 for line in lines)
    m = json.loads((out / "round_1" / "metrics.json").read_text())
    for stage in ("base", "finetuned"):
        r = m["03_eval_embedder"][stage]
        assert "map@25" not in r and 0 < r["map@20"] <= 1 and r["recall@1"] <= r["recall@20"] <= r["recall@100"] <= 1
    assert "reranked" in m["06_rerank"] and "map@20" in m["06_rerank"]["reranked"]
    # several positives: every record lists all of its question's papers, none of them a negative
    positives = dict(zip(data.queries["query_id"], data.queries["positives"]))
    records = read_jsonl(out / "round_1" / "hard_negatives.jsonl")
    multi = [r for r in records if len(positives[r["query_id"]]) > 1]
    assert multi, "the tiny sample should hold questions with several papers"
    for r in records:
        assert sorted(r["pos_ids"]) == sorted(positives[r["query_id"]])
        assert not set(r["pos_ids"]) & set(r["neg_ids"])


def test_beir_folder_runs_without_code(tmp_path):
    task = get_task("beir")
    out, stdout = _run(tmp_path, "beir", task.sample_dir,
                       ["01_mine_hn", "02_train_embedder", "03_eval_embedder", "04_recall", "08_fuse_submit"],
                       epochs=1)
    data = task.load(task.sample_dir)
    run_file = out / "run.trec"
    task.validate_submission(run_file, data)
    rows = [line.split() for line in run_file.read_text().splitlines()]
    assert len(rows) == len(data.test) * task.metric_k
    assert [r[0] for r in rows[:: task.metric_k]] == data.test["query_id"].tolist()  # test order
    m = json.loads((out / "round_1" / "metrics.json").read_text())
    assert 0 < m["03_eval_embedder"]["finetuned"][f"map@{task.metric_k}"] <= 1
