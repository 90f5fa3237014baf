"""Encoding throughput: utils.retrieval.embed.Embedder.encode vs SentenceTransformer.encode, same model and batch.

    python benchmarks/bench_encode.py                       # all Eedi query texts + corpus (misconception names)
    python benchmarks/bench_encode.py --limit 64 --repeats 1   # CPU smoke run

Variants: on CPU both fp32. On GPU: ours bf16 (its default) and fp32; sentence-transformers in
its default fp32 and in bf16 / fp16 through ``model_kwargs={"dtype": ...}``. Each variant is
warmed up once, then timed ``--repeats`` times (interleaved with the others so machine load
hits all alike; the median counts), CUDA synchronised before the clock stops. Both return host
float32 arrays. Texts/s = texts encoded / seconds. Agreement: per-text cosine of every variant
with sentence-transformers fp32 (min must be > 0.9999 for fp32, > 0.99 for bf16/fp16).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (Timer, add_common_args, load_data, machine_info, pick_device, ratio,  # noqa: E402
                     resolve_model_arg, write_results)

THRESHOLD = {"fp32": 0.9999, "bf16": 0.99, "fp16": 0.99}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap, "bench_encode")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer-large-batch", type=int, default=512,
                    help="GPU: also time sentence-transformers fp32 at this batch size (0: skip), so the ratio is "
                         "not just ours' token-budget batches against a small peer batch")
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from utils.retrieval.embed import Embedder

    device = pick_device(args.device)
    gpu = device.startswith("cuda")
    model = resolve_model_arg(args.model)
    data, queries, _ = load_data(args.data_dir, args.task)
    sets = {"queries": queries["query_text"].tolist(), "corpus": data.corpus["item_text"].tolist()}
    if args.limit:
        sets = {k: v[: args.limit] for k, v in sets.items()}
    bs = args.batch_size

    # name -> (library, dtype label, encode function)
    variants: dict[str, tuple] = {}

    ours_models: list = []

    def ours(dtype):
        e = Embedder(model, device=device, dtype=dtype, max_length=args.max_length, pooling="mean", normalize=True)
        ours_models.append(e)
        return lambda texts: e.encode(texts, batch_size=bs, show_progress=False)

    def st(dtype, batch=None):
        m = SentenceTransformer(model, device=device, model_kwargs={"dtype": dtype})
        m.max_seq_length = args.max_length
        return lambda texts: np.asarray(
            m.encode(texts, batch_size=batch or bs, convert_to_numpy=True, normalize_embeddings=True,
                     show_progress_bar=False),
            dtype=np.float32)

    variants["st_fp32"] = ("sentence-transformers", "fp32", st(torch.float32))
    variants["ours_fp32"] = ("utils", "fp32", ours(torch.float32))
    if gpu:
        variants["st_bf16"] = ("sentence-transformers", "bf16", st(torch.bfloat16))
        variants["st_fp16"] = ("sentence-transformers", "fp16", st(torch.float16))
        variants["ours_bf16"] = ("utils", "bf16", ours(torch.bfloat16))
        if args.peer_large_batch:
            variants["st_fp32_large_batch"] = ("sentence-transformers", "fp32", st(torch.float32, args.peer_large_batch))

    warm = [t for v in sets.values() for t in v[:bs]]
    for _, _, fn in variants.values():
        fn(warm)  # one warm-up: CUDA context, cuBLAS handles, tokenizer caches

    times = {name: {s: [] for s in sets} for name in variants}
    embs: dict[str, dict[str, np.ndarray]] = {name: {} for name in variants}
    for _ in range(args.repeats):
        for set_name, texts in sets.items():
            for name, (_, _, fn) in variants.items():
                with Timer(device) as t:
                    embs[name][set_name] = fn(texts)
                times[name][set_name].append(t.s)

    def cos(a, b):
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        return (a * b).sum(1)

    # Where our time goes: tokenizing alone (host) vs the whole encode call.
    with Timer(device) as t_tok:
        for texts in sets.values():
            ours_models[0]._token_ids(texts, args.max_length)

    n_total = sum(len(v) for v in sets.values())
    per_variant = {}
    for name, (lib, dt, _) in variants.items():
        sec = {s: statistics.median(times[name][s]) for s in sets}
        c = np.concatenate([cos(embs[name][s], embs["st_fp32"][s]) for s in sets])
        per_variant[name] = {
            "library": lib, "dtype": dt,
            "seconds": sec, "seconds_total": sum(sec.values()),
            "texts_per_s": {s: len(sets[s]) / sec[s] for s in sets},
            "texts_per_s_total": n_total / sum(sec.values()),
            "all_times": times[name],
            "cosine_vs_st_fp32_min": float(c.min()), "cosine_vs_st_fp32_mean": float(c.mean()),
            "cosine_ok": bool(c.min() > THRESHOLD[dt]) if name != "st_fp32" else True,
        }

    ours_main = "ours_bf16" if gpu else "ours_fp32"
    comparisons = [(ours_main, "st_fp32")]
    if gpu:
        comparisons += [("ours_bf16", "st_bf16"), ("ours_bf16", "st_fp16"), ("ours_fp32", "st_fp32")]
        if args.peer_large_batch:
            comparisons.append(("ours_bf16", "st_fp32_large_batch"))
    rows = []
    for o, p in comparisons:
        ro, rp = per_variant[o], per_variant[p]
        rows.append({
            "ours": o, "peer": p,
            "queries": len(sets["queries"]), "names": len(sets["corpus"]),  # names: the corpus texts
            "batch (peer)": args.peer_large_batch if p == "st_fp32_large_batch" else bs,
            "ours texts/s": ro["texts_per_s_total"], "peer texts/s": rp["texts_per_s_total"],
            "ours/peer": ratio(ro["texts_per_s_total"], rp["texts_per_s_total"]),
            "ours/peer (queries)": ratio(ro["texts_per_s"]["queries"], rp["texts_per_s"]["queries"]),
            "ours/peer (names)": ratio(ro["texts_per_s"]["corpus"], rp["texts_per_s"]["corpus"]),
            "min cos vs ST fp32": ro["cosine_vs_st_fp32_min"], "cos ok": ro["cosine_ok"],
            **({"task": args.task} if args.task != "eedi" else {}),
        })
    result = {
        "benchmark": "encode", "machine": machine_info(device), "model": model, "task": args.task,
        "args": vars(args), "n_texts": {s: len(v) for s, v in sets.items()},
        "texts_per_s_definition": "texts encoded / median wall seconds of --repeats timed calls (after one warm-up), "
                                  "host float32 output, CUDA synchronised",
        "variants": per_variant, "comparisons": rows, "seconds_tokenize_all_sets": t_tok.s,
        "target": "GPU: ours bf16 >= 2x sentence-transformers fp32",
    }
    budget = ours_models[0].batch_tokens(bs, args.max_length)
    notes = [f"ours: batches by a token budget of {budget} padded tokens ({'batch x max_length' if gpu else 'the CPU budget'}"
             f"; short texts share a batch); tokenizing all texts alone takes {t_tok.s:.3f} s",
             f"cosine thresholds: fp32 > {THRESHOLD['fp32']}, bf16/fp16 > {THRESHOLD['bf16']} (vs ST fp32, per text)"]
    if not gpu:
        notes.append("CPU run: both fp32; bf16/fp16 variants are GPU-only")
    md = write_results(args.out, result, "Encoding throughput: utils.retrieval.embed vs sentence-transformers", rows, notes)
    for r in rows:
        print(f"{r['ours']:>10} vs {r['peer']:<8} ours {r['ours texts/s']:8.1f} texts/s  peer {r['peer texts/s']:8.1f}  "
              f"ratio {r['ours/peer']:.2f}  min cos {r['min cos vs ST fp32']:.6f} ok={r['cos ok']}")
    print(f"wrote {args.out} and {md}")
    return result


if __name__ == "__main__":
    main()
