"""The notebook chain as a Jupyter user runs it (issue 17): every notebook of the default chain
executed top to bottom by nbclient, in order, with its *saved* parameters (nothing injected) and
``notebooks/`` as the kernel's working directory, exactly as "Run All" in JupyterLab does.

    python benchmarks/jupyter_chain_check.py          # about 5 minutes on 2 CPU cores

Too slow for CI (the default run is ~250 s; CI has ~2 minutes left), so it runs here once per
change to the notebooks and records its result in ``benchmarks/results/jupyter_chain_check.md``.
It works in a copy of the repository's files (``git ls-files``), with ``PYTHONPATH`` pointing the
kernels at the copy's ``utils``, so the saved ``run_dir = "runs/v1/round_1"`` writes into the copy and
not into your ``runs/``. Checked: every notebook runs without error; the MAP@25 figures equal
those of ``python -m utils run`` on the same defaults (README: 0.287 zero-shot, 0.448 fine-tuned,
0.479 reranked, from ``metrics.json``); the submission is written and valid.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, ROOT, machine_info  # noqa: E402

EXPECTED = {"base": 0.287, "fine-tuned": 0.448, "reranked": 0.479}  # README quick start, default run


def copy_repo(dst: Path) -> None:
    """The repository's tracked (and not ignored) files, as they are in the working tree."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for rel in files:
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def run_chain(repo: Path, names: list[str], timeout: int) -> list[dict]:
    """Execute each notebook in place (saved parameters), cwd ``repo/notebooks``; stop at the first error."""
    env_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(repo) + (os.pathsep + env_path if env_path else "")
    rows = []
    try:
        for name in names:
            path = repo / "notebooks" / f"{name}.ipynb"
            nb = nbformat.read(path, as_version=4)
            t0 = time.perf_counter()
            try:
                NotebookClient(nb, timeout=timeout, kernel_name="python3",
                               resources={"metadata": {"path": str(repo / "notebooks")}}).execute()
                error = None
            except Exception as e:  # the first failing cell's error, in one line
                error = " ".join(str(e).split())[-300:]
            nbformat.write(nb, path)
            rows.append({"notebook": name, "seconds": round(time.perf_counter() - t0, 1), "error": error})
            print(f"{name}: {rows[-1]['seconds']} s" + (f"  ERROR {error}" if error else ""), flush=True)
            if error:
                break
    finally:
        if env_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = env_path
    return rows


def figures(run_dir: Path) -> dict:
    """MAP@25 zero-shot / fine-tuned (03) and reranked (06) from the round's metrics.json."""
    m = json.loads((run_dir / "metrics.json").read_text())
    ev = m.get("03_eval_embedder") or {}
    rr = (m.get("06_rerank") or {}).get("reranked") or {}
    return {"base": (ev.get("base") or {}).get("map@25"), "fine-tuned": (ev.get("finetuned") or {}).get("map@25"),
            "reranked": rr.get("map@25")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(RESULTS / "jupyter_chain_check.md"))
    ap.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = ap.parse_args(argv)
    from utils.config import load_config

    names = load_config()["notebooks"]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jupyter_chain_") as tmp:
        repo = Path(tmp) / "repo"
        copy_repo(repo)
        rows = run_chain(repo, names, args.timeout)
        run = repo / "runs" / "v1"
        got = figures(run / "round_1") if (run / "round_1" / "metrics.json").exists() else {}
        submission = run / "submission.csv"
        sub_rows = len(submission.read_text().splitlines()) - 1 if submission.exists() else None
    total = time.perf_counter() - t0
    ok = all(r["error"] is None for r in rows) and len(rows) == len(names) and sub_rows
    same = {k: (got.get(k) is not None and round(got[k], 3) == v) for k, v in EXPECTED.items()}
    lines = [f"# Jupyter chain check (issue 17)\n",
             f"`python benchmarks/jupyter_chain_check.py` ({time.strftime('%Y-%m-%d')}, {total:.0f} s in all; "
             f"{machine_info('cpu').get('cpu', '')}). Each notebook of the default chain executed by nbclient with "
             "its saved parameters, cwd `notebooks/`, in a copy of the repository.\n",
             "| notebook | seconds | result |", "|---|---|---|"]
    lines += [f"| {r['notebook']} | {r['seconds']} | {'ok' if r['error'] is None else r['error']} |" for r in rows]
    lines += ["", "| MAP@25 | this check | `python -m utils run` (README) | equal to 3 decimals |", "|---|---|---|---|"]
    lines += [f"| {k} | {got.get(k) if got.get(k) is None else round(got[k], 4)} | {v} | {same[k]} |"
              for k, v in EXPECTED.items()]
    lines += ["", f"Submission: {sub_rows} rows written and validated by 08." if sub_rows else "Submission: none.",
              "", f"**{'PASS' if ok and all(same.values()) else 'FAIL'}**"]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if ok and all(same.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
