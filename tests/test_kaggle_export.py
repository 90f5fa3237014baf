"""Tests for utils.kaggle.api: folder building, metadata validation, dry runs, wiring."""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import nbformat
import pytest

from utils.kaggle.api import (
    add_kaggle_subparser,
    build_dataset,
    build_kernel,
    kaggle_cli,
    run_kaggle_command,
    validate_dataset_metadata,
    validate_kernel_metadata,
)

KERNEL_ID = "someuser/eedi-inference-round-1"
KERNEL_TITLE = "Eedi inference round 1"


def write_notebook(path: Path, kernelspec: dict | None = None) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('hi')")])
    if kernelspec is not None:
        nb.metadata["kernelspec"] = kernelspec
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def model_dirs(tmp_path: Path) -> dict[str, Path]:
    emb = tmp_path / "src" / "embedder"
    (emb / "sub").mkdir(parents=True)
    (emb / "config.json").write_text("{}")
    (emb / "sub" / "weights.bin").write_bytes(b"\x00" * 10)
    adapter = tmp_path / "src" / "adapter.safetensors"
    adapter.write_bytes(b"abc")
    return {"embedder": emb, "adapter.safetensors": adapter}


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    return write_notebook(tmp_path / "08_infer.ipynb", {"name": "python3", "display_name": "Python 3",
                                                          "language": "python"})


@pytest.fixture
def kernel_dir(tmp_path: Path, notebook: Path) -> Path:
    return build_kernel(notebook, tmp_path / "kernels", KERNEL_ID, KERNEL_TITLE,
                        dataset_sources=["someuser/eedi-models-r1"],
                        competition_sources=["eedi-mining-misconceptions-in-mathematics"])


def test_build_dataset_layout_and_metadata(tmp_path, model_dirs):
    out = build_dataset(model_dirs, tmp_path / "kaggle_datasets", "someuser/eedi-models-r1", "Eedi models round 1")
    assert out == tmp_path / "kaggle_datasets" / "eedi-models-r1"
    meta = json.loads((out / "dataset-metadata.json").read_text())
    assert meta == {"title": "Eedi models round 1", "id": "someuser/eedi-models-r1",
                    "licenses": [{"name": "CC0-1.0"}]}
    assert (out / "embedder" / "config.json").read_text() == "{}"
    assert (out / "embedder" / "sub" / "weights.bin").read_bytes() == b"\x00" * 10
    assert (out / "adapter.safetensors").read_bytes() == b"abc"
    assert sorted(p.name for p in out.iterdir()) == ["adapter.safetensors", "dataset-metadata.json", "embedder"]
    assert validate_dataset_metadata(out) == meta
    # rebuilding replaces the old folder (no stale files, no temp dirs left)
    (out / "stale.txt").write_text("x")
    build_dataset({"embedder": model_dirs["embedder"]}, tmp_path / "kaggle_datasets",
                  "someuser/eedi-models-r1", "Eedi models round 1", license_name="apache-2.0")
    assert sorted(p.name for p in out.iterdir()) == ["dataset-metadata.json", "embedder"]
    assert json.loads((out / "dataset-metadata.json").read_text())["licenses"] == [{"name": "apache-2.0"}]
    assert [p.name for p in (tmp_path / "kaggle_datasets").iterdir()] == ["eedi-models-r1"]


def test_build_kernel_metadata_fields(kernel_dir, notebook):
    assert kernel_dir.name == "eedi-inference-round-1"
    meta = json.loads((kernel_dir / "kernel-metadata.json").read_text())
    assert meta == {
        "id": KERNEL_ID,
        "title": KERNEL_TITLE,
        "code_file": "08_infer.ipynb",
        "language": "python",
        "kernel_type": "notebook",
        "is_private": True,
        "enable_gpu": True,
        "enable_tpu": False,
        "enable_internet": False,
        "dataset_sources": ["someuser/eedi-models-r1"],
        "competition_sources": ["eedi-mining-misconceptions-in-mathematics"],
        "kernel_sources": [],
        "model_sources": [],
    }
    assert (kernel_dir / "08_infer.ipynb").read_bytes() == notebook.read_bytes()
    assert validate_kernel_metadata(kernel_dir) == meta


@pytest.mark.parametrize("title", ["Eedi", "x" * 51])
def test_bad_dataset_title_length(tmp_path, model_dirs, title):
    with pytest.raises(ValueError, match=r"field 'title': must be 6-50 characters"):
        build_dataset(model_dirs, tmp_path, "someuser/eedi-models-r1", title)


@pytest.mark.parametrize("slug", ["Eedi-Models", "eedi_models", "eedi--models", "-eedimodels", "short"])
def test_bad_dataset_slug(tmp_path, model_dirs, slug):
    with pytest.raises(ValueError, match=r"field 'id': slug"):
        build_dataset(model_dirs, tmp_path, f"someuser/{slug}", "Eedi models round 1")
    assert not (tmp_path / slug).exists()


@pytest.mark.parametrize("ref", ["eedi-models-r1", "a/b/eedi-models-r1", "/eedi-models-r1"])
def test_bad_dataset_id_form(tmp_path, model_dirs, ref):
    with pytest.raises(ValueError, match=r"field 'id'"):
        build_dataset(model_dirs, tmp_path, ref, "Eedi models round 1")


def _edit_json(path: Path, **changes) -> None:
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def test_two_licenses_rejected_naming_file(tmp_path, model_dirs):
    out = build_dataset(model_dirs, tmp_path, "someuser/eedi-models-r1", "Eedi models round 1")
    _edit_json(out / "dataset-metadata.json", licenses=[{"name": "CC0-1.0"}, {"name": "MIT"}])
    with pytest.raises(ValueError, match=r"dataset-metadata\.json: field 'licenses': must list exactly one license, got 2"):
        validate_dataset_metadata(out)
    _edit_json(out / "dataset-metadata.json", licenses=[{}])
    with pytest.raises(ValueError, match=r"field 'licenses\[0\]\.name'"):
        validate_dataset_metadata(out)


def test_dataset_missing_field_and_empty_folder(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    (d / "dataset-metadata.json").write_text(json.dumps({"title": "Eedi models", "id": "u/eedi-models"}))
    with pytest.raises(ValueError, match=r"ds/dataset-metadata\.json: field 'licenses': is missing"):
        validate_dataset_metadata(d)
    (d / "dataset-metadata.json").write_text(json.dumps(
        {"title": "Eedi models", "id": "u/eedi-models", "licenses": [{"name": "CC0-1.0"}]}))
    with pytest.raises(ValueError, match="holds no files"):
        validate_dataset_metadata(d)
    with pytest.raises(FileNotFoundError, match="metadata file not found"):
        validate_kernel_metadata(d)


def test_missing_kernelspec_rejected(tmp_path):
    nb = write_notebook(tmp_path / "bare.ipynb")
    with pytest.raises(ValueError, match=r"bare\.ipynb: field 'metadata\.kernelspec\.name'.*NoSuchKernel"):
        build_kernel(nb, tmp_path / "k", KERNEL_ID, KERNEL_TITLE, dataset_sources=[])
    nb = write_notebook(tmp_path / "r.ipynb", {"name": "ir"})
    with pytest.raises(ValueError, match="must be 'python3'"):
        build_kernel(nb, tmp_path / "k", KERNEL_ID, KERNEL_TITLE, dataset_sources=[])
    assert not (tmp_path / "k").exists()


def test_bad_kernel_slug_and_title(tmp_path, notebook):
    with pytest.raises(ValueError, match=r"field 'id': slug 'Eedi_Inference'"):
        build_kernel(notebook, tmp_path, "someuser/Eedi_Inference", KERNEL_TITLE, dataset_sources=[])
    with pytest.raises(ValueError, match=r"differs from the title's slug 'eedi-inference-round-1'"):
        build_kernel(notebook, tmp_path, "someuser/eedi-infer", KERNEL_TITLE, dataset_sources=[])
    with pytest.raises(ValueError, match=r"field 'title': must be 5-50"):
        build_kernel(notebook, tmp_path, "someuser/eedi", "Eedi", dataset_sources=[])
    with pytest.raises(ValueError, match=r"field 'dataset_sources': entry 'nodash'"):
        build_kernel(notebook, tmp_path, KERNEL_ID, KERNEL_TITLE, dataset_sources=["nodash"])
    with pytest.raises(ValueError, match=r"field 'model_sources'"):
        build_kernel(notebook, tmp_path, KERNEL_ID, KERNEL_TITLE, dataset_sources=[],
                     model_sources=["u/qwen/transformers/7b/latest"])


@pytest.mark.parametrize(
    "field, value, pattern",
    [
        ("kernel_type", "dashboard", r"field 'kernel_type': must be one of \('script', 'notebook'\)"),
        ("language", "julia", r"field 'language': must be one of"),
        ("code_file", "missing.ipynb", r"field 'code_file': .*missing\.ipynb does not exist"),
        ("enable_gpu", "yes", r"field 'enable_gpu': must be true or false"),
        ("enable_tpu", True, r"field 'enable_tpu': cannot be true together with enable_gpu"),
        ("competition_sources", "eedi", r"field 'competition_sources': must be a list"),
    ],
)
def test_kernel_metadata_field_errors(kernel_dir, field, value, pattern):
    _edit_json(kernel_dir / "kernel-metadata.json", **{field: value})
    with pytest.raises(ValueError, match=r"kernel-metadata\.json: " + pattern):
        validate_kernel_metadata(kernel_dir)


@pytest.fixture
def no_kaggle_import(monkeypatch):
    """Make any import of the kaggle client fail, proving the code under test never imports it."""
    for name in [m for m in sys.modules if m == "kaggle" or m.startswith("kaggle.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "kaggle", None)  # `import kaggle...` now raises ImportError


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))


def test_dry_runs_print_and_never_import_kaggle(tmp_path, model_dirs, kernel_dir, capsys,
                                                no_kaggle_import, no_credentials):
    ds = build_dataset(model_dirs, tmp_path / "kd", "someuser/eedi-models-r1", "Eedi models round 1")
    plan = kaggle_cli("dataset", ds)
    out = capsys.readouterr().out
    assert "[dry run] would call KaggleApi.dataset_create_new" in out and "someuser/eedi-models-r1" in out
    assert "embedder/ (0.0 MB)" in out and plan["dir_mode"] == "zip" and plan["public"] is False

    plan = kaggle_cli("kernel", kernel_dir)
    assert plan["call"] == "kernels_push" and plan["id"] == KERNEL_ID
    assert "kernels_push" in capsys.readouterr().out

    sub = tmp_path / "submission.csv"
    sub.write_text("QuestionId_Answer,MisconceptionId\n12_B,1 2 3\n13_A,4\n")
    plan = kaggle_cli("submit", sub, message="r1 fused")
    assert plan == {"action": "submit", "call": "competition_submit",
                    "competition": "eedi-mining-misconceptions-in-mathematics",
                    "file": str(sub), "rows": 2, "message": "r1 fused"}
    plan = kaggle_cli("submit", kernel_dir)
    assert plan["call"] == "competition_submit_code" and plan["kernel"] == KERNEL_ID
    assert sys.modules["kaggle"] is None  # still blocked: nothing imported it


@pytest.mark.parametrize(
    "body, pattern",
    [
        ("QuestionId_Answer,Prediction\n12_B,1\n", "header must be"),
        ("QuestionId_Answer,MisconceptionId\n12_E,1\n", "bad id '12_E'"),
        ("QuestionId_Answer,MisconceptionId\n12_B,1 x\n", "field 'MisconceptionId' of 12_B"),
        ("QuestionId_Answer,MisconceptionId\n12_B," + " ".join(map(str, range(26))) + "\n", "1-25 distinct"),
        ("QuestionId_Answer,MisconceptionId\n12_B,1\n12_B,2\n", "appears twice"),
    ],
)
def test_bad_submission_rejected(tmp_path, body, pattern, no_kaggle_import):
    sub = tmp_path / "submission.csv"
    sub.write_text(body)
    with pytest.raises(ValueError, match=pattern):
        kaggle_cli("submit", sub)


def test_send_without_credentials_fails_before_import(kernel_dir, no_kaggle_import, no_credentials):
    with pytest.raises(RuntimeError, match="no Kaggle credentials"):
        kaggle_cli("kernel", kernel_dir, dry_run=False)


class FakeHTTPError(Exception):
    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.response = types.SimpleNamespace(status_code=status)


def install_fake_kaggle(monkeypatch, exists: bool = False) -> list:
    calls: list = []

    class FakeApi:
        def authenticate(self):
            calls.append(("authenticate",))

        def dataset_status(self, ref):
            calls.append(("dataset_status", ref))
            if not exists:
                raise FakeHTTPError(404)
            return "ready"

        def dataset_create_new(self, folder, public=False, dir_mode="skip"):
            calls.append(("dataset_create_new", folder, public, dir_mode))
            return types.SimpleNamespace(error=None, url="https://kaggle/ds")

        def dataset_create_version(self, folder, version_notes, dir_mode="skip"):
            calls.append(("dataset_create_version", folder, version_notes, dir_mode))
            return types.SimpleNamespace(error=None, url="https://kaggle/ds")

        def kernels_push(self, folder):
            calls.append(("kernels_push", folder))
            return types.SimpleNamespace(error="Notebook not found", url=None)

        def competition_submit(self, file_name, message, competition):
            calls.append(("competition_submit", file_name, message, competition))
            return types.SimpleNamespace(error=None, url=None)

    for name in ("kaggle", "kaggle.api"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    ext = types.ModuleType("kaggle.api.kaggle_api_extended")
    ext.KaggleApi = FakeApi
    monkeypatch.setitem(sys.modules, "kaggle.api.kaggle_api_extended", ext)
    monkeypatch.setenv("KAGGLE_USERNAME", "someuser")
    monkeypatch.setenv("KAGGLE_KEY", "not-a-real-key")
    return calls


def test_send_calls_kaggle_api(tmp_path, model_dirs, kernel_dir, monkeypatch):
    ds = build_dataset(model_dirs, tmp_path / "kd", "someuser/eedi-models-r1", "Eedi models round 1")
    calls = install_fake_kaggle(monkeypatch, exists=False)
    kaggle_cli("dataset", ds, dry_run=False)
    assert calls == [("authenticate",), ("dataset_status", "someuser/eedi-models-r1"),
                     ("dataset_create_new", str(ds), False, "zip")]

    calls = install_fake_kaggle(monkeypatch, exists=True)
    kaggle_cli("dataset", ds, dry_run=False, message="round 2")
    assert calls[-1] == ("dataset_create_version", str(ds), "round 2", "zip")

    sub = tmp_path / "submission.csv"
    sub.write_text("QuestionId_Answer,MisconceptionId\n12_B,1 2 3\n")
    kaggle_cli("submit", sub, dry_run=False, message="m")
    assert calls[-1] == ("competition_submit", str(sub), "m", "eedi-mining-misconceptions-in-mathematics")

    with pytest.raises(RuntimeError, match="kernels_push failed: Notebook not found"):
        kaggle_cli("kernel", kernel_dir, dry_run=False)


def test_unknown_action():
    with pytest.raises(ValueError, match="unknown kaggle action 'model'"):
        kaggle_cli("model", Path("."))


def test_subparser_wiring(kernel_dir, capsys, no_kaggle_import):
    parser = argparse.ArgumentParser(prog="utils")
    add_kaggle_subparser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["kaggle", "kernel", str(kernel_dir)])
    assert args.dry_run is True and args.func is run_kaggle_command
    assert run_kaggle_command(args) == 0
    assert "[dry run]" in capsys.readouterr().out
    args = parser.parse_args(["kaggle", "dataset", str(kernel_dir), "--no-dry-run", "-m", "x"])
    assert args.dry_run is False and args.message == "x"
    assert run_kaggle_command(args) == 1  # not a dataset folder -> one-line error, no import
    assert "error:" in capsys.readouterr().err


class _Sent(Exception):
    """Raised where the real client would first touch the network."""


def test_real_kaggle_client_accepts_built_folders(tmp_path, model_dirs, kernel_dir, monkeypatch):
    """Cross-check: kaggle's own offline validation passes on our folders, up to the first request."""
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle_cfg"))  # import-time mkdir lands here
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    ext = pytest.importorskip("kaggle.api.kaggle_api_extended")
    api = ext.KaggleApi()
    api.config_values = {"username": "someuser"}

    def sent(*args, **kwargs):
        raise _Sent()

    monkeypatch.setattr(api, "build_kaggle_client", sent)
    monkeypatch.setattr(api, "dataset_status", sent)
    with pytest.raises(_Sent):
        api.kernels_push(str(kernel_dir))
    ds = build_dataset(model_dirs, tmp_path / "kd", "someuser/eedi-models-r1", "Eedi models round 1")
    with pytest.raises(_Sent):
        api.dataset_create_new(str(ds), dir_mode="zip")
