"""Run the notebook chain with papermill, round after round, resumably.

Each executed notebook is written under a temporary name and renamed when it finishes, so
an existing ``round_<r>/<notebook>.ipynb`` means that step is done: a re-run skips it and
resumes at the first unfinished step; every step after a step that ran is redone, since its
inputs changed (``force`` redoes everything). Parameters are passed as Python values (types kept) and a
name the notebook's ``parameters`` cell does not declare is an error.

All notebooks of one call run in one Jupyter kernel (IPC transport), cleared with ``%reset -f``
before each: importing torch and the model stack once instead of per notebook takes ~9 s off
every notebook on 2 CPU cores, which is most of a fold-round of a CV run on a GPU.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

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


# Run in the shared kernel before each notebook: no names, figures or GPU memory carry over.
_RESET = """%reset -f
import gc as _gc, sys as _sys
_gc.collect()
if "torch" in _sys.modules and _sys.modules["torch"].cuda.is_available():
    _sys.modules["torch"].cuda.empty_cache()
del _gc, _sys
"""


@contextmanager
def shared_kernel(kernel: str = "python3") -> Iterator:
    """One kernel for a series of notebooks, over IPC sockets in a private folder (no TCP warning)."""
    from jupyter_client.manager import KernelManager

    with tempfile.TemporaryDirectory(prefix="kernel-") as tmp:
        km = KernelManager(kernel_name=kernel, transport="ipc", ip=str(Path(tmp) / "ipc"))
        km.start_kernel(cwd=str(REPO_ROOT))
        try:
            yield km
        finally:
            km.shutdown_kernel(now=True)


def _reset(km) -> None:
    if not km.is_alive():  # a notebook crashed the kernel: start a new one
        km.restart_kernel(now=True)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        kc.execute_interactive(_RESET, timeout=120, output_hook=lambda msg: None)
    finally:
        kc.stop_channels()


def run_notebook(src: Path, dst: Path, parameters: dict, kernel: str = "python3", cwd: Path | None = None,
                 km=None) -> None:
    """Execute ``src`` into ``dst`` atomically; unknown parameter names raise.

    ``km``: a started kernel manager (``shared_kernel``) to run in, cleared first; None starts a fresh kernel.
    """
    import papermill

    declared = notebook_parameters(src)
    unknown = sorted(set(parameters) - declared)
    if unknown:
        raise ValueError(f"{src.name}: parameter(s) {unknown} not declared in its 'parameters' cell {sorted(declared)}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.running.ipynb")
    try:
        if km is not None:
            _reset(km)
        papermill.execute_notebook(
            str(src), str(tmp), parameters=parameters, kernel_name=kernel, progress_bar=False,
            cwd=str(cwd or REPO_ROOT), log_output=False, **({"km": km} if km is not None else {}),
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
    overrides: dict | None = None,
    km=None,
) -> list[StepResult]:
    """Run the configured notebooks for rounds 1..``rounds`` under ``out``.

    ``overrides``: config values over the file's (a CV fold's ``split.fold``, CV choices), kept in
    each round's ``config.yaml``; ``km``: a ``shared_kernel`` to run in (default: one for this call).
    """
    if km is None:
        with shared_kernel() as km:
            return run_chain(out, data_dir, split, rounds, config_path, model, force, notebooks, verbose, overrides, km)
    out = Path(out).resolve()
    cfg = load_config(config_path, overrides)  # validates before anything runs
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
            run_notebook(src, dst, params, km=km)
            dt = time.perf_counter() - t0
            results.append(StepResult(r, name, "ran", dt, dst))
            if verbose:
                print(f"round {r} {name}: {dt:.1f} s", flush=True)
        timings = io.read_json(run_dir / "timings.json", default={})
        timings.update({s.notebook: round(s.seconds, 2) for s in results if s.round_idx == r and s.status == "ran"})
        io.write_json(run_dir / "timings.json", timings)
    return results


def run_cv(
    out: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    rounds: int = 1,
    config_path: str | os.PathLike | None = None,
    model: str | None = None,
    force: bool = False,
    folds: list[int] | None = None,
    scheme: str | None = None,
    overrides: dict | None = None,
    verbose: bool = True,
) -> dict | None:
    """K-fold cross-validation: fold k runs the whole chain under ``out/fold_<k>/`` (resumable like any run).

    Once every fold has finished round ``rounds``, the pooled out-of-fold report and the CV
    choices are written (``utils.cv.choose``) and returned; with folds still missing, None.
    """
    from .cv import choose
    from .splits import CV_SCHEMES

    out = Path(out).resolve()
    base = load_config(config_path, overrides)
    n = int(base["split"]["n_folds"])
    scheme = scheme or base["split"]["cv_scheme"]
    if scheme not in CV_SCHEMES:
        raise ValueError(f"--cv-scheme {scheme!r}: choose one of {CV_SCHEMES}")
    folds = list(range(n)) if folds is None else folds
    bad = [k for k in folds if not 0 <= k < n]
    if bad:
        raise ValueError(f"--folds {bad}: outside 0..{n - 1} (split.n_folds = {n})")
    with shared_kernel() as km:
        for k in folds:
            if verbose:
                print(f"== fold {k} of {n} (cv scheme {scheme}) ==", flush=True)
            fold_overrides = _deep_update(overrides or {}, {"split": {"fold": k, "cv_scheme": scheme}})
            t0 = time.perf_counter()
            run_chain(out / f"fold_{k}", data_dir, "cv", rounds, config_path, model, force, verbose=verbose,
                      overrides=fold_overrides, km=km)
            io.write_json(out / f"fold_{k}" / "fold_seconds.json", {"seconds": round(time.perf_counter() - t0, 2)})
    chain = base["notebooks"]
    missing = [k for k in range(n) if not (out / f"fold_{k}" / f"round_{rounds}" / f"{chain[-1]}.ipynb").exists()]
    if missing:
        if verbose:
            print(f"folds {missing} have not finished round {rounds}: the pooled report waits for them "
                  f"(run them with --folds {','.join(map(str, missing))})")
        return None
    return choose(out)


def _deep_update(base: dict, new: dict) -> dict:
    out = dict(base)
    for key, value in new.items():
        out[key] = _deep_update(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def untuned_fallbacks(cfg: dict, rounds: int) -> list[str]:
    """What a run with nothing held out (split full) uses instead of choices tuned on validation."""
    from .pipeline import UNTUNED_BLEND_ALPHA, fusion_config_from, rerank_config_from

    out = []
    if "06_rerank" in cfg["notebooks"]:
        rc = rerank_config_from(cfg)
        if rc["blend"] is True:
            out.append(f"06 blends retrieval and reranker at alpha {UNTUNED_BLEND_ALPHA} (rerank.blend)")
        if rc["item_prior_weight"] == "tune":
            out.append("06 adds no item prior (rerank.item_prior_weight 0)")
    fc = fusion_config_from(cfg)
    if "08_fuse_submit" in cfg["notebooks"] and rounds > 1 and fc["method"] != "none" and fc["weights"] is None:
        method = "rrf" if fc["method"] == "auto" else fc["method"]
        out.append(f"08 fuses the rounds with equal-weight {method} (fusion.method / fusion.weights)")
    return out
