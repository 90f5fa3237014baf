"""Collect every round's ``metrics.json`` into one table, and plot / write it as a report.

Layout scanned: ``runs/<split>/round_<r>/metrics.json``, a CV run's folds
``runs/<run>/fold_<k>/round_<r>/metrics.json`` (split ``<run>/fold_<k>``) and its pooled
``runs/<run>/cv.json`` (stages ``cv:<stage>``) (docs/DESIGN.md). Inside a file,
each top-level key is a stage (the notebook's section) and every nested dict holding a
``map@<k>`` is one row, its key path below the stage being the model, e.g.
``{"06_rerank": {"retrieval": {...}, "reranked": {...}, "blend_alpha": 0.3}}`` gives rows
``(06_rerank, retrieval)`` and ``(06_rerank, reranked)``; non-metric values are skipped.

``k`` is the round's MAP cut-off: ``submission.k`` of the round's ``config.yaml`` (Eedi 25,
OAG-AQA 20); without one (a hand-made or older round) the single ``map@<k>`` key its metrics
hold. A metric dict whose ``map@<n>`` is not at the round's k is an error, never a silent row.
Rows keep their k in a ``k`` column and the metrics as ``map@k`` / ``recall@k`` (at that row's
k) and ``recall@100``, so runs of different tasks never share a MAP column; the markdown report
writes one table per k, its columns named ``map@<k>`` / ``recall@<k>`` as the runs wrote them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from utils.io import atomic_path, write_csv, write_text

COLUMNS = ["split", "round", "stage", "model", "k", "map@k", "recall@k", "recall@100"]
METRICS = ["map@k", "recall@k", "recall@100"]
ROUND_RE = re.compile(r"^round_(\d+)$")
MAP_RE = re.compile(r"^map@(\d+)$")
SECTION_MODEL = "default"  # model name when a stage's own dict holds the metrics


def _map_keys(node: dict) -> list[int]:
    return sorted(int(m.group(1)) for key in node if (m := MAP_RE.match(str(key))))


def _found_ks(node: dict) -> set[int]:
    """Every ``map@<n>`` cut-off in ``node`` and the dicts below it."""
    out = set(_map_keys(node))
    for child in node.values():
        if isinstance(child, dict):
            out |= _found_ks(child)
    return out


def _number(value, source: Path, field: str) -> float:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError(f"{source}: field {field!r} must be a number, got {value!r}")
    return np.nan if value is None else float(value)


def _metric_rows(node: dict, path: list[str], source: Path, stage: str, k: int) -> list[dict]:
    rows = []
    found = _map_keys(node)
    if found:
        where = ".".join([stage, *path])
        if found != [k]:
            other = next(n for n in found if n != k)
            raise ValueError(f"{source}: field '{where}.map@{other}' is not at the round's MAP cut-off k={k} "
                             f"(submission.k of its config.yaml, else the one map@<k> its metrics hold)")
        row = {"stage": stage, "model": "/".join(path) or SECTION_MODEL, "k": k}
        for name, key in (("map@k", f"map@{k}"), ("recall@k", f"recall@{k}"), ("recall@100", "recall@100")):
            row[name] = _number(node.get(key), source, f"{where}.{key}")
        rows.append(row)
    for key, child in node.items():
        if isinstance(child, dict):
            rows += _metric_rows(child, [*path, str(key)], source, stage, k)
    return rows


def round_k(round_dir: Path) -> int | None:
    """``submission.k`` of a round's ``config.yaml`` (None when it has none)."""
    cfg_path = Path(round_dir) / "config.yaml"
    if not cfg_path.is_file():
        return None
    try:
        cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{cfg_path}: invalid YAML ({' '.join(str(exc).split())})") from None
    k = ((cfg.get("submission") or {}) if isinstance(cfg, dict) else {}).get("k")
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{cfg_path}: submission.k must be a positive integer, got {k!r}")
    return k


def read_metrics(path: Path, k: int | None = None) -> list[dict]:
    """Rows (stage, model, k, metrics) of one metrics.json.

    ``k``: the round's MAP cut-off (``round_k``); None: the one ``map@<n>`` the file holds (several
    different ones are an error: the file does not say which is the round's).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be an object of stage sections")
    if k is None:
        found = _found_ks(data)
        if not found:
            return []
        if len(found) > 1:
            raise ValueError(f"{path}: metrics at several MAP cut-offs {sorted(found)} and no submission.k in the "
                             "round's config.yaml to say which is the round's")
        k = found.pop()
    rows = []
    for stage, section in data.items():
        if isinstance(section, dict):
            rows += _metric_rows(section, [], path, str(stage), k)
    return rows


def _cv_rows(path: Path) -> list[dict]:
    """The pooled out-of-fold stages of a CV run's ``cv.json`` (utils.run.cv.choose)."""
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        stages = result["stages"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"{path}: not a CV report (no 'stages' list); rerun the CV run's pooling") from None
    k = result.get("k")  # older cv.json files (MAP@25 only) predate the key
    if k is None:
        found = set().union(*[_map_keys(st) for st in stages]) if stages else {25}
        if len(found) != 1:
            raise ValueError(f"{path}: stages at MAP cut-offs {sorted(found)}; expected one (no 'k' in the file)")
        k = found.pop()
    rows = []
    for i, st in enumerate(stages):
        if f"map@{k}" not in st:
            raise ValueError(f"{path}: stage {i} ({st.get('stage')!r}) has no 'map@{k}' (the file's k is {k})")
        rows.append({"split": path.parent.name, "round": int(st["round"]), "stage": f"cv:{st['stage']}",
                     "model": "pooled out of fold", "k": int(k),
                     "map@k": _number(st[f"map@{k}"], path, f"stages.{i}.map@{k}"),
                     "recall@k": _cv_recall(result, st, k, path, i), "recall@100": np.nan})
    return rows


def _cv_recall(doc: dict, st: dict, k: int, path: Path, i: int) -> float:
    """A CV stage's Recall@k: its hit@k when every query has one relevant item (then they are equal),
    ``recall@k`` in files written before hit@k, else unknown (NaN: CV keeps AP per query only)."""
    if f"recall@{k}" in st:
        return _number(st[f"recall@{k}"], path, f"stages.{i}.recall@{k}")
    return _number(st.get(f"hit@{k}"), path, f"stages.{i}.hit@{k}") if doc.get("one_positive") else np.nan


def collect(runs_dir: Path) -> pd.DataFrame:
    """One long table (split, round, stage, model, k, map@k, recall@k, recall@100) over all rounds.

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
        for row in read_metrics(path, round_k(path.parent)):
            rows.append({"split": run, "round": int(match.group(1)), **row})
    for path in runs_dir.glob("*/cv.json"):  # a CV run's pooled out-of-fold stages (utils.run.cv.choose)
        rows += _cv_rows(path)
    table = pd.DataFrame(rows, columns=COLUMNS).astype(
        {"split": str, "round": np.int64, "stage": str, "model": str, "k": np.int64, **{m: np.float64 for m in METRICS}}
    )
    return table.sort_values(["split", "round", "stage", "model"], ignore_index=True)


def plot(table: pd.DataFrame, out_png: Path) -> Path:
    """MAP@k against round, one panel per split (its own k), one line per stage/model; saved as PNG.

    Uses matplotlib's object API with the Agg canvas, so no global backend is switched
    (notebooks keep their inline backend).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    missing = [c for c in ("split", "round", "stage", "model", "k", "map@k") if c not in table.columns]
    if missing:
        raise ValueError(f"plot: table lacks column(s) {missing}")
    splits = sorted(table["split"].unique()) or ["(no metrics)"]
    fig = Figure(figsize=(6.5 * len(splits), 4.5), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(splits), squeeze=False)[0]
    for ax, split in zip(axes, splits):
        part = table[table["split"] == split]
        ks = sorted(int(k) for k in part["k"].unique())
        for (stage, model, k), g in part.groupby(["stage", "model", "k"], sort=True):
            g = g.sort_values("round")
            label = f"{stage}: {model}" + (f" (MAP@{k})" if len(ks) > 1 else "")
            ax.plot(g["round"], g["map@k"], marker="o", label=label)
        ax.set_title(f"split {split}")
        ax.set_xlabel("round")
        ax.set_ylabel(" / ".join(f"MAP@{k}" for k in ks) or "MAP@k")
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
    """One GitHub markdown table per MAP cut-off k (a heading each; columns ``map@<k>``, ``recall@<k>``,
    ``recall@100``), metrics to 4 decimals, missing values as "-"."""
    if table.empty:
        return "_no metrics.json found_\n"
    parts = []
    for k, part in table.groupby("k", sort=True):
        k = int(k)
        shown = part.drop(columns="k").rename(columns={"map@k": f"map@{k}", "recall@k": f"recall@{k}"})
        shown = shown.astype(object).where(shown.notna(), None)  # tabulate's missingval applies to None
        parts.append(f"## MAP@{k}\n\n" + shown.to_markdown(index=False, floatfmt=".4f", missingval="-") + "\n")
    return "\n".join(parts)


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
