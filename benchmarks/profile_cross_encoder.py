"""Where a cross-encoder training step (utils.rerank.cross_encoder, listwise) spends its time.

Real Eedi queries (the task's tables), groups of 1 positive + 15 random other corpus items (the
lengths matter here, not the hardness), batch 32 groups = 512 pairs, the config's max_length. Phases, with CUDA syncs:
tokenising a step's pairs, forward + backward of pre-tokenised pairs (bf16 autocast, fp32
weights), and whole steps of the sentence-transformers trainer as 05 runs it.

    python benchmarks/profile_cross_encoder.py --steps 20 --out benchmarks/results/profile_cross_encoder.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, default_data_dir, machine_info, resolve_model_arg, sync, write_results  # noqa: E402

from utils.rerank.cross_encoder import _group_ce_loss, load_cross_encoder, train_cross_encoder  # noqa: E402
from utils.tasks import get_task  # noqa: E402


def groups_frame(n_groups: int, n_neg: int, seed: int = 0, data_dir=None, task: str = "eedi") -> pd.DataFrame:
    """``build_rerank_train``-shaped rows (``group``, ``query_id``, ``query_text``, ``item_id``, ``item_text``,
    ``label``): the query's first positive, then random items that are none of its positives."""
    data = get_task(task).load(Path(data_dir) if data_dir else default_data_dir(task))
    queries = data.queries[data.queries["positives"].map(len) > 0].reset_index(drop=True).head(n_groups)
    names = dict(zip(data.corpus["item_id"].astype(int), data.corpus["item_text"]))
    ids = np.array(list(names))
    rng = np.random.default_rng(seed)
    rows = []
    for g, r in enumerate(queries.itertuples()):
        positives = [int(p) for p in r.positives]
        gold = positives[0]
        negs = [int(x) for x in rng.choice(ids[~np.isin(ids, positives)], n_neg, replace=False)]
        rows += [(g, r.query_id, r.query_text, m, names[m], int(m == gold)) for m in [gold] + negs]
    return pd.DataFrame(rows, columns=["group", "query_id", "query_text", "item_id", "item_text", "label"])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-groups", type=int, default=32)
    ap.add_argument("--negatives", type=int, default=15)
    ap.add_argument("--max-length", type=int, default=320)
    ap.add_argument("--task", default="eedi", help="task whose tables are used (utils.tasks)")
    ap.add_argument("--data-dir", default=None, help="default: the Eedi data benchmarks/_common.py finds, "
                                                       "another task's bundled sample")
    ap.add_argument("--model", default=None, help="cross-encoder init (default: bundled all-MiniLM-L6-v2)")
    ap.add_argument("--out", default=str(RESULTS / "profile_cross_encoder.json"))
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = resolve_model_arg(args.model)
    df = groups_frame(args.steps * args.batch_groups, args.negatives, data_dir=args.data_dir, task=args.task)
    first = df[df["group"] < args.batch_groups]
    pairs = list(zip(first["query_text"], first["item_text"]))
    ce = load_cross_encoder(model, max_length=args.max_length, device=device, for_training=True)

    t0 = time.perf_counter()
    for _ in range(5):
        feats = ce.preprocess(pairs)
    t_tok = (time.perf_counter() - t0) / 5
    n_tokens = int(feats["attention_mask"].sum())
    padded = int(feats["attention_mask"].numel())

    feats = {k: v.to(device) if torch.is_tensor(v) else v for k, v in feats.items()}
    opt = torch.optim.AdamW(ce.parameters(), lr=1e-5)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    times = []
    for i in range(6):
        sync(device)
        t0 = time.perf_counter()
        with autocast:
            logits = ce(feats)["scores"]
        loss = logits.float().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        if i:  # the first step warms kernels up
            times.append(time.perf_counter() - t0)
    t_fb = float(np.median(times))

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train_cross_encoder(df, model, Path(tmp) / "ce", epochs=1, lr=1e-4, batch_size=args.batch_groups,
                            max_length=args.max_length, loss="listwise", seed=0, logging_steps=1000)
        t_trainer = (time.perf_counter() - t0) / args.steps  # includes model load and save, spread over steps
    assert _group_ce_loss  # the loss the trainer steps use (imported so a rename breaks this script loudly)

    row = {"pairs/step": len(pairs), "real tokens/step": n_tokens, "padded tokens/step": padded,
           "s tokenize/step": round(t_tok, 4), "s fwd+bwd+opt/step": round(t_fb, 4),
           "s trainer/step": round(t_trainer, 4),
           "trainer pairs/s": round(len(pairs) / t_trainer, 1),
           "fwd+bwd pairs/s": round(len(pairs) / t_fb, 1)}
    print(row, flush=True)
    write_results(args.out, {"machine": machine_info(device), "args": vars(args), "row": row},
                  "Cross-encoder training step: where the time goes", [row],
                  notes=[f"{args.steps} trainer steps (model load and save included, spread over the steps); "
                         "fwd+bwd = pre-tokenised pairs, bf16 autocast on CUDA, median of 5 steps"])


if __name__ == "__main__":
    main()
