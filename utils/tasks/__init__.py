"""Competitions as plug-ins: one module per task, each exposing ``TASK`` (see ``base.Task``).

Adding a task = one module here with a ``TASK`` object, plus its name in ``TASKS``.
"""

from __future__ import annotations

import importlib

from utils.tasks.base import DataError, Task, TaskData  # noqa: F401

TASKS = {"eedi": "utils.tasks.eedi", "aqa": "utils.tasks.aqa", "beir": "utils.tasks.beir"}


def get_task(name: str) -> Task:
    """The task called ``name`` (``eedi``, ``aqa``, ``beir``)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return importlib.import_module(TASKS[name]).TASK
