"""Issue 17, once: does the offline wheels dataset make an older "Kaggle image" run the exported kernel's code?

1. A round with the bundled MiniLM saved as an embedder by this machine's sentence-transformers /
   transformers; ``export_round(..., wheels=True)`` packs it plus the ``<slug>-wheels`` dataset.
2. Reference: ``python -m utils infer`` on data/sample with this venv (the packed versions).
3. A fresh venv (no system site-packages) with torch 2.13.0 and OLDER transformers / sentence-transformers
   (``--old-transformers`` / ``--old-st``) plus what utils imports, standing in for Kaggle's image;
   infer there as is (utils imported from the dataset, like the kernel), then after
   ``pip install --no-index --find-links <wheels> -r <wheels>/requirements.txt``; compare submissions.

Results: benchmarks/results/kaggle_offline_check.md. Usage:
``python benchmarks/kaggle_offline_check.py [--work /tmp/kaggle_offline_check] [--python-version 3.11]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULT = ROOT / "benchmarks" / "results" / "kaggle_offline_check.md"
# what utils' inference path imports, besides torch and the HF stack
UTILS_DEPS = ["numpy", "pandas", "pyarrow", "pyyaml", "tqdm", "scikit-learn", "faiss-cpu", "nbformat"]


def sh(cmd: list[str], log: list[str], cwd: Path | None = None, env: dict | None = None, timeout: int = 1800):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    dt = time.perf_counter() - t0
    short = " ".join(str(c) for c in cmd)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-6:]
    log.append(f"$ {short}\n  -> rc {proc.returncode} in {dt:.0f} s" + "".join(f"\n  | {t}" for t in tail))
    print(log[-1], flush=True)
    return proc


def versions(python: str, log: list[str]) -> str:
    code = ("import importlib.metadata as m\nfor n in ['torch','transformers','sentence-transformers','tokenizers',"
            "'huggingface-hub','safetensors','peft','accelerate']:\n"
            "    try: print(n, m.version(n))\n    except Exception: print(n, '-')")
    return subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip().replace("\n", ", ")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/kaggle_offline_check"))
    ap.add_argument("--python-version", default=f"{sys.version_info.major}.{sys.version_info.minor}")
    ap.add_argument("--old-transformers", default="4.57.1")
    ap.add_argument("--old-st", default="4.1.0")
    ap.add_argument("--result", type=Path, default=RESULT, help="markdown report (default benchmarks/results/kaggle_offline_check.md)")
    args = ap.parse_args()
    from utils.config import SAMPLE_DATA_DIR, dump_config, load_config
    from utils.retrieval.embed import Embedder, resolve_model
    from utils.kaggle.inference import export_context, export_round

    work = args.work
    shutil.rmtree(work / "runs", ignore_errors=True)
    shutil.rmtree(work / "kd", ignore_errors=True)
    log: list[str] = []
    t_all = time.perf_counter()

    # 1. a round saved by this machine's versions, exported with wheels
    round_dir = work / "runs" / "v1" / "round_1"
    Embedder(resolve_model("default"), device="cpu").save(round_dir / "embedder")
    cfg = load_config(overrides={"export": {"owner": "someuser", "wheels": True, "wheels_python": args.python_version,
                                            "wheel_cache": str(work / "wheel_cache")}})
    (round_dir / "config.yaml").write_text(dump_config(cfg))
    t0 = time.perf_counter()
    exp = export_round(export_context(round_dir.parent, 1), out_root=work / "kd")
    t_export = time.perf_counter() - t0
    ds, wd = exp["dataset_dir"], exp["wheels_dir"]
    mb = sum(p.stat().st_size for p in wd.glob("*.whl")) / 1e6
    log.append(f"export with wheels: {t_export:.0f} s; {len(exp['wheels_install'])} pinned "
               f"({' '.join(exp['wheels_install'])}); {len(list(wd.glob('*.whl')))} wheels, {mb:.1f} MB")
    t0 = time.perf_counter()
    export_round(export_context(round_dir.parent, 1), out_root=work / "kd")
    log.append(f"second export (wheel cache reused, no download): {time.perf_counter() - t0:.0f} s")
    print("\n".join(log[-2:]), flush=True)

    # 2. reference: the packed versions (this venv)
    env = {**os.environ, "PYTHONPATH": str(ds), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    infer = ["-m", "utils", "infer", "--data-dir", str(SAMPLE_DATA_DIR), "--models", str(ds), "--out"]
    ref = sh([sys.executable, *infer, str(work / "out_ref")], log, cwd=ds, env=env)
    here = versions(sys.executable, log)

    # 3. the simulated older image
    venv = work / "venv_old"
    py = str(venv / "bin" / "python")
    if not venv.exists():
        sh([sys.executable, "-m", "venv", str(venv)], log)
        sh([py, "-m", "pip", "install", "--quiet", "torch==2.13.0", f"transformers=={args.old_transformers}",
            f"sentence-transformers=={args.old_st}", *UTILS_DEPS], log)
    old = versions(py, log)
    before = sh([py, *infer, str(work / "out_old")], log, cwd=ds, env=env)
    inst = sh([py, "-m", "pip", "install", "--no-index", "--find-links", str(wd), "-r", str(wd / "requirements.txt")],
              log, env={k: v for k, v in os.environ.items() if not k.startswith("PIP_FIND")})
    after_versions = versions(py, log)
    after = sh([py, *infer, str(work / "out_wheels")], log, cwd=ds, env=env)
    same = None
    if ref.returncode == 0 and after.returncode == 0:
        same = (work / "out_ref" / "submission.csv").read_bytes() == (work / "out_wheels" / "submission.csv").read_bytes()

    lines = [
        "# Kaggle offline check (issue 17)", "",
        f"`python benchmarks/kaggle_offline_check.py` ({time.strftime('%Y-%m-%d')}, {time.perf_counter() - t_all:.0f} s "
        f"in all, CPU). Model: the bundled all-MiniLM-L6-v2 saved as a round's embedder (no reranker); "
        f"data: `data/sample`; wheels for Python {args.python_version}.", "",
        "| step | result |", "|---|---|",
        f"| packed versions (this venv) | {here} |",
        f"| export with `wheels: true` | {log[0]} |",
        f"| second export | {log[1]} |",
        f"| reference `utils infer`, packed versions | rc {ref.returncode} |",
        f"| simulated image (fresh venv, no system site-packages) | {old} |",
        f"| `utils infer` on the simulated image, no wheels | rc {before.returncode}"
        + (f": `{(before.stderr.strip().splitlines() or ['?'])[-1][:200]}`" if before.returncode else "") + " |",
        f"| `pip install --no-index --find-links <wheels> -r requirements.txt` | rc {inst.returncode} |",
        f"| versions after the install | {after_versions} |",
        f"| `utils infer` after the install | rc {after.returncode} |",
        f"| submission equal to the reference | {same} |", "",
        "## Log", "", "```", *log, "```", "",
    ]
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text("\n".join(lines))
    print(f"wrote {args.result}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
