"""Pipeline wiring that needs no model: contexts, splits on disk, ICL queries, config checks."""

import pandas as pd
import pytest

from utils import stages


@pytest.fixture
def ctx(tmp_path, tiny_data):
    return stages.context.load_context(tmp_path / "v1" / "round_1", tiny_data, "v1", 1, None)


def test_split_is_saved_and_reused(ctx, tmp_path, tiny_data):
    saved = pd.read_parquet(tmp_path / "v1" / "split.parquet")
    again = stages.context.load_context(tmp_path / "v1" / "round_2", tiny_data, "v1", 2, None)
    assert again.pairs["fold"].tolist() == ctx.pairs["fold"].tolist()
    assert set(saved["fold"]) == {"train", "val"}
    assert list(saved.columns) == ["group", "fold"] and set(saved["group"]) == set(ctx.pairs["group"])
    assert len(ctx.train_pairs) and len(ctx.val_pairs)
    assert set(ctx.train_pairs["group"]).isdisjoint(ctx.val_pairs["group"])
    assert (ctx.train_pairs["positives"].map(len) > 0).all() and (ctx.val_pairs["positives"].map(len) > 0).all()


def test_round_two_needs_round_one(tmp_path, tiny_data):
    ctx2 = stages.context.load_context(tmp_path / "v1" / "round_2", tiny_data, "v1", 2, None)
    with pytest.raises(FileNotFoundError, match="run round 1 first"):
        ctx2.mining_model


def test_icl_queries_use_other_questions_only(ctx):
    ctx.config["embedder"]["icl"].update(enabled=True, k=2)
    val = ctx.val_pairs
    out = stages.ops.icl_pairs(ctx, val)
    for (_, row), text in zip(val.iterrows(), out["query_text"]):
        assert text.count("<instruct>") == 3 and text.rstrip().endswith("<response>")
        assert text.count(row["QuestionText"]) == 1  # its own question appears once: as the query
        assert row["query_text"] in text
    ctx.config["embedder"]["icl"]["enabled"] = False
    assert stages.ops.icl_pairs(ctx, val)["query_text"].tolist() == val["query_text"].tolist()


@pytest.mark.parametrize("icl, setting, side", [(True, None, "left"), (False, None, "right"), (False, "left", "left"),
                                                  (True, "right", "right")])
def test_training_cuts_long_queries_on_the_side_encoding_does(ctx, tmp_path, monkeypatch, icl, setting, side):
    # An ICL prompt longer than max_query_length must lose its oldest example in 02 as in 03/04; cut on the right in
    # training only, the model learnt from prompts whose query and <response> slot were gone (found on real Eedi).
    import utils.retrieval.train_embedder as te

    ctx.config["embedder"]["icl"]["enabled"] = icl
    ctx.config["train"]["truncation_side"] = setting
    seen = {}
    monkeypatch.setattr(te, "train_embedder", lambda records, start, out, cfg, **kw: seen.update(cfg=cfg) or [{}])
    (tmp_path / "hn.jsonl").write_text("")
    stages.ops.fit_embedder(ctx, tmp_path / "hn.jsonl", tmp_path / "emb")
    assert ctx.truncation_side == side and seen["cfg"].truncation_side == side
    assert ctx.embedder("base").tokenizer.truncation_side == side


def test_unknown_rerank_and_fusion_options(ctx, tmp_path, tiny_data):
    # the typed config refuses unknown keys of every section when it is loaded, before any stage runs
    from utils.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"unknown config key 'rerank\.bogus'"):
        load_config(None, {"rerank": {"bogus": 1}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("fusion: {methd: rrf}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown config key 'fusion\.methd'"):
        stages.context.load_context(tmp_path / "other" / "round_1", tiny_data, "v1", 1, bad)
    assert stages.train_reranker.rerank_config(ctx)["top_k"] == ctx.config["rerank"]["top_k"]
    assert stages.fuse_submit.fusion_config(ctx)["method"] == ctx.config["fusion"]["method"]


def test_split_for_other_data_is_refused(ctx, tmp_path):
    from utils.config import SAMPLE_DATA_DIR

    with pytest.raises(ValueError, match="made for other data"):
        stages.context.load_context(tmp_path / "v1" / "round_1", SAMPLE_DATA_DIR, "v1", 1, None)
