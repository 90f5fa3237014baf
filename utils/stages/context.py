"""The run a notebook works in: config, task data, split and the round's paths (``RunContext``).

A run folder is ``<out>/round_<r>/``; the split and the embedding cache live in ``<out>/``.
Round r mines with round r-1's fine-tuned embedder (round 1 with the base model).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from utils import io
from utils.config import REPO_ROOT, load_config
from utils.retrieval.embed import Embedder
from utils.splits import make_split, query_groups
from utils.tasks import Task, TaskData, get_task
from utils.tasks.base import format_queries


@dataclass
class RunContext:
    """Everything a notebook needs: config, data, split and the round's paths."""

    run_dir: Path
    split: str
    round_idx: int
    config: dict
    task: Task
    data: TaskData
    pairs: pd.DataFrame  # the task's training queries (utils.tasks.base), with a ``fold`` column
    test_pairs: pd.DataFrame  # the task's test queries (an empty frame when it has none)
    base_model: str
    extra: dict = field(default_factory=dict)

    @property
    def k(self) -> int:
        """The metric's cut-off and the submission's length (MAP@k): ``submission.k``, by default the task's."""
        return int(self.config["submission"]["k"])

    @property
    def out_dir(self) -> Path:
        return self.run_dir.parent

    @property
    def cache_dir(self) -> Path:
        return self.out_dir / "cache"

    @property
    def corpus(self) -> pd.DataFrame:
        """The candidates: ``item_id``, ``item_text``, ``raw_id``."""
        return self.data.corpus

    @property
    def train_pairs(self) -> pd.DataFrame:
        """Labelled training queries (what the models learn from)."""
        p = self.pairs
        return p[(p["fold"] == "train") & (p["positives"].map(len) > 0)].reset_index(drop=True)

    @property
    def val_pairs(self) -> pd.DataFrame:
        """Labelled validation queries (what is scored); empty for ``split=full``."""
        p = self.pairs
        return p[(p["fold"] == "val") & (p["positives"].map(len) > 0)].reset_index(drop=True)

    @property
    def embedder_dir(self) -> Path:
        return self.run_dir / "embedder"

    @property
    def reranker_dir(self) -> Path:
        return self.run_dir / "reranker"

    def round_dir(self, r: int) -> Path:
        return self.out_dir / f"round_{r}"

    @property
    def mining_model(self) -> str:
        """Round r-1's fine-tuned embedder, or the base model in round 1."""
        if self.round_idx > 1:
            prev = self.round_dir(self.round_idx - 1) / "embedder"
            if not (prev / "embedder_config.json").exists():
                raise FileNotFoundError(f"round {self.round_idx} mines with {prev}, which does not exist: run round {self.round_idx - 1} first")
            return str(prev)
        return self.base_model

    def embedder(self, which: str | os.PathLike = "current") -> Embedder:
        """``"base"``, ``"mining"``, ``"current"`` (this round's fine-tuned) or a path."""
        e = self.config["embedder"]
        path = {"base": self.base_model, "mining": self.mining_model, "current": str(self.embedder_dir)}.get(str(which), str(which))
        if str(which) == "current" and not (self.embedder_dir / "embedder_config.json").exists():
            raise FileNotFoundError(f"{self.embedder_dir}: no fine-tuned embedder yet (run 02_train_embedder)")
        fresh = path == self.base_model
        emb = Embedder(path, pooling=e["pooling"] if fresh else None,
                       max_length=e["max_length"] if fresh else None,
                       query_prefix=e["query_prefix"], passage_prefix=e["passage_prefix"])
        emb.tokenizer.truncation_side = self.truncation_side
        return emb

    @property
    def truncation_side(self) -> str:
        """Which end of a too-long text is cut, the same when training (02) and encoding: ``train.truncation_side``,
        or by default left with ``embedder.icl`` on (a long ICL prompt loses its oldest example, never the query)."""
        side = self.config["train"].get("truncation_side")
        return side or ("left" if (self.config["embedder"].get("icl") or {}).get("enabled") else "right")

    def metrics(self, section: str, values: dict) -> dict:
        return io.update_metrics(self.run_dir, section, values)


def load_context(
    run_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    split: str = "v1",
    round_idx: int = 1,
    config_path: str | os.PathLike | None = None,
    model: str | None = None,
) -> RunContext:
    """Load config, data and split (made once per ``<out>`` folder, then read back).

    Relative paths are taken from the repository root, so a notebook opened in Jupyter
    (cwd ``notebooks/``) and one run by papermill find the same files.
    """
    run_dir = from_root(run_dir)
    data_dir = from_root(data_dir) if data_dir else None
    config_path = from_root(config_path) if config_path else None
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = load_config(config_path)
    configure_threads(cfg["cpu_threads"])
    task = get_task(cfg["data"]["task"])
    data = task.load(data_dir or task.sample_dir, require_test=(split == "full"))
    template = cfg["data"]["query_template"]
    pairs = data.queries.copy()
    test_pairs = data.test.copy() if data.test is not None else pairs.iloc[:0].copy()
    if template and template != getattr(task, "query_template", None):  # a config's own template over the task's text
        pairs["query_text"] = format_queries(pairs, template)
        test_pairs["query_text"] = format_queries(test_pairs, template) if len(test_pairs) else []
    split_path = run_dir.parent / "split.parquet"
    if split_path.exists():
        split_df = pd.read_parquet(split_path)
        if set(split_df["group"]) != set(pairs["group"]):
            raise ValueError(f"{split_path} was made for other data; remove it or use another --out")
    else:
        split_df = make_split(query_groups(pairs), split, seed=cfg["seed"], **cfg["split"])
        io.write_parquet(split_path, split_df)
    pairs["fold"] = pairs["group"].map(split_df.set_index("group")["fold"])
    return RunContext(run_dir, split, int(round_idx), cfg, task, data, pairs, test_pairs,
                      model or cfg["embedder"]["model"])


def configure_threads(setting: int | str) -> None:
    """Set torch's CPU threads. ``auto``: 1 thread on machines with <= 2 CPUs.

    Measured on the 2-vCPU build machine: one thread ran a 1024^2 matmul at 34.9 GFLOP/s vs
    26.3 with two, MiniLM encoding at 14.3 vs 11.7 texts/s, and a training step 1.7x faster
    (the second vCPU is shared, so two threads mostly wait on each other).
    """
    import torch

    if setting == "auto":
        if (os.cpu_count() or 1) <= 2:
            torch.set_num_threads(1)
    elif setting:
        torch.set_num_threads(int(setting))


def from_root(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def load_split(ctx: RunContext) -> pd.DataFrame:
    return pd.read_parquet(ctx.out_dir / "split.parquet")
