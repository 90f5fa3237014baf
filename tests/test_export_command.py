"""Issue 17: ``python -m utils export RUN_DIR --round R`` packs a finished round without running any
notebook or rewriting its config; export.json holds no local paths; the Kaggle kernel stops with one
line when an input is not attached."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest

from utils.config import REPO_ROOT, dump_config, load_config

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import make_tiny_encoder  # noqa: E402


def _tree(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def hand_made_round(tmp_path) -> Path:
    """runs/v1/round_1 as a finished round leaves it: config snapshot, metrics, a tiny LoRA-style embedder
    whose base model is a local absolute path (the kind of path export.json must not carry)."""
    from utils.retrieval.embed import Embedder

    round_dir = tmp_path / "runs" / "v1" / "round_1"
    src = make_tiny_encoder(tmp_path / "enc", num_layers=1)
    Embedder(src, device="cpu").save(round_dir / "embedder")
    (round_dir / "embedder" / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(tmp_path / "models" / "base-llm")}))
    (round_dir / "config.yaml").write_text(dump_config(load_config(overrides={"export": {"owner": "someuser"}})))
    (round_dir / "metrics.json").write_text(json.dumps({"04_recall": {"val": {"map@25": 0.3}}}))
    return round_dir


def test_export_command_packs_the_round_read_only(hand_made_round, tmp_path, capsys):
    from utils.__main__ import main

    run_dir = hand_made_round.parent
    before = _tree(run_dir)
    out = tmp_path / "kd"
    assert main(["export", str(run_dir), "--round", "1", "--out", str(out)]) == 0
    assert _tree(run_dir) == before  # config.yaml (bytes and mtime) and every other file untouched
    assert not (run_dir / "submission.csv").exists() and not list(hand_made_round.glob("*.ipynb"))  # nothing ran
    ds = out / "eedi-v1-r1"
    assert sorted(p.name for p in ds.iterdir()) == ["config.yaml", "dataset-metadata.json", "embedder", "export.json",
                                                   "utils"]
    assert (out / "eedi-v1-r1-inference" / "kaggle_inference.ipynb").is_file()
    text = (ds / "export.json").read_text()
    manifest = json.loads(text)
    assert manifest["dataset_id"] == "someuser/eedi-v1-r1" and manifest["round"] == 1 and manifest["split"] == "v1"
    assert manifest["source_run"] == "v1/round_1" and "base-llm" in manifest["warnings"][0]
    for local in {str(tmp_path), str(Path(tmp_path).resolve()), str(REPO_ROOT), os.path.expanduser("~"), "/root",
                  "/work", "/tmp"}:
        assert local not in text, local
    printed = capsys.readouterr().out
    assert "someuser/eedi-v1-r1" in printed and "--no-dry-run" in printed


def test_export_command_errors_are_one_line(tmp_path, capsys):
    from utils.__main__ import main

    assert main(["export", str(tmp_path / "nowhere"), "--round", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(tmp_path / "nowhere") in err and err.count("\n") == 1
    (tmp_path / "v1" / "round_2").mkdir(parents=True)
    assert main(["export", str(tmp_path / "v1"), "--round", "2"]) == 2
    assert "round_2/config.yaml" in capsys.readouterr().err


def test_07_export_calls_the_same_function():
    src = "\n".join(c.source for c in nbformat.read(REPO_ROOT / "notebooks" / "07_export.ipynb", as_version=4).cells
                    if c.cell_type == "code")
    assert "export_round(ctx)" in src


# -- the Kaggle kernel with an input not attached ----------------------------------------------------------
@pytest.mark.parametrize("param, missing, attach", [
    ("models_dir", "/kaggle/input/eedi-v1-r1", "eedi-v1-r1"),
    ("data_dir", "/kaggle/input/eedi-mining-misconceptions-in-mathematics", "eedi-mining-misconceptions-in-mathematics"),
])
def test_kernel_stops_with_one_line_naming_the_missing_input(tmp_path, param, missing, attach):
    import papermill as pm

    ds = tmp_path / "ds"
    (ds / "utils").mkdir(parents=True)  # a models_dir that is there, for the data_dir case
    params = {"models_dir": str(ds), "data_dir": str(tmp_path), "out_dir": str(tmp_path / "out"), param: missing}
    out_nb = tmp_path / "out.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(REPO_ROOT / "notebooks" / "kaggle_inference.ipynb"), str(out_nb), parameters=params,
                            cwd=str(tmp_path), progress_bar=False, kernel_name="python3")
    assert err.value.ename == "SystemExit"
    line = err.value.evalue
    assert "\n" not in line and missing in line and attach in line and param in line
    assert "ModuleNotFoundError" not in out_nb.read_text()


def _kernel(out: Path, slug: str) -> tuple[dict, dict]:
    kd = out / f"{slug}-inference"
    nb = nbformat.read(kd / "kaggle_inference.ipynb", as_version=4)
    ns: dict = {}
    exec(next(c for c in nb.cells if "parameters" in c.metadata.get("tags", [])).source, ns)
    return json.loads((kd / "kernel-metadata.json").read_text()), ns


@pytest.mark.parametrize("source, competitions, datasets, data_dir", [
    (None, [], [], "/kaggle/input/<data>"),
    ("someuser/aqa-data", [], ["someuser/aqa-data"], "/kaggle/input/aqa-data"),
    ("some-competition", ["some-competition"], [], "/kaggle/input/some-competition"),
])
def test_export_names_and_data_source_follow_the_task(hand_made_round, tmp_path, source, competitions, datasets,
                                                      data_dir):
    from utils.kaggle.inference import export

    cfg = load_config(overrides={"data": {"task": "aqa"}, "export": {"owner": "someuser", "data_source": source}})
    (hand_made_round / "config.yaml").write_text(dump_config(cfg))
    result = export(hand_made_round.parent, 1, out_root=tmp_path / "kd")
    assert result["dataset_id"] == "someuser/aqa-v1-r1" and result["dataset_metadata"]["title"] == "Aqa v1 round 1 models"
    meta, params = _kernel(tmp_path / "kd", "aqa-v1-r1")
    assert meta["competition_sources"] == competitions
    assert meta["dataset_sources"] == ["someuser/aqa-v1-r1", *datasets]
    assert params["data_dir"] == data_dir and params["models_dir"] == "/kaggle/input/aqa-v1-r1"
    assert any("export.data_source" in w for w in result["warnings"]) == (source is None)


def test_submit_takes_the_kernels_competition_and_refuses_a_kernel_without_one(hand_made_round, tmp_path):
    from utils.kaggle.api import kaggle_cli
    from utils.kaggle.inference import export

    export(hand_made_round.parent, 1, out_root=tmp_path / "kd")  # Eedi: its competition is attached
    plan = kaggle_cli("submit", tmp_path / "kd" / "eedi-v1-r1-inference", dry_run=True)
    assert plan["competition"] == "eedi-mining-misconceptions-in-mathematics"
    assert kaggle_cli("submit", tmp_path / "kd" / "eedi-v1-r1-inference", competition="other")["competition"] == "other"
    cfg = load_config(overrides={"data": {"task": "aqa"}, "export": {"owner": "someuser"}})
    (hand_made_round / "config.yaml").write_text(dump_config(cfg))
    export(hand_made_round.parent, 1, out_root=tmp_path / "kd")
    with pytest.raises(ValueError, match=r"kernel-metadata.json lists no competition source; pass --competition"):
        kaggle_cli("submit", tmp_path / "kd" / "aqa-v1-r1-inference", dry_run=True)
