"""The committed notebooks are exactly what scripts/build_notebooks.py builds (edit the script, not the .ipynb)."""

from __future__ import annotations

import importlib.util

import nbformat
import pytest

from utils.config import REPO_ROOT

spec = importlib.util.spec_from_file_location("build_notebooks", REPO_ROOT / "scripts" / "build_notebooks.py")
build_notebooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_notebooks)


@pytest.mark.parametrize("name", sorted(build_notebooks.NOTEBOOKS))
def test_committed_notebook_equals_the_build(name):
    committed = (REPO_ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8")
    built = nbformat.writes(build_notebooks.build(name, build_notebooks.NOTEBOOKS[name])) + "\n"
    assert committed == built, f"notebooks/{name}.ipynb differs from its build: run python scripts/build_notebooks.py"
