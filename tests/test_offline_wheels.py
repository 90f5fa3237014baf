"""Issue 17, offline wheels: the export packs the pinned wheels the Kaggle kernel needs as their own
dataset, the kernel lists it and installs it (pip --no-index) before importing utils."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from utils.config import REPO_ROOT, dump_config, load_config

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import make_tiny_encoder  # noqa: E402

SMALL = ["six==1.17.0"]  # one small pure-Python pinned wheel keeps the download tiny


@pytest.fixture(scope="module")
def wheel_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("wheel_cache")


@pytest.fixture(scope="module")
def packed(tmp_path_factory, wheel_cache) -> dict:
    from utils.kaggle.wheels import pack_wheels

    out = tmp_path_factory.mktemp("kd")
    return pack_wheels(out, "someuser/eedi-test-wheels", "Wheels for eedi-test", requirements=SMALL,
                       cache=wheel_cache, verbose=False)


def test_packed_wheels_install_offline_into_an_empty_target(packed, tmp_path):
    folder = packed["dir"]
    assert (folder / "requirements.txt").read_text() == "six==1.17.0\n"
    assert [p.name for p in folder.glob("*.whl")] == ["six-1.17.0-py2.py3-none-any.whl"]
    target = tmp_path / "site"
    target.mkdir()
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--find-links",
                           str(folder), "--target", str(target), "--quiet", *SMALL],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (target / "six-1.17.0.dist-info" / "METADATA").is_file() and (target / "six.py").is_file()


def test_second_pack_reuses_the_cache(packed, wheel_cache, tmp_path, monkeypatch):
    from utils.kaggle import wheels

    def no_pip(*a, **kw):
        raise AssertionError(f"downloaded again: {a}")

    monkeypatch.setattr(wheels.subprocess, "run", no_pip)
    again = wheels.pack_wheels(tmp_path, "someuser/eedi-test-wheels", "Wheels for eedi-test", requirements=SMALL,
                               cache=wheel_cache, verbose=False)
    assert again["wheels"] == packed["wheels"]


def test_pins_and_dependencies_leave_torch_out(tmp_path):
    from utils.kaggle.wheels import CORE_PACKAGES, dependency_closure, pinned

    req = tmp_path / "requirements.txt"
    req.write_text("torch==2.13.0\ntransformers==5.23.0  # pinned\nsentence_transformers==6.2.0\n")
    pins = pinned(CORE_PACKAGES, req)
    assert pins[:2] == ["transformers==5.23.0", "sentence-transformers==6.2.0"]
    assert all("==" in p for p in pins) and not any(p.startswith("torch") for p in pins)
    names = {r.split("==")[0] for r in dependency_closure(pins)}
    assert {"huggingface-hub", "tokenizers", "safetensors"} <= names
    assert not names & {"torch", "numpy", "scipy", "scikit-learn"} and not any(n.startswith("nvidia") for n in names)
    with pytest.raises(ValueError, match="3.11"):
        dependency_closure(pins, python_version="311")


def test_export_with_wheels_adds_a_dataset_the_kernel_attaches(tmp_path, wheel_cache, packed):
    from utils.retrieval.embed import Embedder
    from utils.kaggle.inference import export_context, export_round
    from utils.kaggle.api import validate_dataset_metadata

    round_dir = tmp_path / "runs" / "v1" / "round_1"
    Embedder(make_tiny_encoder(tmp_path / "enc", num_layers=1), device="cpu").save(round_dir / "embedder")
    cfg = load_config(overrides={"export": {"owner": "someuser", "wheels": True, "wheel_cache": str(wheel_cache)}})
    (round_dir / "config.yaml").write_text(dump_config(cfg))
    exp = export_round(export_context(round_dir.parent, 1), out_root=tmp_path / "kd", wheel_requirements=SMALL)
    wd = tmp_path / "kd" / "eedi-v1-r1-wheels"
    assert exp["wheels_dir"] == wd and exp["wheels_dataset_id"] == "someuser/eedi-v1-r1-wheels"
    meta = validate_dataset_metadata(wd)
    assert meta["id"] == "someuser/eedi-v1-r1-wheels" and json.loads((wd / "dataset-metadata.json").read_text()) == meta
    assert (wd / "six-1.17.0-py2.py3-none-any.whl").is_file()
    kmeta = json.loads((exp["kernel_dir"] / "kernel-metadata.json").read_text())
    assert kmeta["dataset_sources"] == ["someuser/eedi-v1-r1", "someuser/eedi-v1-r1-wheels"]
    params = [c for c in nbformat.read(exp["kernel_dir"] / "kaggle_inference.ipynb", as_version=4).cells
              if "parameters" in c.metadata.get("tags", [])][0].source
    assert 'wheels_dir = "/kaggle/input/eedi-v1-r1-wheels"' in params
    assert any("eedi-v1-r1-wheels --no-dry-run" in c for c in exp["push_commands"])
    assert json.loads((exp["dataset_dir"] / "export.json").read_text())["wheels_install"] == SMALL
    # off (the default): no wheels dataset, the kernel attaches only the models
    exp2 = export_round(export_context(round_dir.parent, 1), out_root=tmp_path / "kd2", wheels=False)
    assert exp2["wheels_dir"] is None and not (tmp_path / "kd2" / "eedi-v1-r1-wheels").exists()
    assert exp2["kernel_metadata"]["dataset_sources"] == ["someuser/eedi-v1-r1"]


def test_inference_notebook_installs_wheels_before_import_utils(tmp_path):
    nb = nbformat.read(REPO_ROOT / "notebooks" / "kaggle_inference.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    install = code.index("'--no-index', '--find-links', str(wheels)")
    assert install < re.search(r"^import utils$", code, re.M).start() and "requirements.txt" in code[:install + 200]
    assert 'wheels_dir = None' in nb.cells[1].source
    # wheels_dir set but not attached: one note, then utils imports as before
    setup = [c for c in nb.cells if c.cell_type == "code"][1].source
    ds = tmp_path / "ds"
    (ds / "utils").mkdir(parents=True)
    (ds / "utils" / "__init__.py").write_text("")
    run = f"models_dir = {str(ds)!r}\nwheels_dir = '/kaggle/input/x-wheels'\n{setup}"
    proc = subprocess.run([sys.executable, "-c", run], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "note: wheels_dir '/kaggle/input/x-wheels' is not attached" in proc.stdout
    assert f"utils from {ds / 'utils'}" in proc.stdout
