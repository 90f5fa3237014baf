"""QLoRA pointwise-reranker benchmark: 4-bit load, train, score, adapter reload — on a ~1B random Llama.

Usage (GPU, repo root):  python benchmarks/gpu_qlora_reranker.py --out /tmp/bench.json
CPU smoke test:          python benchmarks/gpu_qlora_reranker.py --cpu-smoke --out /tmp/bench.json

Builds a random-initialised Llama of realistic shape (default hidden 2048, 16 layers, 16 heads,
vocab 32000 ≈ 1.1B parameters) with a locally trained tokenizer (tests/tiny_models.py), loads
it in NF4 through ``utils.lora``, trains the pointwise reranker on synthetic Eedi-shaped
prompts padded to realistic length, scores, reloads the saved adapter and checks the scores
match. Prints one JSON line and writes it to ``--out``.
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


def synthetic_train(n_queries: int, n_negatives: int, pad_words: int, seed: int = 0):
    """(train_df, candidate_df) from tests/tiny_models.synthetic_task, question text padded to realistic length."""
    import pandas as pd

    from tiny_models import synthetic_task
    from utils.rerank.data import build_rerank_candidates, build_rerank_train

    pairs, mis, cands = synthetic_task(seed=seed)
    reps = -(-n_queries // len(pairs))
    filler = " ".join(["the student works out the value of the number"] * (pad_words // 9))
    blocks = []
    for r in range(reps):
        p = pairs.copy()
        p["query_id"] = p["query_id"] + f"_{r}"
        p["QuestionText"] = p["QuestionText"] + " " + filler
        p["query_text"] = p["query_text"] + " " + filler
        blocks.append(p)
    pairs = pd.concat(blocks, ignore_index=True).iloc[:n_queries]
    cands = pd.concat([cands.assign(query_id=cands["query_id"] + f"_{r}") for r in range(reps)])
    cands = cands[cands["query_id"].isin(pairs["query_id"])]
    train = build_rerank_train(cands, pairs, mis, n_negatives=n_negatives, top_k=len(mis), seed=seed)
    head = build_rerank_candidates(cands, pairs, mis, top_k=len(mis))
    return train, head


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny model, fp32 on CPU, no 4-bit")
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--intermediate", type=int, default=5632)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=384)
    ap.add_argument("--pad-words", type=int, default=180, help="filler words per question (prompt length)")
    ap.add_argument("--score-rows", type=int, default=256)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from tiny_models import make_tiny_decoder
    from utils.rerank import llm as lr
    from utils.lora import load_tokenizer
    from utils.tasks.eedi import PROMPTS as EEDI  # the data is Eedi

    from _common import use_cuda

    cuda = use_cuda(args.cpu_smoke)
    if args.cpu_smoke:
        args.hidden, args.layers, args.heads, args.kv_heads, args.intermediate = 64, 2, 4, 2, 128
        args.vocab, args.steps, args.batch_size, args.max_length = 0, 3, 4, 96
        args.pad_words, args.score_rows, args.lora_r = 18, 16, 4
    work = Path(args.workdir or tempfile.mkdtemp(prefix="qlora_bench_"))
    t0 = time.perf_counter()
    base = make_tiny_decoder(work / "base", arch="llama", hidden_size=args.hidden, num_layers=args.layers,
                             num_heads=args.heads, num_kv_heads=args.kv_heads, intermediate_size=args.intermediate,
                             vocab_size=args.vocab or None, max_position_embeddings=4096,
                             dtype="bfloat16" if cuda else "float32")
    build_s = time.perf_counter() - t0

    n_queries = max(8, args.steps * args.batch_size // 8 + 1)
    train, head = synthetic_train(n_queries, n_negatives=7, pad_words=args.pad_words)
    head = head.iloc[: args.score_rows].reset_index(drop=True)
    tok = load_tokenizer(base)
    stats = lr.prompt_length_stats(train, tok, "pointwise", verbose=False, prompts=EEDI)

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    out = lr.train_llm_reranker(train, base, work / "adapter", mode="pointwise", r=args.lora_r, alpha=2 * args.lora_r,
                                dropout=0.05, load_in_4bit=cuda, lr=1e-4, batch_size=args.batch_size,
                                max_length=args.max_length, max_steps=args.steps, gradient_checkpointing=True,
                                warmup_ratio=0.1, log_every=10, prompts=EEDI)
    log = json.loads((Path(out) / "train_log.json").read_text())
    peak_train = torch.cuda.max_memory_allocated() if cuda else 0

    # Score with a fresh 4-bit load of base + adapter (what inference does), twice: timed, then reload check.
    model, tok2, _ = lr.load_llm_reranker(out, load_in_4bit=cuda)
    n_tokens = sum(len(lr.encode_prompt(tok2, lr.query_block(r, EEDI["query"]), lr.pointwise_tail(r["item_text"], EEDI["pointwise"]),
                                        args.max_length)) for r in head.to_dict("records"))
    if cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    s1 = lr.score_llm_reranker(head, model=model, tokenizer=tok2, mode="pointwise", batch_size=2 * args.batch_size,
                               max_length=args.max_length, prompts=EEDI)
    if cuda:
        torch.cuda.synchronize()
    score_s = time.perf_counter() - t
    peak_all = torch.cuda.max_memory_allocated() if cuda else 0
    del model
    if cuda:
        torch.cuda.empty_cache()
    s2 = lr.score_llm_reranker(head, out, batch_size=2 * args.batch_size, load_in_4bit=cuda)

    result = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "load_in_4bit": cuda,
        "shape": {"hidden": args.hidden, "layers": args.layers, "heads": args.heads, "kv_heads": args.kv_heads,
                  "intermediate": args.intermediate, "vocab": len(tok) if not args.vocab else args.vocab},
        "params_approx": _llama_params(args, len(tok)),
        "build_s": round(build_s, 2),
        "train_steps": log["steps"],
        "batch_size": args.batch_size,
        "prompt_tokens": stats,
        "train_tokens": log["train_tokens"],
        "train_tokens_per_s": round(log["train_tokens_per_s"], 1),
        "train_loss_first": log["losses"][0],
        "train_loss_last": log["losses"][-1],
        "peak_gpu_mem_train_gib": round(peak_train / 2**30, 3),
        "peak_gpu_mem_gib": round(peak_all / 2**30, 3),
        "score_rows": len(head),
        "score_tokens_per_s": round(n_tokens / max(score_s, 1e-9), 1),
        "reload_max_abs_diff": float(np.abs(s1 - s2).max()),
        "reload_identical": bool(np.allclose(s1, s2, atol=1e-3 if cuda else 1e-6)),
    }
    line = json.dumps(result)
    print(line, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(line + "\n")
    if not result["reload_identical"]:
        raise SystemExit(f"adapter reload changed scores by {result['reload_max_abs_diff']}")
    return result


def _llama_params(args, tok_len: int) -> int:
    v = args.vocab or tok_len
    h, i, layers = args.hidden, args.intermediate, args.layers
    kv = h * args.kv_heads // args.heads
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    return int(2 * v * h + layers * per_layer + h)


if __name__ == "__main__":
    main()
