"""Where a training step of utils.retrieval.train_embedder spends its time (GPU): per-phase timings with
CUDA syncs, then torch.profiler's top operators. Used to find why a trainer is slower than a peer.

    python benchmarks/profile_train.py --steps 30

Records: every labelled query of the task's tables (``--task``, default eedi) with all its positives
and 15 random items that are none of them (the lengths matter here, not the hardness).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import default_data_dir, load_data, resolve_model_arg  # noqa: E402

from utils.config import TrainConfig  # noqa: E402
from utils.retrieval.train_embedder import backward_step, load_for_training, make_batch  # noqa: E402


def build_records(data_dir=None, task: str = "eedi", n_neg: int = 15, seed: int = 0) -> list[dict]:
    """FlagEmbedding-style records of every labelled query: all its positives, ``n_neg`` random other items."""
    data, _, labelled = load_data(data_dir or default_data_dir(task), task)
    names = dict(zip(data.corpus["item_id"].astype(int), data.corpus["item_text"]))
    ids = np.array(list(names))
    rng = np.random.default_rng(seed)
    recs = []
    for r in labelled.itertuples():
        pos = [int(p) for p in r.positives]
        negs = [int(x) for x in rng.choice(ids[~np.isin(ids, pos)], n_neg, replace=False)]
        recs.append({"query": r.query_text, "pos": [names[p] for p in pos], "neg": [names[n] for n in negs],
                     "pos_ids": pos, "neg_ids": negs})
    return recs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--task", default="eedi")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--model", default=None, help="default: bundled all-MiniLM-L6-v2")
    args = ap.parse_args()
    recs = build_records(args.data_dir, args.task)
    rng = np.random.default_rng(0)
    # lr as before TrainConfig moved to utils.config (its default is now the CPU config's 1e-4; the optimizer
    # below sets its own lr anyway)
    cfg = TrainConfig(batch_size=32, n_negatives=15, max_query_length=256, max_passage_length=64, lr=5e-5)
    emb = load_for_training(resolve_model_arg(args.model), cfg, "cuda")
    emb.model.train()
    params = [p for p in emb.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-5, fused=True)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16)
    phases = {"batch": 0.0, "tokenize": 0.0, "fwd+bwd": 0.0, "opt": 0.0}

    def step(i):
        t = time.perf_counter()
        b = make_batch([recs[j] for j in rng.choice(len(recs), 32, replace=False)], 15, rng, True)
        phases["batch"] += time.perf_counter() - t
        t = time.perf_counter()
        emb.tokenize(list(b.queries), 256), emb.tokenize(list(b.passages), 64)
        phases["tokenize"] += time.perf_counter() - t
        t = time.perf_counter()
        backward_step(emb, b, cfg, autocast)
        torch.cuda.synchronize()
        phases["fwd+bwd"] += time.perf_counter() - t
        t = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        phases["opt"] += time.perf_counter() - t
        return len(b.passages)

    for i in range(3):
        step(i)
    phases = dict.fromkeys(phases, 0.0)
    t0 = time.perf_counter()
    n_p = [step(i) for i in range(args.steps)]
    dt = time.perf_counter() - t0
    print(f"{args.steps} steps: {dt:.2f} s, {dt / args.steps * 1000:.1f} ms/step, unique passages/step {np.mean(n_p):.0f}")
    print({k: f"{v / args.steps * 1000:.1f} ms" for k, v in phases.items()})
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for i in range(5):
            step(i)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=50))
    print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=12, max_name_column_width=50))


if __name__ == "__main__":
    main()
