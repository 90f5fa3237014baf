"""ICL decoder embedder training (utils.retrieval.train_embedder: LoRA, last-token pooling, in-context examples
in the query) against FlagEmbedding's ``decoder_only.icl`` embedder finetune on the same rows, model, LoRA,
batch, group, lengths, examples, steps and precision: tokens/s and peak GPU memory of each, ratio ours/peer.

    # CPU smoke (shrunk random model; FlagEmbedding runs on CPU too when importable):
    python benchmarks/bench_icl_embedder.py --cpu-smoke --out benchmarks/results/bench_icl_embedder_cpu_smoke.json
    # one H200 (random-weight SmolLM2-135M from the carried config; carry .cache/bench with smollm2_cfg/ and
    # eedi/, and .whl/ installed as in benchmarks/README.md: pip install --target /tmp/site, PYTHONPATH=/tmp/site):
    PYTHONPATH=/tmp/site python3 benchmarks/bench_icl_embedder.py --steps 30 --batch-size 16 --group 8 \\
        --query-max-length 512 --passage-max-length 64 --icl-k 3 --lora-r 16   # the defaults; + --gradient-checkpointing

Model: ``--model DIR`` or ``--random-from DIR`` (default ``.cache/bench/smollm2_cfg``): its config.json +
tokenizer with random weights (seed 0) saved bf16 on CUDA / fp32 on CPU (``bench_llm_reranker.build_model``;
speed does not depend on weights); ``--cpu-smoke`` shrinks the config (2 layers, hidden 64) and the sizes
(8 timed steps, batch 4, group 4, query max 256) and runs both tools on one CPU thread (``--cpu-threads``).

Data: ``(warmup + steps) x batch`` labelled Eedi pairs (seeded sample; ``_common.default_data_dir``, so the
real Kaggle rows when ``../shared/data/eedi`` or ``.cache/bench/eedi`` exists), each with ``group - 1`` random
corpus items as negatives (never its positive). The ICL prompts are built once here, by
``utils.retrieval.icl.with_icl_queries`` (``--icl-k`` examples from other labelled questions, same construct /
subject first, Eedi's instruction): ``[examples\\n\\n]<instruct>{task}\\n<query>{question}\\n<response>``.
Prompts longer than ``--query-max-length`` are cut here, from the left, at token boundaries (the suite's
convention: the oldest example loses its head, never the question or the ``<response>`` slot), so that neither
tool truncates anything and both train on the same token sequences:

- ours: records ``{query: prompt, pos, neg}`` -> ``train_embedder`` (bf16 base + bf16 autocast on GPU, LoRA on
  the 7 projection layers, last-token pooling with an appended EOS, in-batch negatives, each distinct passage of
  a batch encoded once, fused AdamW, temperature 0.05, lr 1e-4, no warm-up, weight decay 0.01, clip 1.0).
- peer: ``python -m FlagEmbedding.finetune.embedder.decoder_only.icl`` through ``_flag_runner.py``; jsonl rows
  ``{query: prompt minus its final "\\n<response>", pos, neg, prompt: ""}`` with ``--retrieval_use_examples
  False`` and ``--icl_suffix_str "\\n<response>"``: it appends the suffix back and its tokenizer
  (``add_eos_token=True``) the EOS, so its query is our prompt + EOS, token for token (checked below). Its own
  example mechanism is not used: it draws 0-5 examples at random from the *same batch* per query, so it could
  not see the same text as ours (``--example_query_max_len`` / ``--example_passage_max_len`` are passed but
  inert). ``--same_dataset_within_batch True`` (its runner requires it), ``per_device_train_batch_size`` =
  batch (queries), ``train_group_size`` = group, ``--sentence_pooling_method last_token``, normalised, same
  LoRA r / alpha / dropout / targets, lr, weight decay, clip, temperature, bf16 (``--use_cpu`` on CPU),
  gradient checkpointing (non-reentrant) when asked, ``--logging_nan_inf_filter False`` (its default checks
  the loss on the host every step; off is its faster setting), optimizer: the Trainer's adamw_torch_fused.

Timing and tokens (the same for both): ``--warmup-steps`` untimed steps, then ``--steps`` timed ones between
two synchronised clock reads: ours from the start of step ``warmup`` (a wrapped ``backward_step``) to the save
after the loop (``Embedder.save``), the peer from the end of step ``warmup`` to the end of the last step (a
``TrainerCallback.on_step_end``). Tokens = non-pad tokens (attention mask sums) of the tokenised batches fed
to the forward passes of those steps: ours read in ``Embedder.forward`` (queries, then the distinct passages),
the peer's in its collator's output (queries + batch x group passages). ``group tokens`` count every query and
each of its ``group`` passages, duplicates included (the same work definition for both; ours' forward tokens
are fewer when a passage repeats within a batch). The same probes hash every token sequence: the check reports
whether the two tools trained on identical query sequences (as a multiset) and the same passage sequences;
the probes' own time is subtracted from both windows. Peak memory: ``torch.cuda.max_memory_allocated`` in each
process from the start of training (ours: peak stats reset at the first step, the model loaded; peer: at
``Trainer.train``).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (DEVICE_BUNDLE, ROOT, default_data_dir, has_module, load_data, machine_info, ratio,  # noqa: E402
                     use_cuda, write_results)

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SUFFIX = "\n<response>"  # utils.retrieval.icl.SUFFIX (not imported here: the peer subprocess needs no utils)
TEMPERATURE = 0.05
PEER_MODULE = "FlagEmbedding.finetune.embedder.decoder_only.icl"


# -- probes (both sides) ------------------------------------------------------------------------
def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class Probe:
    """Per step: non-pad / padded tokens of the query and passage batches; hashes of every sequence.
    ``check_s`` is the time spent here (subtracted from the timed windows)."""

    def __init__(self) -> None:
        self.steps: list[dict] = []
        self.q_hashes: list[str] = []
        self.p_hashes: set[str] = set()
        self.check_s = 0.0
        self.marks: dict[str, list[float]] = {}

    def new_step(self, **extra) -> None:
        self.steps.append({"q": 0, "p": 0, "q_padded": 0, "p_padded": 0, "q_seqs": 0, "p_seqs": 0, **extra})

    def add(self, kind: str, batch) -> None:
        t = time.perf_counter()
        for b in batch if isinstance(batch, list) else [batch]:  # FlagEmbedding's sub-batches come as a list
            ids, mask = b["input_ids"].cpu().numpy(), b["attention_mask"].cpu().numpy().astype(bool)
            rec = self.steps[-1]
            rec[kind] += int(mask.sum())
            rec[f"{kind}_padded"] += int(mask.size)
            rec[f"{kind}_seqs"] += len(ids)
            for row, m in zip(ids, mask):
                h = hashlib.sha1(row[m].astype(np.int64).tobytes()).hexdigest()[:16]
                (self.q_hashes.append if kind == "q" else self.p_hashes.add)(h)
        self.check_s += time.perf_counter() - t

    def mark(self, name: str) -> None:
        _sync()
        self.marks[name] = [time.perf_counter(), self.check_s]

    def window(self, first: int, n: int, start: str = "start", end: str = "end") -> dict:
        """Tokens of steps ``first .. first + n - 1`` and the seconds between two marks, probe time removed."""
        steps = self.steps[first: first + n]
        (t0, c0), (t1, c1) = self.marks[start], self.marks[end]
        tok = sum(s["q"] + s["p"] for s in steps)
        group = sum(s["q"] + s.get("p_group", s["p"]) for s in steps)
        secs = (t1 - t0) - (c1 - c0)
        return {"timed_steps": len(steps), "tokens": tok, "group_tokens": group,
                "padded_tokens": sum(s["q_padded"] + s["p_padded"] for s in steps),
                "query_tokens": sum(s["q"] for s in steps), "passage_tokens": sum(s["p"] for s in steps),
                "passage_seqs_per_step": float(np.mean([s["p_seqs"] for s in steps])) if steps else None,
                "seconds": secs, "probe_seconds": c1 - c0, "tokens_per_s": tok / secs,
                "group_tokens_per_s": group / secs}

    def dump(self) -> dict:
        return {"steps": self.steps, "q_hashes": self.q_hashes, "p_hashes": sorted(self.p_hashes),
                "marks": self.marks, "check_s": self.check_s}


def _dtypes(model) -> dict:
    frozen = next((p.dtype for p in model.parameters() if not p.requires_grad), None)
    train = next((p.dtype for p in model.parameters() if p.requires_grad), None)
    return {"frozen_dtype": str(frozen), "trainable_dtype": str(train),
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}


# -- the peer's process ---------------------------------------------------------------------------
def peer_shim(argv: list[str]) -> None:
    """``bench_icl_embedder.py --peer-shim WARMUP STEPS REPORT MODULE ARGS...`` (the peer subprocess):
    ``_flag_runner.main`` around FlagEmbedding's finetune, with the probe in its collator and a clock callback."""
    import transformers

    import _flag_runner
    from FlagEmbedding.abc.finetune.embedder.AbsDataset import AbsEmbedderSameDatasetCollator

    warm, steps, report, module, args = int(argv[0]), int(argv[1]), argv[2], argv[3], argv[4:]
    probe, info = Probe(), {}
    collate = AbsEmbedderSameDatasetCollator.__call__

    def call(self, features):
        out = collate(self, features)
        probe.new_step()
        probe.add("q", out["queries"])
        probe.add("p", out["passages"])
        return out

    class Clock(transformers.TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            info.update(_dtypes(model))

        def on_step_end(self, args, state, control, **kw):
            if state.global_step in (warm, warm + steps):
                probe.mark("start" if state.global_step == warm else "end")

    init = transformers.Trainer.__init__

    @functools.wraps(init)  # FlagEmbedding's trainer reads Trainer.__init__'s signature
    def trainer_init(self, *a, **k):
        init(self, *a, **k)
        self.add_callback(Clock())

    AbsEmbedderSameDatasetCollator.__call__ = call
    transformers.Trainer.__init__ = trainer_init
    sys.argv = [_flag_runner.__file__, report, module, *args]
    try:
        _flag_runner.main()
    finally:
        Path(report + ".probe.json").write_text(json.dumps({**probe.dump(), **info}))


# -- data ------------------------------------------------------------------------------------------
def fit_prompts(prompts: list[str], tok, q_max: int) -> tuple[list[str], dict]:
    """Each prompt's body (without ``SUFFIX``), cut from the left at token boundaries until neither tool
    truncates it: ours tokenises body + suffix to at most ``q_max - 1`` tokens (+ EOS); FlagEmbedding cuts the
    body at ``q_max - len(tok(bos)) - len(tok(suffix + eos))`` tokens before appending the suffix."""
    n_pre = len(tok(str(tok.bos_token), add_special_tokens=False)["input_ids"])
    n_suf = len(tok(SUFFIX + str(tok.eos_token), add_special_tokens=False)["input_ids"])
    body_max, full_max = q_max - n_pre - n_suf, q_max - 1
    bodies, cut, lengths = [], 0, []
    for p in prompts:
        if not p.endswith(SUFFIX):
            raise ValueError(f"an ICL prompt should end with {SUFFIX!r}: {p[-80:]!r}")
        body = p[: -len(SUFFIX)]
        ids, drop = tok(body, add_special_tokens=False)["input_ids"], 0
        while True:
            b = tok.decode(ids[drop:]) if drop else body
            nb = len(tok(b, add_special_tokens=False)["input_ids"])
            nf = len(tok(b + SUFFIX)["input_ids"])
            if nb <= body_max and nf <= full_max:
                break
            drop += max(1, nb - body_max, nf - full_max)
        cut += drop > 0
        bodies.append(b)
        lengths.append(nf + 1)
    return bodies, {"prompts": len(prompts), "cut_from_left": cut, "query_tokens_mean": float(np.mean(lengths)),
                    "query_tokens_max": int(max(lengths)), "query_token_limit": q_max}


def build_rows(args, n_rows: int, model: str) -> tuple[list[dict], list[dict], dict, dict]:
    """(our records, the peer's jsonl rows, passage token lengths as ours counts them, data stats)."""
    from transformers import AutoTokenizer

    from utils.retrieval.icl import SUFFIX as ICL_SUFFIX, with_icl_queries
    from utils.tasks.eedi import ICL_TASK

    assert ICL_SUFFIX == SUFFIX
    data, _, labelled = load_data(args.data_dir, "eedi")
    if n_rows > len(labelled):
        raise SystemExit(f"{len(labelled)} labelled pairs, {n_rows} needed: lower --steps or --batch-size")
    rng = np.random.default_rng(0)
    pairs = labelled.iloc[np.sort(rng.choice(len(labelled), n_rows, replace=False))].reset_index(drop=True)
    pairs = with_icl_queries(pairs, labelled, data.corpus, k=args.icl_k, task=ICL_TASK, seed=0)
    tok = AutoTokenizer.from_pretrained(model)
    bodies, stats = fit_prompts(pairs["query_text"].tolist(), tok, args.query_max_length)
    names = dict(zip(data.corpus["item_id"].astype(int), data.corpus["item_text"]))
    ids = np.array(sorted(names))
    ours, peer = [], []
    for body, pos in zip(bodies, pairs["positives"]):
        gold = [int(x) for x in np.atleast_1d(pos)]
        cand = rng.choice(ids, args.group - 1 + len(gold), replace=False)
        neg = [names[int(i)] for i in cand if int(i) not in gold][: args.group - 1]
        ours.append({"query": body + SUFFIX, "pos": [names[gold[0]]], "neg": neg})
        peer.append({"query": body, "pos": [names[gold[0]]], "neg": neg, "prompt": ""})
    texts = sorted({t for r in ours for t in r["pos"] + r["neg"]})
    enc = tok(texts, truncation=True, max_length=args.passage_max_length - 1)["input_ids"]
    plen = {t: len(x) + 1 for t, x in zip(texts, enc)}  # + the EOS ours appends
    stats.update({"rows": n_rows, "passage_tokens_max": max(plen.values()), "icl_k": args.icl_k,
                  "data_dir": str(args.data_dir or default_data_dir("eedi")), "corpus": len(names)})
    return ours, peer, plen, stats


# -- runs ------------------------------------------------------------------------------------------
def run_ours(records: list[dict], model: str, plen: dict, args, out: Path, cuda: bool,
             compile: bool = False) -> tuple[dict, Probe]:
    """One ``train_embedder`` call with the probe in ``backward_step`` / ``Embedder.forward`` / ``Embedder.save``."""
    from unittest import mock

    import utils.retrieval.train_embedder as te
    from utils.config import TrainConfig
    from utils.retrieval.embed import Embedder

    from bench_llm_reranker import _free

    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, n_negatives=args.group - 1, lr=1e-4, warmup_ratio=0.0,
                      weight_decay=0.01, max_grad_norm=1.0, temperature=TEMPERATURE,
                      max_query_length=args.query_max_length, max_passage_length=args.passage_max_length,
                      gradient_checkpointing=args.gradient_checkpointing, bf16=True, log_every=10**6, seed=42,
                      compile=compile,
                      lora={"r": args.lora_r, "alpha": 2 * args.lora_r, "dropout": 0.05, "target_modules": TARGETS})
    probe, info = Probe(), {}
    step0, fwd0, save0 = te.backward_step, Embedder.forward, Embedder.save

    def step(emb, batch, *a, **k):
        i = len(probe.steps)
        if i == 0:
            info.update(_dtypes(emb.model))
            probe.mark("first")
            if cuda:
                torch.cuda.reset_peak_memory_stats()
        if i == args.warmup_steps:
            probe.mark("start")
        t = time.perf_counter()
        group = sum(plen[batch.passages[c]] for g in batch.groups for c in g)
        probe.check_s += time.perf_counter() - t
        probe.new_step(p_group=group, p_seqs_group=sum(map(len, batch.groups)))
        return step0(emb, batch, *a, **k)

    def forward(emb, batch, *a, **k):
        probe.add("q" if probe.steps[-1]["q_seqs"] == 0 else "p", batch)
        return fwd0(emb, batch, *a, **k)

    def save(emb, *a, **k):
        if "end" not in probe.marks:
            probe.mark("end")
        return save0(emb, *a, **k)

    _free(cuda)
    t0 = time.perf_counter()
    with mock.patch.object(te, "backward_step", step), mock.patch.object(Embedder, "forward", forward), \
            mock.patch.object(Embedder, "save", save):
        log = te.train_embedder(records, model, out, cfg, show_progress=False)
    res = probe.window(args.warmup_steps, args.steps)
    res.update({"steps": len(probe.steps), "wall_seconds": time.perf_counter() - t0,
                "all_steps_seconds": probe.marks["end"][0] - probe.marks["first"][0],
                "loss_first": log[0]["loss"], "loss_last": log[-1]["loss"],
                "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None, **info})
    return res, probe


def run_flag(rows: list[dict], model: str, args, work: Path, cuda: bool) -> tuple[dict, dict]:
    """FlagEmbedding's ICL embedder finetune in a subprocess (``--peer-shim`` -> ``_flag_runner.py``)."""
    from transformers import TrainingArguments

    work.mkdir(parents=True, exist_ok=True)
    jsonl, report = work / "train.jsonl", work / "report.json"
    with open(jsonl, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    warm = "--warmup_ratio" if "warmup_ratio" in TrainingArguments.__dataclass_fields__ else "--warmup_steps"  # v5
    n_steps = args.warmup_steps + args.steps
    cmd = [PEER_MODULE, "--model_name_or_path", model, "--use_lora", "True", "--lora_rank", str(args.lora_r),
           "--lora_alpha", str(2 * args.lora_r), "--lora_dropout", "0.05", "--target_modules", *TARGETS,
           "--train_data", str(jsonl), "--cache_path", str(work / "hf_cache"), "--same_dataset_within_batch", "True",
           "--train_group_size", str(args.group), "--query_max_len", str(args.query_max_length),
           "--passage_max_len", str(args.passage_max_length), "--retrieval_use_examples", "False",
           "--icl_suffix_str", SUFFIX, "--example_query_max_len", str(args.query_max_length),
           "--example_passage_max_len", str(args.passage_max_length), "--sentence_pooling_method", "last_token",
           "--normalize_embeddings", "True", "--temperature", str(TEMPERATURE), "--output_dir", str(work / "out"),
           "--per_device_train_batch_size", str(args.batch_size), "--max_steps", str(n_steps),
           "--learning_rate", "1e-4", warm, "0", "--weight_decay", "0.01", "--max_grad_norm", "1.0",
           "--logging_steps", str(10**6), "--logging_nan_inf_filter", "False", "--save_strategy", "no",
           "--report_to", "none", "--seed", "42", "--dataloader_num_workers", "0", "--disable_tqdm", "True"]
    cmd += ["--bf16", "True"] if cuda else ["--use_cpu", "True"]
    if args.gradient_checkpointing:
        cmd += ["--gradient_checkpointing", "True", "--gradient_checkpointing_kwargs", '{"use_reentrant": false}']
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}  # keeps a PYTHONPATH with the wheels
    if cuda:
        env.setdefault("CUDA_VISIBLE_DEVICES", "0")
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--peer-shim", str(args.warmup_steps),
                           str(args.steps), str(report), *cmd], cwd=str(work), env=env, capture_output=True, text=True)
    (work / "flag.log").write_text(proc.stdout + proc.stderr)
    rep = json.loads(report.read_text()) if report.exists() else {}
    probe_file = Path(str(report) + ".probe.json")
    if proc.returncode or "metrics" not in rep or not probe_file.exists():
        raise RuntimeError(f"rc {proc.returncode}: {(proc.stdout + proc.stderr)[-3000:]}")
    raw = json.loads(probe_file.read_text())
    probe = Probe()
    probe.steps, probe.marks, probe.q_hashes, probe.p_hashes = raw["steps"], raw["marks"], raw["q_hashes"], \
        set(raw["p_hashes"])
    res = probe.window(args.warmup_steps, args.steps)
    res.update({"steps": rep["global_step"], "wall_seconds": rep["wall_seconds"],
                "all_steps_seconds": rep["metrics"]["train_runtime"], "loss_last": rep["metrics"].get("train_loss"),
                "peak_gib": (rep.get("max_memory_allocated") or 0) / 2**30 or None,
                **{k: raw.get(k) for k in ("frozen_dtype", "trainable_dtype", "trainable_params")},
                "command": "python -m " + " ".join(json.dumps(c) if (" " in c or "\n" in c) else c for c in cmd)})
    return res, {"probe": probe}


def sequence_check(ours: Probe, peer: Probe) -> dict:
    """Identical token sequences? Queries as multisets (each row once per epoch), passages as sets (ours
    encodes a batch's repeated passage once). Over every step both ran, warm-up included."""
    from collections import Counter

    qo, qp = Counter(ours.q_hashes), Counter(peer.q_hashes)
    return {"queries": sum(qo.values()), "queries_identical": qo == qp,
            "queries_only_ours": sum((qo - qp).values()), "queries_only_peer": sum((qp - qo).values()),
            "passages": len(ours.p_hashes), "passages_identical": ours.p_hashes == peer.p_hashes,
            "passages_only_ours": len(ours.p_hashes - peer.p_hashes),
            "passages_only_peer": len(peer.p_hashes - ours.p_hashes)}


# -- report ----------------------------------------------------------------------------------------
def report(args, runs: list[dict], check: dict | None, stats: dict, cuda: bool) -> None:
    ours = runs[0]
    gc_tag = "gc" if args.gradient_checkpointing else "nogc"
    rows = []
    flag = next((r for r in runs if r["trainer"] == "FlagEmbedding"), {})
    for r in runs:
        # ratios: on the peer's row ours (the first run: eager) / peer, as in earlier rows of the history; on a
        # further run of ours (--compile) that run / peer
        num, den = (ours, r) if r is flag else (r, flag) if r is not ours else (None, None)
        rows.append({"run": f"train {r['trainer']} {gc_tag} b{args.batch_size}", "timed steps": r.get("timed_steps"),
                     "q+p seqs/step": None if r.get("skipped") else args.batch_size * (1 + args.group),
                     "tokens": r.get("tokens"), "seconds": r.get("seconds"), "tokens/s": r.get("tokens_per_s"),
                     "group tokens/s": r.get("group_tokens_per_s"), "peak GiB": r.get("peak_gib"),
                     "ours/peer tokens/s": ratio(num.get("tokens_per_s"), den.get("tokens_per_s")) if num else None,
                     "ours/peer group tokens/s":
                         ratio(num.get("group_tokens_per_s"), den.get("group_tokens_per_s")) if num else None,
                     "ours/peer peak": ratio(num.get("peak_gib"), den.get("peak_gib")) if num else None,
                     "skipped": (r.get("skipped") or "")[:80] or None})
    notes = [f"model {args.model or 'random from ' + str(args.random_from)}"
             + (" (shrunk: --cpu-smoke)" if args.cpu_smoke else "") + f"; {'bf16' if cuda else 'fp32 (CPU)'}; LoRA r "
             f"{args.lora_r} alpha {2 * args.lora_r} on {'/'.join(TARGETS)}; gradient checkpointing "
             f"{'on' if args.gradient_checkpointing else 'off'}; batch {args.batch_size} queries x group {args.group} "
             f"(1 pos + {args.group - 1} random negatives); {args.warmup_steps} warm-up + {args.steps} timed steps"
             + (f"; {args.cpu_threads} CPU thread(s) each" if args.cpu_threads and not cuda else ""),
             f"ICL: {stats['icl_k']} examples per query, query max {args.query_max_length} tokens (mean "
             f"{stats['query_tokens_mean']:.0f}, {stats['cut_from_left']}/{stats['prompts']} prompts cut from the "
             f"left before either tool sees them), passage max {args.passage_max_length} (longest "
             f"{stats['passage_tokens_max']}); Eedi data {stats['data_dir']}",
             "tokens = non-pad tokens of the batches through the forward passes of the timed steps (ours: queries + "
             "the distinct passages of each batch, read in Embedder.forward; FlagEmbedding: queries + batch x group "
             "passages, read from its collator); group tokens count every query's group passages, duplicates "
             "included; seconds = synchronised wall clock over the timed steps, probe time removed"]
    if check:
        notes.append("token sequences: queries " + ("identical" if check["queries_identical"] else
                     f"DIFFER ({check['queries_only_ours']} only ours, {check['queries_only_peer']} only peer)")
                     + f" ({check['queries']}); passages " + ("identical" if check["passages_identical"] else
                     f"DIFFER ({check['passages_only_ours']} only ours, {check['passages_only_peer']} only peer)")
                     + f" ({check['passages']} distinct)")
    for r in runs:
        if r.get("frozen_dtype"):
            notes.append(f"{r['trainer']}: base {r['frozen_dtype']}, LoRA {r['trainable_dtype']} "
                         f"({r['trainable_params']:,} trainable); {r.get('passage_seqs_per_step') or 0:.1f} passages "
                         f"encoded/step; {r['padded_tokens']:,} padded tokens; all {r['steps']} steps "
                         f"{r['all_steps_seconds']:.2f} s, process wall {r['wall_seconds']:.1f} s")
    result = {"benchmark": "icl_embedder", "machine": machine_info("cuda" if cuda else "cpu"),
              "args": {**vars(args)}, "data": stats, "runs": runs, "sequence_check": check}
    md = write_results(args.out, result, "ICL decoder embedder training vs FlagEmbedding decoder_only.icl", rows, notes)
    print("\n".join([str(r) for r in rows] + ["note: " + n for n in notes] + [f"wrote {args.out} and {md}"]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--model", help="local HF decoder folder (else --random-from)")
    src.add_argument("--random-from", default=str(DEVICE_BUNDLE / "smollm2_cfg"),
                     help="folder with config.json + tokenizer files: random weights (default: SmolLM2-135M's)")
    ap.add_argument("--cpu-smoke", action="store_true", help="CPU, shrunk random model, tiny sizes")
    ap.add_argument("--data-dir", default=None, help="Eedi folder (default: _common.default_data_dir)")
    ap.add_argument("--steps", type=int, default=30, help="timed steps")
    ap.add_argument("--warmup-steps", type=int, default=3, help="untimed steps before them (>= 1)")
    ap.add_argument("--batch-size", type=int, default=16, help="queries per step")
    ap.add_argument("--group", type=int, default=8, help="passages per query: 1 positive + group-1 negatives")
    ap.add_argument("--query-max-length", type=int, default=512)
    ap.add_argument("--passage-max-length", type=int, default=64)
    ap.add_argument("--icl-k", type=int, default=3, help="in-context examples per query")
    ap.add_argument("--lora-r", type=int, default=16, help="LoRA rank; alpha = 2 r")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="both sides (non-reentrant)")
    ap.add_argument("--no-peer", action="store_true", help="ours only")
    ap.add_argument("--compile", action="store_true",
                    help="also run ours with train.compile (each layer torch.compiled); a row of its own")
    ap.add_argument("--cpu-threads", type=int, default=None,
                    help="torch threads on CPU, both sides (default with --cpu-smoke: 1; two threads on this shared "
                         "2-core machine made a step 5-100x slower whenever another process was running)")
    ap.add_argument("--workdir", default=None, help="keep models / logs here (default: a temp dir, removed)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_icl_embedder.json"))
    args = ap.parse_args(argv)
    if args.cpu_smoke:
        args.steps, args.warmup_steps, args.batch_size, args.group = min(args.steps, 8), 2, 4, 4
        args.query_max_length = min(args.query_max_length, 256)
    if args.warmup_steps < 1:
        raise SystemExit("--warmup-steps must be >= 1 (the timed window starts at the end of a step)")
    cuda = use_cuda(args.cpu_smoke)
    if not cuda and (args.cpu_threads or args.cpu_smoke):
        args.cpu_threads = args.cpu_threads or 1
        torch.set_num_threads(args.cpu_threads)
        os.environ["OMP_NUM_THREADS"] = str(args.cpu_threads)  # the peer's process inherits it
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_icl_emb_"))
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    runs: list[dict] = []
    check = None
    try:
        from bench_llm_reranker import build_model

        model = build_model(args, work, cuda)
        ours_rows, peer_rows, plen, stats = build_rows(args, (args.warmup_steps + args.steps) * args.batch_size, model)
        print(f"[icl-emb] model {model}; {stats['rows']} rows, query tokens mean {stats['query_tokens_mean']:.0f} "
              f"({stats['cut_from_left']} cut); {time.perf_counter() - t_all:.1f} s", flush=True)
        if cuda:  # CUDA context + cuBLAS before the first timed run
            (torch.ones(1024, 1024, device="cuda") @ torch.ones(1024, 1024, device="cuda")).sum().item()
        res, ours_probe = run_ours(ours_rows, model, plen, args, work / "ours", cuda)
        runs.append({"trainer": "ours", **res})
        if args.compile:  # then ours again with train.compile (its compile time falls in the warm-up steps)
            try:
                res, _ = run_ours(ours_rows, model, plen, args, work / "ours_compiled", cuda, compile=True)
            except Exception as e:  # noqa: BLE001 (record it, keep the other figures)
                res = {"skipped": f"{type(e).__name__}: {str(e)[-600:]}"}
            runs.append({"trainer": "ours+compile", **res})
        for r in (r for r in runs if not r.get("skipped")):
            print(f"[icl-emb] {r['trainer']}: {r['tokens_per_s']:.0f} tokens/s over {r['timed_steps']} steps "
                  f"({r['seconds']:.2f} s), peak {r['peak_gib'] or 0:.2f} GiB; all steps {r['all_steps_seconds']:.1f} s,"
                  f" wall {r['wall_seconds']:.1f} s; {time.perf_counter() - t_all:.1f} s", flush=True)
        if args.no_peer:
            peer = {"skipped": "--no-peer"}
        elif not (has_module("FlagEmbedding") and has_module("datasets")):
            peer = {"skipped": "FlagEmbedding or datasets not importable"}
        else:
            from bench_llm_reranker import _free

            _free(cuda)
            try:
                peer, extra = run_flag(peer_rows, model, args, work / "flag", cuda)
                check = sequence_check(ours_probe, extra["probe"])
            except Exception as e:  # noqa: BLE001 (record it, keep our figures)
                peer = {"skipped": f"{type(e).__name__}: {str(e)[-600:]}"}
        runs.append({"trainer": "FlagEmbedding", **peer})
        print(f"[icl-emb] FlagEmbedding: {peer.get('tokens_per_s', peer.get('skipped'))} tokens/s; "
              f"{time.perf_counter() - t_all:.1f} s", flush=True)
        if check:
            print(f"[icl-emb] sequence check: {check}", flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    report(args, runs, check, stats, cuda)
    print(f"[icl-emb] total {time.perf_counter() - t_all:.1f} s", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--peer-shim"]:
        peer_shim(sys.argv[2:])
    else:
        main()
