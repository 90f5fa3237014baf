"""The contract between a competition (a *task*) and the rest of the suite.

A task reads its raw files into three tables and writes its submission; mining, training,
recall, rerankers, rounds, fusion, CV and export work on these tables only.

- ``queries`` (training queries, labelled or not) and ``test`` (queries to predict): one row per
  query; ``query_id`` (str, unique), ``group`` (str: queries sharing a group always fall in the
  same fold, e.g. the wrong answers of one Eedi question), ``query_text`` (str, what is embedded
  and shown to rerankers), ``positives`` (tuple of int item ids, any number; empty = unlabelled,
  never trained on or scored), plus any task fields (e.g. Eedi's ``SubjectName``).
- ``corpus``: one row per candidate; ``item_id`` (int, unique, the suite's id), ``item_text``
  (str), ``raw_id`` (str, the task's own id, written to the submission).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd

QUERY_COLUMNS = ["query_id", "group", "query_text", "positives"]
CORPUS_COLUMNS = ["item_id", "item_text", "raw_id"]


class DataError(ValueError):
    """Bad input data; the message names the file, column (or field) and row (or line)."""


@dataclass
class TaskData:
    """A task's tables, validated (see the module docstring for their columns)."""

    data_dir: Path
    queries: pd.DataFrame
    corpus: pd.DataFrame
    test: pd.DataFrame | None = None


class Task(Protocol):
    """One module per competition implements this (``utils/tasks/eedi.py`` is the example)."""

    name: str            # the --task value
    metric_k: int        # MAP@k / Recall@k cut-off and the submission's length (Eedi 25, OAG-AQA 20)
    submission_file: str  # what 08 writes (Eedi: submission.csv)
    config_defaults: dict  # config values under the user's (e.g. longer max lengths for long passages); may be {}
    sample_dir: Path     # bundled synthetic sample in the raw layout (the default data_dir)
    # optional: prompts (the LLM reranker's wording over utils.rerank.llm.PROMPTS) and icl_task (the
    # ICL instruction, else utils.retrieval.icl.DEFAULT_TASK); see task_prompts / task_icl_instruction;
    # kaggle_competition (the competition slug export attaches to the inference kernel)

    def load(self, data_dir: Path, require_test: bool = False) -> TaskData:
        """Read and validate the raw files; errors name the file, column and row."""

    def write_submission(self, ranking: pd.DataFrame, data: TaskData, path: Path) -> Path:
        """Write the task's submission for ``data.test`` from a ranking table
        (``query_id``, ``item_id``, ``rank``, ``score``), top ``metric_k`` per query."""

    def validate_submission(self, path: Path, data: TaskData) -> None:
        """Raise ``DataError`` naming the line when ``path`` is not a valid submission."""


def check_contract(data: TaskData, source: str) -> None:
    """Check the tables a task returned (a task module's bug shows here, named, not three stages later)."""
    frames = [("queries", data.queries, QUERY_COLUMNS), ("corpus", data.corpus, CORPUS_COLUMNS)]
    if data.test is not None:
        frames.append(("test", data.test, QUERY_COLUMNS))
    for name, df, cols in frames:
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise DataError(f"{source}: task table '{name}' lacks column(s) {missing}")
    for name, df in [("queries", data.queries)] + ([("test", data.test)] if data.test is not None else []):
        dup = df["query_id"].duplicated()
        if dup.any():
            raise DataError(f"{source}: task table '{name}': duplicate query_id {df['query_id'][dup].iloc[0]!r}")
    dup = data.corpus["item_id"].duplicated()
    if dup.any():
        raise DataError(f"{source}: corpus: duplicate item_id {data.corpus['item_id'][dup].iloc[0]!r}")
    known = set(data.corpus["item_id"].tolist())
    for qid, pos in zip(data.queries["query_id"], data.queries["positives"]):
        unknown = [p for p in pos if p not in known]
        if unknown:
            raise DataError(f"{source}: query {qid!r}: positive item {unknown[0]!r} is not in the corpus")
    if not any(len(p) for p in data.queries["positives"]):
        raise DataError(f"{source}: no labelled training queries (every query has no positive)")


def format_queries(pairs: pd.DataFrame, template: str) -> list[str]:
    """Fill ``template`` (``str.format`` fields named after pair columns) for every row."""
    try:
        return [template.format(**rec) for rec in pairs.to_dict("records")]
    except KeyError as e:
        raise DataError(f"query template names unknown field {e}; fields: {list(pairs.columns)}") from None


def task_prompts(task: Task, overrides: dict | None = None) -> dict:
    """The LLM reranker's wording: generic, then the task's ``prompts``, then ``overrides`` (``rerank.prompts``)."""
    from utils.rerank.llm import check_prompts

    return check_prompts({**(getattr(task, "prompts", None) or {}), **(overrides or {})})


def task_icl_instruction(task: Task, configured: str | None = None) -> str:
    """The ICL instruction: ``embedder.icl.task``, else the task's ``icl_task``, else the generic one."""
    from utils.retrieval.icl import DEFAULT_TASK

    return configured or getattr(task, "icl_task", None) or DEFAULT_TASK
