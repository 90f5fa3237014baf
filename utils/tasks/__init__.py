"""Competitions as plug-ins: one module per task in this package, each exposing ``TASK`` (see ``base.Task``).

Adding a task = one module here (``utils/tasks/<name>.py`` with a ``TASK`` object): it is found by
its file name, and ``--task <name>`` / ``data.task: <name>`` select it.
"""

from __future__ import annotations

import importlib
import pkgutil

from utils.tasks.base import DataError, Task, TaskData  # noqa: F401

# every module of this package but the contract itself is a task (eedi, aqa, beir, and any added one)
TASKS = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base" and not m.name.startswith("_")))


def get_task(name: str) -> Task:
    """The task called ``name`` (the module ``utils.tasks.<name>``'s ``TASK``)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {list(TASKS)}")
    return importlib.import_module(f"utils.tasks.{name}").TASK
