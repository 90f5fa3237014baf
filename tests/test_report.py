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


def write_metrics(runs: Path, split: str, rnd: int | str, data: dict) -> None:
    d = runs / split / (f"round_{rnd}" if isinstance(rnd, int) else rnd)
    d.mkdir(parents=True, exist_ok=True)
    (d / "metrics.json").write_text(json.dumps(data))


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
    return runs


EXPECTED = [
    ("fold0", 1, "03_eval_embedder", "base", 0.20, 0.60, 0.80),
    ("fold0", 1, "03_eval_embedder", "finetuned", 0.30, 0.70, 0.90),
    ("fold0", 1, "06_rerank", "reranked", 0.40, 0.72, 0.90),
    ("fold0", 1, "06_rerank", "retrieval", 0.30, 0.70, 0.90),
    ("fold0", 1, "08_fuse_submit", "final", 0.45, 0.75, 0.91),
    ("fold0", 2, "06_rerank", "reranked", 0.50, 0.80, np.nan),
    ("fold0", 10, "04_recall", "default", 0.35, 0.71, 0.95),
    ("fold1", 1, "04_recall", "val", 0.25, 0.65, 0.85),
]


def test_collect_exact_table(runs):
    table = collect(runs)
    expected = pd.DataFrame(EXPECTED, columns=COLUMNS)
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
    assert list(table.columns) == ["split", "round", "stage", "model", "map@25", "recall@25", "recall@100"]
    assert table["round"].dtype == np.int64  # numeric sort: round 10 after round 2


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


def test_write_report_files(runs, tmp_path):
    out = write_report(runs, tmp_path / "report")
    assert set(out) == {"csv", "md", "png"}
    csv = pd.read_csv(out["csv"])
    pd.testing.assert_frame_equal(csv, pd.DataFrame(EXPECTED, columns=COLUMNS), check_dtype=False)
    md = out["md"].read_text()
    assert "| split   |   round | stage            | model     |   map@25 |" in md
    assert "| fold0   |       1 | 08_fuse_submit   | final     |   0.4500 |      0.7500 |       0.9100 |" in md
    assert "| fold0   |       2 | 06_rerank        | reranked  |   0.5000 |      0.8000 |       -      |" in md
    assert md.count("\n| fold") == len(EXPECTED)
    png = out["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["report.csv", "report.md", "report.png"]


def test_plot_empty_table_and_bad_table(tmp_path):
    path = plot(pd.DataFrame(columns=COLUMNS), tmp_path / "empty.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['map@25'\]"):
        plot(pd.DataFrame(columns=["split", "round", "stage", "model"]), tmp_path / "x.png")


def test_plot_does_not_switch_pyplot_backend(runs, tmp_path):
    import matplotlib

    before = matplotlib.get_backend() if "matplotlib.pyplot" in __import__("sys").modules else None
    plot(collect(runs), tmp_path / "r.png")
    if before is not None:
        assert matplotlib.get_backend() == before
