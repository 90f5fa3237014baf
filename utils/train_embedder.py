"""Contrastive fine-tuning of an embedder on mined hard negatives (InfoNCE).

Our own loop rather than FlagEmbedding's finetune or the sentence-transformers trainer:
- every batch encodes each distinct passage once (hard negatives repeat a lot across the
  queries of a batch in a 2.5k-item corpus), and every query is scored against all of them
  (in-batch + mined negatives) — fewer forward passes for the same signal;
- a passage equal to another query's gold is still a valid negative only for the other
  queries, and the de-duplication keeps the gold exactly once, so no false-negative masking
  is needed;
- the same loop trains encoders fully and decoder LLMs with LoRA (4-bit optional).
It reads FlagEmbedding's jsonl, so FlagEmbedding's own finetune stays a drop-in alternative
(``flagembedding_command``); benchmarks/ compares the two.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .embed import Embedder


@dataclass
class TrainConfig:
    """Hyper-parameters of one fine-tuning run (every field settable from the YAML config)."""

    epochs: float = 1.0
    lr: float = 5e-5
    batch_size: int = 32
    n_negatives: int = 15
    temperature: float = 0.05
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    max_query_length: int = 256
    max_passage_length: int = 64
    in_batch_negatives: bool = True
    seed: int = 42
    bf16: bool = True  # autocast on GPU; ignored on CPU (fp32 there)
    gradient_checkpointing: bool = False
    lora: dict | None = None  # e.g. {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
    load_in_4bit: bool = False
    log_every: int = 10
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict | None) -> "TrainConfig":
        d = dict(d or {})
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


def _batches(n: int, batch_size: int, epochs: float, seed: int) -> list[np.ndarray]:
    """Shuffled index batches for ``epochs`` (a fraction trains on part of the last epoch)."""
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    full = int(math.floor(epochs))
    for _ in range(full):
        perm = rng.permutation(n)
        out += [perm[i : i + batch_size] for i in range(0, n, batch_size)]
    rest = epochs - full
    if rest > 0:
        perm = rng.permutation(n)[: max(1, int(round(rest * n)))]
        out += [perm[i : i + batch_size] for i in range(0, len(perm), batch_size)]
    return [b for b in out if len(b) > 1]  # a one-query batch has no in-batch signal


def attach_lora(model: torch.nn.Module, lora: dict, gradient_checkpointing: bool, kbit: bool) -> torch.nn.Module:
    """Wrap ``model`` with a peft LoRA adapter for feature extraction."""
    from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training

    if kbit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    cfg = LoraConfig(
        r=int(lora.get("r", 16)),
        lora_alpha=int(lora.get("alpha", 32)),
        lora_dropout=float(lora.get("dropout", 0.05)),
        target_modules=lora.get("target_modules", "all-linear"),
        task_type=TaskType.FEATURE_EXTRACTION,
    )
    return get_peft_model(model, cfg)


def contrastive_loss(
    q: torch.Tensor,
    p: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE: each query against every passage; ``allowed`` masks passages out per query."""
    logits = q @ p.T / temperature
    if allowed is not None:
        logits = logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)
    return F.cross_entropy(logits, targets)


def build_batch(records: Sequence[dict], n_negatives: int, rng: np.random.Generator, in_batch: bool):
    """Queries, distinct passages, gold index per query, and the allowed-passage mask."""
    passages: list[str] = []
    key_to_col: dict = {}
    targets, groups = [], []
    for r in records:
        pos_key = (r.get("pos_ids") or [None])[0]
        negs = list(zip(r.get("neg_ids") or [None] * len(r["neg"]), r["neg"]))
        if len(negs) > n_negatives:
            negs = [negs[i] for i in sorted(rng.choice(len(negs), n_negatives, replace=False))]
        cols = []
        for key, text in [(pos_key, r["pos"][0])] + negs:
            k = key if key is not None else text
            if k not in key_to_col:
                key_to_col[k] = len(passages)
                passages.append(text)
            cols.append(key_to_col[k])
        targets.append(cols[0])
        groups.append(cols)
    queries = [(r.get("prompt") or "") + r["query"] for r in records]
    allowed = None
    if not in_batch:
        allowed = torch.zeros(len(records), len(passages), dtype=torch.bool)
        for i, cols in enumerate(groups):
            allowed[i, cols] = True
    return queries, passages, torch.tensor(targets), allowed


def train_embedder(
    records: Sequence[dict],
    model_name_or_path: str,
    out_dir: str | os.PathLike,
    config: TrainConfig | dict | None = None,
    device: str | None = None,
    show_progress: bool = True,
) -> list[dict]:
    """Fine-tune on FlagEmbedding-style records; save to ``out_dir``; return the loss log."""
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    if not records:
        raise ValueError("no training records (is the hard-negative file empty?)")
    torch.manual_seed(cfg.seed)
    emb = Embedder(model_name_or_path, device=device, dtype=torch.float32,
                   max_length=max(cfg.max_query_length, cfg.max_passage_length))
    on_gpu = emb.device_name.startswith("cuda")
    if cfg.gradient_checkpointing:
        emb.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora:
        emb.model = attach_lora(emb.model, cfg.lora, cfg.gradient_checkpointing, cfg.load_in_4bit)
    model = emb.model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    batches = _batches(len(records), cfg.batch_size, cfg.epochs, cfg.seed)
    warmup = int(cfg.warmup_ratio * len(batches))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / max(1, warmup), max(0.0, (len(batches) - s) / max(1, len(batches) - warmup)))
    )
    rng = np.random.default_rng(cfg.seed)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_gpu and cfg.bf16)
    log: list[dict] = []
    t0, n_texts = time.perf_counter(), 0
    bar = tqdm(batches, disable=not show_progress, desc="train")
    for step, idx in enumerate(bar):
        queries, passages, targets, allowed = build_batch([records[i] for i in idx], cfg.n_negatives, rng, cfg.in_batch_negatives)
        with autocast:
            q = emb(emb.tokenize(queries, cfg.max_query_length))
            p = emb(emb.tokenize(passages, cfg.max_passage_length))
        loss = contrastive_loss(q, p, targets.to(q.device), cfg.temperature, None if allowed is None else allowed.to(q.device))
        loss.backward()
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        n_texts += len(queries) + len(passages)
        if step % cfg.log_every == 0 or step == len(batches) - 1:
            value = float(loss.detach())
            log.append({"step": step, "epoch": step / max(1, len(batches)) * cfg.epochs, "loss": value,
                        "lr": sched.get_last_lr()[0], "texts_per_s": n_texts / (time.perf_counter() - t0)})
            bar.set_postfix(loss=f"{value:.3f}")
    model.eval()
    emb.model = model
    emb.max_length = cfg.max_query_length
    emb.save(out_dir)
    from .io import write_json

    write_json(Path(out_dir) / "train_log.json", {"config": asdict(cfg), "log": log,
                                                   "seconds": time.perf_counter() - t0, "texts": n_texts})
    return log


def flagembedding_command(
    train_jsonl: str, model: str, out_dir: str, cfg: TrainConfig, use_cpu: bool, python: str = "python"
) -> list[str]:
    """The equivalent FlagEmbedding encoder-only finetune command (for comparison runs)."""
    cmd = [
        python, "-m", "FlagEmbedding.finetune.embedder.encoder_only.base",
        "--model_name_or_path", model, "--train_data", train_jsonl, "--output_dir", out_dir,
        "--learning_rate", str(cfg.lr), "--num_train_epochs", str(cfg.epochs),
        "--per_device_train_batch_size", str(cfg.batch_size), "--train_group_size", str(cfg.n_negatives + 1),
        "--query_max_len", str(cfg.max_query_length), "--passage_max_len", str(cfg.max_passage_length),
        "--temperature", str(cfg.temperature), "--warmup_ratio", str(cfg.warmup_ratio),
        "--weight_decay", str(cfg.weight_decay), "--sentence_pooling_method", "mean",
        "--normalize_embeddings", "True", "--logging_steps", str(cfg.log_every), "--save_strategy", "no",
        "--dataloader_drop_last", "True", "--seed", str(cfg.seed), "--report_to", "none",
    ]
    if use_cpu:
        cmd += ["--use_cpu", "True"]
    elif cfg.bf16:
        cmd += ["--bf16", "True"]
    return cmd
