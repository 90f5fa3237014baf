"""The notebooks as a user opens them in Jupyter: JupyterLab installed, a kernel started in notebooks/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from utils.config import REPO_ROOT, load_config

CHAIN = [*load_config()["notebooks"], "07_export", "kaggle_inference"]


def test_jupyter_lab_is_installed():
    jupyter = Path(sys.executable).parent / "jupyter"
    out = subprocess.run([str(jupyter), "lab", "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().split(".")[0] == "4", out.stderr


def test_saved_parameters_resolve_from_the_notebooks_folder():
    """Each notebook's saved parameters cell and the suite's imports run in a kernel whose cwd is notebooks/,
    and relative paths resolve against the repository, not the cwd (what papermill's runs use). One kernel
    runs every notebook's cell in turn, its names cleared between them (a kernel start is ~5 s here)."""
    cells, probes = [], {}
    for name in CHAIN:
        nb = nbformat.read(REPO_ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, name
        probe = ("import os\nfrom utils.stages.context import from_root\n"
                 f"print('notebook {name}')\n"
                 "print('cwd', os.path.basename(os.getcwd()))\n"
                 "for key in ('run_dir', 'models_dir', 'out_dir'):\n"
                 "    if key in dir() and isinstance(globals()[key], str) and not globals()[key].startswith('/'):\n"
                 "        print(key, from_root(globals()[key]))")
        cells += [nbformat.v4.new_code_cell("%reset -f"), params[0], nbformat.v4.new_code_cell(probe)]
        probes[name] = cells[-1]
    probe_nb = nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata)
    NotebookClient(probe_nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO_ROOT / "notebooks")}}).execute()
    for name, cell in probes.items():
        printed = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")
        assert printed.startswith(f"notebook {name}\ncwd notebooks\n"), (name, printed)
        if name != "kaggle_inference":  # its saved paths are Kaggle's absolute /kaggle/... folders
            assert f"run_dir {REPO_ROOT / 'runs' / 'v1' / 'round_1'}" in printed, (name, printed)
        else:
            assert "run_dir" not in printed and "models_dir" not in printed, printed
