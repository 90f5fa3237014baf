"""The default chain (`python -m utils run --task T`, CPU defaults, one round) on each task's bundled
sample: wall time per notebook and MAP@k before / after fine-tuning and after reranking.

    python benchmarks/bench_tasks.py                 # eedi, aqa, beir -> benchmarks/results/tasks_sample.{md,json}
    python benchmarks/bench_tasks.py --tasks aqa

The samples are synthetic (scripts/make_*_sample.py) and the validation split is one fold of
~20% of the questions: the figures show that each task runs and learns within the time budget,
not what a setting gains (that needs CV on real data, `--split cv`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def run_task(task: str, out: Path) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "utils", "run", "--task", task, "--out", str(out), "--quiet", "--force"],
                          cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{task}: run failed\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    m = json.loads((out / "round_1" / "metrics.json").read_text())
    timings = json.loads((out / "round_1" / "timings.json").read_text())
    k = next(int(key.split("@")[1]) for key in m["03_eval_embedder"]["base"] if key.startswith("map@"))
    rr = m.get("06_rerank", {})
    return {"task": task, "k": k, "seconds": round(seconds, 1), "notebook_seconds": timings,
            "base": m["03_eval_embedder"]["base"][f"map@{k}"], "finetuned": m["03_eval_embedder"]["finetuned"][f"map@{k}"],
            "reranked": rr.get("reranked", {}).get(f"map@{k}"), "blend_alpha": rr.get("blend_alpha"),
            "rerank_gain_out_of_fold": rr.get("gain_out_of_fold"), "n_val": m["03_eval_embedder"]["base"]["n_queries"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="eedi,aqa,beir")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_tasks"))
    args = ap.parse_args()
    rows = [run_task(t, Path(args.out) / t) for t in args.tasks.split(",")]
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, no GPU"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tasks_sample.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")
    lines = [f"# Default chain on each task's bundled sample ({machine})", "",
             "`python benchmarks/bench_tasks.py`: `python -m utils run --task T` with the CPU defaults, one round, "
             "split v1 (one validation fold, ~20% of the questions; synthetic data). MAP@k on the validation "
             "queries; the reranker's gain out of fold is 06's blend chosen on half the questions and scored on the "
             "other half (95% bootstrap interval over questions).", "",
             "| task | MAP@k | val queries | zero-shot | fine-tuned | reranked (α) | rerank gain out of fold | wall time |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        g = r["rerank_gain_out_of_fold"]
        gain = f"{g['gain']:+.3f} ({g['lo']:+.3f} .. {g['hi']:+.3f})" if g else "—"
        rer = f"{r['reranked']:.3f} ({r['blend_alpha']})" if r["reranked"] is not None else "—"
        lines.append(f"| {r['task']} | {r['k']} | {r['n_val']} | {r['base']:.3f} | {r['finetuned']:.3f} | {rer} | {gain} | "
                     f"{r['seconds']:.0f} s |")
    lines += ["", "Seconds per notebook: " + "; ".join(
        f"{r['task']}: " + ", ".join(f"{k} {v:.0f}" for k, v in r["notebook_seconds"].items()) for r in rows), ""]
    (RESULTS / "tasks_sample.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
