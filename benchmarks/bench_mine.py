"""Hard-negative mining: utils (Embedder.encode + mining.mine_hard_negatives) vs
sentence_transformers.util.mine_hard_negatives, same model, all labelled pairs vs the corpus.

    python benchmarks/bench_mine.py                                    # 3,062 pairs x 2,587 misconceptions (Eedi)
    python benchmarks/bench_mine.py --limit 16 --corpus-limit 120      # CPU smoke run

Timed per library: encoding included (load excluded) and excluded, each after a warm-up run of
its whole path on 8 queries (CUDA loads kernels lazily: the first top-k alone took ~0.4 s).
- ours: ``Embedder.encode`` (queries + corpus) | ``mine_hard_negatives`` + ``to_flag_records``.
- sentence-transformers: a first call with an empty ``cache_folder`` (encodes; the two
  ``np.save`` of the cache are inside, a few ms) | a second call that finds its cache (no
  encoding). ``sampling_strategy="random"``, ``output_format="n-tuple"``, ``use_faiss`` where
  faiss is installed (ours then uses faiss too; without faiss both use torch).

Window semantics. Ours: 1-based ranks ``[range_min, range_max)`` of the *full* ranking, the
positives dropped afterwards (default 2..99). sentence-transformers: 0-based positions
``[range_min, range_max)`` of the ranking *with the positives removed first*. So ours
``[2, 100)`` equals ST ``[1, 99)`` whenever the positive ranks >= 100 (98 candidates each); when the
positive is at rank 1 ours holds one more item at the top and one fewer at the bottom, and when
it sits inside the window ours has 97 items, ST 98. The candidate pools (before sampling) are
compared by Jaccard: "raw" (each library's semantics, each library's own embeddings), "aligned"
(our embeddings' ranking cut with ST's semantics vs ST's pool: must be 1.0 up to float ties), and
"raw where the positive ranks beyond the window" (must be 1.0 as well). ST's pool is read from a
third cached call with ``sampling_strategy="top"`` and ``num_negatives`` = the window size.

Queries come from the task's tables (``--task``, default eedi: one positive per query). A query
with several positives is one ST row per positive (ST merges rows of one query text into a
multi-positive query); ours excludes all of them; "the positive's rank" is its best-ranked one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (Timer, add_common_args, has_module, load_data, machine_info, pick_device, ratio,  # noqa: E402
                     resolve_model_arg, subset_corpus, write_results)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap, "bench_mine")
    ap.add_argument("--corpus-limit", type=int, default=None, help="corpus items kept (positives + random); default all")
    ap.add_argument("--range-min", type=int, default=2, help="ours: first 1-based rank kept")
    ap.add_argument("--range-max", type=int, default=100, help="ours: first 1-based rank dropped")
    ap.add_argument("-n", "--n-neg", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--dtype", default=None, help="ours: float32/bfloat16 (default: bf16 on GPU, fp32 on CPU)")
    ap.add_argument("--st-dtype", default="float32", help="sentence-transformers model dtype (default its fp32)")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from utils.retrieval.embed import Embedder, default_dtype
    from utils.retrieval.mining import mine_hard_negatives, to_flag_records
    from utils.retrieval.recall import search_backend, topk

    device = pick_device(args.device)
    model = resolve_model_arg(args.model)
    data, _, labelled = load_data(args.data_dir, args.task)
    if args.limit:
        labelled = labelled.iloc[: args.limit].reset_index(drop=True)
    corpus = subset_corpus(data.corpus, labelled["positives"], args.corpus_limit, args.seed)
    names = corpus["item_text"].tolist()
    row_of = {int(m): i for i, m in enumerate(corpus["item_id"].astype(int))}
    queries = labelled["query_text"].tolist()
    pos_rows = [[row_of[int(m)] for m in pos] for pos in labelled["positives"]]  # corpus rows of each query's positives
    rmin, rmax, n = args.range_min, args.range_max, args.n_neg
    notes: list[str] = []
    result: dict = {"benchmark": "mine", "machine": machine_info(device), "model": model, "args": vars(args),
                    "task": args.task, "n_positives": sum(map(len, pos_rows)),
                    "n_queries": len(queries), "n_corpus": len(names), "window_ours": [rmin, rmax],
                    "target": "utils, encoding included, <= 1.0 s on H100 for 3,062 pairs"}

    # ---- ours -------------------------------------------------------------------------------
    dtype = getattr(torch, args.dtype) if args.dtype else default_dtype(device)
    emb = Embedder(model, device=device, dtype=dtype, max_length=args.max_length, pooling="mean", normalize=True)
    # warm-up of the whole path on a few queries (CUDA loads the matmul / top-k kernels lazily)
    wq = emb.encode(queries[:8], batch_size=args.batch_size, show_progress=False)
    wc = emb.encode(names, batch_size=args.batch_size, show_progress=False)
    mine_hard_negatives(wq, wc, pos_rows[:8], rmin, rmax, n, seed=args.seed)
    with Timer(device) as t_enc:
        q = emb.encode(queries, batch_size=args.batch_size, show_progress=False)
        c = emb.encode(names, batch_size=args.batch_size, show_progress=False)
    with Timer(device) as t_mine:
        negs, neg_s, pos_s = mine_hard_negatives(q, c, pos_rows, rmin, rmax, n, seed=args.seed)
        records = to_flag_records(labelled, corpus, negs, neg_s, pos_s)
    ours = {"dtype": str(dtype).replace("torch.", ""), "backend": search_backend(),
            "seconds_encode": t_enc.s, "seconds_mine": t_mine.s, "seconds_total": t_enc.s + t_mine.s,
            "n_records": len(records)}
    result["ours"] = ours
    del emb

    # our candidate pools (exactly the window mine_hard_negatives samples from) and the best positive rank
    depth = min(rmax + 1, len(names))
    _, idx = topk(q, c, depth)
    our_pool = [set(idx[i, rmin - 1: rmax - 1].tolist()) - set(pos_rows[i]) for i in range(len(queries))]
    pos_rank = np.array([(np.flatnonzero(np.isin(idx[i], pos_rows[i]))[0] + 1) if np.isin(idx[i], pos_rows[i]).any()
                         else 10**9 for i in range(len(queries))])
    assert all(set(nn) <= our_pool[i] for i, nn in enumerate(negs) if len(our_pool[i]) >= n), "sampled outside window"
    # the same ranking cut with sentence-transformers' semantics (positives removed first)
    st_min, st_max = rmin - 1, rmax - 1
    aligned_pool = []
    for i in range(len(queries)):
        lst = [j for j in idx[i].tolist() if j not in pos_rows[i]]
        aligned_pool.append(set(lst[st_min:st_max]))

    # ---- sentence-transformers ----------------------------------------------------------------
    if not has_module("datasets"):
        notes.append("sentence-transformers' mine_hard_negatives skipped: the `datasets` package is missing "
                     "(carry it as a wheel, see benchmarks/README.md)")
        result["sentence_transformers"] = None
    else:
        from datasets import Dataset
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.util import mine_hard_negatives as st_mine

        use_faiss = has_module("faiss")
        st_model = SentenceTransformer(model, device=device, model_kwargs={"dtype": getattr(torch, args.st_dtype)})
        st_model.max_seq_length = args.max_length
        # one row per (query, positive); ST merges the rows of one query into a multi-positive query
        ds = Dataset.from_dict({"query": [queries[i] for i, rows in enumerate(pos_rows) for _ in rows],
                                "positive": [names[r] for rows in pos_rows for r in rows]})
        kw = dict(corpus=names, range_min=st_min, range_max=st_max, batch_size=args.batch_size, use_faiss=use_faiss,
                  output_format="n-tuple", verbose=False)
        with tempfile.TemporaryDirectory() as warm_cache:  # warm-up of the same path on a few queries
            st_mine(ds.select(range(8)), st_model, num_negatives=n, sampling_strategy="random", cache_folder=warm_cache,
                    **kw)
        with tempfile.TemporaryDirectory() as cache:
            with Timer(device) as t_st_full:
                out = st_mine(ds, st_model, num_negatives=n, sampling_strategy="random", cache_folder=cache, **kw)
            with Timer(device) as t_st_cached:
                st_mine(ds, st_model, num_negatives=n, sampling_strategy="random", cache_folder=cache, **kw)
            pools = st_mine(ds, st_model, num_negatives=st_max - st_min, sampling_strategy="top", cache_folder=cache, **kw)
        st = {"dtype": args.st_dtype, "use_faiss": use_faiss, "window_st": [st_min, st_max],
              "seconds_total": t_st_full.s, "seconds_mine": t_st_cached.s,
              "seconds_encode": t_st_full.s - t_st_cached.s, "n_rows": len(out)}
        result["sentence_transformers"] = st

        # pools: map texts back to corpus rows (a name may occur twice: both rows count)
        rows_of_name: dict[str, list[int]] = {}
        for i, nm in enumerate(names):
            rows_of_name.setdefault(nm, []).append(i)
        qrow = {}
        for i, qt in enumerate(queries):
            qrow.setdefault(qt, i)
        neg_cols = [col for col in pools.column_names if col.startswith("negative_")]
        st_pool: dict[int, set] = {}
        for rec in pools:
            i = qrow[rec["query"]]
            st_pool[i] = {r for col in neg_cols for r in rows_of_name[rec[col]]}
        dup_q = len(queries) - len(qrow)
        if dup_q:  # (several positives of one query are merged by design, not counted here)
            notes.append(f"{dup_q} duplicated query texts: sentence-transformers merges them (multi-positive)")

        def jac(a, b):
            return len(a & b) / max(1, len(a | b))

        common = [i for i in range(len(queries)) if i in st_pool]
        raw = np.array([jac(our_pool[i], st_pool[i]) for i in common])
        aligned = np.array([jac(aligned_pool[i], st_pool[i]) for i in common])
        beyond = np.array([jac(our_pool[i], st_pool[i]) for i in common if pos_rank[i] >= rmax])
        st["pool_jaccard"] = {
            "queries_compared": len(common),
            "raw_mean": float(raw.mean()) if len(raw) else None,
            "raw_identical_share": float((raw == 1).mean()) if len(raw) else None,
            "aligned_mean": float(aligned.mean()) if len(aligned) else None,
            "aligned_min": float(aligned.min()) if len(aligned) else None,
            "aligned_identical_share": float((aligned == 1).mean()) if len(aligned) else None,
            "positive_beyond_window_queries": int(len(beyond)),
            "positive_beyond_window_mean": float(beyond.mean()) if len(beyond) else None,
            "positive_at_rank1_queries": int((pos_rank[common] == 1).sum()),
            "positive_inside_window_queries": int(((pos_rank[common] >= rmin) & (pos_rank[common] < rmax)).sum()),
        }
        if args.dtype not in (None, "float32") or (device.startswith("cuda") and args.dtype is None):
            notes.append(f"ours encodes in {ours['dtype']}, ST in {args.st_dtype}: near-tie swaps at the window "
                         "edges lower the aligned Jaccard slightly; pass --dtype float32 for an exact check")

    st = result.get("sentence_transformers")
    pj = (st or {}).get("pool_jaccard", {})
    row = {
        "pairs": len(queries), "corpus": len(names), "window ours/ST": f"[{rmin},{rmax}) / [{rmin - 1},{rmax - 1})",
        "ours s (enc incl)": ours["seconds_total"], "ST s (enc incl)": st["seconds_total"] if st else None,
        "ours/ST (enc incl)": ratio(ours["seconds_total"], st["seconds_total"]) if st else None,
        "ours s (enc excl)": ours["seconds_mine"], "ST s (enc excl)": st["seconds_mine"] if st else None,
        "ours/ST (enc excl)": ratio(ours["seconds_mine"], st["seconds_mine"]) if st else None,
        "pool Jaccard raw": pj.get("raw_mean"), "pool Jaccard aligned": pj.get("aligned_mean"),
        "Jaccard pos>window": pj.get("positive_beyond_window_mean"),
        **({"task": args.task} if args.task != "eedi" else {}),
    }
    notes.append("seconds: lower is better, so ours/ST below 1 means ours is faster; model loading excluded, "
                 "a warm-up run of each library's whole path on 8 queries before timing, CUDA synchronised")
    md = write_results(args.out, result, "Hard-negative mining: utils vs sentence-transformers", [row], notes)
    for k, v in row.items():
        print(f"{k:>22}: {v}")
    for nt in notes:
        print("note:", nt)
    print(f"wrote {args.out} and {md}")
    return result


if __name__ == "__main__":
    main()
