"""Real-data rounds through the same pipeline functions the notebooks call (no papermill).

Per split: round 1..R of mine -> fine-tune -> evaluate (zero-shot vs fine-tuned) -> recall ->
train reranker -> rerank, then fusion of the rounds' rankings with weights tuned on
validation. Reports MAP@k / Recall@k (the task's k, Eedi 25; the config's ``data.task``) per stage
and seconds per stage.

    python benchmarks/bench_real.py --config configs/gpu_retrieval.yaml --splits v1:3,v2:1   # GPU
    python benchmarks/bench_real.py --config configs/cpu_real.yaml --splits v1:1 --no-rerank   # CPU
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, default_data_dir, machine_info, resolve_model_arg, write_results  # noqa: E402

from utils import stages  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.metrics import evaluate  # noqa: E402


def timed(fn, *a):
    t0 = time.perf_counter()
    out = fn(*a)
    return out, time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/gpu_retrieval.yaml")
    ap.add_argument("--splits", default="v1:3,v2:1", help="split:rounds, comma-separated")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--model", default=None, help="embedder and cross-encoder init (default: bundled MiniLM)")
    ap.add_argument("--no-rerank", action="store_true")
    ap.add_argument("--work", default=None, help="run folder (default: a temp dir)")
    ap.add_argument("--out", default=str(RESULTS / "real_rounds.json"))
    args = ap.parse_args(argv)

    model = resolve_model_arg(args.model)
    cfg = load_config(args.config)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir(cfg["data"]["task"])
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_real_"))
    cfg["embedder"]["model"] = model
    if cfg["rerank"].get("model") in ("default", None):  # "embedder" (this round's fine-tuned one) stays
        cfg["rerank"]["model"] = model
    cfg["submission"]["dir"] = None
    cfg_path = work / "config.yaml"
    work.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(yaml.safe_dump(cfg))
    machine = machine_info("cuda" if __import__("torch").cuda.is_available() else "cpu")
    rows, detail = [], {}
    for spec in args.splits.split(","):
        split, rounds = spec.split(":")
        out = work / split
        shutil.rmtree(out, ignore_errors=True)
        for r in range(1, int(rounds) + 1):
            ctx = stages.context.load_context(out / f"round_{r}", data_dir, split, r, cfg_path)
            sec = {}
            _, sec["mine"] = timed(stages.mine_hn.mine, ctx)
            _, sec["train"] = timed(stages.train_embedder.train, ctx)
            ev, sec["eval"] = timed(stages.eval_embedder.evaluate_embedders, ctx)
            _, sec["recall"] = timed(stages.recall.recall_candidates, ctx)
            k = ctx.k
            m = {"zero_shot": evaluate(ev["base"], ctx.val_pairs, k=k),
                 "retrieval": evaluate(ev["finetuned"], ctx.val_pairs, k=k)}
            if not args.no_rerank:
                _, sec["train_reranker"] = timed(stages.train_reranker.train_reranker, ctx)
                rr, sec["rerank"] = timed(stages.rerank.rerank_all, ctx)
                m["reranker_only"] = rr["summary"]["reranker_only"]
                m["reranked"] = rr["summary"]["reranked"]
                m["blend_alpha"] = rr["summary"]["blend_alpha"]
            fused, sec["fuse"] = timed(stages.fuse_submit.fuse_rounds, ctx)
            if r > 1:
                m["fused"] = evaluate(fused["val"], ctx.val_pairs, k=k)
                m["fusion"] = {"method": fused["method"], "weights": fused["weights"], "inputs": fused["inputs"]}
            detail[f"{split}/round_{r}"] = {"metrics": m, "k": k, "seconds": sec, "n_val": len(ctx.val_pairs),
                                            "n_train": len(ctx.train_pairs)}
            row = {"split": split, "round": r, "val_pairs": len(ctx.val_pairs)}
            for name in ("zero_shot", "retrieval", "reranked", "fused"):
                if name in m:
                    row[f"{name} MAP@{k}"] = m[name][f"map@{k}"]
                    row[f"{name} R@{k}"] = m[name][f"recall@{k}"]
            row["seconds"] = round(sum(sec.values()), 1)
            row.update({f"s_{k}": round(v, 1) for k, v in sec.items()})
            row["config"] = Path(args.config).name
            rows.append(row)
            print(row, flush=True)
            # Written after every round, so a run cut short keeps what it measured.
            result = {"machine": machine, "config": cfg, "splits": args.splits, "data_dir": str(data_dir), "runs": detail}
            md = write_results(args.out, result, "Real-data rounds: zero-shot vs fine-tuned vs reranked vs fused (validation)",
                               [row], notes=[f"config {args.config}; splits {args.splits}; model {model}"])
    print(md)


if __name__ == "__main__":
    main()
