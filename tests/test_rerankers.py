"""Reranker data building, the cross-encoder, and rerank / blend / tune_blend."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import make_tiny_encoder, synthetic_task  # noqa: E402

from utils.rerank.cross_encoder import score_cross_encoder, train_cross_encoder  # noqa: E402
from utils.retrieval.embed import resolve_model  # noqa: E402
from utils.metrics import evaluate, per_query_ap  # noqa: E402
from utils.rerank.blend import blend, combine, out_of_fold_ap, rerank, tune_blend, tune_prior_and_blend  # noqa: E402
from utils.rerank.data import build_rerank_candidates, build_rerank_train  # noqa: E402

torch.set_num_threads(1)  # 2 shared cores: one thread avoids oversubscription stalls
Q = "query_id"
ITEM = "item_id"


@pytest.fixture(scope="module")
def eedi():
    """(queries, corpus, candidates) of the synthetic Eedi-shaped data, in the task contract."""
    return synthetic_task(seed=0)


def test_rerank_train_groups(eedi):
    pairs, mis, cands = eedi
    # drop the gold from one query's candidates: it must be injected anyway
    q0, g0 = pairs[Q].iloc[0], pairs["positives"].iloc[0][0]
    cands = cands[~((cands[Q] == q0) & (cands[ITEM] == g0))]
    pairs = pairs.copy()
    pairs["positives"] = [() if i == 1 else p for i, p in enumerate(pairs["positives"])]  # unlabelled: no group
    tr = build_rerank_train(cands, pairs, mis, n_negatives=3, top_k=5, seed=7)
    assert tr.equals(build_rerank_train(cands, pairs, mis, n_negatives=3, top_k=5, seed=7))
    assert not tr.equals(build_rerank_train(cands, pairs, mis, n_negatives=3, top_k=5, seed=8))
    assert tr["group"].nunique() == len(pairs) - 1 and pairs[Q].iloc[1] not in set(tr[Q])
    gold = {q: p[0] for q, p in zip(pairs[Q], pairs["positives"]) if p}  # one positive per synthetic query
    top5 = cands[cands["rank"] <= 5].groupby(Q)[ITEM].apply(set)
    for _, g in tr.groupby("group"):
        q = g[Q].iloc[0]
        assert g["label"].tolist() == [1, 0, 0, 0] and g[ITEM].iloc[0] == gold[q]
        negs = set(g[ITEM].iloc[1:])
        assert gold[q] not in negs and negs <= top5[q]
    assert {"query_text", "item_text", "QuestionText"} <= set(tr.columns) and tr.notna().all().all()
    # retrieval scores ride along; the injected gold gets its query's lowest head score (an upper bound)
    head5 = cands[cands["rank"] <= 5]
    score = dict(zip(zip(head5[Q], head5[ITEM]), head5["score"]))
    injected = tr[tr["gold_injected"]]
    missed = {q for q in tr[Q].unique() if gold[q] not in top5[q]}
    assert q0 in missed and set(injected[Q]) == missed and (injected["label"] == 1).all()
    lowest = head5.groupby(Q)["score"].min()
    assert np.allclose(injected["retrieval_score"], injected[Q].map(lowest))
    rest = tr[~tr["gold_injected"]]
    assert np.allclose(rest["retrieval_score"], [score[k] for k in zip(rest[Q], rest[ITEM])])


def test_rerank_keeps_tail_and_renumbers():
    cands = pd.DataFrame({Q: ["a"] * 5 + ["b"] * 3, ITEM: [1, 2, 3, 4, 5, 6, 7, 8],
                          "rank": [1, 2, 3, 4, 5, 1, 2, 3], "score": [.9, .8, .7, .6, .5, .9, .8, .7]})
    head_scores = np.array([0.1, 0.3, 0.2, 0.0, 0.5, 0.4])  # a: ranks 1-3, b: ranks 1-3
    out = rerank(cands, head_scores, top_k=3)
    a, b = out[out[Q] == "a"], out[out[Q] == "b"]
    assert a[ITEM].tolist() == [2, 3, 1, 4, 5] and a["rank"].tolist() == [1, 2, 3, 4, 5]
    assert b[ITEM].tolist() == [7, 8, 6] and b["rank"].tolist() == [1, 2, 3]
    full = np.r_[head_scores[:3], np.nan, np.nan, head_scores[3:]]  # aligned with every row
    pd.testing.assert_frame_equal(rerank(cands, full, top_k=3), out)
    with pytest.raises(ValueError):
        rerank(cands, head_scores[:4], top_k=3)


def test_combine_averages_per_query_zscores():
    cands = pd.DataFrame({Q: ["a"] * 3 + ["b"] * 3, ITEM: [1, 2, 3, 4, 5, 6],
                          "rank": [1, 2, 3, 1, 2, 3], "score": [.9, .8, .7, .9, .8, .1]})
    big = np.array([0.0, 10.0, 20.0, 5.0, 5.0, 8.0])  # one member on a large scale ...
    small = np.array([0.3, 0.2, 0.1, 0.0, 0.0, 0.0])  # ... one flat, and constant in query b
    z = np.sqrt(1.5)  # z-scores of (0, 10, 20) are (-z, 0, z); of (5, 5, 8): (-1/sqrt2, -1/sqrt2, sqrt2)
    want = np.array([(-z + z) / 2, 0.0, (z - z) / 2,
                     -0.5 / np.sqrt(2), -0.5 / np.sqrt(2), 0.5 * np.sqrt(2)])  # a constant query's z is 0
    np.testing.assert_allclose(combine(cands, [big, small], top_k=3), want, atol=1e-12)
    np.testing.assert_allclose(combine(cands, [big, small], top_k=3, weights=[3, 1])[:3],
                               [-0.5 * z, 0.0, 0.5 * z], atol=1e-12)
    np.testing.assert_allclose(combine(cands, [big[[0, 1, 3, 4]]], top_k=2), [-1, 1, 0, 0])  # head-aligned input
    with pytest.raises(ValueError, match="weights"):
        combine(cands, [big, small], weights=[1, -1])


def test_out_of_fold_tuning_is_not_optimistic():
    """Two questions: the reranker is right on the first, wrong on the second. Tuned on both, alpha
    0.4 wins (q1 AP 1/2, q2 AP 1: MAP 0.75); out of fold, each question is ranked with the alpha
    the other prefers: q2's 0 for q1 (AP 1/3), q1's 0.6 (gold first) for q2 (AP 1/2)."""
    cands = pd.DataFrame({Q: ["1_A"] * 3 + ["2_A"] * 3, ITEM: [1, 2, 3, 4, 5, 6],
                          "rank": [1, 2, 3, 1, 2, 3], "score": [.9, .8, .7, .9, .8, .7]})
    pairs = pd.DataFrame({Q: ["1_A", "2_A"], "group": [1, 2], "positives": [(3,), (4,)]})
    scores = np.array([0.0, 0.0, 5.0, 0.0, 1.0, 5.0])  # q1: gold (3) on top; q2: gold (4) at the bottom
    w, alpha, best, table = tune_prior_and_blend(cands, scores, np.zeros(6), [0.0], pairs, top_k=3)
    assert (w, alpha) == (0.0, pytest.approx(0.4)) and best == pytest.approx(0.75) and len(table) == 11
    oof = out_of_fold_ap(cands, scores, np.zeros(6), [0.0], pairs, top_k=3, repeats=3)
    np.testing.assert_allclose(oof, [1 / 3, 1 / 2])
    # nothing tuned (fixed alpha, one weight): out of fold = in sample
    fixed = per_query_ap(blend(cands, scores, 0.3, 3), pairs)
    np.testing.assert_allclose(out_of_fold_ap(cands, scores, np.zeros(6), [0.0], pairs, top_k=3, alpha=0.3), fixed)
    # the prior weight is chosen like alpha: a prior that undoes q2's error wins on q2 alone
    prior = np.array([0.0, 0.0, 0.0, 10.0, 0.0, 0.0])
    w, alpha, best, _ = tune_prior_and_blend(cands, scores, prior, [0.0, 1.0], pairs, top_k=3, alpha=1.0)
    assert (w, alpha, best) == (1.0, 1.0, 1.0)


def test_blend_ends_and_tune_blend(eedi):
    pairs, mis, cands = eedi
    rng = np.random.default_rng(0)
    head = build_rerank_candidates(cands, pairs, mis, top_k=6)
    gold = head[Q].map(dict(zip(pairs[Q], pairs["positives"].map(lambda p: p[0]))))
    # a noisy reranker that is right more often than the (random) retrieval
    noisy = (head[ITEM] == gold).astype(float).to_numpy() + rng.normal(0, 0.6, len(head))
    ret = blend(cands, noisy, alpha=0.0, top_k=6)
    assert ret[ITEM].tolist() == cands.sort_values([Q, "rank"])[ITEM].tolist()
    pd.testing.assert_frame_equal(blend(cands, noisy, 1.0, top_k=6)[[Q, ITEM, "rank"]],
                                  rerank(cands, noisy, top_k=6)[[Q, ITEM, "rank"]])
    grid = [0.0, 0.25, 0.5, 0.75, 1.0]
    alpha, best, table = tune_blend(cands, noisy, pairs, top_k=6, grid=grid)
    ends = table.set_index("alpha")["map@25"]
    assert alpha in grid and best >= ends[0.0] and best >= ends[1.0] and best == ends.max()
    assert best == pytest.approx(evaluate(blend(cands, noisy, alpha, top_k=6), pairs)["map@25"])


def test_two_positives_give_two_groups_and_tune_blend_scores_map_at_k():
    """Query q has two positives (1, 2): build_rerank_train makes one group per positive and neither
    positive is ever a negative of either group; tune_blend(k=2) reports MAP@2 as evaluate(k=2) does.

    q's head is 3, 1, 4, 2 and r's (one positive, 5) is 5, 6, 7: without the positives, q's pool is
    {3, 4} and r's {6, 7}, so with 2 negatives every group is fixed whatever the seed. The reranker
    orders q as 1, 2, 4, 3 and r as 6, 7, 5. AP@2 = (sum of precision at hits in the top 2) / min(#pos, 2):
    retrieval (alpha 0): q 1/2 / 2 = 0.25, r 1 -> MAP@2 0.625; reranker (alpha 1): q (1 + 1) / 2 = 1,
    r 0 -> MAP@2 0.5. Recall@1: alpha 0 (0/2 + 1) / 2 = 0.5, alpha 1 (1/2 + 0) / 2 = 0.25. At k = 25
    the same rankings give MAP (0.5 + 1) / 2 = 0.75 and (1 + 1/3) / 2 = 2/3.
    """
    cands = pd.DataFrame({Q: ["q"] * 4 + ["r"] * 3, ITEM: [3, 1, 4, 2, 5, 6, 7],
                          "rank": [1, 2, 3, 4, 1, 2, 3], "score": [.9, .8, .7, .6, .9, .8, .7]})
    pairs = pd.DataFrame({Q: ["q", "r"], "group": [10, 20], "query_text": ["Q?", "R?"], "positives": [(1, 2), (5,)]})
    corpus = pd.DataFrame({ITEM: range(1, 9), "item_text": [f"item {i}" for i in range(1, 9)],
                           "raw_id": [str(i) for i in range(1, 9)]})
    cols = ["group", Q, ITEM, "label", "retrieval_score", "gold_injected"]
    want = [[0, "q", 1, 1, .8, False], [0, "q", 3, 0, .9, False], [0, "q", 4, 0, .7, False],
            [1, "q", 2, 1, .6, False], [1, "q", 3, 0, .9, False], [1, "q", 4, 0, .7, False],
            [2, "r", 5, 1, .9, False], [2, "r", 6, 0, .8, False], [2, "r", 7, 0, .7, False]]
    for seed in (0, 1):
        tr = build_rerank_train(cands, pairs, corpus, n_negatives=2, top_k=4, seed=seed)
        assert tr[cols].values.tolist() == want
        assert tr["item_text"].tolist() == [f"item {i}" for i in tr[ITEM]]
        assert tr["query_text"].tolist() == ["Q?"] * 6 + ["R?"] * 3
    # a wider head: the 3 negatives are sampled, and never a positive of the query, whatever the seed
    wide = pd.DataFrame({Q: "q", ITEM: [3, 1, 4, 2, 5, 6, 7, 8], "rank": range(1, 9), "score": np.linspace(1, .3, 8)})
    drawn = set()
    for seed in range(10):
        tr = build_rerank_train(wide, pairs.iloc[:1], corpus, n_negatives=3, top_k=8, seed=seed)
        assert tr["group"].tolist() == [0] * 4 + [1] * 4 and tr["label"].tolist() == [1, 0, 0, 0] * 2
        assert tr[ITEM].iloc[[0, 4]].tolist() == [1, 2]
        for _, g in tr.groupby("group"):
            negs = set(g[ITEM].iloc[1:])
            assert len(negs) == 3 and negs <= {3, 4, 5, 6, 7, 8} and not negs & {1, 2}
            drawn |= negs
    assert drawn == {3, 4, 5, 6, 7, 8}  # sampling does reach the whole pool

    scores = np.array([0.0, 5.0, 1.0, 4.0, 1.0, 3.0, 2.0])  # q: 1, 2, 4, 3; r: 6, 7, 5
    alpha, best, table = tune_blend(cands, scores, pairs, top_k=4, grid=[0.0, 1.0], k=2)
    assert list(table.columns) == ["alpha", "map@2", "recall@1"]
    assert table.values.tolist() == [[0.0, 0.625, 0.5], [1.0, 0.5, 0.25]] and (alpha, best) == (0.0, 0.625)
    for a, m in zip(table["alpha"], table["map@2"]):
        assert m == evaluate(blend(cands, scores, a, top_k=4), pairs, k=2)["map@2"]
    _, _, at25 = tune_blend(cands, scores, pairs, top_k=4, grid=[0.0, 1.0])
    np.testing.assert_allclose(at25["map@25"], [0.75, 2 / 3])
    # every alpha of the default grid: the table's MAP@2 is evaluate's, and the best is the table's maximum
    alpha, best, table = tune_blend(cands, scores, pairs, top_k=4, k=2)
    assert len(table) == 11 and best == table["map@2"].max() >= 0.625
    for a, m in zip(table["alpha"], table["map@2"]):
        assert m == pytest.approx(evaluate(blend(cands, scores, a, top_k=4), pairs, k=2)["map@2"], abs=1e-12)


# Cross-encoder tests use the full 6-layer all-MiniLM-L6-v2 with the default mean-pooled head.
# Its [CLS] (what a sequence-classification head reads) is input-independent until the last
# layer, so with head="cls" a copy cut to 2 layers scores every pair alike (see
# test_truncated_minilm_cls_is_constant); the mean head does not have that problem.
CE_MAX_LENGTH = 40  # > every synthetic misconception name + room for the question's construct


@pytest.fixture(scope="module")
def encoder():
    return resolve_model(None)


def _held_out_split(pairs):
    """The last question of every misconception is held out: (train pairs, held-out pairs)."""
    held = pairs.groupby(pairs["positives"].map(lambda p: p[0])).tail(1)[Q]
    return pairs[~pairs[Q].isin(held)], pairs[pairs[Q].isin(held)]


@pytest.fixture(scope="module")
def ce_model(encoder):
    from utils.rerank.cross_encoder import load_cross_encoder

    return load_cross_encoder(encoder, max_length=256)


def test_pair_truncation_keeps_candidate(ce_model):
    """A 300-token question at max_length 256: the question is cut, the misconception name never."""
    from utils.rerank.cross_encoder import pair_token_ids

    ce, tok = ce_model, ce_model.tokenizer
    name = "Believes a negative number multiplied by a negative number is negative"
    query = " ".join(["Calculate the value of -3 x -4 and explain the working"] * 40)
    q_ids = tok(query, add_special_tokens=False)["input_ids"]
    n_ids = tok(name, add_special_tokens=False)["input_ids"]
    assert len(q_ids) >= 300 and 10 <= len(n_ids) <= 20
    ids = pair_token_ids(ce, query, name)
    cls, sep = tok.cls_token_id, tok.sep_token_id
    assert len(ids) == 256 and ids[0] == cls and ids[-1] == sep
    first_sep = ids.index(sep)
    assert ids[first_sep + 1:-1] == n_ids  # the candidate survives whole, after the (cut) query
    assert ids[1:first_sep] == q_ids[: first_sep - 1] and first_sep - 1 == 256 - 3 - len(n_ids)
    # a longer query only loses more of itself: the candidate tokens stay the same
    assert pair_token_ids(ce, query + " extra words", name)[first_sep + 1:] == ids[first_sep + 1:]


def test_listwise_loss_is_group_softmax_ce(eedi, ce_model):
    """The listwise loss is CE over each group's [gold, negatives] logits, gold first, nothing else."""
    from utils.rerank.cross_encoder import _group_ce_loss, _listwise_dataset

    pairs, mis, cands = eedi
    tr = build_rerank_train(cands, pairs.iloc[:2], mis, n_negatives=3, top_k=8, seed=0)
    data = _listwise_dataset(tr, seed=0)
    cols = ["query", "positive", "negative_1", "negative_2", "negative_3"]
    assert list(data) == cols and len(data["query"]) == 2
    ce_model.eval()  # no dropout: the loss's forward and predict() must agree
    loss_fn = _group_ce_loss(ce_model)
    with torch.no_grad():
        loss = loss_fn([data[c] for c in cols], labels=None)
        again = loss_fn([data[c] for c in cols], labels=None)  # every pair now comes from the token cache
    assert again.item() == pytest.approx(loss.item(), abs=1e-6)
    scores = np.stack([score_cross_encoder("", data["query"], data[c], model=ce_model) for c in cols[1:]], axis=1)
    expected = torch.nn.functional.cross_entropy(torch.tensor(scores), torch.zeros(2, dtype=torch.long))
    assert np.ptp(scores, axis=1).min() > 1e-3  # the full model does tell a group's candidates apart
    assert loss.item() == pytest.approx(expected.item(), abs=1e-4)


def test_pair_features_equal_preprocess(ce_model):
    """Cached, re-padded pair features are exactly what sentence-transformers' preprocess gives."""
    from utils.rerank.cross_encoder import PairFeatures

    feats = PairFeatures(ce_model)
    long_q = "Construct: " + "fractions and decimals " * 80  # longer than max_length: truncated the same way
    first = [("what is 2+2", "adds the digits"), (long_q, "thinks a half is 0.2"), ("q", "m")]
    second = [("q", "m"), ("another question", "a new misconception name"), ("what is 2+2", "adds the digits"), ("q", "m")]
    for batch in (first, second):  # the second mixes cached, new and repeated pairs
        got, want = feats(batch), ce_model.preprocess(batch)
        assert set(got) == set(want)
        for k, v in want.items():
            if torch.is_tensor(v):
                assert got[k].dtype == v.dtype and torch.equal(got[k], v), k
            else:
                assert got[k] == v
    assert len(feats.rows) == 4


def test_item_bias_fit_and_loss(eedi, ce_model):
    """fit_item_bias: the L2-penalised bias-only optimum (gradient zero, checked by hand); the loss is
    CE over logit + b[misconception name]."""
    from utils.rerank.cross_encoder import _group_ce_loss, _listwise_dataset, fit_item_bias

    # hand-made groups: "a" is gold twice and a negative once, "c" only a negative
    data = {"query": ["q1", "q2", "q3"], "positive": ["a", "a", "b"], "negative_1": ["b", "c", "a"],
            "negative_2": ["c", "c", "c"]}
    b = fit_item_bias(data, l2=0.5)
    assert set(b) == {"a", "b", "c"} and b["a"] > b["b"] > b["c"]
    ids = [["a", "b", "c"], ["a", "c", "c"], ["b", "a", "c"]]
    grad = {n: 2 * 0.5 * b[n] for n in b}  # d/db of l2 * b^2, plus softmax(p) - onehot per group
    for row in ids:
        p = np.exp([b[n] for n in row])
        p /= p.sum()
        for j, n in enumerate(row):
            grad[n] += p[j] - (j == 0)
    assert max(abs(g) for g in grad.values()) < 1e-6, grad
    assert fit_item_bias(data, l2=5.0)["a"] < b["a"]  # a stronger penalty shrinks the bias

    pairs, mis, cands = eedi
    tr = build_rerank_train(cands, pairs.iloc[:3], mis, n_negatives=3, top_k=8, seed=0)
    data = _listwise_dataset(tr, seed=0)
    cols = ["query", "positive", "negative_1", "negative_2", "negative_3"]
    names = tr["item_text"].unique()
    bias = dict(zip(names, np.linspace(-2.0, 3.0, len(names))))
    ce_model.eval()
    with torch.no_grad():
        loss = _group_ce_loss(ce_model, item_bias=bias)([data[c] for c in cols])
    logits = np.stack([score_cross_encoder("", data["query"], data[c], model=ce_model) for c in cols[1:]], axis=1)
    offsets = np.array([[bias[data[c][i]] for c in cols[1:]] for i in range(3)])
    expected = torch.nn.functional.cross_entropy(torch.tensor(logits + offsets), torch.zeros(3, dtype=torch.long))
    assert loss.item() == pytest.approx(expected.item(), abs=1e-4)
    plain = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.zeros(3, dtype=torch.long)).item()
    assert abs(expected.item() - plain) > 1e-2  # the biases do matter here


def test_item_bias_keeps_the_model_from_learning_which_item_is_gold(eedi, tmp_path):
    """One misconception is gold in every training group: trained plainly, the cross-encoder scores it
    far above the others for new questions; with item_bias_l2 the fitted bias explains that prior and
    the saved model (scored without the bias) prefers it much less."""
    pairs, mis, cands = eedi
    path = make_tiny_encoder(tmp_path / "minilm2", num_layers=2)
    names = mis["item_text"].tolist()
    popular, others = names[0], names[1:]
    rng = np.random.default_rng(0)
    queries = pairs["query_text"].drop_duplicates().tolist()
    train_q, new_q = queries[:16] * 2, queries[16:]  # two groups per training question
    rows = []
    for g, q in enumerate(train_q):  # half the groups have the popular gold, half another one
        gold = popular if g % 2 else others[g % len(others)]
        rest = [n for n in names if n != gold]
        rows.append((g, q, gold, 1))
        rows += [(g, q, rest[j], 0) for j in rng.choice(len(rest), size=3, replace=False)]
    tr = pd.DataFrame(rows, columns=["group", "query_text", "item_text", "label"]).assign(
        query_id=lambda d: d["group"].astype(str))

    def gold_preference(l2: float | None) -> tuple[float, dict]:
        out = train_cross_encoder(tr, path, tmp_path / f"ce_{l2}", epochs=4, lr=3e-4, batch_size=8,
                                  max_length=CE_MAX_LENGTH, loss="listwise", seed=0, item_bias_l2=l2)
        pop = score_cross_encoder(out, new_q, [popular] * len(new_q), max_length=CE_MAX_LENGTH)
        rest = score_cross_encoder(out, [q for q in new_q for _ in range(5)], [o for _ in new_q for o in others[:5]],
                                   max_length=CE_MAX_LENGTH)
        return float(pop.mean() - rest.mean()), json.loads((Path(out) / "train_log.json").read_text())

    plain, plain_log = gold_preference(None)
    debiased, log = gold_preference(0.1)
    assert "item_bias" not in plain_log and log["item_bias_l2"] == 0.1
    assert next(iter(log["item_bias"])) == popular and log["item_bias"][popular] > 1.0  # the bias took the prior
    assert plain > 2.0 and debiased < 0.5 * plain, (plain, debiased)
    with pytest.raises(ValueError, match="item_bias_l2 needs the listwise loss"):
        train_cross_encoder(tr, path, tmp_path / "pw", loss="pointwise", item_bias_l2=0.1)


def test_truncated_minilm_cls_is_constant(tmp_path, caplog):
    """Root cause of a listwise loss stuck at ln(4): a 2-layer MiniLM copy's [CLS] gives all pairs one logit.

    The mean-pooled head on the same cut copy does tell pairs apart, which is why it is the default.
    """
    from utils.rerank.cross_encoder import _check_logits_vary, load_cross_encoder

    pairs, mis, _ = synthetic_task(seed=0)
    qs, ds = pairs["query_text"].tolist()[:8], mis["item_text"].tolist()
    path = make_tiny_encoder(tmp_path / "minilm2", num_layers=2)
    cut = load_cross_encoder(path, max_length=CE_MAX_LENGTH, head="cls")
    with caplog.at_level("WARNING", logger="utils.rerank.cross_encoder"):
        assert _check_logits_vary(cut, qs, ds) < 1e-3
    assert "same logit to every pair" in caplog.text
    assert _check_logits_vary(load_cross_encoder(path, max_length=CE_MAX_LENGTH, head="mean"), qs, ds) > 1e-3


def test_mean_head_cut_layers_and_group_cap_round_trip(eedi, encoder, tmp_path):
    """num_layers cuts the saved model, max_groups caps the groups, and the saved folder reloads as it is."""
    from utils.rerank.cross_encoder import is_cross_encoder, load_cross_encoder

    pairs, mis, cands = eedi
    tr = build_rerank_train(cands, pairs, mis, n_negatives=3, top_k=8, seed=0)
    assert tr["group"].nunique() > 5
    out = train_cross_encoder(tr, encoder, tmp_path / "ce", epochs=1, lr=1e-4, batch_size=5, max_length=CE_MAX_LENGTH,
                              loss="listwise", seed=0, num_layers=2, max_groups=5)
    log = json.loads((Path(out) / "train_log.json").read_text())
    assert log["n_rows"] == 5 * 4 and len(log["losses"]) == 1 and log["head"] == "mean"
    assert json.loads((Path(out) / "config.json").read_text())["num_hidden_layers"] == 2
    assert is_cross_encoder(out) and not is_cross_encoder(encoder)
    head = build_rerank_candidates(cands, pairs, mis, top_k=4)
    a = score_cross_encoder(out, head["query_text"], head["item_text"], max_length=CE_MAX_LENGTH)
    # a trained folder keeps its own head and depth whatever head/num_layers are asked for
    again = load_cross_encoder(out, max_length=CE_MAX_LENGTH, head="mean", num_layers=1)
    assert len(again.model.encoder.layer) == 2
    b = score_cross_encoder("", head["query_text"], head["item_text"], model=again)
    assert np.std(a) > 1e-4 and np.abs(a - b).max() < 1e-5
    with pytest.raises(ValueError, match="unknown cross-encoder head"):
        load_cross_encoder(encoder, head="max")


def test_cross_encoder_pointwise_learns(eedi, encoder, tmp_path):
    pairs, mis, cands = eedi
    train_pairs, test_pairs = _held_out_split(pairs)
    tr = build_rerank_train(cands, train_pairs, mis, n_negatives=3, top_k=8, seed=0)
    test_cands = cands[cands[Q].isin(test_pairs[Q])]
    head = build_rerank_candidates(test_cands, test_pairs, mis, top_k=8)
    before = score_cross_encoder(encoder, head["query_text"], head["item_text"], max_length=CE_MAX_LENGTH)
    out = train_cross_encoder(tr, encoder, tmp_path / "ce", epochs=2, lr=3e-4, batch_size=16,
                              max_length=CE_MAX_LENGTH, loss="pointwise", seed=0)
    after = score_cross_encoder(out, head["query_text"], head["item_text"], max_length=CE_MAX_LENGTH)
    log = json.loads((Path(out) / "train_log.json").read_text())
    losses = log["losses"]
    assert log["initial_logit_std"] > 1e-3
    assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.05, losses
    # held-out questions (never trained on): the reranked MAP@25 must rise well above random order
    map_before = evaluate(rerank(test_cands, before, top_k=8), test_pairs)["map@25"]
    map_after = evaluate(rerank(test_cands, after, top_k=8), test_pairs)["map@25"]
    assert map_after > map_before + 0.2 and map_after > 0.5, (map_before, map_after)
    assert not any(p.name.startswith(".") for p in Path(out).parent.iterdir())  # atomic: no temp dirs left


def test_cross_encoder_listwise_loss_drops(eedi, encoder, tmp_path):
    pairs, mis, cands = eedi
    train_pairs, _ = _held_out_split(pairs)
    tr = build_rerank_train(cands, train_pairs, mis, n_negatives=3, top_k=8, seed=0)
    out = train_cross_encoder(tr, encoder, tmp_path / "ce", epochs=2, lr=5e-4, batch_size=3,
                              max_length=CE_MAX_LENGTH, loss="listwise", seed=0)
    losses = json.loads((Path(out) / "train_log.json").read_text())["losses"]
    assert len(losses) == 2 * 6  # 18 training groups, 3 per step, 2 epochs
    # starts at chance (ln 4: 1 gold among 4 candidates) and must end clearly below it
    assert abs(np.mean(losses[:3]) - np.log(4)) < 0.1, losses
    assert np.mean(losses[-3:]) < np.log(4) - 0.3 and np.mean(losses[6:]) < np.mean(losses[:6]) - 0.2, losses
