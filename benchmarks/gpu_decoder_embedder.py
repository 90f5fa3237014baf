"""Decoder-LLM embedder benchmark: LoRA contrastive training (bf16 base vs 4-bit NF4 base, optional
GradCache) and encoding throughput, on a ~1B random Qwen2-shaped model.

Usage (GPU, repo root):  python benchmarks/gpu_decoder_embedder.py --out /tmp/dec_emb.json
CPU smoke test:          python benchmarks/gpu_decoder_embedder.py --cpu-smoke --out /tmp/dec_emb.json

Builds a random-initialised Qwen2 (default hidden 2048, 16 layers, 16 heads, intermediate 5632,
vocab 32000 ≈ 1.2B parameters) with a local tokenizer (tests/tiny_models.py), trains the LoRA
embedder on synthetic Eedi-shaped ICL queries with utils.retrieval.train_embedder for each mode, and
reports tokens/s (real tokens through the forward passes) and peak GPU memory; then encodes
with the saved adapter. Prints one JSON line and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

SHAPE_ARGS = (("hidden", 2048), ("layers", 16), ("heads", 16), ("kv_heads", 16), ("intermediate", 5632),
              ("vocab", 32000))
SMOKE_SHAPE = {"hidden": 64, "layers": 2, "heads": 4, "kv_heads": 2, "intermediate": 128, "vocab": 0}


def add_shape_args(ap: argparse.ArgumentParser) -> None:
    for name, default in SHAPE_ARGS:
        ap.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)


def build_model(args, work: Path, cuda: bool) -> str:
    from tiny_models import make_tiny_decoder

    return make_tiny_decoder(work / "base", arch="qwen2", hidden_size=args.hidden, num_layers=args.layers,
                             num_heads=args.heads, num_kv_heads=args.kv_heads, intermediate_size=args.intermediate,
                             vocab_size=args.vocab or None, max_position_embeddings=4096,
                             dtype="bfloat16" if cuda else "float32")


def param_count(args, vocab: int) -> int:
    h, i, kv = args.hidden, args.intermediate, args.hidden * args.kv_heads // args.heads
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h + h + 2 * kv  # + qkv biases
    return int(vocab * h + args.layers * per_layer + h)  # AutoModel: no lm_head


def synthetic_records(n: int, pad_words: int, icl_k: int, n_neg: int = 15, seed: int = 0) -> list[dict]:
    """FlagEmbedding records from tests/tiny_models.synthetic_task, questions padded, ICL queries."""
    import numpy as np
    import pandas as pd

    from tiny_models import synthetic_task
    from utils.retrieval.icl import with_icl_queries
    from utils.retrieval.mining import to_flag_records

    pairs, mis, _ = synthetic_task(seed=seed)
    filler = " ".join(["the student works out the value of the number"] * max(1, pad_words // 9))
    reps = -(-n // len(pairs))
    blocks = []
    for r in range(reps):
        p = pairs.copy()
        p["group"] = p["group"] + r * len(pairs)
        p["query_id"] = p["group"].astype(str) + "_B"
        p["query_text"] = p["query_text"] + " " + filler
        blocks.append(p)
    pairs = pd.concat(blocks, ignore_index=True).iloc[:n]
    if icl_k:
        pairs = with_icl_queries(pairs, pairs, mis, k=icl_k, seed=seed)
    rng = np.random.default_rng(seed)
    n_neg = min(n_neg, len(mis) - max(map(len, pairs["positives"])))
    row = {int(m): i for i, m in enumerate(mis["item_id"])}
    negs = []
    for pos in pairs["positives"]:  # random items that are none of the query's positives
        banned = {row[int(m)] for m in pos}
        negs.append(rng.choice([j for j in range(len(mis)) if j not in banned], n_neg, replace=False).tolist())
    return to_flag_records(pairs, mis, negs, [rng.normal(size=n_neg).tolist() for _ in negs],
                           rng.normal(size=len(pairs)) + 1.0)


class TokenCounter:
    """Counts real (unpadded) tokens through ``Embedder.forward`` while active."""

    def __enter__(self):
        from unittest import mock

        from utils.retrieval.embed import Embedder

        self.total = 0
        orig = Embedder.forward

        def counting(emb, batch, *args, **kwargs):  # e.g. encode's padded=...
            self.total += int(batch["attention_mask"].sum())
            return orig(emb, batch, *args, **kwargs)

        self._patch = mock.patch.object(Embedder, "forward", counting)
        self._patch.__enter__()
        return self

    def __exit__(self, *exc):
        self._patch.__exit__(*exc)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny model, fp32 on CPU, no 4-bit")
    add_shape_args(ap)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--n-negatives", type=int, default=7)
    ap.add_argument("--pad-words", type=int, default=60, help="filler words per question")
    ap.add_argument("--icl-k", type=int, default=1, help="in-context examples per query")
    ap.add_argument("--max-query-length", type=int, default=512)
    ap.add_argument("--grad-cache-chunk", type=int, default=8, help="0: skip the GradCache mode")
    ap.add_argument("--encode-texts", type=int, default=1024)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--modes", default="bf16,4bit,bf16_gradcache")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)

    import torch

    from utils.retrieval.embed import Embedder
    from utils.config import TrainConfig
    from utils.retrieval.train_embedder import train_embedder

    from _common import use_cuda

    cuda = use_cuda(args.cpu_smoke)
    if args.cpu_smoke:
        for k, v in SMOKE_SHAPE.items():
            setattr(args, k, v)
        args.steps, args.batch_size, args.n_negatives, args.pad_words = 2, 4, 3, 9
        args.max_query_length, args.grad_cache_chunk, args.encode_texts, args.lora_r = 384, 2, 16, 4
    work = Path(args.workdir or tempfile.mkdtemp(prefix="dec_emb_bench_"))
    t0 = time.perf_counter()
    base = build_model(args, work, cuda)
    build_s = time.perf_counter() - t0
    records = synthetic_records(args.steps * args.batch_size, args.pad_words, args.icl_k, args.n_negatives)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    q_lens = [len(tok(r["query"])["input_ids"]) for r in records]

    modes = {}
    for mode in [m for m in args.modes.split(",") if m]:
        if mode == "4bit" and not cuda:
            modes[mode] = {"skipped": "4-bit needs CUDA"}
            continue
        if mode == "bf16_gradcache" and not args.grad_cache_chunk:
            continue
        cfg = TrainConfig(epochs=1, batch_size=args.batch_size, n_negatives=args.n_negatives, lr=1e-4,
                          warmup_ratio=0.0, log_every=1, max_query_length=args.max_query_length,
                          max_passage_length=64, gradient_checkpointing=True, load_in_4bit=(mode == "4bit"),
                          grad_cache_chunk=args.grad_cache_chunk if mode == "bf16_gradcache" else None,
                          lora={"r": args.lora_r, "alpha": 2 * args.lora_r, "dropout": 0.05,
                                "target_modules": "all-linear"})
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        out = work / f"emb_{mode}"
        with TokenCounter() as tc:
            log = train_embedder(records, base, out, cfg, show_progress=False)
        saved = json.loads((out / "train_log.json").read_text())
        tokens = tc.total // 2 if cfg.grad_cache_chunk else tc.total  # GradCache embeds everything twice
        modes[mode] = {
            "steps": len(log), "seconds": round(saved["seconds"], 2), "batch_tokens": tokens,
            "tokens_per_s": round(tokens / saved["seconds"], 1),
            "texts_per_s": round(saved["texts"] / saved["seconds"], 1),
            "steady_texts_per_s": round((log[-1]["texts"] - log[0]["texts"])
                                        / max(log[-1]["elapsed_s"] - log[0]["elapsed_s"], 1e-9), 1)
            if len(log) > 1 else None,
            "loss_first": log[0]["loss"], "loss_last": log[-1]["loss"],
            "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else 0.0,
        }

    # Encoding with the saved (merged) adapter, bf16 on GPU.
    enc_dir = work / "emb_bf16"
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    emb = Embedder(str(enc_dir), max_length=args.max_query_length)
    texts = [r["query"] for r in records] * (-(-args.encode_texts // len(records)))
    texts = texts[: args.encode_texts]
    emb.encode(texts[:64], batch_size=32, show_progress=False)  # warm-up
    if cuda:
        torch.cuda.synchronize()
    with TokenCounter() as tc:
        t = time.perf_counter()
        emb.encode(texts, batch_size=64, show_progress=False)
        if cuda:
            torch.cuda.synchronize()
        enc_s = time.perf_counter() - t

    result = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "shape": {k: getattr(args, k) for k, _ in SHAPE_ARGS} | {"vocab": args.vocab or len(tok)},
        "params_approx": param_count(args, args.vocab or len(tok)),
        "build_s": round(build_s, 2),
        "batch_size": args.batch_size, "n_negatives": args.n_negatives, "icl_k": args.icl_k,
        "query_tokens_mean": round(sum(q_lens) / len(q_lens), 1), "query_tokens_max": max(q_lens),
        "train": modes,
        "encode": {"texts": len(texts), "seconds": round(enc_s, 3), "tokens_per_s": round(tc.total / enc_s, 1),
                   "texts_per_s": round(len(texts) / enc_s, 1),
                   "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else 0.0},
    }
    line = json.dumps(result)
    print(line, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(line + "\n")
    return result


if __name__ == "__main__":
    main()
