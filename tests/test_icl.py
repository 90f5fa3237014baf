import pandas as pd

from tiny_models import synthetic_eedi
from utils.retrieval.icl import DEFAULT_TASK, build_icl_queries, format_icl_query, pick_examples


def _pairs_two_answers():
    """synthetic_eedi with a second wrong answer (C) per question, so exclusion must be by QuestionId."""
    pairs, mis, _ = synthetic_eedi()
    pairs["ConstructId"] = pairs["ConstructName"].factorize()[0]
    c = pairs.copy()
    c["Answer"] = "C"
    c["QuestionId_Answer"] = c["QuestionId"].astype(str) + "_C"
    c["query_text"] = c["query_text"] + " (C)"
    return pd.concat([pairs, c], ignore_index=True), mis


def test_format_matches_flagembedding_icl_embedder():
    # ICLLLMEmbedder: examples "<instruct>{}\n<query>{}\n<response>{}" joined by "\n\n", then "\n\n",
    # then "<instruct>{}\n<query>{}" + suffix "\n<response>".
    got = format_icl_query("Q", [("q1", "r1"), ("q2", "r2")], task="T")
    assert got == "<instruct>T\n<query>q1\n<response>r1\n\n<instruct>T\n<query>q2\n<response>r2\n\n<instruct>T\n<query>Q\n<response>"
    assert format_icl_query("Q", [], task="T") == "<instruct>T\n<query>Q\n<response>"


def test_prompt_never_contains_its_own_question_and_prefers_same_construct():
    pairs, mis = _pairs_two_answers()
    picks = pick_examples(pairs, pairs, k=2, seed=0)
    qid, construct = pairs["QuestionId"].to_numpy(), pairs["ConstructId"].to_numpy()
    for i, idx in enumerate(picks):
        assert len(idx) == 2
        assert all(qid[j] != qid[i] for j in idx)
        assert all(construct[j] == construct[i] for j in idx)  # 2 other questions share each construct
    texts = build_icl_queries(pairs, pairs, mis, k=3)
    for t, q in zip(texts, pairs["QuestionText"]):
        assert t.count(q) == 1 and t.endswith("\n<response>") and t.count("<instruct>" + DEFAULT_TASK) == 4


def test_examples_are_seeded_and_order_independent():
    pairs, mis = _pairs_two_answers()
    a = build_icl_queries(pairs, pairs, mis, k=3, seed=1)
    shuffled = pairs.sample(frac=1.0, random_state=0)
    b = dict(zip(shuffled["QuestionId_Answer"], build_icl_queries(shuffled, pairs, mis, k=3, seed=1)))
    assert a == [b[k] for k in pairs["QuestionId_Answer"]]
    assert a != build_icl_queries(pairs, pairs, mis, k=3, seed=2)
    no_pref = pick_examples(pairs, pairs, k=3, seed=1, same_subject=False)
    assert no_pref != pick_examples(pairs, pairs, k=3, seed=1)


def test_unlabelled_pool_rows_are_never_examples():
    pairs, mis = _pairs_two_answers()
    pool = pairs.copy()
    pool.loc[pool["Answer"] == "C", "MisconceptionId"] = pd.NA
    for idx in pick_examples(pairs, pool, k=4):
        assert all(pool["Answer"].iloc[j] == "B" for j in idx)
    texts = build_icl_queries(pairs.head(2), pool, mis, k=0)
    assert texts[0] == format_icl_query(pairs["query_text"].iloc[0], [])
