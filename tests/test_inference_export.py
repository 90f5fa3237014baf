"""07_export and inference-only mode: pack a finished round, then predict test.csv from the pack.

The round is built with ``utils.pipeline`` calls (no papermill) on tiny data with a tiny config.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from utils import stages
from utils.config import REPO_ROOT
from utils.kaggle.inference import export_round, infer, set_notebook_parameter
from utils.kaggle.api import validate_dataset_metadata, validate_kernel_metadata
from utils.metrics import ranking_lists
from utils.tasks.eedi import validate_submission

def _sub_lists(path: Path) -> dict[str, list[int]]:
    df = pd.read_csv(path, dtype=str)
    return {q: [int(x) for x in ids.split()] for q, ids in zip(df["QuestionId_Answer"], df["MisconceptionId"])}


def _top25(ranking: pd.DataFrame, ids: list[str]) -> dict[str, list[int]]:
    return {q: [int(x) for x in lst[:25]] for q, lst in zip(ids, ranking_lists(ranking, ids))}


@pytest.fixture(scope="module")
def run_copy(tmp_path_factory, finished_run, tiny_config):
    """A copy of the session run (round_1 has an embedder, a cross-encoder and its rankings)."""
    src, _, _ = finished_run
    tmp = tmp_path_factory.mktemp("export")
    shutil.copytree(src, tmp / "v1", ignore=shutil.ignore_patterns("cache"))
    cfg = tmp / "tiny.yaml"
    cfg.write_text(tiny_config.read_text() + "export: {owner: someuser}\n")
    return tmp, cfg


@pytest.fixture(scope="module")
def finished_round(run_copy, tiny_data):
    """round_1 without its reranker: embedder and candidates only."""
    tmp, cfg = run_copy
    out = tmp / "norr" / "v1"  # the same run name, so the slug stays eedi-v1-r1
    shutil.copytree(tmp / "v1", out)
    shutil.rmtree(out / "round_1" / "reranker")
    for f in ("rerank_val.parquet", "rerank_test.parquet"):
        (out / "round_1" / f).unlink()
    metrics = json.loads((out / "round_1" / "metrics.json").read_text())
    metrics.pop("06_rerank", None)
    (out / "round_1" / "metrics.json").write_text(json.dumps(metrics))
    ctx = stages.context.load_context(out / "round_1", tiny_data, "v1", 1, cfg)
    return ctx, cfg, tmp


@pytest.fixture(scope="module")
def exported(finished_round):
    ctx, _, tmp = finished_round
    return export_round(ctx, out_root=tmp / "kaggle_datasets")


def test_export_layout_and_metadata(exported, finished_round):
    ctx, _, tmp = finished_round
    ds, kd = exported["dataset_dir"], exported["kernel_dir"]
    assert ds == tmp / "kaggle_datasets" / "eedi-v1-r1" and kd == tmp / "kaggle_datasets" / "eedi-v1-r1-inference"
    assert exported["dataset_id"] == "someuser/eedi-v1-r1" and exported["kernel_id"] == "someuser/eedi-v1-r1-inference"
    assert validate_dataset_metadata(ds)["id"] == "someuser/eedi-v1-r1"
    kmeta = validate_kernel_metadata(kd)
    assert kmeta["dataset_sources"] == ["someuser/eedi-v1-r1"]
    assert kmeta["competition_sources"] == ["eedi-mining-misconceptions-in-mathematics"]
    assert kmeta["enable_gpu"] is True and kmeta["enable_internet"] is False
    assert 6 <= len(exported["dataset_metadata"]["title"]) <= 50
    # models, package source, config; no reranker in this round; weights copied, not linked
    assert sorted(p.name for p in ds.iterdir()) == ["config.yaml", "dataset-metadata.json", "embedder", "export.json", "utils"]
    assert (ds / "embedder" / "embedder_config.json").is_file()
    assert not any(p.is_symlink() for p in ds.rglob("*"))
    weights = sorted(p.relative_to(ds) for p in (ds / "embedder").rglob("*.safetensors"))
    assert weights and all((ds / w).stat().st_size == (ctx.run_dir / w).stat().st_size for w in weights)
    assert (ds / "utils" / "kaggle" / "inference.py").is_file() and (ds / "utils" / "stages" / "context.py").is_file()
    assert not list((ds / "utils").rglob("__pycache__"))
    assert yaml_load(ds / "config.yaml")["train"]["epochs"] == 1  # the tiny config of conftest.py
    manifest = json.loads((ds / "export.json").read_text())
    assert manifest["reranker"] is False and manifest["round"] == 1
    # no temp dirs left beside the two folders
    assert sorted(p.name for p in (tmp / "kaggle_datasets").iterdir()) == ["eedi-v1-r1", "eedi-v1-r1-inference"]
    files = exported["files"]
    assert {"path", "bytes", "MB"} <= set(files.columns) and "embedder/embedder_config.json" in set(files["path"])
    assert any("kaggle dataset" in c and "--no-dry-run" in c for c in exported["push_commands"])


def yaml_load(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def test_kernel_notebook_points_at_the_dataset(exported):
    kd = exported["kernel_dir"]
    nb = nbformat.read(kd / "kaggle_inference.ipynb", as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    ns: dict = {}
    exec(params[0].source, ns)
    assert ns["models_dir"] == "/kaggle/input/eedi-v1-r1"
    assert ns["data_dir"] == "/kaggle/input/eedi-mining-misconceptions-in-mathematics"
    assert ns["out_dir"] == "/kaggle/working"
    # the repository's notebook keeps its placeholder
    src = nbformat.read(REPO_ROOT / "notebooks" / "kaggle_inference.ipynb", as_version=4)
    assert '"/kaggle/input/<slug>"' in src.cells[1].source


def test_kernel_imports_the_packed_utils(exported, tmp_path):
    """The notebook's first code cell puts the dataset on sys.path: `import utils` finds the copy."""
    ds = exported["dataset_dir"]
    nb = nbformat.read(exported["kernel_dir"] / "kaggle_inference.ipynb", as_version=4)
    setup = [c for c in nb.cells if c.cell_type == "code"][1].source
    code = f"models_dir = {str(ds)!r}\n{setup}\nimport utils.kaggle.inference\nprint('FILE', utils.kaggle.inference.__file__)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"FILE {ds / 'utils' / 'kaggle' / 'inference.py'}" in proc.stdout


def test_infer_from_export_equals_round_candidates(exported, finished_round, tiny_data, tmp_path):
    ctx, _, _ = finished_round
    path = infer(tiny_data, exported["dataset_dir"], tmp_path / "out")
    assert path == tmp_path / "out" / "submission.csv"
    ids = ctx.test_pairs["query_id"].tolist()
    validate_submission(path, ids, stages.ops.corpus_ids(ctx))
    cands = pd.read_parquet(ctx.run_dir / "candidates_test.parquet")
    assert _sub_lists(path) == _top25(cands, ids)
    # re-scored as 08 does when the config sets fusion's weights: item counts from every labelled pair
    import yaml

    from utils.rescore import item_counts, rescore
    from utils.tasks import get_task

    cfg = yaml.safe_load((exported["dataset_dir"] / "config.yaml").read_text())
    cfg.setdefault("fusion", {}).update(prior_weight=0.1, sibling_weight=-0.2)
    (tmp_path / "rescore.yaml").write_text(yaml.safe_dump(cfg))
    path = infer(tiny_data, exported["dataset_dir"], tmp_path / "out2", config_path=tmp_path / "rescore.yaml")
    want = _top25(rescore(cands, ctx.test_pairs, item_counts(get_task("eedi").load(tiny_data).queries), 0.1, -0.2), ids)
    assert _sub_lists(path) == want and want != _top25(cands, ids)


def test_set_notebook_parameter_errors(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nbformat.write(nb, str(tmp_path / "a.ipynb"))
    with pytest.raises(ValueError, match="no cell tagged 'parameters'"):
        set_notebook_parameter(tmp_path / "a.ipynb", tmp_path / "b.ipynb", "models_dir", "/x")
    nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, str(tmp_path / "a.ipynb"))
    with pytest.raises(ValueError, match="declares no 'models_dir'"):
        set_notebook_parameter(tmp_path / "a.ipynb", tmp_path / "b.ipynb", "models_dir", "/x")


def test_infer_needs_an_embedder(tmp_path, tiny_data):
    with pytest.raises(FileNotFoundError, match="no embedder"):
        infer(tiny_data, tmp_path, tmp_path / "out")


def test_export_and_infer_with_reranker(run_copy, tiny_data, tmp_path):
    """A round with a cross-encoder: packed, and `python -m utils infer` reproduces 06_rerank's test ranking."""
    from utils.__main__ import main

    tmp, cfg = run_copy
    ctx = stages.context.load_context(tmp / "v1" / "round_1", tiny_data, "v1", 1, cfg)
    alpha = json.loads((ctx.run_dir / "metrics.json").read_text())["06_rerank"]["blend_alpha"]
    exp = export_round(ctx, name="eedi-rr-test", out_root=tmp_path / "kd")
    ds = exp["dataset_dir"]
    assert (ds / "reranker").is_dir() and exp["manifest"]["reranker"] is True
    assert exp["manifest"]["blend_alpha"] == alpha
    assert exp["kernel_id"] == "someuser/eedi-rr-test-inference"
    assert main(["infer", "--data-dir", str(tiny_data), "--models", str(ds), "--out", str(tmp_path / "out")]) == 0
    sub = tmp_path / "out" / "submission.csv"
    ids = ctx.test_pairs["query_id"].tolist()
    validate_submission(sub, ids, stages.ops.corpus_ids(ctx))
    # same models, same rows in the same order: the same scores and the same blend
    assert _sub_lists(sub) == _top25(pd.read_parquet(ctx.run_dir / "rerank_test.parquet"), ids)


def test_infer_adds_the_item_prior_06_chose(run_copy, tiny_data, tmp_path):
    """A product-of-experts cross-encoder scored with item_prior_weight 1: the weight rides in the
    manifest and `infer` reproduces 06's test ranking, prior included."""
    from utils.__main__ import main

    tmp, cfg = run_copy
    ctx = stages.context.load_context(tmp / "v1" / "round_1", tiny_data, "v1", 1, cfg)
    ctx.config["rerank"] = {**ctx.config.get("rerank", {}), "loss": "listwise", "num_layers": 1, "max_groups": 8,
                            "item_bias_l2": 0.1, "item_prior_weight": 1.0}
    stages.train_reranker.train_reranker(ctx)
    res = stages.rerank.rerank_all(ctx)
    assert res["summary"]["item_prior_weight"] == 1.0
    prior = stages.rerank.reranker_item_prior(ctx, res["candidates_test"])
    assert np.abs(prior).max() > 0  # some test candidates were in the training groups
    exp = export_round(ctx, name="eedi-prior-test", out_root=tmp_path / "kd")
    assert exp["manifest"]["item_prior_weight"] == 1.0
    assert main(["infer", "--data-dir", str(tiny_data), "--models", str(exp["dataset_dir"]),
                 "--out", str(tmp_path / "out")]) == 0
    ids = ctx.test_pairs["query_id"].tolist()
    assert _sub_lists(tmp_path / "out" / "submission.csv") == _top25(pd.read_parquet(ctx.run_dir / "rerank_test.parquet"), ids)


def test_infer_fuses_the_rounds_08_fused(run_copy, tiny_data, tmp_path):
    """A round whose 08 fuses rounds 1 and 2 (weights fixed, as CV writes them, e.g. configs/gpu_retrieval.yaml): the
    export packs round 1's embedder too, and the kernel's submission is 08's, row for row; round 2 alone differs."""
    import yaml

    from utils.stages.fuse_submit import fuse_rounds

    tmp, cfg = run_copy
    conf = yaml.safe_load(cfg.read_text())
    conf["fusion"] = {"method": "score_sum", "rounds": [1, 2], "sources": ["candidates"], "weights": [0.3, 0.7]}
    (tmp_path / "fused.yaml").write_text(yaml.safe_dump(conf))
    ctx = stages.context.load_context(tmp / "v1" / "round_2", tiny_data, "v1", 2, tmp_path / "fused.yaml")
    want = fuse_rounds(ctx)["test"]
    exp = export_round(ctx, name="eedi-fused-test", out_root=tmp_path / "kd")
    ds = exp["dataset_dir"]
    assert (ds / "embedder_round_1" / "embedder_config.json").is_file() and not (ds / "reranker_round_1").exists()
    assert [(i["round"], i["source"], i["weight"]) for i in exp["manifest"]["fusion"]["inputs"]] == [
        (1, "candidates", 0.3), (2, "candidates", 0.7)]
    path = infer(tiny_data, ds, tmp_path / "out", verbose=False)
    ids = ctx.test_pairs["query_id"].tolist()
    assert _sub_lists(path) == _top25(want, ids)
    assert _top25(want, ids) != _top25(pd.read_parquet(ctx.run_dir / "candidates_test.parquet"), ids)
    # a round whose 08 submits its own ranking packs nothing more (the manifest says no fusion)
    conf["fusion"] = {"method": "none", "rounds": [2]}  # its reranked ranking, which the kernel makes anyway
    (tmp_path / "single.yaml").write_text(yaml.safe_dump(conf))
    ctx = stages.context.load_context(tmp / "v1" / "round_2", tiny_data, "v1", 2, tmp_path / "single.yaml")
    assert ctx.reranker_dir.is_dir()
    exp = export_round(ctx, name="eedi-single-test", out_root=tmp_path / "kd")
    assert exp["manifest"]["fusion"] is None and not (exp["dataset_dir"] / "embedder_round_1").exists()


def test_export_packs_the_llm_rerankers_base_model(run_copy, tiny_data, tmp_path):
    """An LLM reranker is a LoRA adapter over a base model that Kaggle's offline kernel cannot download: the
    export packs the base as reranker_base/, and `infer` from the dataset, with the original base gone,
    submits exactly what it submits from the round folder with the base in place."""
    import yaml

    from tiny_models import make_tiny_decoder, synthetic_task
    from utils.config import deep_update, dump_config, load_config
    from utils.rerank import llm as lr
    from utils.rerank.data import build_rerank_train
    from utils.tasks.eedi import PROMPTS

    tmp, cfg = run_copy
    base = make_tiny_decoder(tmp_path / "base", arch="llama")
    round_dir = tmp_path / "v1" / "round_1"
    shutil.copytree(tmp / "v1" / "round_1", round_dir)
    shutil.rmtree(round_dir / "reranker")
    pairs, mis, cands = synthetic_task(seed=1, n_candidates=4)
    train = build_rerank_train(cands, pairs.iloc[::3], mis, n_negatives=3, top_k=4, seed=0)
    lr.train_llm_reranker(train, base, round_dir / "reranker", mode="pointwise", r=4, alpha=8, dropout=0.0,
                          target_modules=None, epochs=1, lr=2e-2, batch_size=8, max_length=48, warmup_ratio=0.0,
                          log_every=0, prompts=PROMPTS)
    llm_cfg = tmp_path / "llm.yaml"
    llm_cfg.write_text(yaml.safe_dump(deep_update(yaml.safe_load(cfg.read_text()), {"rerank": {
        "family": "llm_pointwise", "model": base, "max_length": 48, "score_batch_size": 8, "top_k": 10}})))
    (round_dir / "config.yaml").write_text(dump_config(load_config(llm_cfg)))
    ctx = stages.context.load_context(round_dir, tiny_data, "v1", 1, llm_cfg)
    exp = export_round(ctx, name="eedi-llm-test", out_root=tmp_path / "kd")
    ds = exp["dataset_dir"]
    assert exp["manifest"]["reranker_base"] == "reranker_base" and exp["manifest"]["rerank_family"] == "llm_pointwise"
    assert (ds / "reranker_base" / "config.json").is_file() and list((ds / "reranker_base").glob("*.safetensors"))
    assert not [w for w in exp["warnings"] if "LoRA adapter" in w]  # nothing left to attach by hand
    infer(tiny_data, round_dir, tmp_path / "from_round", verbose=False)
    shutil.move(base, tmp_path / "gone")
    infer(tiny_data, ds, tmp_path / "from_export", verbose=False)
    sub = tmp_path / "from_export" / "submission.csv"
    validate_submission(sub, ctx.test_pairs["query_id"].tolist(), stages.ops.corpus_ids(ctx))
    assert _sub_lists(sub) == _sub_lists(tmp_path / "from_round" / "submission.csv")
    with pytest.raises(OSError):  # and the round folder alone no longer finds its base: the pack is what loads
        infer(tiny_data, round_dir, tmp_path / "again", verbose=False)
