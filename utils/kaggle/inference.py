"""Inference-only mode, and packing a finished round for a Kaggle kernel (07_export).

``export_round`` turns a round folder into two folders in the ``kaggle`` CLI layout:

* ``<root>/<slug>/``: a dataset with the round's ``embedder/`` (and ``reranker/`` when the
  round trained one; an LLM reranker's base model too, as ``reranker_base/``, when it is a local or
  ``pypi:`` folder of at most ``PACK_BASE_MAX_GIB``), a copy of the ``utils/`` package source (the
  kernel imports it offline), the effective ``config.yaml`` and ``export.json`` (what was packed,
  plus the blend weight tuned on validation);
* ``<root>/<slug>-inference/``: a kernel running ``notebooks/kaggle_inference.ipynb`` with
  ``models_dir = "/kaggle/input/<slug>"``, the dataset and the competition as sources, GPU on,
  internet off;
* with ``export.wheels: true`` (or ``wheels=True``), ``<root>/<slug>-wheels/``: a dataset with the
  wheels of the pinned transformers / sentence-transformers / peft / accelerate / safetensors /
  tokenizers / huggingface-hub and their dependencies for Kaggle's Python (``utils.kaggle.wheels``; never
  torch), also a source of the kernel, whose notebook installs them offline
  (``wheels_dir = "/kaggle/input/<slug>-wheels"``) before importing ``utils``.

``export`` (``python -m utils export RUN_DIR --round R``) does the same for a finished round without
running a notebook or rewriting its ``config.yaml``; ``export.json`` names no local path.

``infer`` is what that kernel runs: no training, only test.csv -> embed -> recall top-K ->
rerank (when a reranker is packed) -> ``submission.csv``. It takes any folder holding
``embedder/`` (+ ``reranker/``): an exported dataset or a round folder.
"""

from __future__ import annotations

import gc
import os
import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from utils import io
from utils import stages
from utils.config import REPO_ROOT, dump_config, export_config_from, load_config
from utils.lora import resolve_name
from utils.rerank.llm import CONFIG_FILE as LLM_RERANKER_CONFIG, PACKED_BASE

UTILS_DIR = Path(__file__).resolve().parent.parent  # the whole utils package
INFERENCE_NOTEBOOK = REPO_ROOT / "notebooks" / "kaggle_inference.ipynb"
KAGGLE_INPUT = "/kaggle/input"
DEFAULT_OWNER = "your-kaggle-username"
MANIFEST = "export.json"
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".ipynb_checkpoints", "*.egg-info")


# -- export ------------------------------------------------------------------------------------
def export_config(ctx: stages.context.RunContext) -> dict:
    """The run's ``export`` section over its defaults (``utils.config.ExportConfig``)."""
    return export_config_from(ctx.config)


def kernel_data(ctx: stages.context.RunContext, ecfg: dict) -> tuple[list[str], list[str], str | None]:
    """(competition sources, dataset sources, data_dir) of the kernel: ``export.data_source`` (a
    competition slug, or owner/dataset), else the task's ``kaggle_competition``; data_dir None: neither."""
    source = ecfg["data_source"] or getattr(ctx.task, "kaggle_competition", None)
    if not source:
        return [], [], None
    if "/" in source:
        return [], [source], f"{KAGGLE_INPUT}/{source.split('/', 1)[1]}"
    return [source], [], f"{KAGGLE_INPUT}/{source}"


def slugify_name(text: str, max_len: int = 40) -> str:
    """Lowercase ``[a-z0-9-]`` slug without leading, trailing or double '-' (Kaggle's syntax)."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:max_len].strip("-")
    return slug


def _owner(ecfg: dict, owner: str | None) -> str:
    value = owner or ecfg.get("owner") or os.environ.get("KAGGLE_USERNAME") or DEFAULT_OWNER
    return str(value).strip().lower()


def _rerank_choice(run_dir: Path, key: str) -> float | None:
    """A value 06 chose on validation (``blend_alpha``, ``item_prior_weight``), from the run's metrics."""
    m = io.read_json(run_dir / "metrics.json", default={}) or {}
    value = (m.get("06_rerank") or {}).get(key)
    return None if value is None else float(value)


def _fusion_inputs(ctx: stages.context.RunContext, has_reranker: bool) -> tuple[dict | None, dict[str, Path]]:
    """The rankings 08 fuses for this round (``fuse_submit.fusion_plan``) as the kernel rebuilds them, and the
    earlier rounds' model folders to pack for it (``embedder_round_<r>``, ``reranker_round_<r>``). None: the
    kernel submits this round's own ranking (08 fuses nothing, or the round has no rankings yet)."""
    from utils.stages.fuse_submit import fusion_plan

    try:
        plan = fusion_plan(ctx)
    except FileNotFoundError:  # no recall in this round (an export before 04): this round's models alone
        return None, {}
    own = (ctx.round_idx, "rerank" if has_reranker else "candidates")
    if plan["inputs"] == [own]:
        return None, {}
    inputs, others = [], {}
    for (r, source), w in zip(plan["inputs"], plan["weights"]):
        entry = {"round": r, "source": source, "weight": w}
        if r != ctx.round_idx:
            others[f"embedder_round_{r}"] = ctx.round_dir(r) / "embedder"
            if source == "rerank":
                others[f"reranker_round_{r}"] = ctx.round_dir(r) / "reranker"
                entry.update(blend_alpha=_rerank_choice(ctx.round_dir(r), "blend_alpha"),
                             item_prior_weight=_rerank_choice(ctx.round_dir(r), "item_prior_weight"))
        inputs.append(entry)
    return {"method": plan["method"], "inputs": inputs, "top_k": plan.get("top_k", 100)}, others


def _base_model_warnings(folder: Path, what: str) -> list[str]:
    """Adapters need their base model on Kaggle: say which one (it is not packed)."""
    cfg = io.read_json(folder / "adapter_config.json")
    if not cfg:
        return []
    settings = io.read_json(folder / "embedder_config.json", default={}) or {}
    base = settings.get("base_model") or cfg.get("base_model_name_or_path")
    return [f"{what}/ holds a LoRA adapter over {_portable(base)!r}, which is not in the dataset: attach that base "
            f"model to the kernel (Kaggle model or dataset) and make the adapter config point at its /kaggle/input path"]


# An LLM reranker's base model is packed into the dataset (reranker_base/) up to this size: a <= 2B model in
# bf16 (SmolLM2-135M from PyPI: 0.5 GiB); larger bases are attached on Kaggle as a model instead.
PACK_BASE_MAX_GIB = 4.0


def _packable_base(reranker_dir: Path) -> Path | None:
    """The local folder of an LLM reranker's base model (a ``pypi:`` name resolves to its cache), when it is
    small enough to travel in the dataset; None for a cross-encoder, a hub id or a large model."""
    cfg = io.read_json(reranker_dir / LLM_RERANKER_CONFIG)
    if not cfg or not cfg.get("base"):
        return None
    try:
        base = Path(resolve_name(cfg["base"]))
    except RuntimeError:  # a pypi: model this machine cannot fetch: the warning names it instead
        return None
    if not (base / "config.json").is_file():
        return None
    size = sum(f.stat().st_size for f in base.rglob("*") if f.is_file())
    return base if size <= PACK_BASE_MAX_GIB * 2**30 else None


def _portable(path: str | None) -> str | None:
    """A hub id as it is; a local path as its last part (this machine's folders mean nothing on Kaggle)."""
    return Path(path).name if path and (os.path.isabs(path) or Path(path).exists()) else path


def set_notebook_parameter(nb_path: Path, out_path: Path, name: str, value: str) -> Path:
    """Copy a notebook, with ``name = ...`` in its ``parameters`` cell set to ``repr(value)``."""
    import nbformat

    nb = nbformat.read(str(nb_path), as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if not cells:
        raise ValueError(f"{nb_path}: no cell tagged 'parameters'")
    pattern = re.compile(rf"^({re.escape(name)}\s*=\s*)([^#\n]*?)(\s*(#.*)?)$", re.M)
    src, n = pattern.subn(lambda m: f'{m.group(1)}"{value}"{m.group(3)}', cells[0].source, count=1)
    if n != 1:
        raise ValueError(f"{nb_path}: the parameters cell declares no {name!r}")
    cells[0].source = src
    out_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(out_path))
    return out_path


def _listing(folder: Path) -> pd.DataFrame:
    rows = [{"path": str(p.relative_to(folder)), "bytes": p.stat().st_size}
            for p in sorted(folder.rglob("*")) if p.is_file()]
    df = pd.DataFrame(rows, columns=["path", "bytes"])
    df["MB"] = (df["bytes"] / 1e6).round(3)
    return df


def export_round(
    ctx: stages.context.RunContext,
    name: str | None = None,
    owner: str | None = None,
    out_root: str | os.PathLike | None = None,
    notebook: str | os.PathLike | None = None,
    wheels: bool | None = None,
    wheel_requirements: list[str] | None = None,
) -> dict:
    """Pack this round's models, ``utils/`` and config as a Kaggle dataset, plus its inference kernel.

    ``wheels`` (default: config ``export.wheels``, off) also packs the offline wheels dataset
    ``<slug>-wheels`` (``utils.kaggle.wheels.pack_wheels``; ``wheel_requirements`` replaces its default
    pinned list) and makes the kernel attach and install it.

    ``name`` (dataset slug) defaults to config ``export.name``, else ``<task>-<run>-r<round>``;
    ``owner`` to ``export.owner``, else ``$KAGGLE_USERNAME``, else ``your-kaggle-username``;
    ``out_root`` to ``export.dir`` (``kaggle_datasets/``). Each folder is built in a temp dir
    and renamed into place (an older build is replaced). Weights are copied, never linked.
    The kernel reads its data from ``export.data_source`` (a competition, or an owner/dataset), else
    from the task's Kaggle competition; a task with neither gets a warning and a kernel that stops
    at its first cell naming ``data_dir``.
    Returns the folders, ids, metadata, the dataset's file list and the push commands.
    """
    from utils.kaggle.api import build_dataset, build_kernel, validate_dataset_metadata, validate_kernel_metadata

    ecfg = export_config(ctx)
    run_dir = Path(ctx.run_dir)
    if not (ctx.embedder_dir / "embedder_config.json").exists():
        raise FileNotFoundError(f"{ctx.embedder_dir}: no fine-tuned embedder (run 02_train_embedder first)")
    task = ctx.task.name
    slug = slugify_name(name or ecfg["name"] or f"{task}-{ctx.out_dir.name}-r{ctx.round_idx}")
    if len(slug) < 6:
        slug = slugify_name(f"{task}-models-{slug}")
    owner_ = _owner(ecfg, owner)
    dataset_id = f"{owner_}/{slug}"
    title = ecfg["title"] or f"{task.capitalize()} {ctx.out_dir.name} round {ctx.round_idx} models"
    if len(title) > 50:
        title = title[:50].rstrip()
    if len(title) < 6:
        title = f"{task.capitalize()} models {title}"
    kernel_slug = f"{slug}-inference"
    kernel_title = kernel_slug.replace("-", " ").capitalize()  # slugifies back to kernel_slug
    kernel_id = f"{owner_}/{kernel_slug}"
    root = stages.context.from_root(out_root or ecfg["dir"])
    nb_src = Path(notebook) if notebook else INFERENCE_NOTEBOOK
    if not nb_src.is_file():
        raise FileNotFoundError(f"{nb_src}: inference notebook not found (run scripts/build_notebooks.py)")
    pack = bool(ecfg["wheels"] if wheels is None else wheels)
    wheels_slug = f"{slug}-wheels"

    has_reranker = ctx.reranker_dir.is_dir() and any(ctx.reranker_dir.iterdir())
    warnings = _base_model_warnings(ctx.embedder_dir, "embedder")
    competitions, data_datasets, data_dir = kernel_data(ctx, ecfg)
    if data_dir is None:
        data_dir = f"{KAGGLE_INPUT}/<data>"
        warnings.append(f"task {task!r} has no Kaggle competition: set export.data_source to the competition or "
                        f"owner/dataset holding its files (the kernel stops until data_dir is attached)")
    packed_base = _packable_base(ctx.reranker_dir) if has_reranker else None
    if has_reranker and packed_base is None:
        warnings += _base_model_warnings(ctx.reranker_dir, "reranker")
    rc = stages.train_reranker.rerank_config(ctx) if has_reranker else None
    fusion, others = _fusion_inputs(ctx, has_reranker)
    manifest = {
        "dataset_id": dataset_id, "kernel_id": kernel_id, "source_run": f"{ctx.out_dir.name}/{run_dir.name}",
        "split": ctx.split, "round": ctx.round_idx, "reranker": has_reranker,
        "rerank_family": rc["family"] if rc else None, "rerank_top_k": rc["top_k"] if rc else None,
        "blend_alpha": _rerank_choice(run_dir, "blend_alpha") if has_reranker else None,
        "item_prior_weight": _rerank_choice(run_dir, "item_prior_weight") if has_reranker else None,
        "reranker_base": PACKED_BASE if packed_base else None,
        "recall_k": ctx.config["recall"]["k"], "warnings": warnings,
        "wheels_dataset_id": f"{owner_}/{wheels_slug}" if pack else None,
        "fusion": fusion,
    }
    wheels_pack = None
    if pack:
        from utils.kaggle.wheels import pack_wheels

        cache = ecfg["wheel_cache"]
        wheels_pack = pack_wheels(root, f"{owner_}/{wheels_slug}", f"Wheels for {slug}"[:50],
                                  requirements=wheel_requirements, python_version=str(ecfg["wheels_python"]),
                                  cache=stages.context.from_root(os.path.expanduser(cache)) if cache else None,
                                  license_name=ecfg["license"])
        manifest["wheels_install"] = wheels_pack["install"]
    with tempfile.TemporaryDirectory(prefix="eedi_export_") as tmp:
        stage = Path(tmp)
        shutil.copytree(UTILS_DIR, stage / "utils", ignore=_IGNORE)
        io.write_text(stage / "config.yaml", dump_config(ctx.config))
        io.write_json(stage / MANIFEST, manifest)
        src = {"embedder": ctx.embedder_dir, "utils": stage / "utils", "config.yaml": stage / "config.yaml",
               MANIFEST: stage / MANIFEST}
        if has_reranker:
            src["reranker"] = ctx.reranker_dir
        if packed_base:
            src[PACKED_BASE] = packed_base
        src.update(others)
        dataset_dir = build_dataset(src, root, dataset_id, title, license_name=ecfg["license"])
        nb = set_notebook_parameter(nb_src, stage / "nb" / nb_src.name, "models_dir", f"{KAGGLE_INPUT}/{slug}")
        nb = set_notebook_parameter(nb, nb, "data_dir", data_dir)
        if wheels_pack:
            nb = set_notebook_parameter(nb, nb, "wheels_dir", f"{KAGGLE_INPUT}/{wheels_slug}")
        sources = [dataset_id] + ([wheels_pack["dataset_id"]] if wheels_pack else []) + data_datasets
        kernel_dir = build_kernel(nb, root, kernel_id, kernel_title, dataset_sources=sources,
                                  competition_sources=competitions, enable_gpu=bool(ecfg["enable_gpu"]),
                                  enable_internet=False, is_private=bool(ecfg["is_private"]))
    dataset_meta = validate_dataset_metadata(dataset_dir)
    kernel_meta = validate_kernel_metadata(kernel_dir)
    wheels_meta = validate_dataset_metadata(wheels_pack["dir"]) if wheels_pack else None
    rel = {k: os.path.relpath(v, REPO_ROOT) if Path(v).is_relative_to(REPO_ROOT) else str(v)
           for k, v in (("dataset", dataset_dir), ("kernel", kernel_dir))
           + ((("wheels", wheels_pack["dir"]),) if wheels_pack else ())}
    return {
        "dataset_dir": dataset_dir, "kernel_dir": kernel_dir, "dataset_id": dataset_id, "kernel_id": kernel_id,
        "dataset_metadata": dataset_meta, "kernel_metadata": kernel_meta, "files": _listing(dataset_dir),
        "manifest": manifest, "warnings": warnings,
        "wheels_dir": wheels_pack["dir"] if wheels_pack else None,
        "wheels_dataset_id": wheels_pack["dataset_id"] if wheels_pack else None,
        "wheels_metadata": wheels_meta, "wheels_install": wheels_pack["install"] if wheels_pack else None,
        "push_commands": [f"python -m utils kaggle dataset {rel['dataset']} --no-dry-run",
                          *([f"python -m utils kaggle dataset {rel['wheels']} --no-dry-run"] if wheels_pack else []),
                          f"python -m utils kaggle kernel {rel['kernel']} --no-dry-run",
                          f"python -m utils kaggle submit {rel['kernel']} --no-dry-run"],
    }


def _round_parameters(round_dir: Path) -> dict:
    """The parameters papermill gave the round's executed notebooks (split, data_dir, model), if any."""
    import nbformat

    for nb_path in sorted(round_dir.glob("0*.ipynb")):
        try:
            params = nbformat.read(str(nb_path), as_version=4).metadata.get("papermill", {}).get("parameters")
        except Exception:  # an unreadable notebook: try the next one
            continue
        if params:
            return dict(params)
    return {}


def export_context(run_dir: str | os.PathLike, round_idx: int | None = None) -> stages.context.RunContext:
    """A finished round as ``export_round`` needs it, read only: its ``config.yaml`` and model folders.

    ``run_dir``: the run folder (``runs/v1``, holding ``round_<r>/``) or a round folder itself;
    ``round_idx`` defaults to the last round with an embedder. No data is loaded and nothing is written.
    """
    from utils.splits import SPLITS
    from utils.tasks import TaskData, get_task

    run_dir = stages.context.from_root(run_dir)
    if re.fullmatch(r"round_\d+", run_dir.name) and round_idx in (None, int(run_dir.name.split("_")[1])):
        run_dir, round_idx = run_dir.parent, int(run_dir.name.split("_")[1])
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: run folder not found")
    if round_idx is None:
        done = sorted(int(d.name.split("_")[1]) for d in run_dir.glob("round_*")
                      if re.fullmatch(r"round_\d+", d.name) and (d / "embedder" / "embedder_config.json").exists())
        if not done:
            raise FileNotFoundError(f"{run_dir}: no round_<r>/ with a fine-tuned embedder to export")
        round_idx = done[-1]
    round_dir = run_dir / f"round_{round_idx}"
    if not round_dir.is_dir():
        raise FileNotFoundError(f"{round_dir}: round folder not found")
    config_path = round_dir / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: the round's config snapshot is missing (was the round run?)")
    cfg = load_config(config_path)
    params = _round_parameters(round_dir)
    split = params.get("split") or (run_dir.name if run_dir.name in SPLITS else "unknown")
    empty = pd.DataFrame(columns=["query_id", "group", "query_text", "positives", "fold"])
    data = TaskData(Path(params.get("data_dir") or "."), empty, pd.DataFrame(columns=["item_id", "item_text", "raw_id"]))
    return stages.context.RunContext(round_dir, split, round_idx, cfg, get_task(cfg["data"]["task"]), data, empty, empty,
                                     params.get("model") or cfg["embedder"]["model"])


def export(
    run_dir: str | os.PathLike,
    round_idx: int | None = None,
    name: str | None = None,
    owner: str | None = None,
    out_root: str | os.PathLike | None = None,
    wheels: bool | None = None,
) -> dict:
    """``python -m utils export``: ``export_round`` on a finished round, without running any notebook
    (08 is not re-run) and without rewriting the round's ``config.yaml``. ``wheels``: see ``export_round``."""
    return export_round(export_context(run_dir, round_idx), name=name, owner=owner, out_root=out_root, wheels=wheels)


# -- inference ---------------------------------------------------------------------------------
class InferenceContext(stages.context.RunContext):
    """A ``RunContext`` whose models live in ``extra["models_dir"]`` and whose cache is a temp dir,
    so the pipeline's ranking and reranking functions run unchanged on read-only inputs."""

    @property
    def models_dir(self) -> Path:
        return Path(self.extra["models_dir"])

    @property
    def embedder_dir(self) -> Path:  # an earlier round's (fused by 08): embedder_round_<r>
        return self.models_dir / f"embedder{self.extra.get('suffix', '')}"

    @property
    def reranker_dir(self) -> Path:
        return self.models_dir / f"reranker{self.extra.get('suffix', '')}"

    @property
    def cache_dir(self) -> Path:
        return Path(self.extra.get("cache_dir") or Path(tempfile.gettempdir()) / "eedi_infer_cache")


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def inference_context(
    data_dir: str | os.PathLike,
    models_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config_path: str | os.PathLike | None = None,
) -> InferenceContext:
    """Config (``config_path``, else ``models_dir/config.yaml``, else defaults) + the task's data (test required)."""
    models_dir, out_dir = Path(models_dir), Path(out_dir)
    if not (models_dir / "embedder").is_dir():
        raise FileNotFoundError(f"{models_dir / 'embedder'}: no embedder (models_dir must hold embedder/ [+ reranker/])")
    if config_path is None and (models_dir / "config.yaml").is_file():
        config_path = models_dir / "config.yaml"
    from utils.tasks import get_task
    from utils.tasks.base import format_queries

    cfg = load_config(config_path)
    task = get_task(cfg["data"]["task"])
    data = task.load(Path(data_dir), require_test=True)
    pairs, test_pairs = data.queries.copy(), data.test.copy()
    template = cfg["data"]["query_template"]
    if template:
        pairs["query_text"], test_pairs["query_text"] = format_queries(pairs, template), format_queries(test_pairs, template)
    pairs["fold"] = "train"  # every labelled query may serve as an in-context example
    return InferenceContext(run_dir=out_dir, split="full", round_idx=1, config=cfg, task=task, data=data, pairs=pairs,
                            test_pairs=test_pairs, base_model=cfg["embedder"]["model"],
                            extra={"models_dir": str(models_dir)})


def _round_ranking(ctx: InferenceContext, choice: dict, rerank: bool, say) -> pd.DataFrame:
    """One round's test ranking from its packed models: recall, then (``rerank``) the reranker blended with
    ``choice``'s ``blend_alpha`` / ``item_prior_weight`` as 06 chose them."""
    from utils.rerank.blend import final_ranking

    cfg = ctx.config
    rc = stages.train_reranker.rerank_config(ctx) if rerank else None
    k = max(cfg["recall"]["k"], cfg["submission"]["k"], rc["top_k"] if rc else 0)
    say(f"{len(ctx.test_pairs)} test queries, {len(ctx.corpus)} candidates; recall top-{k} with {ctx.embedder_dir}")
    emb = ctx.embedder("current")
    ranking = stages.ops.rank(ctx, emb, ctx.test_pairs, k=k)
    del emb
    _free_memory()
    if rerank:
        alpha = choice.get("blend_alpha")
        alpha = stages.rerank.UNTUNED_BLEND_ALPHA if alpha is None else float(alpha)  # None: an export made before 06 saved it
        prior_weight = float(choice.get("item_prior_weight") or 0.0)
        say(f"rerank the top-{rc['top_k']} with {ctx.reranker_dir} ({rc['family']}, blend alpha {alpha}"
            + (f", item prior weight {prior_weight})" if prior_weight else ")"))
        scores = stages.rerank.score_reranker(ctx, ranking, ctx.test_pairs)
        if prior_weight:
            scores = scores + prior_weight * stages.rerank.reranker_item_prior(ctx, ranking)
        ranking = final_ranking(ranking, scores, alpha, rc["top_k"])
        _free_memory()
    return ranking


def infer(
    data_dir: str | os.PathLike,
    models_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config_path: str | os.PathLike | None = None,
    verbose: bool = True,
) -> Path:
    """Predict the test queries with packed models (no training); write and validate the task's submission
    (Eedi: ``out_dir/submission.csv``).

    Recall top-K with ``models_dir/embedder``; when ``models_dir/reranker`` exists, rerank the
    head as ``06_rerank`` does (the blend weight from ``export.json`` when the round tuned one). When 08
    fused rounds (``export.json``'s ``fusion``), rank with each packed round's models and fuse them with
    08's method and weights; then re-score as ``08`` does when the config sets ``fusion.prior_weight`` /
    ``sibling_weight``.
    """
    from dataclasses import replace

    from utils.fusion import fuse
    from utils.retrieval.embed import describe_dtype

    ctx = inference_context(data_dir, models_dir, out_dir, config_path)
    cfg = ctx.config
    say = print if verbose else (lambda *a, **kw: None)
    say(describe_dtype())  # Kaggle's T4 / P100 have no bf16: fp16 there
    manifest = io.read_json(ctx.models_dir / MANIFEST, default={}) or {}
    fusion = manifest.get("fusion")
    has_reranker = ctx.reranker_dir.is_dir() and any(ctx.reranker_dir.iterdir())
    if not fusion:
        ranking = _round_ranking(ctx, manifest, has_reranker, say)
    else:
        rankings = []
        for inp in fusion["inputs"]:
            own = inp["round"] == manifest.get("round")
            sub = ctx if own else replace(ctx, extra={**ctx.extra, "suffix": f"_round_{inp['round']}"})
            say(f"round {inp['round']} ({inp['source']}), weight {inp['weight']:.3f}:")
            rankings.append(_round_ranking(sub, manifest if own else inp, inp["source"] == "rerank", say))
        if len(rankings) == 1:  # 08 picked an earlier round's ranking alone
            ranking = rankings[0]
        else:
            say(f"fuse {len(rankings)} rankings by {fusion['method']}, as 08 did")
            ranking = fuse(rankings, fusion["method"], [float(i["weight"]) for i in fusion["inputs"]], int(fusion["top_k"]))
    fc = cfg["fusion"]
    if fc["prior_weight"] or fc["sibling_weight"]:  # as 08 does (utils.rescore), counts from every labelled pair
        from utils.rescore import item_counts, rescore

        say(f"re-score: item prior weight {fc['prior_weight']}, sibling weight {fc['sibling_weight']}")
        ranking = rescore(ranking, ctx.test_pairs, item_counts(ctx.train_pairs), fc["prior_weight"], fc["sibling_weight"])
    out = ctx.task.write_submission(ranking, ctx.data, Path(out_dir) / ctx.task.submission_file)
    ctx.task.validate_submission(out, ctx.data)
    say(f"submission: {out}")
    return out
