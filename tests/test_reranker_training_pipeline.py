"""05 / 06 through the reranker interface: candidates, arguments per family, item prior, blend."""

import numpy as np
import pandas as pd
import pytest

from utils import io
from utils import stages
from utils.rerank.base import CrossEncoderReranker, LLMReranker, get_reranker
from utils.tasks.eedi import PROMPTS as EEDI


@pytest.fixture
def ctx(tmp_path, tiny_data, tiny_config):
    c = stages.context.load_context(tmp_path / "v1" / "round_1", tiny_data, "v1", 1, tiny_config)
    return c


def test_unknown_candidate_source_is_an_error(ctx):
    for source in ("oracle", "crossfit"):  # crossfit (out-of-fold embedders) was removed: no gain over current
        ctx.config["rerank"] = {**ctx.config["rerank"], "candidates": source}
        with pytest.raises(ValueError, match=f"rerank.candidates '{source}': choose current or mining"):
            stages.train_reranker.reranker_train_candidates(ctx, stages.train_reranker.rerank_config(ctx))


def test_get_reranker_is_the_one_family_switch():
    assert isinstance(get_reranker({"family": "cross_encoder"}), CrossEncoderReranker)
    for mode in ("pointwise", "listwise"):
        r = get_reranker({"family": f"llm_{mode}"})
        assert isinstance(r, LLMReranker) and r.mode == mode and r.family == f"llm_{mode}"
    with pytest.raises(ValueError, match="unknown rerank.family 'bm25'; choose one of cross_encoder, "
                                         "llm_pointwise, llm_listwise"):
        get_reranker({"family": "bm25"})
    with pytest.raises(ValueError, match="unknown LLM reranker mode"):
        LLMReranker("pairwise")
    rc = {"n_negatives": 7, "window": 5}
    assert [get_reranker(f).n_negatives(rc) for f in ("cross_encoder", "llm_pointwise", "llm_listwise")] == [7, 7, 4]


def _record(calls: list, result):
    def fake(*args, **kwargs):
        calls.append((args, kwargs))
        return result(*args, **kwargs) if callable(result) else result
    return fake


def test_stages_pass_each_family_its_arguments(ctx, monkeypatch):
    """05 / 06 through the interface: the same arguments reach train_* / score_* as before, and
    06 returns the family's scores as they are (no residual retrieval term)."""
    import utils.rerank.cross_encoder as ce
    import utils.rerank.llm as llm
    from utils.rerank.data import build_rerank_candidates

    cands = stages.ops.rank(ctx, ctx.embedder("base"), ctx.train_pairs, k=10)
    monkeypatch.setattr(stages.train_reranker, "reranker_train_candidates", lambda c, rc: cands)
    trained, scored = [], []
    monkeypatch.setattr(ce, "train_cross_encoder", _record(trained, "ce"))
    monkeypatch.setattr(llm, "train_llm_reranker", _record(trained, "llm"))
    monkeypatch.setattr(ce, "score_cross_encoder", _record(scored, lambda p, q, d, **k: np.arange(len(q), dtype=np.float32)))
    monkeypatch.setattr(llm, "score_llm_reranker", _record(scored, lambda rows, d, **k: -np.arange(len(rows), dtype=np.float32)))
    base = {**ctx.config["rerank"], "top_k": 6, "n_negatives": 3, "window": 4, "stride": 2, "epochs": 2.0, "lr": 1e-3,
            "batch_size": 8, "max_length": 80, "score_batch_size": 5, "loss": "listwise", "head": "mean",
            "num_layers": 2, "max_groups": 9, "item_bias_l2": 0.1, "load_in_4bit": False, "tta": False, "permutations": 3,
            "compile": True}
    seed = ctx.config["seed"]
    val = ctx.val_pairs
    val_cands = stages.ops.rank(ctx, ctx.embedder("base"), val, k=8)
    rows = build_rerank_candidates(val_cands, val, ctx.corpus, 6)

    for model, init in (("embedder", str(ctx.embedder_dir)), ("default", None), ("some/encoder", "some/encoder")):
        ctx.config["rerank"] = {**base, "family": "cross_encoder", "model": model}
        df = stages.train_reranker.train_reranker(ctx)["train_df"]
        args, kwargs = trained.pop()
        assert args[1:] == (init, ctx.reranker_dir) and args[0] is df and df.groupby("group").size().max() == 4
        assert kwargs == {"epochs": 2.0, "lr": 1e-3, "batch_size": 8, "max_length": 80, "loss": "listwise", "seed": seed,
                          "logging_steps": 50, "head": "mean", "num_layers": 2, "max_groups": 9, "item_bias_l2": 0.1}
    got = stages.rerank.score_reranker(ctx, val_cands, val)
    args, kwargs = scored.pop()
    assert args[0] == str(ctx.reranker_dir) and args[1] == rows["query_text"].tolist()
    assert args[2] == rows["item_text"].tolist() and kwargs == {"batch_size": 5, "max_length": 80}
    np.testing.assert_array_equal(got, np.arange(len(rows)))

    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj"]}
    for mode, group in (("pointwise", 4), ("listwise", 4)):  # listwise groups: window - 1 negatives
        ctx.config["rerank"] = {**base, "family": f"llm_{mode}", "model": "some/llm", "lora": lora,
                                "n_negatives": 3 if mode == "pointwise" else 7}
        df = stages.train_reranker.train_reranker(ctx)["train_df"]
        args, kwargs = trained.pop()
        assert args[1:] == ("some/llm", ctx.reranker_dir) and df.groupby("group").size().max() == group
        assert kwargs == {"mode": mode, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj"],
                          "load_in_4bit": False, "epochs": 2.0, "lr": 1e-3, "batch_size": 8, "max_length": 80,
                          "seed": seed, "gradient_checkpointing": True, "prompts": EEDI,  # the task's wording, saved with the adapter
                          "listwise_permutations": 3, "compile": True}
        got = stages.rerank.score_reranker(ctx, val_cands, val)
        args, kwargs = scored.pop()
        pd.testing.assert_frame_equal(args[0], rows)
        assert args[1] == str(ctx.reranker_dir)
        assert kwargs == {"batch_size": 5, "max_length": 80, "window": 4, "stride": 2, "tta": False}
        np.testing.assert_array_equal(got, -np.arange(len(rows)))
    ctx.config["rerank"]["lora"] = {}  # LoRA defaults; no target_modules given
    stages.train_reranker.train_reranker(ctx)
    assert {k: v for k, v in trained.pop()[1].items() if k in ("r", "alpha", "dropout", "target_modules")} == \
        {"r": 16, "alpha": 32, "dropout": 0.05}


def test_item_prior_and_lengths_per_family(ctx, monkeypatch):
    """Only a cross-encoder's saved biases give an item prior; token lengths come from each family's inputs."""
    from transformers import AutoTokenizer

    import utils.lora
    import utils.rerank.llm as llm
    from utils.rerank.cross_encoder import default_encoder

    cands = stages.ops.rank(ctx, ctx.embedder("base"), ctx.val_pairs, k=8)
    names = dict(zip(ctx.corpus["item_id"].astype(int), ctx.corpus["item_text"]))
    head = cands[cands["rank"] <= 5]
    first = names[int(head["item_id"].iloc[0])]
    io.write_json(ctx.reranker_dir / "train_log.json", {"item_bias": {first: 1.5}})
    for family in ("cross_encoder", "llm_pointwise", "llm_listwise"):
        ctx.config["rerank"] = {**ctx.config["rerank"], "family": family, "top_k": 5}
        prior = stages.rerank.reranker_item_prior(ctx, cands)
        expected = [1.5 if names[int(m)] == first else 0.0 for m in head["item_id"]]
        assert prior.tolist() == (expected if family == "cross_encoder" else [0.0] * len(head))

    tok = AutoTokenizer.from_pretrained(default_encoder())
    tok.save_pretrained(str(ctx.reranker_dir))
    train_df = pd.DataFrame({"query_text": ["what is 2+2", "a longer question about fractions"],
                             "item_text": ["adds", "thinks a half is 0.2"]})
    ctx.config["rerank"]["family"] = "cross_encoder"
    out = stages.train_reranker.reranker_lengths(ctx, train_df)
    want = [len(x) for x in tok(train_df["query_text"].tolist(), train_df["item_text"].tolist())["input_ids"]]
    assert out["lengths"] == want and out["stats"]["n"] == 2 and out["stats"]["max"] == max(want)

    calls = []
    monkeypatch.setattr(utils.lora, "load_tokenizer", lambda path: ("tok", path))
    monkeypatch.setattr(llm, "prompt_length_stats", _record(calls, lambda *a, **k: {"n": 2, "lengths": [3, 4]}))
    for mode in ("pointwise", "listwise"):
        ctx.config["rerank"] = {**ctx.config["rerank"], "family": f"llm_{mode}", "window": 6}
        assert stages.train_reranker.reranker_lengths(ctx, train_df) == {"lengths": [3, 4], "stats": {"n": 2}}
        args, kwargs = calls.pop()
        assert args[0] is train_df and args[1] == ("tok", str(ctx.reranker_dir))
        assert kwargs == {"mode": mode, "window": 6, "verbose": False, "prompts": EEDI}


def test_item_bias_reaches_the_cross_encoder(ctx):
    """rerank.item_bias_l2 from the config: the fitted biases are logged and the saved model scores alone."""
    ctx.config["rerank"] = {**ctx.config["rerank"], "candidates": "mining", "model": "default", "num_layers": 1,
                            "max_groups": 6, "loss": "listwise", "item_bias_l2": 0.5, "top_k": 5}
    result = stages.train_reranker.train_reranker(ctx)
    log = result["log"]
    assert log["item_bias_l2"] == 0.5 and log["item_bias_std"] > 0
    # one bias per misconception of the 6 sampled groups (gold + 3 negatives each)
    assert 4 <= len(log["item_bias"]) <= 24 and set(log["item_bias"]) <= set(result["train_df"]["item_text"])
    assert not (ctx.reranker_dir / "scoring.json").exists()  # no residual scoring file any more


def test_item_prior_weight_is_tuned_with_the_blend(ctx):
    """item_prior_weight "tune": 06 tries each weight of the grid with every blend alpha and keeps
    the best pair; the saved ranking is the blend of logit + weight * fitted bias."""
    from utils.rerank.cross_encoder import item_bias, score_cross_encoder
    from utils.metrics import per_query_ap
    from utils.rerank.blend import blend, out_of_fold_ap
    from utils.rerank.data import build_rerank_candidates

    ctx.config["rerank"] = {**ctx.config["rerank"], "candidates": "mining", "model": "default", "num_layers": 1,
                            "max_groups": 8, "loss": "listwise", "item_bias_l2": 0.1, "top_k": 5,
                            "item_prior_weight": "tune"}
    stages.train_reranker.train_reranker(ctx)
    emb = ctx.embedder("base")
    for part, pairs in (("val", ctx.val_pairs), ("test", ctx.test_pairs)):
        io.write_parquet(ctx.run_dir / f"candidates_{part}.parquet", stages.ops.rank(ctx, emb, pairs, k=8))
    cands = pd.read_parquet(ctx.run_dir / "candidates_val.parquet")
    rows = build_rerank_candidates(cands, ctx.val_pairs, ctx.corpus, 5)
    bias = item_bias(ctx.reranker_dir)
    prior = stages.rerank.reranker_item_prior(ctx, cands)
    assert prior.tolist() == [bias.get(n, 0.0) for n in rows["item_text"]] and np.abs(prior).max() > 0
    assert ctx.k == 25  # Eedi's MAP@25: 06 scores and tunes at the task's cut-off
    m = f"map@{ctx.k}"

    res = stages.rerank.rerank_all(ctx)
    s, table = res["summary"], res["blend_table"]
    assert sorted(table["item_prior_weight"].unique()) == list(stages.rerank.ITEM_PRIOR_GRID)
    best = table.loc[table[m].idxmax()]
    assert s["reranked"][m] == pytest.approx(best[m])
    w, alpha = s["item_prior_weight"], s["blend_alpha"]
    assert w in stages.rerank.ITEM_PRIOR_GRID and table.query("item_prior_weight == @w and alpha == @alpha")[m].iloc[0] == \
        pytest.approx(best[m])
    logits = score_cross_encoder(str(ctx.reranker_dir), rows["query_text"], rows["item_text"], max_length=96)
    expected = blend(cands, logits + w * prior, alpha, 5)
    got = res["val"]
    assert got[["query_id", "item_id"]].equals(expected[["query_id", "item_id"]])
    # the same (weight, alpha) search done out of fold, against retrieval
    oof = out_of_fold_ap(cands, logits, prior, stages.rerank.ITEM_PRIOR_GRID, ctx.val_pairs, 5, seed=ctx.config["seed"],
                         k=ctx.k)
    assert s["gain_out_of_fold"]["gain"] == pytest.approx(oof.mean() - per_query_ap(cands, ctx.val_pairs, ctx.k).mean())
    ctx.config["rerank"]["item_prior_weight"] = "strong"
    with pytest.raises(ValueError, match="item_prior_weight 'strong'"):
        stages.rerank.rerank_all(ctx)
    ctx.config["rerank"]["item_bias_l2"] = None  # a model without biases: the value is still checked
    stages.train_reranker.train_reranker(ctx)
    with pytest.raises(ValueError, match="item_prior_weight 'strong'"):
        stages.rerank.rerank_all(ctx)
    ctx.config["rerank"]["item_prior_weight"] = "tune"
    assert stages.rerank.rerank_all(ctx)["summary"]["item_prior_weight"] == 0.0  # nothing to add back


def test_blend_fixed_alpha_and_untuned_fallback(ctx):
    """rerank.blend: a number is used as alpha; with no validation pairs (split full) a tuned blend
    falls back to UNTUNED_BLEND_ALPHA -- never the reranker alone -- and 06 saves what it used."""
    from utils.rerank.blend import blend, rerank

    ctx.config["rerank"] = {**ctx.config["rerank"], "candidates": "mining", "model": "default", "num_layers": 1,
                            "max_groups": 8, "loss": "listwise", "top_k": 5}
    stages.train_reranker.train_reranker(ctx)
    emb = ctx.embedder("base")
    for part, pairs in (("val", ctx.val_pairs), ("test", ctx.test_pairs)):
        io.write_parquet(ctx.run_dir / f"candidates_{part}.parquet", stages.ops.rank(ctx, emb, pairs, k=8))
    cands = {part: pd.read_parquet(ctx.run_dir / f"candidates_{part}.parquet") for part in ("val", "test")}
    logits = {part: stages.rerank.score_reranker(ctx, cands[part], pairs) for part, pairs in
              (("val", ctx.val_pairs), ("test", ctx.test_pairs))}

    ctx.config["rerank"]["blend"] = 0.3
    res = stages.rerank.rerank_all(ctx)
    assert res["summary"]["blend_alpha"] == 0.3 and "blend_table" not in res
    assert res["choice"] == {"blend_alpha": 0.3, "item_prior_weight": 0.0, "tuned_on_validation": False}
    pd.testing.assert_frame_equal(res["test"], blend(cands["test"], logits["test"], 0.3, 5))

    ctx.config["rerank"]["blend"] = False
    pd.testing.assert_frame_equal(stages.rerank.rerank_all(ctx)["val"], rerank(cands["val"], logits["val"], 5))

    ctx.config["rerank"]["blend"] = True
    ctx.pairs = ctx.pairs.assign(fold=ctx.pairs["fold"].replace({"val": "unused"}))  # as with split full
    assert ctx.val_pairs.empty
    io.write_parquet(ctx.run_dir / "candidates_val.parquet", cands["val"].iloc[:0])  # 04 recalls nothing for val
    res = stages.rerank.rerank_all(ctx)
    assert "summary" not in res and res["choice"]["blend_alpha"] == stages.rerank.UNTUNED_BLEND_ALPHA < 1.0
    pd.testing.assert_frame_equal(res["test"], blend(cands["test"], logits["test"], stages.rerank.UNTUNED_BLEND_ALPHA, 5))
    saved = io.read_json(ctx.run_dir / "metrics.json")["06_rerank"]
    assert saved == {"blend_alpha": stages.rerank.UNTUNED_BLEND_ALPHA, "item_prior_weight": 0.0, "tuned_on_validation": False}

    ctx.config["rerank"]["blend"] = 1.5
    with pytest.raises(ValueError, match="rerank.blend 1.5"):
        stages.rerank.rerank_all(ctx)
