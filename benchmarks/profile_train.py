"""Where a training step of utils.retrieval.train_embedder spends its time (GPU): per-phase timings with
CUDA syncs, then torch.profiler's top operators. Used to find why a trainer is slower than a peer.

    python benchmarks/profile_train.py --steps 30
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import default_data_dir, resolve_model_arg  # noqa: E402

from utils.tasks.eedi import load_competition, to_pairs  # noqa: E402
from utils.retrieval.train_embedder import TrainConfig, backward_step, load_for_training, make_batch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    comp = load_competition(default_data_dir())
    pairs = to_pairs(comp.train)
    pairs = pairs[pairs.MisconceptionId.notna()].reset_index(drop=True)
    names = dict(zip(comp.misconceptions.MisconceptionId, comp.misconceptions.MisconceptionName))
    ids = list(names)
    rng = np.random.default_rng(0)
    recs = []
    for r in pairs.itertuples():
        negs = [int(x) for x in rng.choice(ids, 15, replace=False) if x != r.MisconceptionId][:15]
        recs.append({"query": r.query_text, "pos": [names[int(r.MisconceptionId)]], "neg": [names[n] for n in negs],
                     "pos_ids": [int(r.MisconceptionId)], "neg_ids": negs})
    cfg = TrainConfig(batch_size=32, n_negatives=15, max_query_length=256, max_passage_length=64)
    emb = load_for_training(resolve_model_arg(None), cfg, "cuda")
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
