"""LLM rerankers with LoRA / QLoRA: pointwise Yes/No and listwise lettered options.

* **pointwise** — one prompt per (query, candidate) ending in ``Answer:``; score =
  logit(" Yes") − logit(" No") at the last position. Training: BCE on that difference
  (``pointwise_loss="bce"``) or 2-way CE over the two tokens (``"ce"``).
* **listwise** — up to 26 candidates as options ``A.``, ``B.``, …; each option is scored by the
  log-probability of its letter at the answer position (softmax over the letters shown).
  Scoring slides a window over the top-K (``window``, ``stride``) and, with ``tta``, also
  reads every window in reversed order; a candidate's score is the mean over all its reads.
  Training: CE with the gold's letter as target over a shuffled group (gold + negatives).

Hand-written loop rather than the HF ``Trainer`` / FlagEmbedding's reranker runner: the loss
reads a few logits at the last position only (``logits_to_keep=1`` keeps the [B, L, vocab]
tensor out of memory, which matters at 150k vocab for 7B–72B models) and listwise targets
differ per row; a ``Trainer`` would need a custom loss, collator and sampler anyway, and
FlagEmbedding's LLM reranker fixes its own prompt/data format and has no listwise mode.
Batches are left-padded (the last position is always the answer slot) with explicit
position ids, so a row's score does not depend on what it is batched with.
"""

from __future__ import annotations

import json
import math
import os
import string
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from utils.io import atomic_dir
from utils.lora import DEFAULT_TARGETS, attach_lora, load_adapter, load_causal_lm, load_tokenizer

QUERY = "query_id"
NAME = "item_text"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ANSWER_CONTEXT = "Answer:"
CONFIG_FILE = "reranker_config.json"
# The base model's copy that an export packs beside ``reranker/`` (utils.kaggle.inference): Kaggle's offline
# kernel reaches neither a model hub nor PyPI, so an adapter loads over this folder when it is there.
PACKED_BASE = "reranker_base"

# The prompt wording: ``query`` (the question part, ``str.format`` fields named after the query
# columns), ``pointwise`` (``{candidate}``) and ``listwise`` (``{options}``), both ending with the
# answer cue. These are the generic ones; a task module gives its own (``PROMPTS`` of
# utils/tasks/eedi.py, aqa.py) and ``rerank.prompts`` overrides any of them. Training saves them in
# ``reranker_config.json``, so scoring and the Kaggle kernel read the wording the adapter learned.
PROMPTS = {
    "query": "Query: {query_text}\n",
    "pointwise": "Candidate: {candidate}\nIs this candidate relevant to the query?\n" + ANSWER_CONTEXT,
    "listwise": "Options:\n{options}\nWhich option is the most relevant to the query?\n" + ANSWER_CONTEXT,
}
FIELDS = {"pointwise": "candidate", "listwise": "options"}


# ----------------------------------------------------------------------------- prompts

def check_prompts(prompts: dict | None = None) -> dict:
    """``PROMPTS`` with ``prompts`` over them, checked: known keys, each candidate template names its
    field once and ends with the answer cue (the Yes/No and letter ids are read right after it)."""
    unknown = sorted(set(prompts or {}) - set(PROMPTS))
    if unknown:
        raise ValueError(f"rerank.prompts: unknown key(s) {unknown}; known: {sorted(PROMPTS)}")
    out = {**PROMPTS, **(prompts or {})}
    for key, value in out.items():
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"rerank.prompts.{key}: expected a non-empty string, got {value!r}")
    for key, field in FIELDS.items():
        names = [f for _, f, _, _ in string.Formatter().parse(out[key]) if f is not None]
        if names != [field]:
            raise ValueError(f"rerank.prompts.{key}: needs exactly one field {{{field}}}, got {names}")
        if not out[key].endswith(ANSWER_CONTEXT):
            raise ValueError(f"rerank.prompts.{key}: must end with {ANSWER_CONTEXT!r} (the answer cue)")
    return out


def query_block(row: pd.Series | dict, template: str = PROMPTS["query"]) -> str:
    """The question part of a prompt: ``template`` filled from the row's query columns."""
    try:
        return template.format(**dict(row))
    except KeyError as e:
        raise ValueError(f"rerank.prompts.query names {e}, which the reranker rows lack; "
                         f"fields: {sorted(map(str, dict(row)))}") from None


def pointwise_tail(candidate: str, template: str = PROMPTS["pointwise"]) -> str:
    return template.format(candidate=candidate)


def listwise_tail(options: Sequence[str], template: str = PROMPTS["listwise"]) -> str:
    if len(options) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} options per prompt, got {len(options)}")
    return template.format(options="\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options)))


# ----------------------------------------------------------------------------- tokens

def answer_token_id(tokenizer, word: str, context: str = ANSWER_CONTEXT) -> int:
    """Id of the first token the model emits for ``word`` right after ``context``.

    Tokenises ``context + " " + word`` (then ``context + word``) and takes the first token past
    the context, so it finds ``▁Yes`` (SentencePiece), ``ĠYes`` (byte-level BPE) or ``yes``
    (lower-casing WordPiece) alike; falls back to a vocabulary lookup of the usual spellings.
    """
    base = tokenizer(context, add_special_tokens=False)["input_ids"]
    for cont in (" " + word, word):
        full = tokenizer(context + cont, add_special_tokens=False)["input_ids"]
        if len(full) > len(base) and full[: len(base)] == base:
            tid = full[len(base)]
            text = tokenizer.decode([tid]).strip().lower()
            if text and word.lower().startswith(text):
                return int(tid)
    vocab = tokenizer.get_vocab()
    for spelling in ("▁" + word, "Ġ" + word, word, word.lower(), "▁" + word.lower(), "Ġ" + word.lower()):
        if spelling in vocab:
            return int(vocab[spelling])
    raise ValueError(f"no token for {word!r} in this tokenizer")


def yes_no_token_ids(tokenizer) -> tuple[int, int]:
    """(Yes id, No id) as emitted after ``Answer:``; raises when they coincide."""
    yes, no = answer_token_id(tokenizer, "Yes"), answer_token_id(tokenizer, "No")
    if yes == no:
        raise ValueError("Yes and No map to the same token")
    return yes, no


def letter_token_ids(tokenizer, n: int = len(LETTERS)) -> list[int]:
    """Ids of option letters ``A``.. as emitted after ``Answer:``; raises on collisions."""
    ids = [answer_token_id(tokenizer, LETTERS[i]) for i in range(n)]
    if len(set(ids)) != n:
        raise ValueError("option letters share tokens in this tokenizer")
    return ids


def _special_prefix(tokenizer) -> list[int]:
    """Tokens the tokenizer puts before text (e.g. BOS for Llama, nothing for Qwen2)."""
    with_sp = tokenizer("a")["input_ids"]
    no_sp = tokenizer("a", add_special_tokens=False)["input_ids"]
    for i in range(len(with_sp) - len(no_sp) + 1):
        if with_sp[i : i + len(no_sp)] == no_sp:
            return list(with_sp[:i])
    return []


def encode_prompt(tokenizer, head: str, tail: str, max_length: int, prefix: list[int] | None = None,
                  ids: dict[str, list[int]] | None = None) -> list[int]:
    """``prefix + head + tail`` ids; only the head (question) is cut when over ``max_length``.

    The tail carries the candidate(s) and the answer cue, so it is never truncated. ``ids``: texts
    already tokenised (``token_ids``), looked up instead of tokenising again.
    """
    prefix = _special_prefix(tokenizer) if prefix is None else prefix
    ids = ids or {}
    tail_ids = ids[tail] if tail in ids else tokenizer(tail, add_special_tokens=False)["input_ids"]
    head_ids = ids[head] if head in ids else tokenizer(head, add_special_tokens=False)["input_ids"]
    room = max(0, max_length - len(prefix) - len(tail_ids))
    return prefix + head_ids[:room] + tail_ids


def token_ids(tokenizer, texts: Sequence[str]) -> dict[str, list[int]]:
    """Ids of each distinct text, tokenised in one batched call: a query's head repeats once per
    candidate and a candidate's tail across queries, so this is a fraction of the per-prompt calls."""
    distinct = list(dict.fromkeys(texts))
    return dict(zip(distinct, tokenizer(distinct, add_special_tokens=False)["input_ids"])) if distinct else {}


def length_stats(lengths: Sequence[int]) -> dict:
    """mean / p50 / p90 / p99 / max of token lengths."""
    a = np.asarray(lengths, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    return {"n": int(a.size), "mean": float(a.mean()), "p50": float(np.percentile(a, 50)),
            "p90": float(np.percentile(a, 90)), "p99": float(np.percentile(a, 99)), "max": int(a.max())}


def prompt_length_stats(df: pd.DataFrame, tokenizer, mode: str = "pointwise", window: int = 8,
                        verbose: bool = True, prompts: dict | None = None) -> dict:
    """Token-length statistics of the untruncated prompts ``df`` would produce, to choose ``max_length``.

    ``tokenizer``: a tokenizer or a path/hub id. Listwise prompts use each query's first
    ``window`` rows (``rank`` order when present).
    """
    tok = load_tokenizer(tokenizer) if isinstance(tokenizer, (str, os.PathLike)) else tokenizer
    p = check_prompts(prompts)
    if mode == "pointwise":
        texts = [(query_block(r, p["query"]), pointwise_tail(r[NAME], p["pointwise"])) for r in df.to_dict("records")]
    else:
        order = df.sort_values([QUERY, "rank"]) if "rank" in df.columns else df
        texts = [(query_block(g.iloc[0].to_dict(), p["query"]), listwise_tail(g[NAME].tolist()[:window], p["listwise"]))
                 for _, g in order.groupby(QUERY, sort=False)]
    stats = length_stats([len(encode_prompt(tok, h, t, 10**9)) for h, t in texts])
    if verbose:
        print(f"{mode} prompt tokens: " + ", ".join(f"{k}={v:.0f}" for k, v in stats.items()))
    return stats


# ----------------------------------------------------------------------------- windows

def listwise_windows(n: int, window: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) windows over ``n`` ranked candidates: every ``stride`` from 0, last one flush with the end."""
    if window < 1 or stride < 1:
        raise ValueError("window and stride must be >= 1")
    if n <= window:
        return [(0, n)] if n else []
    spans = [(s, s + window) for s in range(0, n - window + 1, stride)]
    if spans[-1][1] < n:
        spans.append((n - window, n))
    return spans


def listwise_plan(n: int, window: int, stride: int, tta: bool = True) -> list[list[int]]:
    """Option orders (candidate indices as shown A, B, …) for one query: each window, then reversed if ``tta``."""
    plan = []
    for s, e in listwise_windows(n, window, stride):
        plan.append(list(range(s, e)))
        if tta and e - s > 1:
            plan.append(list(range(e - 1, s - 1, -1)))
    return plan


# ----------------------------------------------------------------------------- model calls

def _device(model):
    return next(model.parameters()).device


def _collate(tokenizer, seqs: list[list[int]]):
    return tokenizer.pad({"input_ids": seqs}, padding=True, return_tensors="pt")


def _last_logits(model, batch):
    """Full-vocab logits at the last position, fp32, for a left-padded batch.

    Under SDPA the mask goes in ready-made (``sdpa_attention_mask``), as in ``Embedder.forward``: no
    host-device sync on every training and scoring batch.
    """
    import contextlib

    import torch

    from utils.retrieval.embed import cuda_dtype, host_padded, sdpa_attention_mask

    dev = _device(model)
    padded = host_padded(batch["attention_mask"])
    ids, mask = batch["input_ids"].to(dev), batch["attention_mask"].to(dev)
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
    sdpa = getattr(model.config, "_attn_implementation", None) == "sdpa"
    attn = sdpa_attention_mask(mask, causal=True, padded=padded) if sdpa else mask
    amp = torch.autocast("cuda", dtype=cuda_dtype(dev)) if dev.type == "cuda" else contextlib.nullcontext()
    with amp:
        out = model(input_ids=ids, attention_mask=attn, position_ids=pos, logits_to_keep=1, use_cache=False)
    return out.logits[:, -1, :].float()


def _batches_by_length(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _choice_logits(logits, choice_ids: list[list[int]]):
    """[B, max_choices] logits of each row's choice tokens, -inf where a row has fewer choices."""
    import torch

    width = max(len(c) for c in choice_ids)
    idx = torch.zeros(len(choice_ids), width, dtype=torch.long, device=logits.device)
    valid = torch.zeros_like(idx, dtype=torch.bool)
    for i, c in enumerate(choice_ids):
        idx[i, : len(c)] = torch.tensor(c)
        valid[i, : len(c)] = True
    picked = logits.gather(1, idx)
    return picked.masked_fill(~valid, float("-inf"))


# ----------------------------------------------------------------------------- examples

def _pointwise_examples(df: pd.DataFrame, tok, max_length: int, prompts: dict) -> list[dict]:
    yes, no = yes_no_token_ids(tok)
    prefix = _special_prefix(tok)
    rows = df.to_dict("records")
    texts = [(query_block(r, prompts["query"]), pointwise_tail(r[NAME], prompts["pointwise"])) for r in rows]
    ids = token_ids(tok, [t for pair in texts for t in pair])
    return [{"ids": encode_prompt(tok, head, tail, max_length, prefix, ids), "choices": [yes, no],
             "target": float(r.get("label", 0))} for r, (head, tail) in zip(rows, texts)]


def _listwise_examples(train_df: pd.DataFrame, tok, max_length: int, seed: int, permutations: int,
                       prompts: dict) -> list[dict]:
    """One example per (group, permutation): the group's rows shuffled into options, target = gold's letter."""
    rng = np.random.default_rng(seed)
    prefix = _special_prefix(tok)
    width = int(train_df.groupby("group").size().max())
    letters = letter_token_ids(tok, width)
    out = []
    for _, g in train_df.groupby("group", sort=True):
        names, labels = g[NAME].tolist(), g["label"].to_numpy()
        if labels.sum() != 1:
            raise ValueError("listwise groups need exactly one gold row")
        head = query_block(g.iloc[0].to_dict(), prompts["query"])
        for _ in range(permutations):
            perm = rng.permutation(len(names))
            ids = encode_prompt(tok, head, listwise_tail([names[i] for i in perm], prompts["listwise"]), max_length, prefix)
            out.append({"ids": ids, "choices": letters[: len(names)], "target": int(np.flatnonzero(labels[perm] == 1)[0])})
    return out


def _loss(choice_logits, targets, mode: str, pointwise_loss: str):
    import torch
    import torch.nn.functional as F

    if mode == "pointwise":
        y = torch.tensor(targets, dtype=torch.float32, device=choice_logits.device)
        if pointwise_loss == "bce":
            return F.binary_cross_entropy_with_logits(choice_logits[:, 0] - choice_logits[:, 1], y)
        # 2-way CE over (Yes, No) with soft target y for Yes
        logp = F.log_softmax(choice_logits, dim=-1)
        return -(y * logp[:, 0] + (1 - y) * logp[:, 1]).mean()
    t = torch.tensor(targets, dtype=torch.long, device=choice_logits.device)
    return F.cross_entropy(choice_logits, t)


# ----------------------------------------------------------------------------- training

def train_llm_reranker(
    train_df: pd.DataFrame,
    base: str,
    out_dir: str | os.PathLike,
    mode: str = "pointwise",
    r: int = 16,
    alpha: int = 32,
    dropout: float = 0.05,
    target_modules: Sequence[str] | str | None = DEFAULT_TARGETS,
    load_in_4bit: bool = False,
    epochs: float = 1.0,
    lr: float = 1e-4,
    batch_size: int = 4,
    grad_accum: int = 1,
    max_length: int = 512,
    warmup_ratio: float = 0.05,
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
    gradient_checkpointing: bool = True,
    pointwise_loss: str = "bce",
    listwise_permutations: int = 1,
    max_steps: int | None = None,
    seed: int = 42,
    log_every: int = 10,
    prompts: dict | None = None,
    compile: bool = False,
) -> str:
    """LoRA-train an LLM reranker on ``build_rerank_train`` output; saves adapter + tokenizer + config to ``out_dir``.

    ``mode="pointwise"`` uses every row (label 1/0); ``"listwise"`` uses each group as one
    lettered prompt (set ``n_negatives = window - 1`` when building the data to match scoring).
    ``load_in_4bit`` gives QLoRA (CUDA only). Batches group rows of similar length
    (``LengthGroupedSampler``) and are padded per batch. ``out_dir/train_log.json`` records
    per-step losses, per-epoch means, token counts and throughput. ``prompts``: the wording over
    ``PROMPTS`` (``check_prompts``), saved with the adapter. ``compile``: torch.compile each layer in place
    (``utils.retrieval.embed.compile_blocks``; the first steps compile).
    """
    import torch
    from torch.utils.data import RandomSampler
    from transformers import get_scheduler, set_seed
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from utils.retrieval.embed import compile_blocks, cuda_dtype, describe_dtype

    if mode not in ("pointwise", "listwise"):
        raise ValueError(f"unknown mode {mode!r}")
    prompts = check_prompts(prompts)
    set_seed(seed)
    tok = load_tokenizer(base)
    if mode == "pointwise":
        examples = _pointwise_examples(train_df, tok, max_length, prompts)
    else:
        examples = _listwise_examples(train_df, tok, max_length, seed, listwise_permutations, prompts)
    model = attach_lora(load_causal_lm(base, load_in_4bit=load_in_4bit), r=r, alpha=alpha, dropout=dropout,
                        target_modules=target_modules, gradient_checkpointing=gradient_checkpointing)
    if compile:
        model.config.use_cache = False  # a KV cache would make every layer recompile
        print(f"compile: {compile_blocks(model)} layers (torch.compile, dynamic shapes)", flush=True)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    # fp16 autocast (GPUs without bf16) needs loss scaling, else small gradients underflow
    scaler = torch.amp.GradScaler("cuda", enabled=torch.cuda.is_available() and cuda_dtype() == torch.float16)
    print(describe_dtype(), flush=True)
    steps_per_epoch = math.ceil(math.ceil(len(examples) / batch_size) / grad_accum)
    total = max_steps or max(1, math.ceil(steps_per_epoch * epochs))
    sched = get_scheduler("linear", optim, num_warmup_steps=int(warmup_ratio * total), num_training_steps=total)

    lengths = [len(e["ids"]) for e in examples]
    gen = torch.Generator().manual_seed(seed)
    sampler = (LengthGroupedSampler(batch_size, lengths=lengths, generator=gen)
               if len(examples) > batch_size else RandomSampler(examples, generator=gen))
    log = {"mode": mode, "losses": [], "epoch_losses": [], "n_examples": len(examples),
           "prompt_tokens": length_stats(lengths), "step_seconds": [], "step_tokens": []}
    step, micro, tokens, t0 = 0, 0, 0, time.perf_counter()
    model.train()
    epoch = 0
    while step < total:
        order = list(sampler)
        epoch_losses = []
        for i in range(0, len(order), batch_size):
            rows = [examples[j] for j in order[i : i + batch_size]]
            batch = _collate(tok, [e["ids"] for e in rows])
            tokens += int(batch["attention_mask"].sum())
            logits = _choice_logits(_last_logits(model, batch), [e["choices"] for e in rows])
            loss = _loss(logits, [e["target"] for e in rows], mode, pointwise_loss)
            scaler.scale(loss / grad_accum).backward()
            epoch_losses.append(loss.item())
            micro += 1
            if micro % grad_accum:
                continue
            scaler.unscale_(optim)
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            scaler.step(optim)
            scaler.update()
            sched.step()
            optim.zero_grad(set_to_none=True)
            step += 1
            log["losses"].append(float(np.mean(epoch_losses[-grad_accum:])))
            # after each step (loss.item() synchronised): throughput past a warm-up, e.g. past compiling
            log["step_seconds"].append(round(time.perf_counter() - t0, 4))
            log["step_tokens"].append(tokens)
            if log_every and step % log_every == 0:
                print(f"step {step}/{total} loss {log['losses'][-1]:.4f}", flush=True)
            if step >= total:
                break
        log["epoch_losses"].append(float(np.mean(epoch_losses)) if epoch_losses else float("nan"))
        epoch += 1
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    log.update(steps=step, epochs_run=epoch, train_tokens=tokens, train_seconds=seconds,
               train_tokens_per_s=tokens / max(seconds, 1e-9),
               peak_gib=torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None)
    model.eval()
    config = {"mode": mode, "base": str(base), "max_length": max_length, "load_in_4bit": load_in_4bit,
              "lora": {"r": r, "alpha": alpha, "dropout": dropout}, "prompts": prompts}
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        (tmp / "train_log.json").write_text(json.dumps(log, indent=2))
    return str(out_dir)


# ----------------------------------------------------------------------------- scoring

def load_llm_reranker(adapter_dir: str | os.PathLike, base: str | None = None, load_in_4bit: bool | None = None):
    """(model, tokenizer, config) for a trained adapter; ``base`` overrides the recorded base path, else a
    ``reranker_base/`` beside the adapter (an exported dataset) does."""
    config = json.loads((Path(adapter_dir) / CONFIG_FILE).read_text())
    packed = Path(adapter_dir).parent / PACKED_BASE
    base = base or (str(packed) if (packed / "config.json").is_file() else config["base"])
    four = config.get("load_in_4bit", False) if load_in_4bit is None else load_in_4bit
    model = load_adapter(base, adapter_dir, load_in_4bit=four)
    return model, load_tokenizer(str(adapter_dir)), config


def score_llm_reranker(
    df: pd.DataFrame,
    adapter_dir: str | os.PathLike | None = None,
    base: str | None = None,
    mode: str | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
    window: int = 8,
    stride: int = 4,
    tta: bool = True,
    load_in_4bit: bool | None = None,
    model=None,
    tokenizer=None,
    prompts: dict | None = None,
) -> np.ndarray:
    """Reranker scores aligned with the rows of ``df`` (``build_rerank_candidates`` output).

    Give ``adapter_dir`` (mode, base and max_length come from its config) or an already loaded
    ``model`` + ``tokenizer`` (+ ``mode``); with only ``base``, the plain base model is scored.
    Pointwise: logit(Yes) − logit(No). Listwise: mean letter log-probability over the windows /
    orders that show the row (``df`` needs ``query_id`` and ``rank``). The wording: ``prompts``, else
    the adapter's (``reranker_config.json``), else ``PROMPTS``.
    """
    import torch

    config: dict = {}
    if model is None:
        if adapter_dir is not None:
            model, tokenizer, config = load_llm_reranker(adapter_dir, base, load_in_4bit)
        elif base is not None:
            model, tokenizer = load_causal_lm(base, load_in_4bit=bool(load_in_4bit)).eval(), load_tokenizer(base)
        else:
            raise ValueError("pass adapter_dir, base or model")
    if tokenizer is None:
        raise ValueError("pass the tokenizer with the model")
    if tokenizer.padding_side != "left":
        tokenizer = load_tokenizer(tokenizer.name_or_path)
    mode = mode or config.get("mode", "pointwise")
    max_length = max_length or config.get("max_length", 512)
    if prompts is None and config and "prompts" not in config:
        from utils.tasks.eedi import PROMPTS as prompts  # adapters saved before the wording was: trained on Eedi's
    prompts = check_prompts(prompts or config.get("prompts"))
    model.eval()
    with torch.inference_mode():
        if mode == "pointwise":
            return _score_pointwise(model, tokenizer, df, batch_size, max_length, prompts)
        if mode == "listwise":
            return _score_listwise(model, tokenizer, df, batch_size, max_length, window, stride, tta, prompts)
    raise ValueError(f"unknown mode {mode!r}")


def _score_pointwise(model, tok, df, batch_size, max_length, prompts) -> np.ndarray:
    examples = _pointwise_examples(df, tok, max_length, prompts)
    scores = np.zeros(len(examples), dtype=np.float32)
    for idx in _batches_by_length([len(e["ids"]) for e in examples], batch_size):
        logits = _last_logits(model, _collate(tok, [examples[i]["ids"] for i in idx]))
        yes, no = examples[0]["choices"]
        scores[idx] = (logits[:, yes] - logits[:, no]).cpu().numpy()
    return scores


def _score_listwise(model, tok, df, batch_size, max_length, window, stride, tta, prompts) -> np.ndarray:
    import torch

    letters = letter_token_ids(tok, min(window, len(LETTERS)))
    prefix = _special_prefix(tok)
    rows = df.reset_index(drop=True)
    seqs: list[list[int]] = []
    shown: list[np.ndarray] = []  # df row positions in option order, per prompt
    for _, g in rows.sort_values([QUERY, "rank"], kind="stable").groupby(QUERY, sort=False):
        pos, names = g.index.to_numpy(), g[NAME].tolist()
        head = query_block(g.iloc[0].to_dict(), prompts["query"])
        for order in listwise_plan(len(pos), window, stride, tta):
            seqs.append(encode_prompt(tok, head, listwise_tail([names[i] for i in order], prompts["listwise"]), max_length,
                                      prefix))
            shown.append(pos[order])
    total = np.zeros(len(rows), dtype=np.float64)
    count = np.zeros(len(rows), dtype=np.int64)
    for idx in _batches_by_length([len(p) for p in seqs], batch_size):
        logits = _last_logits(model, _collate(tok, [seqs[i] for i in idx]))
        choice = _choice_logits(logits, [letters[: len(shown[i])] for i in idx])
        logp = torch.log_softmax(choice, dim=-1).cpu().numpy()
        for b, i in enumerate(idx):
            total[shown[i]] += logp[b, : len(shown[i])]
            count[shown[i]] += 1
    if (count == 0).any():
        raise RuntimeError("some candidates were not shown in any window")
    return (total / count).astype(np.float32)
