"""Tests for utils.run.report: collecting metrics.json files into a table and writing the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from utils.run.report import COLUMNS, collect, plot, write_report


def m(map25: float, r25: float, r100: float | None = None) -> dict:
    out = {"map@25": map25, "recall@1": 0.1, "recall@25": r25, "n_queries": 10}
    if r100 is not None:
        out["recall@100"] = r100
    return out


def m20(map20: float, r20: float, r100: float) -> dict:
    """An OAG-AQA round's figures (MAP@20); evaluate also logs recall@25, which must not be taken for recall@k."""
    return {"map@20": map20, "recall@1": 0.1, "recall@20": r20, "recall@25": 0.99, "recall@100": r100, "n_queries": 8}


def write_metrics(runs: Path, split: str, rnd: int | str, data: dict, k: int | None = None) -> None:
    d = runs / split / (f"round_{rnd}" if isinstance(rnd, int) else rnd)
    d.mkdir(parents=True, exist_ok=True)
    (d / "metrics.json").write_text(json.dumps(data))
    if k is not None:  # the round's config snapshot: submission.k is its MAP cut-off
        (d / "config.yaml").write_text(f"seed: 0\ndata: {{task: aqa}}\nsubmission:\n  k: {k}\n  dir: null\n")


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    write_metrics(runs, "fold0", 1, {
        "03_eval_embedder": {"base": m(0.20, 0.60, 0.80), "finetuned": m(0.30, 0.70, 0.90)},
        "06_rerank": {"retrieval": m(0.30, 0.70, 0.90), "reranked": m(0.40, 0.72, 0.90), "blend_alpha": 0.3},
        "08_fuse_submit": {"final": m(0.45, 0.75, 0.91), "method": "rrf", "weights": [0.5, 0.5]},
    })
    write_metrics(runs, "fold0", 2, {"06_rerank": {"reranked": m(0.50, 0.80)}})
    write_metrics(runs, "fold0", 10, {"04_recall": m(0.35, 0.71, 0.95)})  # metrics directly under stage
    write_metrics(runs, "fold1", 1, {"04_recall": {"val": m(0.25, 0.65, 0.85)}, "note": "x"})
    write_metrics(runs, "fold1", "round_old", {"04_recall": {"val": m(0.9, 0.9, 0.9)}})  # ignored
    (runs / "fold1" / "round_2").mkdir()  # round without metrics.json: ignored
    # an OAG-AQA run beside the Eedi ones: MAP@20 (submission.k of its config.yaml)
    write_metrics(runs, "aqa", 1, {
        "01_mine_hn": {"train_map@20_of_mining_model": 0.7, "n_queries": 38},  # not a metric row
        "04_recall": {"val": m20(0.55, 0.80, 0.95)},
        "06_rerank": {"reranked": m20(0.60, 0.82, 0.95), "blend_alpha": 0.2},
    }, k=20)
    write_metrics(runs, "aqa", 2, {"04_recall": {"val": m20(0.58, 0.81, 0.96)}})  # no config.yaml: k from its map@20
    return runs


EXPECTED = [
    ("aqa", 1, "04_recall", "val", 20, 0.55, 0.80, 0.95),
    ("aqa", 1, "06_rerank", "reranked", 20, 0.60, 0.82, 0.95),
    ("aqa", 2, "04_recall", "val", 20, 0.58, 0.81, 0.96),
    ("fold0", 1, "03_eval_embedder", "base", 25, 0.20, 0.60, 0.80),
    ("fold0", 1, "03_eval_embedder", "finetuned", 25, 0.30, 0.70, 0.90),
    ("fold0", 1, "06_rerank", "reranked", 25, 0.40, 0.72, 0.90),
    ("fold0", 1, "06_rerank", "retrieval", 25, 0.30, 0.70, 0.90),
    ("fold0", 1, "08_fuse_submit", "final", 25, 0.45, 0.75, 0.91),
    ("fold0", 2, "06_rerank", "reranked", 25, 0.50, 0.80, np.nan),
    ("fold0", 10, "04_recall", "default", 25, 0.35, 0.71, 0.95),
    ("fold1", 1, "04_recall", "val", 25, 0.25, 0.65, 0.85),
]


def test_collect_exact_table(runs):
    table = collect(runs)
    expected = pd.DataFrame(EXPECTED, columns=COLUMNS)
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
    assert list(table.columns) == ["split", "round", "stage", "model", "k", "map@k", "recall@k", "recall@100"]
    assert table["round"].dtype == np.int64  # numeric sort: round 10 after round 2
    assert table["k"].dtype == np.int64
    # recall@k is each row's own k: AQA's recall@20, never the recall@25 its metrics.json also holds
    assert table.loc[table["split"] == "aqa", "recall@k"].tolist() == [0.80, 0.82, 0.81]


def test_collect_errors_and_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="runs directory not found"):
        collect(tmp_path / "nope")
    assert collect(tmp_path).empty and list(collect(tmp_path).columns) == COLUMNS
    write_metrics(tmp_path, "s", 1, {"04_recall": {"val": {"map@25": "high"}}})
    with pytest.raises(ValueError, match=r"round_1/metrics\.json: field '04_recall\.val\.map@25' must be a number"):
        collect(tmp_path)
    (tmp_path / "s" / "round_1" / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"metrics\.json: invalid JSON"):
        collect(tmp_path)


def test_metrics_at_another_k_than_the_round_is_an_error(tmp_path):
    # the round says MAP@20 (config.yaml) but a section holds only map@25: not silently skipped or mixed
    write_metrics(tmp_path, "aqa", 1, {"04_recall": {"val": m20(0.5, 0.8, 0.9)}, "06_rerank": {"reranked": m(0.4, 0.7)}}, k=20)
    with pytest.raises(ValueError, match=r"aqa/round_1/metrics\.json: field '06_rerank\.reranked\.map@25' is not at "
                                         r"the round's MAP cut-off k=20"):
        collect(tmp_path)
    # no config.yaml and two cut-offs: the file does not say which is the round's
    write_metrics(tmp_path, "aqa", 1, {"04_recall": {"val": m20(0.5, 0.8, 0.9)}, "06_rerank": {"reranked": m(0.4, 0.7)}})
    (tmp_path / "aqa" / "round_1" / "config.yaml").unlink()
    with pytest.raises(ValueError, match=r"metrics at several MAP cut-offs \[20, 25\]"):
        collect(tmp_path)


def test_cv_json_rows_keep_their_k(tmp_path):
    (tmp_path / "aqa_cv").mkdir()
    (tmp_path / "aqa_cv" / "cv.json").write_text(json.dumps({"k": 20, "stages": [
        {"round": 1, "stage": "retrieval", "pairs": 8, "map@20": 0.5, "lo": 0.4, "hi": 0.6, "recall@20": 0.75},
        {"round": 1, "stage": "final", "pairs": 8, "map@20": 0.625, "lo": 0.5, "hi": 0.7, "recall@20": 0.875}]}))
    (tmp_path / "aqa_hit").mkdir()  # hit@k is Recall@k only when each query has one positive
    (tmp_path / "aqa_hit" / "cv.json").write_text(json.dumps({"k": 20, "one_positive": False, "stages": [
        {"round": 1, "stage": "final", "pairs": 8, "map@20": 0.6, "lo": 0.5, "hi": 0.7, "hit@20": 0.9}]}))
    (tmp_path / "eedi_hit").mkdir()
    (tmp_path / "eedi_hit" / "cv.json").write_text(json.dumps({"k": 25, "one_positive": True, "stages": [
        {"round": 1, "stage": "final", "pairs": 8, "map@25": 0.4, "lo": 0.3, "hi": 0.5, "hit@25": 0.7}]}))
    (tmp_path / "cv").mkdir()  # a cv.json from before the 'k' key: Eedi's MAP@25
    (tmp_path / "cv" / "cv.json").write_text(json.dumps({"stages": [
        {"round": 2, "stage": "final", "pairs": 12, "map@25": 0.25, "lo": 0.2, "hi": 0.3, "recall@25": 0.5}]}))
    table = collect(tmp_path)
    expected = pd.DataFrame([
        ("aqa_cv", 1, "cv:final", "pooled out of fold", 20, 0.625, 0.875, np.nan),
        ("aqa_cv", 1, "cv:retrieval", "pooled out of fold", 20, 0.5, 0.75, np.nan),
        ("aqa_hit", 1, "cv:final", "pooled out of fold", 20, 0.6, np.nan, np.nan),
        ("cv", 2, "cv:final", "pooled out of fold", 25, 0.25, 0.5, np.nan),
        ("eedi_hit", 1, "cv:final", "pooled out of fold", 25, 0.4, 0.7, np.nan),
    ], columns=COLUMNS)
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
    (tmp_path / "cv" / "cv.json").write_text(json.dumps({"k": 20, "stages": [{"round": 1, "stage": "final", "map@25": 0.3}]}))
    with pytest.raises(ValueError, match=r"cv\.json: stage 0 \('final'\) has no 'map@20'"):
        collect(tmp_path)


def test_write_report_files(runs, tmp_path):
    out = write_report(runs, tmp_path / "report")
    assert set(out) == {"csv", "md", "png"}
    csv = pd.read_csv(out["csv"])
    pd.testing.assert_frame_equal(csv, pd.DataFrame(EXPECTED, columns=COLUMNS), check_dtype=False)
    md = out["md"].read_text()
    # one table per cut-off, its columns named as the runs wrote them; Eedi's table as before
    aqa_md, eedi_md = md.split("## MAP@20\n")[1].split("## MAP@25\n")
    assert "| split   |   round | stage            | model     |   map@25 |" in eedi_md
    assert "| fold0   |       1 | 08_fuse_submit   | final     |   0.4500 |      0.7500 |       0.9100 |" in eedi_md
    assert "| fold0   |       2 | 06_rerank        | reranked  |   0.5000 |      0.8000 |       -      |" in eedi_md
    assert eedi_md.count("\n| fold") == len(EXPECTED) - 3 and "aqa" not in eedi_md
    assert "| split   |   round | stage     | model    |   map@20 |   recall@20 |   recall@100 |" in aqa_md
    assert "| aqa     |       1 | 06_rerank | reranked |   0.6000 |      0.8200 |       0.9500 |" in aqa_md
    assert aqa_md.count("\n| aqa") == 3 and "map@25" not in aqa_md and "fold" not in aqa_md
    png = out["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["report.csv", "report.md", "report.png"]


def test_plot_empty_table_and_bad_table(tmp_path):
    path = plot(pd.DataFrame(columns=COLUMNS), tmp_path / "empty.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['k', 'map@k'\]"):
        plot(pd.DataFrame(columns=["split", "round", "stage", "model"]), tmp_path / "x.png")


def test_plot_does_not_switch_pyplot_backend(runs, tmp_path):
    import matplotlib

    before = matplotlib.get_backend() if "matplotlib.pyplot" in __import__("sys").modules else None
    plot(collect(runs), tmp_path / "r.png")
    if before is not None:
        assert matplotlib.get_backend() == before
