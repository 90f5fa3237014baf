"""Contrastive fine-tuning of an embedder on mined hard negatives (InfoNCE).

Our own loop rather than FlagEmbedding's finetune or the sentence-transformers trainer:
- every batch encodes each distinct passage once (hard negatives repeat a lot across the
  queries of a batch in a 2.5k-item corpus), and every query is scored against all of them
  (in-batch + mined negatives) — fewer forward passes for the same signal;
- a passage equal to another query's gold is still a valid negative only for the other
  queries, and the de-duplication keeps the gold exactly once, so no false-negative masking
  is needed;
- the same loop trains encoders fully and decoder LLMs with LoRA (4-bit optional);
- optional GradCache (``grad_cache_chunk``), teacher-score distillation (``distill_weight``) and
  multi-GPU data parallelism under torchrun, negatives shared across GPUs (utils.retrieval.distributed).
  Not torch's DDP wrapper: the loss is computed on embeddings gathered from every process and
  GradCache runs several backward passes per step, so gradients are summed once per step by hand.
It reads FlagEmbedding's jsonl, so FlagEmbedding's own finetune stays a drop-in alternative
(``flagembedding_command``); benchmarks/ compares the two.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from utils.retrieval import distributed as D
from utils.config import TrainConfig
from utils.retrieval.embed import Embedder, compile_blocks, cuda_dtype, describe_dtype


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
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
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
    reduction: str = "mean",
) -> torch.Tensor:
    """InfoNCE: each query against every passage; ``allowed`` masks passages out per query."""
    logits = q @ p.T / temperature
    if allowed is not None:
        logits = logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)
    return F.cross_entropy(logits, targets, reduction=reduction)


def distill_loss(
    student_logits: torch.Tensor,
    teacher_scores: torch.Tensor,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """KL(softmax(teacher / temperature) ‖ softmax(student)) per row, over the entries ``mask`` keeps.

    FlagEmbedding's ``kl_div`` distillation is the cross-entropy ``-Σ t·log s``; this is the
    same minus the teacher's entropy (a constant), so the gradient is identical and the loss is
    0 exactly when the two distributions agree.
    """
    if mask is None:
        mask = torch.ones_like(student_logits, dtype=torch.bool)
    low = torch.finfo(torch.float32).min  # finite, so masked entries give 0·finite, never NaN
    t_logits = (teacher_scores.float() / temperature).masked_fill(~mask, low)
    log_t = torch.log_softmax(t_logits, -1)
    log_s = torch.log_softmax(student_logits.float().masked_fill(~mask, low), -1)
    kl = torch.where(mask, log_t.exp() * (log_t - log_s), torch.zeros_like(log_s)).sum(-1)
    return kl.sum() if reduction == "sum" else kl.mean()


@dataclass
class Batch:
    """One global batch: queries, distinct passages, gold column, optional mask, groups, teacher scores."""

    queries: list[str]
    passages: list[str]
    targets: torch.Tensor
    allowed: torch.Tensor | None
    groups: list[list[int]]  # passage columns of each query's own group (gold first, then its negatives)
    teacher: list[list[float]] | None  # teacher scores aligned with ``groups``


def make_batch(records: Sequence[dict], n_negatives: int, rng: np.random.Generator, in_batch: bool,
               with_teacher: bool = False) -> Batch:
    """``build_batch`` plus each query's group and (``with_teacher``) its teacher scores.

    A record with several positives trains on one of them per step, drawn at random (as
    FlagEmbedding does); its other positives are masked out of its negatives, also in-batch.
    """
    passages: list[str] = []
    key_to_col: dict = {}
    targets, groups, teacher, others = [], [], [], []
    for r in records:
        n_pos = len(r["pos"])
        chosen = int(rng.integers(n_pos)) if n_pos > 1 else 0
        pos_ids = r.get("pos_ids") or [None] * n_pos
        pos_key = pos_ids[chosen]
        others.append([k if k is not None else t for i, (k, t) in enumerate(zip(pos_ids, r["pos"])) if i != chosen])
        negs = list(zip(r.get("neg_ids") or [None] * len(r["neg"]), r["neg"]))
        keep = range(len(negs))
        if len(negs) > n_negatives:
            keep = sorted(rng.choice(len(negs), n_negatives, replace=False))
            negs = [negs[i] for i in keep]
        cols = []
        for key, text in [(pos_key, r["pos"][chosen])] + negs:
            k = key if key is not None else text
            if k not in key_to_col:
                key_to_col[k] = len(passages)
                passages.append(text)
            cols.append(key_to_col[k])
        targets.append(cols[0])
        groups.append(cols)
        if with_teacher:
            teacher.append([float(r["pos_scores"][chosen])] + [float(r["neg_scores"][i]) for i in keep])
    queries = [(r.get("prompt") or "") + r["query"] for r in records]
    allowed = None
    if not in_batch:
        allowed = torch.zeros(len(records), len(passages), dtype=torch.bool)
        for i, cols in enumerate(groups):
            allowed[i, cols] = True
    masked = [(i, key_to_col[k]) for i, keys in enumerate(others) for k in keys if k in key_to_col]
    if masked:  # another positive of the query is never its negative
        allowed = torch.ones(len(records), len(passages), dtype=torch.bool) if allowed is None else allowed
        for i, col in masked:
            allowed[i, col] = False
    return Batch(queries, passages, torch.tensor(targets), allowed, groups, teacher if with_teacher else None)


def build_batch(records: Sequence[dict], n_negatives: int, rng: np.random.Generator, in_batch: bool):
    """Queries, distinct passages, gold index per query, and the allowed-passage mask."""
    b = make_batch(records, n_negatives, rng, in_batch)
    return b.queries, b.passages, b.targets, b.allowed


def step_loss(q: torch.Tensor, p_all: torch.Tensor, batch: Batch, rows: slice, cfg: TrainConfig) -> torch.Tensor:
    """This process's share of the batch loss: queries ``rows`` against every passage, summed and
    divided by the *global* number of queries, so the shares add up to the single-process mean."""
    targets = batch.targets[rows].to(q.device)
    allowed = None if batch.allowed is None else batch.allowed[rows].to(q.device)
    loss = contrastive_loss(q, p_all, targets, cfg.temperature, allowed, reduction="sum")
    if cfg.distill_weight:
        groups, teacher = batch.groups[rows], batch.teacher[rows]
        width = max((len(g) for g in groups), default=1)
        cols = torch.zeros(len(groups), width, dtype=torch.long)
        mask = torch.zeros(len(groups), width, dtype=torch.bool)
        scores = torch.zeros(len(groups), width)
        for i, (g, t) in enumerate(zip(groups, teacher)):
            cols[i, : len(g)], mask[i, : len(g)], scores[i, : len(g)] = torch.tensor(g), True, torch.tensor(t)
        student = torch.einsum("nh,ngh->ng", q, p_all[cols.to(q.device)]) / cfg.temperature
        loss = loss + cfg.distill_weight * distill_loss(student, scores.to(q.device), cfg.distill_temperature,
                                                        mask.to(q.device), reduction="sum")
    return loss / len(batch.queries)


@contextlib.contextmanager
def _model_kwargs(**extra):
    """Pass extra ``from_pretrained`` kwargs (the 4-bit config) through ``Embedder``, which takes none.
    Patching keeps embed.py the single loading path; drop this if Embedder grows ``model_kwargs``."""
    from unittest import mock

    from transformers import AutoModel

    orig = AutoModel.from_pretrained
    with mock.patch.object(AutoModel, "from_pretrained", lambda *a, **k: orig(*a, **{**k, **extra})):
        yield


def load_for_training(model_name_or_path: str, cfg: TrainConfig, device: str | None = None) -> Embedder:
    """The Embedder to train: fp32 (or a bf16/fp16 / NF4 frozen base under LoRA on GPU), LoRA attached."""
    from utils.retrieval.embed import default_device

    dev = device or default_device()
    on_gpu = dev.startswith("cuda")
    max_len = max(cfg.max_query_length, cfg.max_passage_length)
    if cfg.load_in_4bit:
        if not cfg.lora:
            raise ValueError("load_in_4bit trains a LoRA adapter on a frozen 4-bit base: set train.lora too")
        if not on_gpu:
            raise RuntimeError("load_in_4bit=True needs a CUDA GPU (bitsandbytes NF4 kernels); "
                               f"this run is on {dev!r}: set load_in_4bit: false")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as e:
            raise RuntimeError("load_in_4bit=True needs bitsandbytes: pip install bitsandbytes") from e
        from transformers import BitsAndBytesConfig

        qc = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=cuda_dtype(dev))
        with _model_kwargs(quantization_config=qc, device_map={"": torch.device(dev).index or 0}):
            emb = Embedder(model_name_or_path, device=dev, dtype=cuda_dtype(dev), max_length=max_len)
    else:
        dtype = cuda_dtype(dev) if (on_gpu and cfg.bf16 and cfg.lora) else torch.float32
        emb = Embedder(model_name_or_path, device=dev, dtype=dtype, max_length=max_len)
    emb.tokenizer.truncation_side = cfg.truncation_side or "right"  # as the pipeline encodes (ICL: left)
    if cfg.gradient_checkpointing and not cfg.load_in_4bit:
        emb.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora:
        emb.model = attach_lora(emb.model, cfg.lora, cfg.gradient_checkpointing, cfg.load_in_4bit)
    return emb


def _rand_context():
    """sentence-transformers' RNG snapshot/replay for GradCache (import path moved in v5)."""
    try:
        from sentence_transformers.base.losses.gradcache import RandContext
    except ImportError:
        from sentence_transformers.losses.CachedMultipleNegativesRankingLoss import RandContext
    return RandContext


def _encode(emb: Embedder, texts: list[str], max_len: int, autocast, dim: int, device) -> torch.Tensor:
    if not texts:  # an empty shard: still part of the graph so the gather's backward runs here too
        return torch.zeros(0, dim, device=device, requires_grad=True)
    with autocast:
        return emb(emb.tokenize(texts, max_len))


def _encode_cached(emb: Embedder, texts: list[str], max_len: int, chunk: int, autocast, dim: int, device):
    """GradCache pass 1: embeddings without a graph (a leaf that collects the loss gradient),
    plus each chunk's tokens and RNG snapshot, so pass 2 replays identical dropout masks."""
    RandContext = _rand_context()
    outs, chunks = [], []
    with torch.no_grad():
        for i in range(0, len(texts), chunk):
            tok = {k: v.to(device) for k, v in emb.tokenize(texts[i : i + chunk], max_len).items()}
            rc = RandContext(*tok.values())
            with autocast:
                outs.append(emb(tok))
            chunks.append((tok, rc))
    e = torch.cat(outs) if outs else torch.zeros(0, dim, device=device)
    return e.detach().requires_grad_(), chunks


def _replay(emb: Embedder, chunks: list, grad: torch.Tensor | None, chunk: int, autocast) -> None:
    """GradCache pass 2: re-embed each chunk with a graph and back-propagate its cached gradient."""
    if not chunks or grad is None:
        return
    for (tok, rc), g in zip(chunks, grad.split(chunk)):
        with rc, autocast:
            out = emb(tok)
        out.backward(g)


def backward_step(emb: Embedder, batch: Batch, cfg: TrainConfig, autocast=None, rank: int = 0,
                  world_size: int = 1, scaler: torch.amp.GradScaler | None = None) -> torch.Tensor:
    """Embed this process's shard of ``batch``, compute its loss share and accumulate gradients.

    With ``cfg.grad_cache_chunk`` the texts are embedded in chunks twice (GradCache): the
    gradients equal the plain step's, with activation memory of one chunk. ``scaler`` (fp16
    autocast) scales the loss before backward; the returned loss is unscaled.
    """
    autocast = autocast if autocast is not None else contextlib.nullcontext()
    dim, dev = emb.model.config.hidden_size, next(emb.model.parameters()).device
    nq, np_ = len(batch.queries), len(batch.passages)
    rows, cols = D.shard_range(nq, rank, world_size), D.shard_range(np_, rank, world_size)
    p_sizes = D.shard_sizes(np_, world_size)
    chunk = cfg.grad_cache_chunk
    if chunk:
        q, q_chunks = _encode_cached(emb, batch.queries[rows], cfg.max_query_length, chunk, autocast, dim, dev)
        p, p_chunks = _encode_cached(emb, batch.passages[cols], cfg.max_passage_length, chunk, autocast, dim, dev)
        loss = step_loss(q, D.all_gather_with_grad(p, p_sizes), batch, rows, cfg)
        (scaler.scale(loss) if scaler is not None else loss).backward()  # q.grad / p.grad carry the scale
        _replay(emb, q_chunks, q.grad, chunk, autocast)
        _replay(emb, p_chunks, p.grad, chunk, autocast)
    else:
        q = _encode(emb, batch.queries[rows], cfg.max_query_length, autocast, dim, dev)
        p = _encode(emb, batch.passages[cols], cfg.max_passage_length, autocast, dim, dev)
        loss = step_loss(q, D.all_gather_with_grad(p, p_sizes), batch, rows, cfg)
        (scaler.scale(loss) if scaler is not None else loss).backward()
    return loss.detach()


def train_embedder(
    records: Sequence[dict],
    model_name_or_path: str,
    out_dir: str | os.PathLike,
    config: TrainConfig | dict | None = None,
    device: str | None = None,
    show_progress: bool = True,
) -> list[dict]:
    """Fine-tune on FlagEmbedding-style records; save to ``out_dir``; return the loss log.

    Under torchrun (WORLD_SIZE > 1) every process builds the same global batch, embeds its own
    shard of queries and passages, and scores its queries against the passages of all processes
    (gathered with gradient); gradients are summed across processes and only rank 0 saves.
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    if not records:
        raise ValueError("no training records (is the hard-negative file empty?)")
    if cfg.distill_weight and any(not r.get("pos_scores") or r.get("neg_scores") is None for r in records):
        raise ValueError("distill_weight > 0 needs teacher scores: every record must carry pos_scores and neg_scores")
    info = D.init(device)
    try:
        return _train(records, model_name_or_path, out_dir, cfg, info.device if info.enabled else device,
                      show_progress and info.is_main, info)
    finally:
        D.shutdown(info)


def _train(records, model_name_or_path, out_dir, cfg: TrainConfig, device, show_progress: bool, info: D.DistInfo):
    torch.manual_seed(cfg.seed)
    emb = load_for_training(model_name_or_path, cfg, device)
    on_gpu = emb.device_name.startswith("cuda")
    model = emb.model
    use_cache = getattr(model.config, "use_cache", None)
    if use_cache:
        model.config.use_cache = False  # no KV cache while training
    model.train()
    if cfg.compile:
        n = compile_blocks(model)
        if show_progress:
            print(f"compile: {n} layers (torch.compile, dynamic shapes)" if n else
                  "compile: no repeated layers found, nothing compiled", flush=True)
    params = [p for p in model.parameters() if p.requires_grad]
    D.broadcast_params(params)
    if info.enabled:
        torch.manual_seed(cfg.seed + info.rank)  # different dropout masks on each process
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW(  # fused: one kernel for all parameters on GPU (foreach was ~18 ms/step on MiniLM)
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr,
        fused=on_gpu and all(p.is_cuda and p.is_floating_point() for p in params),
    )
    batches = _batches(len(records), cfg.batch_size, cfg.epochs, cfg.seed)
    if not batches:  # nothing would train: never save (and so replace a model with) an untrained copy
        raise ValueError(f"no training step: {len(records)} record(s) at epochs {cfg.epochs} and batch_size "
                         f"{cfg.batch_size} make no batch of 2 or more queries")
    warmup = int(cfg.warmup_ratio * len(batches))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / max(1, warmup), max(0.0, (len(batches) - s) / max(1, len(batches) - warmup)))
    )
    rng = np.random.default_rng(cfg.seed)
    half = cuda_dtype(emb.device_name) if on_gpu and cfg.bf16 else None
    autocast = torch.autocast("cuda", dtype=half) if half is not None else contextlib.nullcontext()
    scaler = torch.amp.GradScaler("cuda", enabled=half == torch.float16)  # fp16 gradients underflow unscaled
    if show_progress:
        print(describe_dtype(emb.device_name) if half or not on_gpu else "dtype: float32 (train.bf16 off)", flush=True)
    dev = next(model.parameters()).device
    log: list[dict] = []
    t0, n_texts = time.perf_counter(), 0
    bar = tqdm(batches, disable=not show_progress, desc="train")
    for step, idx in enumerate(bar):
        batch = make_batch([records[i] for i in idx], cfg.n_negatives, rng, cfg.in_batch_negatives,
                           with_teacher=cfg.distill_weight > 0)
        loss = backward_step(emb, batch, cfg, autocast, info.rank, info.world_size, scaler)
        D.all_reduce_grads(params)
        scaler.unscale_(opt)
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        scaler.step(opt)
        scaler.update()
        sched.step()
        opt.zero_grad(set_to_none=True)
        n_texts += len(batch.queries) + len(batch.passages)
        if step % cfg.log_every == 0 or step == len(batches) - 1:
            value = D.all_reduce_sum(float(loss), dev)
            elapsed = time.perf_counter() - t0
            log.append({"step": step, "epoch": step / max(1, len(batches)) * cfg.epochs, "loss": value,
                        "lr": sched.get_last_lr()[0], "texts_per_s": n_texts / elapsed, "texts": n_texts,
                        "elapsed_s": elapsed})
            bar.set_postfix(loss=f"{value:.3f}")
    model.eval()
    if use_cache:
        model.config.use_cache = use_cache
    emb.model = model
    emb.max_length = cfg.max_query_length
    if info.is_main:  # only a finished run replaces out_dir: model and log in a temp dir beside it, then renamed
        from utils.io import atomic_dir, write_json

        with atomic_dir(out_dir) as tmp:
            emb.save(tmp)
            write_json(tmp / "train_log.json", {"config": asdict(cfg), "log": log, "world_size": info.world_size,
                                                "seconds": time.perf_counter() - t0, "texts": n_texts})
    return log


def train_distributed(
    records_jsonl: str | os.PathLike,
    model_name_or_path: str,
    out_dir: str | os.PathLike,
    config: TrainConfig | dict | None,
    nproc: int,
    timeout: float | None = None,
) -> list[dict]:
    """Run ``train_embedder`` on ``nproc`` processes (one per GPU) via torchrun; returns rank 0's log."""
    import json

    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    proc = D.launch(["--records", str(records_jsonl), "--model", str(model_name_or_path), "--out", str(out_dir),
                     "--config", json.dumps(asdict(cfg))], nproc)
    rc = proc.wait(timeout=timeout)
    if rc != 0:
        raise RuntimeError(f"distributed training exited with status {rc} (see the torchrun output above)")
    return json.loads((Path(out_dir) / "train_log.json").read_text())["log"]


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
        "--temperature", str(cfg.temperature), "--warmup_steps", str(cfg.warmup_ratio),  # transformers 5: warmup_steps < 1 is a ratio
        "--weight_decay", str(cfg.weight_decay), "--sentence_pooling_method", "mean",
        "--normalize_embeddings", "True", "--logging_steps", str(cfg.log_every), "--save_strategy", "no",
        "--dataloader_drop_last", "True", "--seed", str(cfg.seed), "--report_to", "none",
    ]
    if use_cpu:
        cmd += ["--use_cpu", "True"]
    elif cfg.bf16:
        cmd += ["--fp16" if torch.cuda.is_available() and cuda_dtype() == torch.float16 else "--bf16", "True"]
    return cmd
