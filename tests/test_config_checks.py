"""Issue 17: every config value is type- and range-checked in load_config, naming the file and key;
a failed or empty training run never replaces a finished embedder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from utils.config import REPO_ROOT, ConfigError, load_config

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TINY_CONFIG  # noqa: E402


def _load(tmp_path: Path, text: str) -> dict:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return load_config(p)


@pytest.mark.parametrize("text, message", [
    ("train: {epochs: two}", "train.epochs: expected a number, got 'two'"),
    ("train: {epochs: 0}", "train.epochs: must be > 0, got 0"),
    ("train: {lr: 1e-4}", "train.lr: expected a number, got '1e-4'"),
    ("train: {init: last}", "train.init: expected 'base' or 'previous', got 'last'"),
    ("recall: {k: -5}", "recall.k: must be >= 1, got -5"),
    ("recall: {k: 10.5}", "recall.k: expected an integer, got 10.5"),
    ("submission: {k: -1}", "submission.k: must be >= 1, got -1"),
    ("rerank: {blend: 1.5}", "rerank.blend: must be in [0, 1], got 1.5"),
    ("rerank: {blend: maybe}", "rerank.blend: expected true or false or a number, got 'maybe'"),
    ("rerank: {item_prior_weight: best}", "rerank.item_prior_weight: expected 'tune' or a number, got 'best'"),
    ("rerank: {family: gpt}", "rerank.family: expected 'cross_encoder' or 'llm_pointwise' or 'llm_listwise'"),
    ("fusion: {weights: [1, -1], rounds: [1, 2], method: rrf}", "fusion.weights[1]: must be >= 0, got -1"),
    ("fusion: {rounds: [0]}", "fusion.rounds[0]: must be >= 1, got 0"),
    ("fusion: {rounds: some}", "fusion.rounds: expected 'all' or a list, got 'some'"),
    ("fusion: {weights: [1.0]}", "fusion.weights: needs a fusion.method other than auto"),
    ("split: {cv_scheme: v3}", "split.cv_scheme: expected 'v1' or 'v2', got 'v3'"),
    ("split: {fold: 5}", "split.fold 5: must be below split.n_folds (5)"),
    ("mining: {range_min: 50, range_max: 10}", "mining.range_min (50) must be below mining.range_max (10)"),
    ("embedder: {icl: {k: -1}}", "embedder.icl.k: must be >= 0, got -1"),
    ("cpu_threads: many", "cpu_threads: expected 'auto' or an integer, got 'many'"),
    ("export: {is_private: 'no'}", "export.is_private: expected true or false, got 'no'"),
    ("train: 3", "train: expected a mapping, got 3"),
    ("rerank: {lora: null}", "rerank.lora: expected a mapping, got None"),  # LLM rerankers always train LoRA
])
def test_bad_values_name_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text + "\n")
    assert str(err.value).startswith(f"{tmp_path / 'c.yaml'}: ")
    assert message in str(err.value)


@pytest.mark.parametrize("section, key", [("train", "epoch"), ("rerank", "blnd"), ("fusion", "method_"),
                                          ("export", "ownr")])
def test_unknown_keys_of_owned_sections_listed_up_front(tmp_path, section, key):
    with pytest.raises(ConfigError, match=rf"unknown config key '{section}\.{key}'; known here: \[") as err:
        _load(tmp_path, f"{section}: {{{key}: 1}}\n")
    known = {"train": ["epochs", "lr", "init", "gpus", "grad_cache_chunk"], "rerank": ["blend", "item_prior_weight"],
             "fusion": ["method", "weights"], "export": ["owner"]}[section]
    assert all(f"'{k}'" in str(err.value) for k in known)


def test_overrides_are_checked_and_named():
    with pytest.raises(ConfigError, match=r"^config overrides: rerank.top_k: must be >= 1, got 0"):
        load_config(overrides={"rerank": {"top_k": 0}})


def test_good_values_pass(tmp_path):
    cfg = _load(tmp_path, "rerank: {blend: true, item_prior_weight: tune}\nfusion: {rounds: all, weights: null}\n"
                          "split: {cv_scheme: v2}\ntrain: {gpus: 2, init: base, lora: {r: 8}, grad_cache_chunk: null}\n")
    assert cfg["rerank"]["blend"] is True and cfg["split"]["cv_scheme"] == "v2"
    cfg = _load(tmp_path, "rerank: {blend: 0.4, item_prior_weight: 0}\n"
                          "fusion: {method: rrf, rounds: [1, 3], weights: [0.5, 0]}\ncpu_threads: 2\n")
    assert cfg["fusion"]["weights"] == [0.5, 0]


def test_shipped_and_test_configs_still_load():
    import test_cv

    for path in sorted((REPO_ROOT / "configs").glob("*.yaml")):
        load_config(path)
    for text in (TINY_CONFIG, test_cv.CV_CONFIG):
        load_config(overrides=yaml.safe_load(text))


def test_train_config_checks_its_fields():
    from utils.retrieval.train_embedder import TrainConfig

    with pytest.raises(ConfigError, match="train.batch_size: expected an integer, got '8'"):
        TrainConfig(batch_size="8")
    with pytest.raises(ConfigError, match="train.temperature: must be > 0, got 0"):
        TrainConfig.from_dict({"temperature": 0})


# -- a failed training never replaces a finished model ------------------------------------------------------
RECORDS = [{"query": f"question {i}", "pos": [f"answer {i}"], "neg": [f"answer {(i + 1) % 8}"], "pos_ids": [i],
            "neg_ids": [(i + 1) % 8]} for i in range(8)]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def previous_model(tmp_path_factory) -> Path:
    """A finished embedder folder (the bundled MiniLM cut to one layer, as a training run saves it)."""
    from tiny_models import make_tiny_encoder
    from utils.retrieval.embed import Embedder

    src = make_tiny_encoder(tmp_path_factory.mktemp("src") / "enc", num_layers=1)
    out = tmp_path_factory.mktemp("round") / "embedder"
    Embedder(src, device="cpu").save(out)
    (out / "train_log.json").write_text(json.dumps({"log": [{"step": 0}]}))
    return out


def _assert_intact(folder: Path, before: dict[str, bytes]) -> None:
    assert _snapshot(folder) == before
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temp folder left beside it


def test_training_that_raises_midway_keeps_the_previous_model(previous_model, monkeypatch):
    from utils.retrieval import train_embedder as T

    before = _snapshot(previous_model)
    calls = {"n": 0}
    real = T.backward_step

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(T, "backward_step", failing)
    cfg = T.TrainConfig(epochs=1, batch_size=2, n_negatives=1, max_query_length=16, max_passage_length=8)
    with pytest.raises(RuntimeError, match="simulated"):
        T.train_embedder(RECORDS, str(previous_model), previous_model, cfg, device="cpu", show_progress=False)
    assert calls["n"] == 2
    _assert_intact(previous_model, before)


def test_training_with_no_step_keeps_the_previous_model(previous_model):
    """One record makes no batch of two queries: before, an untrained copy replaced the model."""
    from utils.retrieval.train_embedder import TrainConfig, train_embedder

    before = _snapshot(previous_model)
    cfg = TrainConfig(epochs=1, batch_size=4, n_negatives=1, max_query_length=16, max_passage_length=8)
    with pytest.raises(ValueError, match="no training step: 1 record"):
        train_embedder(RECORDS[:1], str(previous_model), previous_model, cfg, device="cpu", show_progress=False)
    _assert_intact(previous_model, before)


def test_finished_training_replaces_model_and_log_together(previous_model, tmp_path):
    import shutil

    from utils.retrieval.train_embedder import TrainConfig, train_embedder

    target = tmp_path / "embedder"
    shutil.copytree(previous_model, target)
    cfg = TrainConfig(epochs=1, batch_size=4, n_negatives=1, max_query_length=16, max_passage_length=8)
    log = train_embedder(RECORDS, str(previous_model), target, cfg, device="cpu", show_progress=False)
    saved = json.loads((target / "train_log.json").read_text())
    assert saved["log"] == json.loads(json.dumps(log)) and (target / "embedder_config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embedder"]
