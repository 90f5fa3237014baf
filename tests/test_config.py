import pytest

from utils.config import ConfigError, load_config
from utils.retrieval.train_embedder import TrainConfig


def test_yaml_types_are_kept(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train: {epochs: 2, lr: 1.0e-4}\nmining: {n: 7, range_max: 50}\nnotebooks: [01_mine_hn]\n")
    cfg = load_config(p)
    assert cfg["train"]["epochs"] == 2 and isinstance(cfg["train"]["lr"], float)
    assert cfg["mining"] == {**load_config()["mining"], "n": 7, "range_max": 50}
    assert cfg["notebooks"] == ["01_mine_hn"]


def test_unknown_keys_are_errors(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("mining: {nn: 3}\n")
    with pytest.raises(ConfigError, match="mining.nn"):
        load_config(p)
    with pytest.raises(ConfigError, match="notebook"):
        load_config(overrides={"notebooks": ["09_nothing"]})
    with pytest.raises(ValueError, match="bogus"):
        TrainConfig.from_dict({"bogus": 1})


def test_shipped_configs_load():
    from utils.config import REPO_ROOT

    for path in sorted((REPO_ROOT / "configs").glob("*.yaml")):
        cfg = load_config(path)
        TrainConfig.from_dict({k: v for k, v in cfg["train"].items() if k != "init"})
