"""In-context-learning (ICL) queries in the bge-en-icl format, with examples from labelled training pairs.

The text matches FlagEmbedding's ``ICLLLMEmbedder`` (inference/embedder/decoder_only/icl.py):
each example is ``examples_instruction_format = "<instruct>{}\\n<query>{}\\n<response>{}"``,
examples are joined by a blank line and followed by one, then the query as
``query_instruction_format = "<instruct>{}\\n<query>{}"`` plus ``suffix = "\\n<response>"``.
Passages get no examples and no instruction.

Long prompts: with ``k`` examples the query is several times longer than the bare one; train
and encode with ``max_query_length`` >= 512. The pipeline cuts on the left in training and encoding
alike (``train.truncation_side``, see ``RunContext.truncation_side``), so any truncation drops the
oldest example rather than the query and its ``<response>`` slot.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import pandas as pd

# the generic instruction; a task module gives its own (``icl_task``), ``embedder.icl.task`` overrides both
DEFAULT_TASK = "Given a query, retrieve the passage that answers it."
EXAMPLE_FORMAT = "<instruct>{}\n<query>{}\n<response>{}"
QUERY_FORMAT = "<instruct>{}\n<query>{}"
SUFFIX = "\n<response>"


def format_icl_query(query: str, examples: Sequence[tuple[str, str]], task: str = DEFAULT_TASK) -> str:
    """One query with its ``(example query, example response)`` pairs, exactly as FlagEmbedding builds it."""
    prefix = "\n\n".join(EXAMPLE_FORMAT.format(task, q, r) for q, r in examples)
    prefix = prefix + "\n\n" if prefix else ""
    return prefix + QUERY_FORMAT.format(task, query) + SUFFIX


def _query_seed(seed: int, key: str) -> int:
    """Per-query seed: a query gets the same examples whatever the order or subset of ``pairs``."""
    return int.from_bytes(hashlib.sha1(f"{seed}:{key}".encode()).digest()[:8], "little")


def pick_examples(
    pairs: pd.DataFrame,
    example_pool: pd.DataFrame,
    k: int = 3,
    seed: int = 0,
    same_subject: bool = True,
) -> list[list[int]]:
    """Row positions in ``example_pool`` of ``k`` examples per pair, never from the pair's own ``group``.

    With ``same_subject`` examples come first from the same ``ConstructId`` (or ``ConstructName``),
    then the same ``SubjectId`` (or ``SubjectName``), then anywhere — random within each tier.
    """
    pool = example_pool.reset_index(drop=True)
    labelled = np.array([len(g) > 0 for g in pool["positives"]], bool) if "positives" in pool else np.ones(len(pool), bool)
    qids = pool["group"].to_numpy()
    tier_keys = []
    for options in (("ConstructId", "ConstructName"), ("SubjectId", "SubjectName")) if same_subject else ():
        col = next((c for c in options if c in pool.columns and c in pairs.columns), None)
        if col is not None:
            tier_keys.append(col)
    out: list[list[int]] = []
    for row in pairs.to_dict("records"):
        rng = np.random.default_rng(_query_seed(seed, str(row.get("query_id", row["group"]))))
        ok = labelled & (qids != row["group"])
        order = rng.permutation(np.flatnonzero(ok))
        if tier_keys and len(order):
            # rank by tier (0 = same construct, 1 = same subject, 2 = other); stable keeps the shuffle within a tier
            tier = np.full(len(order), len(tier_keys))
            for t in reversed(range(len(tier_keys))):
                col = tier_keys[t]
                tier[pool[col].to_numpy()[order] == row[col]] = t
            order = order[np.argsort(tier, kind="stable")]
        out.append(order[:k].tolist())
    return out


def build_icl_queries(
    pairs: pd.DataFrame,
    example_pool: pd.DataFrame,
    corpus: pd.DataFrame,
    k: int = 3,
    task: str = DEFAULT_TASK,
    seed: int = 0,
    same_subject: bool = True,
) -> list[str]:
    """ICL query text for every row of ``pairs`` (its ``query_text``), examples from labelled ``example_pool``.

    Example query = the example's ``query_text``; example response = the text of its (first) positive.
    ``k=0`` gives the bare instructed query (``<instruct>…<query>…<response>``).
    """
    names = dict(zip(corpus["item_id"].astype(int), corpus["item_text"]))
    pool = example_pool.reset_index(drop=True)
    picks = pick_examples(pairs, pool, k, seed, same_subject) if k > 0 else [[] for _ in range(len(pairs))]
    texts = pool["query_text"].tolist()
    mids = [g[0] if len(g) else None for g in pool["positives"]]  # unlabelled rows are never picked
    return [
        format_icl_query(q, [(texts[i], names[int(mids[i])]) for i in idx], task)
        for q, idx in zip(pairs["query_text"].tolist(), picks)
    ]


def with_icl_queries(pairs: pd.DataFrame, example_pool: pd.DataFrame, corpus: pd.DataFrame, **kw) -> pd.DataFrame:
    """A copy of ``pairs`` whose ``query_text`` is the ICL query (feed it to mining / encoding)."""
    out = pairs.copy()
    out["query_text"] = build_icl_queries(pairs, example_pool, corpus, **kw)
    return out
