"""Matplotlib figures the notebooks show (each returns the Figure)."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from utils.metrics import recall_curve


def recall_curves(rankings: Mapping[str, pd.DataFrame], pairs: pd.DataFrame, max_k: int = 100, title: str = "Recall@K",
                  k: int = 25):
    """One Recall@K line per named ranking; a dashed line at the metric's cut-off ``k``."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, ranking in rankings.items():
        curve = recall_curve(ranking, pairs, max_k)
        ax.plot(curve.index, curve.values, label=name)
    ax.axvline(k, color="grey", lw=0.8, ls="--")
    ax.set(xlabel="K", ylabel="recall", title=title, ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def metric_bars(table: pd.DataFrame, metrics: Sequence[str] | None = None, title: str = "", k: int = 25):
    """Grouped bars: rows of ``table`` (index = model) by metric columns (default MAP@k, Recall@k)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    table[list(metrics or (f"map@{k}", f"recall@{k}"))].plot.bar(ax=ax, rot=0)
    ax.set(title=title, ylim=(0, 1))
    for cont in ax.containers:
        ax.bar_label(cont, fmt="%.3f", fontsize=8)
    fig.tight_layout()
    return fig


def per_group_bars(before: pd.DataFrame, after: pd.DataFrame, column: str = "SubjectName", top: int = 15, k: int = 25):
    """MAP@k per group (e.g. subject) before vs after, for the ``top`` largest groups."""
    merged = before.merge(after, on=[column, "n"], suffixes=(" before", " after")).head(top)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(merged) + 1.5))
    y = np.arange(len(merged))
    ax.barh(y - 0.2, merged[f"map@{k} before"], 0.4, label="before")
    ax.barh(y + 0.2, merged[f"map@{k} after"], 0.4, label="after")
    ax.set_yticks(y, [f"{s[:35]} (n={n})" for s, n in zip(merged[column], merged["n"])], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel=f"MAP@{k}", title=f"MAP@{k} by {column}")
    ax.legend()
    fig.tight_layout()
    return fig


def loss_curve(log: Sequence[dict]):
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["epoch"] for r in log], [r["loss"] for r in log], marker=".")
    ax.set(xlabel="epoch", ylabel="InfoNCE loss", title="training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def histogram(values: Sequence[float], title: str, xlabel: str, bins: int = 30):
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(values, bins=bins)
    ax.set(title=title, xlabel=xlabel, ylabel="count")
    fig.tight_layout()
    return fig


def score_histogram(records: Sequence[dict]):
    """Mining-model scores of positives vs mined negatives (overlap = hard / false negatives)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    pos = [s for r in records for s in r.get("pos_scores", [])]
    neg = [s for r in records for s in r.get("neg_scores", [])]
    ax.hist(neg, bins=40, alpha=0.6, density=True, label=f"negatives (n={len(neg)})")
    ax.hist(pos, bins=40, alpha=0.6, density=True, label=f"positives (n={len(pos)})")
    ax.set(xlabel="cosine similarity (mining model)", ylabel="density", title="positives vs mined negatives")
    ax.legend()
    fig.tight_layout()
    return fig
