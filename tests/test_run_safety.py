"""No silent wrong results (issue 17): run fingerprints, locks, forced runs, interrupted notebooks, one-line errors.

Most tests run a fake one-notebook chain (a ``01_mine_hn.ipynb`` written here, in a folder that
stands in for ``notebooks/``): it logs each execution to ``<round>/ran.txt`` and fails on demand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

from utils import stages
from utils.run import runner
from utils.__main__ import main
from utils.config import REPO_ROOT
from utils.config import resolve_progress
from utils.run.runner import RunFolderError, run_chain

PARAMS = 'run_dir = ""\ndata_dir = None\nsplit = "v1"\nround_idx = 1\nconfig_path = ""\nmodel = None\n'
BODY = """import os, pathlib
with open(pathlib.Path(run_dir) / "ran.txt", "a") as f:
    f.write("ran\\n")
if os.environ.get("FAKE_NOTEBOOK_FAIL"):
    raise ValueError("boom: the fake notebook failed")
"""
CONFIG = "seed: 0\nnotebooks: [01_mine_hn]\nsubmission: {dir: null}\n"


@pytest.fixture
def fake_chain(tmp_path, monkeypatch):
    """``notebooks/`` replaced by a folder holding a fake ``01_mine_hn``; returns a config file for it."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(PARAMS, metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell(BODY)]
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    nbformat.write(nb, nb_dir / "01_mine_hn.ipynb")
    monkeypatch.setattr(runner, "NOTEBOOK_DIR", nb_dir)
    monkeypatch.delenv("FAKE_NOTEBOOK_FAIL", raising=False)
    config = tmp_path / "fake.yaml"
    config.write_text(CONFIG)
    return config


def _runs(out: Path, r: int = 1) -> int:
    ran = out / f"round_{r}" / "ran.txt"
    return len(ran.read_text().splitlines()) if ran.exists() else 0


def _copy_data(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


# -- 1: a run folder remembers its data and config ---------------------------------------------------
def test_other_data_or_config_is_refused_before_anything_runs(fake_chain, tmp_path, tiny_data, capsys):
    out = tmp_path / "run"
    run_chain(out, tiny_data, "v1", 1, fake_chain, verbose=False)
    saved = (out / "run.json").read_text()
    assert '"train.csv"' in saved and '"notebooks"' in saved
    # every file of the data folder is fingerprinted, keyed by its path relative to the folder
    assert sorted(json.loads(saved)["data"]) == sorted(p.name for p in tiny_data.iterdir() if p.is_file())
    assert {r.status for r in run_chain(out, tiny_data, "v1", 1, fake_chain, verbose=False)} == {"skipped"}

    other = _copy_data(tiny_data, tmp_path / "other_data")
    train = pd.read_csv(other / "train.csv")
    train.head(30).to_csv(other / "train.csv", index=False)
    with pytest.raises(RunFolderError, match=r"other data \(train.csv differ"):
        run_chain(out, other, "v1", 1, fake_chain, verbose=False)
    extra = _copy_data(tiny_data, tmp_path / "extra_data")  # same csv files, one more (nested) file
    (extra / "notes").mkdir()
    (extra / "notes" / "readme.txt").write_text("x")
    with pytest.raises(RunFolderError, match=r"other data \(notes/readme.txt differ"):
        run_chain(out, extra, "v1", 1, fake_chain, verbose=False)
    other_config = tmp_path / "other.yaml"
    other_config.write_text(CONFIG.replace("seed: 0", "seed: 1") + "mining: {n: 5}\n")
    with pytest.raises(RunFolderError, match=r"config \(top-level keys that differ: seed, mining\)") as err:
        run_chain(out, tiny_data, "v1", 1, other_config, verbose=False)
    assert "--force" in str(err.value) and "data (" not in str(err.value)
    assert _runs(out) == 1 and (out / "run.json").read_text() == saved  # nothing ran, nothing rewritten
    assert yaml.safe_load((out / "round_1" / "config.yaml").read_text())["seed"] == 0  # the snapshot the model saw

    # through the CLI: one line, exit 2; --force starts over with the new config
    code = main(["run", "--data-dir", str(other), "--config", str(fake_chain), "--out", str(out)])
    assert code == 2 and capsys.readouterr().err.startswith(f"error: {out.resolve()} holds a run made with other data")
    results = run_chain(out, tiny_data, "v1", 1, other_config, force=True, verbose=False)
    assert [r.status for r in results] == ["ran"] and _runs(out) == 1  # round folder cleared, then run once
    assert yaml.safe_load((out / "round_1" / "config.yaml").read_text())["seed"] == 1
    assert {r.status for r in run_chain(out, tiny_data, "v1", 1, other_config, verbose=False)} == {"skipped"}


def test_fold_overrides_and_progress_are_part_of_the_effective_config(fake_chain, tmp_path, tiny_data, monkeypatch):
    out = tmp_path / "fold_1"
    fold = {"split": {"fold": 1, "cv_scheme": "v1"}}
    run_chain(out, tiny_data, "cv", 1, fake_chain, verbose=False, overrides=fold)
    monkeypatch.setenv("CI", "true")  # progress bars change no result: a resume under CI is the same run
    assert {r.status for r in run_chain(out, tiny_data, "cv", 1, fake_chain, verbose=False, overrides=fold)} == {"skipped"}
    with pytest.raises(RunFolderError, match=r"config \(top-level keys that differ: split\)"):
        run_chain(out, tiny_data, "cv", 1, fake_chain, verbose=False, overrides={"split": {"fold": 0}})
    with pytest.raises(RunFolderError, match=r"split \(was cv, now v1\)"):
        run_chain(out, tiny_data, "v1", 1, fake_chain, verbose=False, overrides=fold)


# -- 2: --rounds must be positive ------------------------------------------------------------------
def test_rounds_below_one_are_refused_by_the_cli(tmp_path, capsys):
    proc = subprocess.run([sys.executable, "-m", "utils", "run", "--rounds", "0", "--out", str(tmp_path / "r")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --rounds 0: at least 1"
    assert main(["run", "--rounds", "-1", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == "error: --rounds -1: at least 1"
    assert not (tmp_path / "r").exists()


# -- 3: --force clears the previous submissions first ----------------------------------------------
def test_failing_forced_run_leaves_no_old_submission(fake_chain, tmp_path, tiny_data, monkeypatch):
    out, shared = tmp_path / "myrun", tmp_path / "shared_submissions"
    config = tmp_path / "with_dir.yaml"
    config.write_text(CONFIG.replace("{dir: null}", f"{{dir: {shared}}}"))
    run_chain(out, tiny_data, "v1", 1, config, verbose=False)
    old = [out / "submission.csv", shared / "myrun" / "submission.csv", out / "round_1" / "submission.csv"]
    for p in old:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("QuestionId_Answer,MisconceptionId\n")
    monkeypatch.setenv("FAKE_NOTEBOOK_FAIL", "1")
    with pytest.raises(Exception, match="boom"):
        run_chain(out, tiny_data, "v1", 1, config, force=True, verbose=False)
    assert [p for p in old if p.exists()] == []


# -- 4: submit writes every copy or none -----------------------------------------------------------
def _ranking(ctx: stages.context.RunContext) -> pd.DataFrame:
    ids = stages.ops.corpus_ids(ctx)[:25]
    return pd.DataFrame([{"query_id": q, "item_id": int(m), "rank": i + 1, "score": -i}
                         for q in ctx.test_pairs["query_id"] for i, m in enumerate(ids)])


def test_submit_writes_all_copies_or_none(tmp_path, tiny_data):
    ctx = stages.context.load_context(tmp_path / "v1" / "round_1", tiny_data, "v1", 1, None)
    ranking = _ranking(ctx)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the submissions folder should be")
    ctx.config["submission"]["dir"] = str(blocker)
    with pytest.raises(OSError):
        stages.fuse_submit.submit(ctx, ranking)
    written = [p for p in (ctx.run_dir / "submission.csv", ctx.out_dir / "submission.csv") if p.exists()]
    assert written == [] and not [p for p in tmp_path.rglob("*.tmp")]
    ctx.config["submission"]["dir"] = str(tmp_path / "subs")
    path = stages.fuse_submit.submit(ctx, ranking)
    assert path == ctx.run_dir / "submission.csv"
    copies = [ctx.out_dir / "submission.csv", tmp_path / "subs" / "v1" / "submission.csv"]
    assert all(p.read_bytes() == path.read_bytes() for p in copies) and len(path.read_text().splitlines()) == 1 + 3 * 6


# -- 5: one run per folder -------------------------------------------------------------------------
def test_second_run_is_refused_and_a_stale_lock_taken_over(fake_chain, tmp_path, tiny_data, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (out / ".lock").write_text(f"{holder.pid}\n")
        code = main(["run", "--data-dir", str(tiny_data), "--config", str(fake_chain), "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and f"in use by another run (pid {holder.pid}" in err and len(err.splitlines()) == 1
        assert not (out / "round_1").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale
    results = run_chain(out, tiny_data, "v1", 1, fake_chain, verbose=False)
    assert [r.status for r in results] == ["ran"] and not (out / ".lock").exists()
    assert f"taking over {out.resolve() / '.lock'}: the run that left it (pid {holder.pid}) is not running" in capsys.readouterr().err


def test_lock_is_held_while_running_and_released_on_failure(fake_chain, tmp_path, tiny_data, monkeypatch):
    out = tmp_path / "run"
    with runner.run_lock(out) as lock:
        assert lock.read_text().strip() == str(os.getpid())
    assert not lock.exists()
    monkeypatch.setenv("FAKE_NOTEBOOK_FAIL", "1")
    with pytest.raises(Exception, match="boom"):
        run_chain(out, tiny_data, "v1", 1, fake_chain, verbose=False)
    assert not (out / ".lock").exists()


# -- 6 and 7: interrupted notebooks, one-line errors -------------------------------------------------
def test_interrupted_notebook_is_kept_as_failed(fake_chain, tmp_path, tiny_data, capsys):
    out = tmp_path / "run"
    run_chain(out, tiny_data, "v1", 1, fake_chain, verbose=False)
    rnd = out / "round_1"
    (rnd / "01_mine_hn.ipynb").unlink()
    (rnd / ".01_mine_hn.running.ipynb").write_text("{partial")  # what a kill inside the notebook leaves
    assert [r.status for r in run_chain(out, tiny_data, "v1", 1, fake_chain, verbose=False)] == ["ran"]
    assert (rnd / "01_mine_hn.failed.ipynb").read_text() == "{partial" and not (rnd / ".01_mine_hn.running.ipynb").exists()
    said = [line for line in capsys.readouterr().err.splitlines() if "interrupted" in line]
    assert said == [f"note: round_1/01_mine_hn was interrupted in an earlier run; its partial notebook is now "
                    f"{(rnd / '01_mine_hn.failed.ipynb').resolve()}"]


def test_notebook_error_is_one_line(fake_chain, tmp_path, tiny_data, monkeypatch, capsys):
    out = tmp_path / "run"
    monkeypatch.setenv("FAKE_NOTEBOOK_FAIL", "1")
    code = main(["run", "--data-dir", str(tiny_data), "--config", str(fake_chain), "--out", str(out)])
    err = capsys.readouterr().err
    failed = out.resolve() / "round_1" / "01_mine_hn.failed.ipynb"
    assert code == 1 and failed.exists()
    assert err.splitlines() == [f"error: {runner.NOTEBOOK_DIR / '01_mine_hn.ipynb'}: ValueError: boom: the fake notebook failed",
                                f"  traceback in the executed notebook: {failed}"]


def test_suite_errors_before_running_are_one_line(tmp_path, tiny_data, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("minning: {n: 3}\n")
    assert main(["run", "--config", str(bad), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "unknown config key 'minning'" in err[0]
    assert main(["run", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b")]) == 2
    missing = (tmp_path / "nowhere").resolve() / "train.csv"
    assert capsys.readouterr().err.strip() == f"error: {missing}: file not found (expected Kaggle's Eedi layout)"
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# -- 8: progress bars -------------------------------------------------------------------------------
def test_show_progress_auto_resolves_to_a_bool(fake_chain, tmp_path, tiny_data, monkeypatch):
    assert resolve_progress("auto", {"CI": "true"}) is False
    assert resolve_progress("auto", {}) is True and resolve_progress(False, {}) is False
    monkeypatch.delenv("CI", raising=False)
    snapshot = lambda out: yaml.safe_load((out / "round_1" / "config.yaml").read_text())["show_progress"]  # noqa: E731
    assert main(["run", "--data-dir", str(tiny_data), "--config", str(fake_chain), "--out", str(tmp_path / "a")]) == 0
    assert snapshot(tmp_path / "a") is True
    assert main(["run", "--data-dir", str(tiny_data), "--config", str(fake_chain), "--out", str(tmp_path / "b"),
                 "--quiet"]) == 0
    assert snapshot(tmp_path / "b") is False
    monkeypatch.setenv("CI", "true")
    run_chain(tmp_path / "c", tiny_data, "v1", 1, fake_chain, verbose=False)
    assert snapshot(tmp_path / "c") is False


def test_rerank_rounds_decide_which_rounds_run_05_and_06(fake_chain, tmp_path, tiny_data):
    nb_dir = runner.NOTEBOOK_DIR
    for name in ("05_train_reranker", "06_rerank"):
        (nb_dir / f"{name}.ipynb").write_bytes((nb_dir / "01_mine_hn.ipynb").read_bytes())
    chain = ["01_mine_hn", "05_train_reranker", "06_rerank"]

    def ran(which, out):
        cfg = tmp_path / f"{out}.yaml"
        cfg.write_text(CONFIG.replace("[01_mine_hn]", f"[{', '.join(chain)}]") + f"rerank: {{rounds: {which}}}\n")
        results = run_chain(tmp_path / out, tiny_data, "v1", 3, cfg, verbose=False)
        return {r: [s.notebook for s in results if s.round_idx == r and s.status == "ran"] for r in (1, 2, 3)}

    assert ran("last", "last") == {1: ["01_mine_hn"], 2: ["01_mine_hn"], 3: chain}
    assert ran("[2]", "two") == {1: ["01_mine_hn"], 2: chain, 3: ["01_mine_hn"]}
    assert ran("all", "all") == {1: chain, 2: chain, 3: chain}
    assert _runs(tmp_path / "last", 3) == 3 and _runs(tmp_path / "last", 1) == 1
