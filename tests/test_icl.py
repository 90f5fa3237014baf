import pandas as pd

from tiny_models import synthetic_eedi
from utils.retrieval.icl import DEFAULT_TASK, build_icl_queries, format_icl_query, pick_examples


def _pairs_two_answers():
    """synthetic_eedi in the task contract (``query_id``, ``group``, ``positives``; corpus ``item_id``,
    ``item_text``) with a second wrong answer (C) per question, so exclusion must be by ``group``."""
    pairs, mis, _ = synthetic_eedi()
    pairs["ConstructId"] = pairs["ConstructName"].factorize()[0]
    pairs["query_id"] = pairs["QuestionId_Answer"]
    pairs["group"] = pairs["QuestionId"]
    pairs["positives"] = [(int(m),) for m in pairs["MisconceptionId"]]
    pairs = pairs.drop(columns=["QuestionId_Answer", "QuestionId", "MisconceptionId"])
    corpus = pd.DataFrame({"item_id": mis["MisconceptionId"].astype(int), "item_text": mis["MisconceptionName"],
                           "raw_id": mis["MisconceptionId"].astype(str)})
    c = pairs.copy()
    c["Answer"] = "C"
    c["query_id"] = c["group"].astype(str) + "_C"
    c["query_text"] = c["query_text"] + " (C)"
    return pd.concat([pairs, c], ignore_index=True), corpus


def test_format_matches_flagembedding_icl_embedder():
    # ICLLLMEmbedder: examples "<instruct>{}\n<query>{}\n<response>{}" joined by "\n\n", then "\n\n",
    # then "<instruct>{}\n<query>{}" + suffix "\n<response>".
    got = format_icl_query("Q", [("q1", "r1"), ("q2", "r2")], task="T")
    assert got == "<instruct>T\n<query>q1\n<response>r1\n\n<instruct>T\n<query>q2\n<response>r2\n\n<instruct>T\n<query>Q\n<response>"
    assert format_icl_query("Q", [], task="T") == "<instruct>T\n<query>Q\n<response>"


def test_prompt_never_contains_its_own_question_and_prefers_same_construct():
    pairs, mis = _pairs_two_answers()
    picks = pick_examples(pairs, pairs, k=2, seed=0)
    qid, construct = pairs["group"].to_numpy(), pairs["ConstructId"].to_numpy()
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
    b = dict(zip(shuffled["query_id"], build_icl_queries(shuffled, pairs, mis, k=3, seed=1)))
    assert a == [b[k] for k in pairs["query_id"]]
    assert a != build_icl_queries(pairs, pairs, mis, k=3, seed=2)
    no_pref = pick_examples(pairs, pairs, k=3, seed=1, same_subject=False)
    assert no_pref != pick_examples(pairs, pairs, k=3, seed=1)


def test_unlabelled_pool_rows_are_never_examples():
    pairs, mis = _pairs_two_answers()
    pool = pairs.copy()
    pool["positives"] = [() if a == "C" else p for a, p in zip(pool["Answer"], pool["positives"])]
    for idx in pick_examples(pairs, pool, k=4):
        assert all(pool["Answer"].iloc[j] == "B" for j in idx)
    texts = build_icl_queries(pairs.head(2), pool, mis, k=0)
    assert texts[0] == format_icl_query(pairs["query_text"].iloc[0], [])


def test_example_response_is_the_first_positive():
    """A pool query with two positives shows the text of its first one as the example's response."""
    pairs, corpus = _pairs_two_answers()
    corpus = pd.concat([corpus, pd.DataFrame({"item_id": [9999], "item_text": ["EXTRA"], "raw_id": ["9999"]})],
                       ignore_index=True)
    names = dict(zip(corpus["item_id"], corpus["item_text"]))
    pool = pairs.copy()
    pool["positives"] = [(9999, p[0]) for p in pool["positives"]]  # first positive: EXTRA, then the own one
    picks = pick_examples(pairs.head(3), pool, k=3)
    texts = build_icl_queries(pairs.head(3), pool, corpus, k=3)
    for row, (t, idx) in enumerate(zip(texts, picks)):
        assert t == format_icl_query(pairs["query_text"].iloc[row], [(pool["query_text"].iloc[j], "EXTRA") for j in idx])
        assert t.count("<response>EXTRA\n") == 3
        assert not any(f"<response>{names[pool['positives'].iloc[j][1]]}" in t for j in idx)
