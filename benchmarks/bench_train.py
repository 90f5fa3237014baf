"""Fine-tuning throughput on the same mined jsonl: utils.retrieval.train_embedder vs FlagEmbedding's
encoder-only finetune (subprocess) vs the sentence-transformers trainer with
MultipleNegativesRankingLoss.

    python benchmarks/bench_train.py                                   # all labelled pairs, 1 epoch
    python benchmarks/bench_train.py --limit 16 --corpus-limit 60 --batch-size 4 --n-neg 3 --max-steps 2   # smoke

Same settings for all three: batch 32 queries, group 1 positive + 15 mined negatives (16), query
max length 256, passage max length 64 (sentence-transformers has one ``max_seq_length``: 256;
Eedi's misconception names are shorter than 64 tokens anyway), temperature 0.05 (MNRL scale 20), lr
5e-5, warm-up 10 %, weight decay 0.01, bf16 autocast on GPU / fp32 on CPU, one epoch over the
same records, truncated to a multiple of the batch (and to ``--max-steps`` batches), so every
trainer takes the same number of steps. In-batch negatives are on in all three.

Figures (identical definitions for all three):
- train seconds: the training loop alone (HF ``train_runtime`` for FlagEmbedding and
  sentence-transformers; for ours the loop time read from its log), model loading and saving
  excluded; wall seconds: the whole call / subprocess, loading and saving included;
- steps/s = optimizer steps / train seconds;
- texts/s = steps x batch x (1 query + group passages) / train seconds — the texts the data
  holds, whether or not a trainer encodes a repeated passage twice (ours encodes each distinct
  passage of a batch once; the count it really encoded is reported as ``encoded_texts``);
- peak GPU memory: ``torch.cuda.max_memory_allocated`` over training (FlagEmbedding: measured
  inside its process by benchmarks/_flag_runner.py).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (ROOT, Timer, add_common_args, has_module, load_data, machine_info, pick_device,  # noqa: E402
                     ratio, resolve_model_arg, subset_corpus, write_results)

RUNNERS = ("ours", "flag", "st")


def mine_records(args, model: str, device: str) -> list[dict]:
    """Hard negatives with utils (as notebook 01 does), base model, all labelled queries (or --limit).

    A record lists every positive of its query (``pos``); ours and FlagEmbedding draw one per step,
    the sentence-transformers trainer takes the first (the same for Eedi: one positive per query).
    """
    from utils.retrieval.embed import Embedder
    from utils.retrieval.mining import mine_hard_negatives, to_flag_records

    data, _, labelled = load_data(args.data_dir, args.task)
    if args.limit:
        labelled = labelled.iloc[: args.limit].reset_index(drop=True)
    corpus = subset_corpus(data.corpus, labelled["positives"], args.corpus_limit)
    emb = Embedder(model, device=device, pooling="mean", normalize=True, max_length=args.max_query_length)
    q = emb.encode(labelled["query_text"].tolist(), batch_size=64, show_progress=False)
    c = emb.encode(corpus["item_text"].tolist(), batch_size=64, show_progress=False)
    row_of = {int(m): i for i, m in enumerate(corpus["item_id"].astype(int))}
    pos = [[row_of[int(m)] for m in p] for p in labelled["positives"]]
    negs, ns, ps = mine_hard_negatives(q, c, pos, 2, min(100, len(corpus)), args.n_neg)
    return to_flag_records(labelled, corpus, negs, ns, ps)


def _has_warmup_ratio() -> bool:
    """transformers 5 dropped ``TrainingArguments.warmup_ratio`` (a float ``warmup_steps`` < 1 is a ratio)."""
    from transformers import TrainingArguments

    return "warmup_ratio" in TrainingArguments.__dataclass_fields__


def _warmup_kwargs(ratio_: float) -> dict:
    return {"warmup_ratio": ratio_} if _has_warmup_ratio() else {"warmup_steps": ratio_}


def _free(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def run_ours(records, model, cfg, device, work: Path) -> dict:
    import torch

    from utils.retrieval.train_embedder import train_embedder

    _free(device)
    out = work / "ours"
    with Timer(device) as t:
        log = train_embedder(records, model, out, cfg, device=device, show_progress=False)
    tl = json.loads((out / "train_log.json").read_text())
    loop_s = tl["texts"] / log[-1]["texts_per_s"]  # the last step is always logged
    return {"train_seconds": loop_s, "wall_seconds": t.s, "steps": log[-1]["step"] + 1,
            "encoded_texts": tl["texts"], "final_loss": log[-1]["loss"],
            "max_memory_allocated": torch.cuda.max_memory_allocated() if device.startswith("cuda") else None}


def run_st(records, model, cfg, device, work: Path) -> dict:
    import torch
    from datasets import Dataset
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)
    try:
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.losses import MultipleNegativesRankingLoss

    _free(device)
    gpu = device.startswith("cuda")
    data = {"anchor": [r["query"] for r in records], "positive": [r["pos"][0] for r in records]}
    for j in range(cfg.n_negatives):
        data[f"negative_{j + 1}"] = [r["neg"][j] for r in records]
    ds = Dataset.from_dict(data)
    t0 = time.perf_counter()
    st = SentenceTransformer(model, device=device, model_kwargs={"dtype": torch.float32})
    st.max_seq_length = cfg.max_query_length
    loss = MultipleNegativesRankingLoss(st, scale=1.0 / cfg.temperature)
    targs = SentenceTransformerTrainingArguments(
        output_dir=str(work / "st"), num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.lr, weight_decay=cfg.weight_decay, **_warmup_kwargs(cfg.warmup_ratio),
        max_grad_norm=cfg.max_grad_norm, bf16=gpu and cfg.bf16, use_cpu=not gpu, save_strategy="no",
        report_to="none", logging_steps=cfg.log_every, seed=cfg.seed, dataloader_drop_last=True,
        disable_tqdm=True)
    trainer = SentenceTransformerTrainer(model=st, args=targs, train_dataset=ds, loss=loss)
    if gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    out = trainer.train()
    if gpu:
        torch.cuda.synchronize()
    mem = torch.cuda.max_memory_allocated() if gpu else None
    st.save(str(work / "st_model"))
    wall = time.perf_counter() - t0
    res = {"train_seconds": float(out.metrics["train_runtime"]), "wall_seconds": wall, "steps": int(out.global_step),
           "encoded_texts": None, "final_loss": float(out.training_loss), "max_memory_allocated": mem}
    del trainer, st, loss
    return res


def run_flag(records_path: Path, model, cfg, device, work: Path) -> dict:
    from utils.retrieval.train_embedder import flagembedding_command

    cmd = flagembedding_command(str(records_path), model, str(work / "flag"), cfg,
                                use_cpu=not device.startswith("cuda"), python=sys.executable)
    assert cmd[1] == "-m"
    if "--warmup_ratio" in cmd and not _has_warmup_ratio():
        # utils.retrieval.train_embedder.flagembedding_command passes --warmup_ratio, which transformers 5
        # rejects ("arguments are not used by the HfArgumentParser"); the same ratio as a float
        # --warmup_steps (< 1 means a ratio there) keeps the schedule identical.
        cmd[cmd.index("--warmup_ratio")] = "--warmup_steps"
    report = work / "flag_report.json"
    full = [sys.executable, str(ROOT / "benchmarks" / "_flag_runner.py"), str(report), cmd[2]] + cmd[3:]
    env = dict(os.environ)
    if device.startswith("cuda") and "CUDA_VISIBLE_DEVICES" not in env:
        env["CUDA_VISIBLE_DEVICES"] = "0"  # one GPU, like the other two (no DataParallel)
    t0 = time.perf_counter()
    proc = subprocess.run(full, cwd=str(work), env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    log = (proc.stdout or "") + (proc.stderr or "")
    (work / "flag.log").write_text(log)
    if proc.returncode != 0 or not report.exists():
        raise RuntimeError(f"FlagEmbedding finetune failed (rc {proc.returncode}):\n{log[-4000:]}")
    rep = json.loads(report.read_text())
    m = rep.get("metrics", {})
    return {"train_seconds": m.get("train_runtime", rep.get("train_call_seconds")), "wall_seconds": wall,
            "steps": rep.get("global_step"), "encoded_texts": None, "final_loss": m.get("train_loss"),
            "max_memory_allocated": rep.get("max_memory_allocated"), "command": " ".join(cmd)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap, "bench_train")
    ap.add_argument("--train-jsonl", default=None, help="FlagEmbedding-format jsonl (default: mine one with utils)")
    ap.add_argument("--corpus-limit", type=int, default=None, help="corpus items used when mining (default all)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--n-neg", type=int, default=15, help="negatives per query (group size = n + 1)")
    ap.add_argument("--max-query-length", type=int, default=256)
    ap.add_argument("--max-passage-length", type=int, default=64)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--max-steps", type=int, default=None, help="truncate the data to this many batches (1 epoch)")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--runners", default=",".join(RUNNERS), help="subset of ours,flag,st")
    ap.add_argument("--workdir", default=None, help="keep models/logs here (default: a temp dir, removed)")
    args = ap.parse_args(argv)

    from utils.io import read_jsonl, write_jsonl
    from utils.config import TrainConfig

    device = pick_device(args.device)
    gpu = device.startswith("cuda")
    model = resolve_model_arg(args.model)
    runners = [r.strip() for r in args.runners.split(",") if r.strip()]
    unknown = set(runners) - set(RUNNERS)
    if unknown:
        raise SystemExit(f"unknown runner(s) {sorted(unknown)}; choose from {RUNNERS}")

    t_mine = None
    if args.train_jsonl:
        records = read_jsonl(args.train_jsonl)
        if args.limit:
            records = records[: args.limit]
    else:
        with Timer(device) as t:
            records = mine_records(args, model, device)
        t_mine = t.s
    bs = args.batch_size
    if args.max_steps:
        records = records[: args.max_steps * bs]
        epochs = 1.0
    else:
        epochs = args.epochs
    records = records[: len(records) // bs * bs]
    if not records:
        raise SystemExit(f"fewer records than one batch of {bs}")
    too_few = [i for i, r in enumerate(records) if len(r["neg"]) < args.n_neg]
    if too_few:
        raise SystemExit(f"{len(too_few)} records have fewer than {args.n_neg} negatives (record {too_few[0]})")
    cfg = TrainConfig(epochs=epochs, lr=args.lr, batch_size=bs, n_negatives=args.n_neg,
                      max_query_length=args.max_query_length, max_passage_length=args.max_passage_length,
                      bf16=gpu, log_every=10)
    group = args.n_neg + 1
    steps_expected = int(len(records) // bs * epochs)
    texts_per_step = bs * (1 + group)

    notes: list[str] = []
    results: dict[str, dict] = {}
    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    work = Path(args.workdir or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    jsonl = work / "train.jsonl"
    write_jsonl(jsonl, records)
    if gpu:
        import torch

        x = torch.randn(1024, 1024, device=device)
        (x @ x).sum().item()  # CUDA context + cuBLAS before the first timed trainer
    try:
        for r in runners:
            if r == "flag" and not has_module("FlagEmbedding"):
                notes.append("FlagEmbedding skipped: not installed (carry its wheel, see benchmarks/README.md)")
                continue
            if r in ("flag", "st") and not has_module("datasets"):
                notes.append(f"{'FlagEmbedding' if r == 'flag' else 'sentence-transformers trainer'} skipped: "
                             "the `datasets` package is missing (carry it as a wheel, see benchmarks/README.md)")
                continue
            print(f"[bench_train] {r} ...", flush=True)
            if r == "ours":
                res = run_ours(records, model, cfg, device, work)
            elif r == "st":
                res = run_st(records, model, cfg, device, work)
            else:
                res = run_flag(jsonl, model, cfg, device, work)
            steps = res["steps"] or steps_expected
            res["steps_per_s"] = steps / res["train_seconds"]
            res["texts_per_s"] = steps * texts_per_step / res["train_seconds"]
            if res["steps"] != steps_expected:
                notes.append(f"{r}: {res['steps']} steps, expected {steps_expected}")
            results[r] = res
            print(f"[bench_train] {r}: {res['train_seconds']:.2f} s train, {res['texts_per_s']:.1f} texts/s", flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()

    def gib(b):
        return None if b is None else b / 2**30

    rows = []
    for r, res in results.items():
        row = {"trainer": {"ours": "utils.retrieval.train_embedder", "flag": "FlagEmbedding", "st": "ST trainer + MNRL"}[r],
               "records": len(records), "steps": res["steps"], "batch x group": f"{bs}x{group}",
               "precision": "bf16" if gpu else "fp32",
               "train s": res["train_seconds"], "wall s": res["wall_seconds"],
               "steps/s": res["steps_per_s"], "texts/s": res["texts_per_s"],
               "peak GPU GiB": gib(res["max_memory_allocated"])}
        if args.task != "eedi":
            row["task"] = args.task
        if "ours" in results and r != "ours":
            row["ours/peer texts/s"] = ratio(results["ours"]["texts_per_s"], res["texts_per_s"])
        rows.append(row)
    result = {
        "benchmark": "train", "machine": machine_info(device), "model": model, "args": vars(args), "task": args.task,
        "train_config": {k: v for k, v in vars(cfg).items() if k != "extra"},
        "n_records": len(records), "steps_expected": steps_expected, "mining_seconds": t_mine,
        "texts_per_step": texts_per_step,
        "texts_per_s_definition": "steps x batch x (1 query + group passages) / training-loop seconds",
        "results": results, "target": "ours texts/s >= 1.0x FlagEmbedding",
    }
    notes.append(f"texts/s = steps x {bs} x (1 + {group}) / training-loop seconds, the same for all trainers; "
                 "train s excludes model loading and saving, wall s includes them")
    md = write_results(args.out, result, "Fine-tuning throughput: utils vs FlagEmbedding vs sentence-transformers",
                       rows, notes)
    for row in rows:
        print(row)
    for n in notes:
        print("note:", n)
    print(f"wrote {args.out} and {md}")
    return result


if __name__ == "__main__":
    main()
