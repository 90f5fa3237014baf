"""Run configuration: built-in defaults, deep-merged with a YAML file; unknown keys are errors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from .data import DEFAULT_QUERY_TEMPLATE

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA_DIR = REPO_ROOT / "data" / "sample"

NOTEBOOKS = [
    "01_mine_hn", "02_train_embedder", "03_eval_embedder", "04_recall",
    "05_train_reranker", "06_rerank", "07_export", "08_fuse_submit",
]

DEFAULTS: dict[str, Any] = {
    "seed": 42,
    "show_progress": False,
    "cpu_threads": "auto",  # torch CPU threads; auto = 1 on machines with <= 2 CPUs (see pipeline.configure_threads)
    "notebooks": ["01_mine_hn", "02_train_embedder", "03_eval_embedder", "04_recall", "05_train_reranker",
                  "06_rerank", "08_fuse_submit"],
    "data": {"query_template": DEFAULT_QUERY_TEMPLATE},
    "split": {"n_folds": 5, "fold": 0, "unseen_share": 0.2, "val_share": 0.2, "group_by": "SubjectId",
              "cv_scheme": "v1"},  # split cv: v1 (grouped K-fold) or v2 (each fold its own misconceptions)
    "embedder": {"model": "default", "max_length": 256, "batch_size": 64, "query_prefix": "",
                 "passage_prefix": "", "pooling": None,
                 # In-context examples in the query (bge-en-icl style, decoder embedders): k examples
                 # from training pairs, never from the query's own question.
                 "icl": {"enabled": False, "k": 3, "task": None, "same_subject": True}},
    # CPU defaults, sized for the bundled sample on 2 cores; configs/gpu.yaml has the full recipe.
    "mining": {"range_min": 2, "range_max": 100, "n": 7, "max_score_ratio": None, "prompt": ""},
    # init previous: round r continues from round r-1's embedder (5-fold CV of configs/gpu.yaml, round 3:
    # +0.032 MAP@25 over restarting from the base model; benchmarks/results/cv_defaults/)
    "train": {"init": "previous", "epochs": 1.0, "lr": 1e-4, "batch_size": 16, "n_negatives": 3, "temperature": 0.05,
              "max_query_length": 128, "max_passage_length": 32},
    "recall": {"k": 100},
    # Cross-encoder initialised from this round's fine-tuned embedder, mean-pooled head, cut to
    # 3 layers, 120 training groups and the top 8 so 05+06 fit the default run's 10 minutes on 2 CPU cores.
    "rerank": {"model": "embedder", "head": "mean", "num_layers": 3, "max_groups": 120, "epochs": 1.0,
               "n_negatives": 3, "top_k": 8, "max_length": 96, "lr": 1e-4, "loss": "listwise", "batch_size": 16,
               "score_batch_size": 32},
    "fusion": {},
    "export": {},
    "submission": {"k": 25, "dir": "submissions"},  # dir: also copy to <dir>/<run>/ (null: don't)
}


class ConfigError(ValueError):
    """A config file names an unknown key or a value of the wrong type."""


def _merge(base: dict, override: dict, where: str, open_sections: tuple[str, ...]) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        path = f"{where}.{key}" if where else key
        if key not in base and path.split(".")[0] not in open_sections:
            raise ConfigError(f"unknown config key {path!r}; known here: {sorted(base)}")
        if isinstance(base.get(key), dict) and isinstance(value, dict):
            out[key] = _merge(base[key], value, path, open_sections)
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """Defaults, then the YAML file at ``path``, then ``overrides`` (all deep-merged)."""
    # Sections owned by one module validate their own keys there (e.g. TrainConfig).
    open_sections = ("train", "rerank", "fusion", "export")
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path}: config file not found")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        cfg = _merge(cfg, loaded, "", open_sections)
    if overrides:
        cfg = _merge(cfg, overrides, "", open_sections)
    unknown_nb = [n for n in cfg["notebooks"] if n not in NOTEBOOKS]
    if unknown_nb:
        raise ConfigError(f"unknown notebook(s) {unknown_nb}; known: {NOTEBOOKS}")
    return cfg


def dump_config(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)
