"""One full real-data round without papermill: mine -> fine-tune -> recall -> MAP@k / Recall@k
(Eedi: k = 25), per validation split; seconds per stage and metrics before (zero-shot) and after the round.

    python benchmarks/bench_round.py                                   # splits v1,v2, 4 epochs
    python benchmarks/bench_round.py --limit 24 --corpus-limit 80 --epochs 1 --split v1   # CPU smoke

Calls the same ``utils.stages`` functions the notebooks call, in one process, in a fresh
run folder per split (so the embedding cache starts empty), on the task's tables (``--task``):

- ``setup``     load_context: read + validate the raw files, build the query / corpus tables, make the split;
- ``zero_shot`` base model: load, encode corpus (cached for mining) + validation queries, top-100, score;
- ``mine``      stages.mine_hn.mine: encode training queries, mine hard negatives, write the jsonl;
- ``train``     stages.train_embedder.train: fine-tune ``--epochs`` epochs, save the model;
- ``recall``    fine-tuned model: load, encode corpus + validation queries, top-100, score.

"round" = mine + train + recall (the H100 target, <= 60 s); "total" adds setup and zero_shot.
This is also the acceptance benchmark "MAP@25 zero-shot vs after one round" (Eedi).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (Timer, add_common_args, default_data_dir, machine_info, pick_device, resolve_model_arg,  # noqa: E402
                     subset_corpus, write_results)

STAGES = ("setup", "zero_shot", "mine", "train", "recall")


def run_split(split: str, args, model: str, device: str, work: Path) -> dict:
    import pandas as pd
    import yaml

    from utils import stages
    from utils.metrics import evaluate

    sec: dict[str, float] = {}
    with Timer(device) as t:
        config_path = None
        if args.task != "eedi":  # the task is a config value (data.task)
            config_path = work / f"{split}_config.yaml"
            config_path.parent.mkdir(parents=True, exist_ok=True)
            config_path.write_text(yaml.safe_dump({"data": {"task": args.task}}))
        ctx = stages.context.load_context(work / split / "round_1", data_dir=args.data_dir or default_data_dir(args.task),
                                          split=split, config_path=config_path, model=model)
        cfg = ctx.config
        cfg["show_progress"] = False
        cfg["embedder"]["max_length"] = args.max_query_length
        cfg["embedder"]["batch_size"] = args.encode_batch_size
        cfg["mining"]["n"] = args.n_neg
        cfg["train"].update(epochs=args.epochs, n_negatives=args.n_neg, max_query_length=args.max_query_length,
                            batch_size=args.batch_size)
        if args.limit:  # smoke runs: first N labelled train queries, N/4 val queries, a small corpus
            lab = ctx.pairs[ctx.pairs["positives"].map(len) > 0]
            tr = lab[lab["fold"] == "train"].head(args.limit)
            va = lab[lab["fold"] == "val"].head(max(4, args.limit // 4))
            ctx.pairs = pd.concat([tr, va]).reset_index(drop=True)
            ctx.data.corpus = subset_corpus(ctx.corpus, ctx.pairs["positives"], args.corpus_limit)  # ctx.corpus reads it
        ctx.test_pairs = ctx.test_pairs.iloc[:0]
    sec["setup"] = t.s
    val, k = ctx.val_pairs, ctx.k
    with Timer(device) as t:
        before = evaluate(stages.ops.rank(ctx, ctx.embedder("base"), val), val, k=k)
    sec["zero_shot"] = t.s
    with Timer(device) as t:
        _, mine_stats = stages.mine_hn.mine(ctx)
    sec["mine"] = t.s
    with Timer(device) as t:
        log = stages.train_embedder.train(ctx)
    sec["train"] = t.s
    with Timer(device) as t:
        after = evaluate(stages.ops.rank(ctx, ctx.embedder("current"), val), val, k=k)
    sec["recall"] = t.s
    sec["round"] = sec["mine"] + sec["train"] + sec["recall"]
    sec["total"] = sum(sec[s] for s in STAGES)
    return {
        "split": split, "task": args.task, "k": k, "n_train": len(ctx.train_pairs), "n_val": len(val),
        "n_corpus": len(ctx.corpus), "seconds": sec, "before": before, "after": after, "mining": mine_stats,
        "train_steps": log[-1]["step"] + 1, "final_loss": log[-1]["loss"], "train_texts_per_s": log[-1]["texts_per_s"],
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap, "bench_round")
    ap.add_argument("--split", default="v1,v2", help="comma-separated splits (utils.splits: v1, v2, v3)")
    ap.add_argument("--epochs", type=float, default=4.0)
    ap.add_argument("--n-neg", type=int, default=15)
    ap.add_argument("--max-query-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--encode-batch-size", type=int, default=64)
    ap.add_argument("--corpus-limit", type=int, default=None, help="with --limit: corpus items kept (positives + random)")
    ap.add_argument("--workdir", default=None, help="keep run folders here (default: a temp dir, removed)")
    args = ap.parse_args(argv)

    if args.device == "cpu":  # utils.stages picks cuda when it sees one: hide it (before torch looks)
        import os

        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    device = pick_device(args.device)
    model = resolve_model_arg(args.model)
    if device.startswith("cuda"):
        import torch

        x = torch.randn(1024, 1024, device=device)
        (x @ x).sum().item()  # CUDA context before the first stage
    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    work = Path(args.workdir or tmp.name)
    splits = [s.strip() for s in args.split.split(",") if s.strip()]
    per_split = []
    try:
        for s in splits:
            print(f"[bench_round] split {s} ...", flush=True)
            r = run_split(s, args, model, device, work)
            per_split.append(r)
            key = f"map@{r['k']}"
            print(f"[bench_round] {s}: " + ", ".join(f"{k} {v:.1f}s" for k, v in r["seconds"].items())
                  + f" | MAP@{r['k']} {r['before'][key]:.4f} -> {r['after'][key]:.4f}", flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    rows = []
    for r in per_split:
        row = {"split": r["split"], "train/val/corpus": f"{r['n_train']}/{r['n_val']}/{r['n_corpus']}",
               "epochs": args.epochs, "steps": r["train_steps"]}
        row.update({f"{k} s": v for k, v in r["seconds"].items()})
        k = r["k"]
        row.update({f"MAP@{k} zero-shot": r["before"][f"map@{k}"], f"MAP@{k} after": r["after"][f"map@{k}"],
                    f"R@{k} zero-shot": r["before"][f"recall@{k}"], f"R@{k} after": r["after"][f"recall@{k}"]})
        if args.task != "eedi":
            row["task"] = args.task
        rows.append(row)
    result = {"benchmark": "round", "machine": machine_info(device), "model": model, "args": vars(args),
              "task": args.task, "stages": list(STAGES), "splits": per_split,
              "target": "round (mine + train + recall) <= 60 s on H100 on the full data; MAP@25 after > zero-shot"}
    notes = ["round s = mine + train + recall; total s adds setup (data, split) and zero_shot (base model scoring)"]
    if args.limit:
        notes.append(f"smoke subset: --limit {args.limit} (train queries; val = limit/4), --corpus-limit {args.corpus_limit}")
    md = write_results(args.out, result, "One real-data round: mine -> fine-tune -> recall", rows, notes)
    print(f"wrote {args.out} and {md}")
    return result


if __name__ == "__main__":
    main()
