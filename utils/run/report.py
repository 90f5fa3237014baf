"""Collect every round's ``metrics.json`` into one table, and plot / write it as a report.

Layout scanned: ``runs/<split>/round_<r>/metrics.json``, a CV run's folds
``runs/<run>/fold_<k>/round_<r>/metrics.json`` (split ``<run>/fold_<k>``) and its pooled
``runs/<run>/cv.json`` (stages ``cv:<stage>``) (docs/DESIGN.md). Inside a file,
each top-level key is a stage (the notebook's section) and every nested dict holding a
``map@25`` is one row, its key path below the stage being the model, e.g.
``{"06_rerank": {"retrieval": {...}, "reranked": {...}, "blend_alpha": 0.3}}`` gives rows
``(06_rerank, retrieval)`` and ``(06_rerank, reranked)``; non-metric values are skipped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from utils.io import atomic_path, write_csv, write_text

COLUMNS = ["split", "round", "stage", "model", "map@25", "recall@25", "recall@100"]
METRICS = ["map@25", "recall@25", "recall@100"]
ROUND_RE = re.compile(r"^round_(\d+)$")
SECTION_MODEL = "default"  # model name when a stage's own dict holds the metrics


def _metric_rows(node: dict, path: list[str], source: Path, stage: str) -> list[dict]:
    rows = []
    if "map@25" in node:
        row = {"stage": stage, "model": "/".join(path) or SECTION_MODEL}
        for m in METRICS:
            value = node.get(m)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                field = ".".join([stage, *path, m])
                raise ValueError(f"{source}: field {field!r} must be a number, got {value!r}")
            row[m] = np.nan if value is None else float(value)
        rows.append(row)
    for key, child in node.items():
        if isinstance(child, dict):
            rows += _metric_rows(child, [*path, str(key)], source, stage)
    return rows


def read_metrics(path: Path) -> list[dict]:
    """Rows (stage, model, metrics) of one metrics.json."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be an object of stage sections")
    rows = []
    for stage, section in data.items():
        if isinstance(section, dict):
            rows += _metric_rows(section, [], path, str(stage))
    return rows


def collect(runs_dir: Path) -> pd.DataFrame:
    """One long table (split, round, stage, model, map@25, recall@25, recall@100) over all rounds.

    Folders not named ``round_<int>`` and rounds without metrics.json are skipped. Sorted by
    split, round, stage, model.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"{runs_dir}: runs directory not found")
    rows = []
    for path in [*runs_dir.glob("*/round_*/metrics.json"), *runs_dir.glob("*/fold_*/round_*/metrics.json")]:
        match = ROUND_RE.match(path.parent.name)
        if not match:
            continue
        run = path.parent.parent.relative_to(runs_dir).as_posix()  # <run> or <run>/fold_<k>
        for row in read_metrics(path):
            rows.append({"split": run, "round": int(match.group(1)), **row})
    for path in runs_dir.glob("*/cv.json"):  # a CV run's pooled out-of-fold stages (utils.run.cv.choose)
        try:
            stages = json.loads(path.read_text(encoding="utf-8"))["stages"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"{path}: not a CV report (no 'stages' list); rerun the CV run's pooling") from None
        for st in stages:
            rows.append({"split": path.parent.name, "round": int(st["round"]), "stage": f"cv:{st['stage']}",
                         "model": "pooled out of fold", "map@25": st["map@25"], "recall@25": st["recall@25"],
                         "recall@100": np.nan})
    table = pd.DataFrame(rows, columns=COLUMNS).astype(
        {"split": str, "round": np.int64, "stage": str, "model": str, **{m: np.float64 for m in METRICS}}
    )
    return table.sort_values(["split", "round", "stage", "model"], ignore_index=True)


def plot(table: pd.DataFrame, out_png: Path) -> Path:
    """MAP@25 against round, one panel per split, one line per stage/model; saved as PNG.

    Uses matplotlib's object API with the Agg canvas, so no global backend is switched
    (notebooks keep their inline backend).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    missing = [c for c in ("split", "round", "stage", "model", "map@25") if c not in table.columns]
    if missing:
        raise ValueError(f"plot: table lacks column(s) {missing}")
    splits = sorted(table["split"].unique()) or ["(no metrics)"]
    fig = Figure(figsize=(6.5 * len(splits), 4.5), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(splits), squeeze=False)[0]
    for ax, split in zip(axes, splits):
        part = table[table["split"] == split]
        for (stage, model), g in part.groupby(["stage", "model"], sort=True):
            g = g.sort_values("round")
            ax.plot(g["round"], g["map@25"], marker="o", label=f"{stage}: {model}")
        ax.set_title(f"split {split}")
        ax.set_xlabel("round")
        ax.set_ylabel("MAP@25")
        if part.empty:
            ax.text(0.5, 0.5, "no metrics", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.set_xticks(sorted(part["round"].unique()))
            ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(out_png)


def to_markdown(table: pd.DataFrame) -> str:
    """The table as GitHub markdown, metrics to 4 decimals, missing values as "-"."""
    if table.empty:
        return "_no metrics.json found_\n"
    shown = table.astype(object).where(table.notna(), None)  # tabulate's missingval applies to None
    return shown.to_markdown(index=False, floatfmt=".4f", missingval="-") + "\n"


def write_report(runs_dir: Path, out_dir: Path) -> dict[str, Path]:
    """Write ``report.csv``, ``report.md`` and ``report.png`` for ``runs_dir`` into ``out_dir``."""
    table = collect(runs_dir)
    out_dir = Path(out_dir)
    md = f"# Metrics report\n\nSource: `{runs_dir}`\n\n" + to_markdown(table)
    return {
        "csv": write_csv(out_dir / "report.csv", table),
        "md": write_text(out_dir / "report.md", md),
        "png": plot(table, out_dir / "report.png"),
    }
