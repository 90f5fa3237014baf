"""Build notebooks/<name>.ipynb from its source notebooks/src/<name>.py (edit the source, not the .ipynb).

Each source is a plain Python file in jupytext's "percent" format: ``# %%`` starts a code cell,
``# %% [markdown]`` a markdown cell (its lines commented with ``# ``), and exactly one cell is
``# %% tags=["parameters"]`` (papermill injects its values). The whole notebook is in its source:
shared cells (parameters, setup, the CV table) are repeated in each file.

The build is deterministic: the notebook metadata is always the kernelspec (python3, needed by
papermill and Kaggle kernels) and ``language_info``, and cell ids are ``<first 2 letters of the
name>-<cell index>`` (``01-00``, ``ka-03``), so an unchanged source gives a byte-identical notebook.

Run: ``python scripts/build_notebooks.py [NAME ...]`` writes the notebooks (all, or those named);
``python scripts/build_notebooks.py --check [NAME ...]`` writes nothing and exits 1 listing the
notebooks that differ from their build.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "notebooks" / "src"
OUT = ROOT / "notebooks"

METADATA = {
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
}
NEW_CELL = {"code": new_code_cell, "markdown": new_markdown_cell, "raw": new_raw_cell}


def names() -> list[str]:
    """The notebooks that have a source, sorted."""
    return sorted(p.stem for p in SRC.glob("*.py"))


def source_path(name: str) -> Path:
    return SRC / f"{name}.py"


def read_source(name: str) -> nbformat.NotebookNode:
    """The source as jupytext parses it (cells as written, no ids or notebook metadata set)."""
    return jupytext.reads(source_path(name).read_text(encoding="utf-8"), fmt="py:percent")


def build(name: str) -> nbformat.NotebookNode:
    """The notebook built from notebooks/src/<name>.py."""
    nb = new_notebook(metadata=METADATA)
    for i, parsed in enumerate(read_source(name).cells):
        cell = NEW_CELL[parsed.cell_type](parsed.source)
        cell.metadata.update(parsed.metadata)  # e.g. tags=["parameters"]
        cell["id"] = f"{name[:2]}-{i:02d}"  # stable ids keep diffs small
        nb.cells.append(cell)
    return nb


def render(name: str) -> str:
    """The built notebook's text, exactly as written to notebooks/<name>.ipynb."""
    text = nbformat.writes(build(name))
    return text if text.endswith("\n") else text + "\n"


def stale(selected: list[str]) -> list[str]:
    """The notebooks whose committed .ipynb is missing or differs from its build."""
    out = []
    for name in selected:
        path = OUT / f"{name}.ipynb"
        if not path.is_file() or path.read_text(encoding="utf-8") != render(name):
            out.append(name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebooks to build (default: every notebooks/src/*.py)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 listing the notebooks that differ from their build")
    args = parser.parse_args(argv)
    known = names()
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"no source for {', '.join(unknown)} in {SRC} (known: {', '.join(known)})")
    selected = args.names or known
    if args.check:
        bad = stale(selected)
        for name in bad:
            how = "differs from" if (OUT / f"{name}.ipynb").is_file() else "is missing:"
            print(f"notebooks/{name}.ipynb {how} its build from notebooks/src/{name}.py")
        if bad:
            print("run: python scripts/build_notebooks.py")
            return 1
        print(f"{len(selected)} notebooks up to date")
        return 0
    OUT.mkdir(exist_ok=True)
    for name in selected:
        path = OUT / f"{name}.ipynb"
        path.write_text(render(name), encoding="utf-8")
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
