"""Where the reranker learns from: cross-fitted / mining-model candidates; residual (retrieval-weighted) scoring."""

import numpy as np
import pandas as pd
import pytest

from utils import io
from utils import stages
from utils.rerank.crossfit import crossfit_candidates, crossfit_folds


@pytest.fixture
def ctx(tmp_path, tiny_data, tiny_config):
    c = stages.context.load_context(tmp_path / "v1" / "round_1", tiny_data, "v1", 1, tiny_config)
    c.config["train"]["epochs"] = 0.5  # the fold models only need to exist; the test checks what they saw
    return c


def test_folds_partition_the_questions_deterministically(ctx):
    questions = ctx.comp.train
    folds = crossfit_folds(questions, 3, seed=0)
    assert len(folds) == 3
    assert set().union(*folds) == set(questions["QuestionId"].astype(int))
    assert sum(len(f) for f in folds) == questions["QuestionId"].nunique()  # disjoint
    assert crossfit_folds(questions, 3, seed=0) == folds
    assert crossfit_folds(questions, 3, seed=1) != folds
    with pytest.raises(ValueError, match="crossfit_folds must be >= 2"):
        crossfit_folds(questions, 1, seed=0)


def test_candidates_come_from_embedders_that_never_saw_the_question(ctx, monkeypatch):
    train = ctx.train_pairs
    cands = crossfit_candidates(ctx, folds=2, k=10)
    # every training pair is ranked exactly once, with its top 10
    assert sorted(cands["QuestionId_Answer"].unique()) == sorted(train["QuestionId_Answer"])
    assert (cands.groupby("QuestionId_Answer").size() == 10).all()
    q_of = dict(zip(train["QuestionId_Answer"], train["QuestionId"].astype(int)))
    for i in range(2):
        fold_dir = ctx.run_dir / "crossfit" / f"fold_{i}"
        fitted_on = {q_of[r["query_id"]] for r in io.read_jsonl(fold_dir / "hard_negatives.jsonl")}
        ranked = {q_of[q] for q in pd.read_parquet(fold_dir / "candidates.parquet")["QuestionId_Answer"]}
        assert fitted_on and ranked and not fitted_on & ranked
        assert fitted_on | ranked == set(train["QuestionId"].astype(int))
        assert not (fold_dir / "embedder").exists()  # fold models are dropped once their fold is ranked

    # a second call reads the saved folds instead of training again
    def no_training(*a, **k):
        raise AssertionError("retrained a finished fold")

    monkeypatch.setattr(stages.ops, "fit_embedder", no_training)
    again = crossfit_candidates(ctx, folds=2, k=10)
    pd.testing.assert_frame_equal(again, cands)
    with pytest.raises(ValueError, match="smaller top-k"):
        crossfit_candidates(ctx, folds=2, k=20)


def test_unknown_candidate_source_is_an_error(ctx):
    ctx.config["rerank"] = {**ctx.config["rerank"], "candidates": "oracle"}
    with pytest.raises(ValueError, match="rerank.candidates 'oracle'"):
        stages.train_reranker.reranker_train_candidates(ctx, stages.train_reranker.rerank_config(ctx))


def test_residual_reranker_scores_add_the_weighted_retrieval_score(ctx):
    """retrieval_weight: the saved model remembers w, and 06/inference score logit + w * retrieval."""
    from utils.rerank.cross_encoder import retrieval_weight, score_cross_encoder
    from utils.rerank.data import build_rerank_candidates

    ctx.config["rerank"] = {**ctx.config["rerank"], "candidates": "mining", "model": "default", "num_layers": 1,
                            "max_groups": 6, "loss": "listwise", "retrieval_weight": 20.0, "top_k": 5}
    result = stages.train_reranker.train_reranker(ctx)
    assert result["stats"]["candidates"] == "mining" and result["log"]["retrieval_weight"] == 20.0
    assert retrieval_weight(ctx.reranker_dir) == 20.0
    val = ctx.val_pairs
    cands = stages.ops.rank(ctx, ctx.embedder("base"), val, k=8)
    scores = stages.rerank.score_reranker(ctx, cands, val)
    rows = build_rerank_candidates(cands, val, ctx.misconceptions, 5)
    logits = score_cross_encoder(str(ctx.reranker_dir), rows["query_text"], rows["MisconceptionName"], max_length=96)
    assert len(scores) == len(rows) == 5 * len(val)
    np.testing.assert_allclose(scores, logits + 20.0 * rows["score"].to_numpy(np.float32), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="retrieval_weight needs the listwise loss"):
        ctx.config["rerank"]["loss"] = "pointwise"
        stages.train_reranker.train_reranker(ctx)


def test_item_bias_reaches_the_cross_encoder(ctx):
    """rerank.item_bias_l2 from the config: the fitted biases are logged and the saved model scores alone."""
    from utils.rerank.cross_encoder import retrieval_weight

    ctx.config["rerank"] = {**ctx.config["rerank"], "candidates": "mining", "model": "default", "num_layers": 1,
                            "max_groups": 6, "loss": "listwise", "item_bias_l2": 0.5, "top_k": 5}
    result = stages.train_reranker.train_reranker(ctx)
    log = result["log"]
    assert log["item_bias_l2"] == 0.5 and log["item_bias_std"] > 0
    # one bias per misconception of the 6 sampled groups (gold + 3 negatives each)
    assert 4 <= len(log["item_bias"]) <= 24 and set(log["item_bias"]) <= set(result["train_df"]["MisconceptionName"])
    assert retrieval_weight(ctx.reranker_dir) == 0.0  # nothing of the bias is added at scoring


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
    rows = build_rerank_candidates(cands, ctx.val_pairs, ctx.misconceptions, 5)
    bias = item_bias(ctx.reranker_dir)
    prior = stages.rerank.reranker_item_prior(ctx, cands)
    assert prior.tolist() == [bias.get(n, 0.0) for n in rows["MisconceptionName"]] and np.abs(prior).max() > 0

    res = stages.rerank.rerank_all(ctx)
    s, table = res["summary"], res["blend_table"]
    assert sorted(table["item_prior_weight"].unique()) == list(stages.rerank.ITEM_PRIOR_GRID)
    best = table.loc[table["map@25"].idxmax()]
    assert s["reranked"]["map@25"] == pytest.approx(best["map@25"])
    w, alpha = s["item_prior_weight"], s["blend_alpha"]
    assert w in stages.rerank.ITEM_PRIOR_GRID and table.query("item_prior_weight == @w and alpha == @alpha")["map@25"].iloc[0] == \
        pytest.approx(best["map@25"])
    logits = score_cross_encoder(str(ctx.reranker_dir), rows["query_text"], rows["MisconceptionName"], max_length=96)
    expected = blend(cands, logits + w * prior, alpha, 5)
    got = res["val"]
    assert got[["QuestionId_Answer", "MisconceptionId"]].equals(expected[["QuestionId_Answer", "MisconceptionId"]])
    # the same (weight, alpha) search done out of fold, against retrieval
    oof = out_of_fold_ap(cands, logits, prior, stages.rerank.ITEM_PRIOR_GRID, ctx.val_pairs, 5, seed=ctx.config["seed"])
    assert s["gain_out_of_fold"]["gain"] == pytest.approx(oof.mean() - per_query_ap(cands, ctx.val_pairs).mean())
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
