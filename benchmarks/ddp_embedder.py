"""1 process vs N processes (torchrun, one GPU each) training the LoRA decoder embedder on the same
global batches: loss-curve agreement and throughput ratio.

Usage (2 GPUs, repo root):  python benchmarks/ddp_embedder.py --nproc 2 --out /tmp/ddp_emb.json
CPU smoke test (gloo):      python benchmarks/ddp_embedder.py --cpu-smoke --out /tmp/ddp_emb.json

Both runs go through ``utils.retrieval.train_embedder.train_distributed`` (torchrun -m utils.retrieval.train_cli), so
the only difference is the process count: with N processes every GPU embeds 1/N of each global
batch and scores its queries against the passages of all GPUs. LoRA dropout is 0 so the two loss
curves must agree up to bf16 / reduction-order noise. Prints one JSON line and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny model, 2 CPU processes over gloo")
    ap.add_argument("--nproc", type=int, default=2)
    from gpu_decoder_embedder import SMOKE_SHAPE, add_shape_args, build_model, param_count, synthetic_records

    add_shape_args(ap)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=64, help="global batch (split over the processes)")
    ap.add_argument("--n-negatives", type=int, default=7)
    ap.add_argument("--pad-words", type=int, default=60)
    ap.add_argument("--icl-k", type=int, default=1)
    ap.add_argument("--max-query-length", type=int, default=512)
    ap.add_argument("--grad-cache-chunk", type=int, default=0)
    ap.add_argument("--load-in-4bit", action="store_true")
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from utils.io import write_jsonl
    from utils.config import TrainConfig
    from utils.retrieval.train_embedder import train_distributed

    from _common import use_cuda

    cuda = use_cuda(args.cpu_smoke)
    if cuda and torch.cuda.device_count() < args.nproc:
        raise SystemExit(f"--nproc {args.nproc} needs {args.nproc} GPUs, found {torch.cuda.device_count()}")
    if args.cpu_smoke:
        for k, v in SMOKE_SHAPE.items():
            setattr(args, k, v)
        args.nproc, args.steps, args.batch_size, args.n_negatives, args.pad_words = 2, 3, 4, 3, 9
        args.max_query_length, args.lora_r, args.load_in_4bit = 384, 4, False
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ddp_emb_bench_"))
    base = build_model(args, work, cuda)
    records = synthetic_records(args.steps * args.batch_size, args.pad_words, args.icl_k, args.n_negatives)
    write_jsonl(work / "hn.jsonl", records)
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, n_negatives=args.n_negatives, lr=1e-4, warmup_ratio=0.0,
                      log_every=1, max_query_length=args.max_query_length, max_passage_length=64,
                      gradient_checkpointing=True, load_in_4bit=args.load_in_4bit,
                      grad_cache_chunk=args.grad_cache_chunk or None,
                      lora={"r": args.lora_r, "alpha": 2 * args.lora_r, "dropout": 0.0, "target_modules": "all-linear"})
    runs = {}
    for n in (1, args.nproc):
        t = time.perf_counter()
        log = train_distributed(work / "hn.jsonl", base, work / f"emb_{n}", cfg, nproc=n)
        saved = json.loads((work / f"emb_{n}" / "train_log.json").read_text())
        runs[n] = {"wall_s": round(time.perf_counter() - t, 2), "train_s": round(saved["seconds"], 2),
                   "texts_per_s": round(saved["texts"] / saved["seconds"], 1),
                   "steady_texts_per_s": round(_steady(log), 1),
                   "losses": [r["loss"] for r in log], "world_size": saved["world_size"]}
    l1, ln = np.array(runs[1]["losses"]), np.array(runs[args.nproc]["losses"])
    result = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "nproc": args.nproc, "params_approx": param_count(args, args.vocab or 0),
        "global_batch": args.batch_size, "steps": len(l1), "load_in_4bit": args.load_in_4bit,
        "loss_max_abs_diff": float(np.abs(l1 - ln).max()), "loss_max_rel_diff": float((np.abs(l1 - ln) / np.abs(l1)).max()),
        "throughput_ratio": round(runs[args.nproc]["steady_texts_per_s"] / runs[1]["steady_texts_per_s"], 3),
        "runs": {str(k): v for k, v in runs.items()},
    }
    line = json.dumps(result)
    print(line, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(line + "\n")
    return result


def _steady(log: list[dict]) -> float:
    """Texts/s after the first step (which pays one-off kernel selection / allocator warm-up)."""
    if len(log) < 2:
        return log[-1]["texts_per_s"]
    return (log[-1]["texts"] - log[0]["texts"]) / max(log[-1]["elapsed_s"] - log[0]["elapsed_s"], 1e-9)


if __name__ == "__main__":
    main()
