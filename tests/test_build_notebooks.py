"""The committed notebooks are exactly what scripts/build_notebooks.py builds from notebooks/src/*.py
(edit the source, not the .ipynb)."""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from utils.config import REPO_ROOT

spec = importlib.util.spec_from_file_location("build_notebooks", REPO_ROOT / "scripts" / "build_notebooks.py")
build_notebooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_notebooks)

NAMES = build_notebooks.names()


def test_every_committed_notebook_has_a_source():
    committed = sorted(p.stem for p in (REPO_ROOT / "notebooks").glob("*.ipynb"))
    assert committed == NAMES, "each notebooks/<name>.ipynb is built from notebooks/src/<name>.py"
    assert "kaggle_inference" in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_equals_the_build(name):
    committed = (REPO_ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8")
    assert committed == build_notebooks.render(name), (
        f"notebooks/{name}.ipynb differs from its build from notebooks/src/{name}.py: run python scripts/build_notebooks.py")


@pytest.mark.parametrize("name", NAMES)
def test_source_has_exactly_one_parameters_cell(name):
    cells = build_notebooks.read_source(name).cells
    params = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"notebooks/src/{name}.py: {len(params)} cells tagged parameters, expected 1"
    assert cells[params[0]].cell_type == "code"


def test_check_lists_the_notebooks_that_differ(tmp_path, monkeypatch, capsys):
    for name in NAMES:
        shutil.copy(REPO_ROOT / "notebooks" / f"{name}.ipynb", tmp_path)
    monkeypatch.setattr(build_notebooks, "OUT", tmp_path)
    assert build_notebooks.main(["--check"]) == 0
    edited, removed = NAMES[0], NAMES[-1]
    path = tmp_path / f"{edited}.ipynb"
    path.write_text(path.read_text(encoding="utf-8").replace('"source": [', '"source": [\n    "# edited\\n",', 1),
                    encoding="utf-8")
    (tmp_path / f"{removed}.ipynb").unlink()
    capsys.readouterr()
    assert build_notebooks.main(["--check"]) == 1
    out = capsys.readouterr().out
    assert f"notebooks/{edited}.ipynb" in out and f"notebooks/{removed}.ipynb" in out
    assert all(f"notebooks/{n}.ipynb" not in out for n in NAMES if n not in (edited, removed))
    assert build_notebooks.main([edited]) == 0  # rebuilding it (in tmp_path) makes it equal again
    assert build_notebooks.main(["--check", edited]) == 0
