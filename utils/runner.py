"""Run the notebook chain with papermill, round after round, resumably.

Each executed notebook is written under a temporary name and renamed when it finishes, so
an existing ``round_<r>/<notebook>.ipynb`` means that step is done: a re-run skips it and
resumes at the first unfinished step; every step after a step that ran is redone, since its
inputs changed (``force`` redoes everything). Parameters are passed as Python values (types kept) and a
name the notebook's ``parameters`` cell does not declare is an error.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import io
from .config import REPO_ROOT, dump_config, load_config

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


@dataclass
class StepResult:
    round_idx: int
    notebook: str
    status: str  # "ran" | "skipped"
    seconds: float
    path: Path


def notebook_parameters(path: Path) -> set[str]:
    import papermill

    return set(papermill.inspect_notebook(str(path)).keys())


def run_notebook(src: Path, dst: Path, parameters: dict, kernel: str = "python3", cwd: Path | None = None) -> None:
    """Execute ``src`` into ``dst`` atomically; unknown parameter names raise."""
    import papermill

    declared = notebook_parameters(src)
    unknown = sorted(set(parameters) - declared)
    if unknown:
        raise ValueError(f"{src.name}: parameter(s) {unknown} not declared in its 'parameters' cell {sorted(declared)}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.running.ipynb")
    try:
        papermill.execute_notebook(
            str(src), str(tmp), parameters=parameters, kernel_name=kernel, progress_bar=False,
            cwd=str(cwd or REPO_ROOT), log_output=False,
        )
    except Exception:
        failed = dst.with_name(f"{dst.stem}.failed.ipynb")
        if tmp.exists():
            os.replace(tmp, failed)
            print(f"  failed: the executed notebook is kept at {failed}", file=sys.stderr)
        raise
    os.replace(tmp, dst)


def run_chain(
    out: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    split: str = "v1",
    rounds: int = 1,
    config_path: str | os.PathLike | None = None,
    model: str | None = None,
    force: bool = False,
    notebooks: list[str] | None = None,
    verbose: bool = True,
) -> list[StepResult]:
    """Run the configured notebooks for rounds 1..``rounds`` under ``out``."""
    out = Path(out).resolve()
    cfg = load_config(config_path)  # validates before anything runs
    chain = notebooks or cfg["notebooks"]
    data_dir = str(Path(data_dir).resolve()) if data_dir else None
    results: list[StepResult] = []
    dirty = False  # once a step runs, every later step (this round and later rounds) reruns too
    if force and out.exists():
        for sub in ["split.parquet"] + [f"round_{r}" for r in range(1, rounds + 1)]:
            p = out / sub
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    for r in range(1, rounds + 1):
        run_dir = out / f"round_{r}"
        run_dir.mkdir(parents=True, exist_ok=True)
        snapshot = run_dir / "config.yaml"
        io.write_text(snapshot, dump_config(cfg))
        params = {"run_dir": str(run_dir), "data_dir": data_dir, "split": split, "round_idx": r,
                  "config_path": str(snapshot), "model": model}
        for name in chain:
            src = NOTEBOOK_DIR / f"{name}.ipynb"
            dst = run_dir / f"{name}.ipynb"
            if dst.exists() and not (force or dirty):
                results.append(StepResult(r, name, "skipped", 0.0, dst))
                if verbose:
                    print(f"round {r} {name}: done already, skipped")
                continue
            if verbose:
                print(f"round {r} {name}: running ...", flush=True)
            t0 = time.perf_counter()
            dirty = True
            run_notebook(src, dst, params)
            dt = time.perf_counter() - t0
            results.append(StepResult(r, name, "ran", dt, dst))
            if verbose:
                print(f"round {r} {name}: {dt:.1f} s", flush=True)
        timings = io.read_json(run_dir / "timings.json", default={})
        timings.update({s.notebook: round(s.seconds, 2) for s in results if s.round_idx == r and s.status == "ran"})
        io.write_json(run_dir / "timings.json", timings)
    return results
