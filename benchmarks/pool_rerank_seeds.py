"""Pool ``bench_rerank`` runs of several seeds (each seed = other splits and training draws).

One run's bootstrap interval covers only the noise of its validation questions; a verdict such
as "reranking beats retrieval on v2" should also hold across splits. This reads the per-pair AP
that ``bench_rerank.py`` saves, and reports per (split, variant) the mean over seeds of the MAP@k
(Eedi: MAP@25) gain over retrieval, with a stratified bootstrap interval (questions resampled within each seed,
the seeds' gains averaged), for the fixed-alpha blend, 06's tuned ranking and its out-of-fold
(cv-tuned) estimate.

    python benchmarks/pool_rerank_seeds.py benchmarks/results/bench_rerank_seeds/*.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS  # noqa: E402

from utils.metrics import bootstrap_means  # noqa: E402

SYSTEMS = ("fixed", "tuned", "cv_tuned")


def pooled_gain(runs: list[dict], system: str, n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean over runs of the per-pair AP gain of ``system`` over retrieval; stratified question bootstrap."""
    rng = np.random.default_rng(seed)
    means, boots = [], np.zeros(n_boot)
    for run in runs:
        ap = run["per_query_ap"]
        diff = np.asarray(ap[system]) - np.asarray(ap["retrieval"])
        boots += bootstrap_means(diff, run["val_questions"], n_boot, rng)
        means.append(float(diff.mean()))
    boots /= len(runs)
    return {"gain": float(np.mean(means)), "lo": float(np.percentile(boots, 2.5)), "hi": float(np.percentile(boots, 97.5)),
            "per_seed": means}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="+", help="bench_rerank.py result files (one per seed)")
    ap.add_argument("--out", default=str(RESULTS / "bench_rerank_pooled.md"))
    args = ap.parse_args(argv)
    grouped: dict[tuple[str, str], list[dict]] = {}
    ks: set[int] = set()
    for path in args.json:
        result = json.loads(Path(path).read_text())
        ks.add(int(result.get("k", 25)))  # results written before bench_rerank saved k: Eedi's MAP@25
        for key, run in result["runs"].items():
            if "per_query_ap" not in run:
                continue  # written before bench_rerank saved per-pair AP
            split, variant = key.split("/", 1)
            grouped.setdefault((split, variant), []).append({**run, "seed": result["config"]["seed"]})
    if not grouped:
        raise SystemExit("no run with per-pair AP in the given files")
    if len(ks) > 1:
        raise SystemExit(f"the files score different cut-offs (MAP@{sorted(ks)}): pool one task at a time")
    k = ks.pop()
    lines = ["# Reranking gain pooled over seeds (splits and training draws)", "",
             "Written by `benchmarks/pool_rerank_seeds.py` from per-seed `bench_rerank.py` results "
             f"({', '.join(Path(p).name for p in args.json)}). Gain = MAP@{k} of the system minus the retriever's, "
             "mean over seeds; interval: 95% bootstrap over validation questions within each seed.", "",
             f"| split | variant | seeds | retrieval MAP@{k} | " + " | ".join(
                 f"gain {s} (95% CI) [per seed]" for s in SYSTEMS) + " |",
             "|---|---|---|---|" + "---|" * len(SYSTEMS)]
    for (split, variant), runs in sorted(grouped.items()):
        runs = sorted(runs, key=lambda r: r["seed"])
        retrieval = np.mean([np.mean(r["per_query_ap"]["retrieval"]) for r in runs])
        cells = []
        for system in SYSTEMS:
            g = pooled_gain(runs, system)
            cells.append(f"{g['gain']:+.4f} ({g['lo']:+.4f} … {g['hi']:+.4f}) ["
                         + ", ".join(f"{x:+.3f}" for x in g["per_seed"]) + "]")
        lines.append(f"| {split} | {variant} | {', '.join(str(r['seed']) for r in runs)} | {retrieval:.4f} | "
                     + " | ".join(cells) + " |")
    lines += ["", "fixed: blend at alpha 0.5 without the item prior; tuned: 06's ranking (alpha and prior weight "
              "chosen on the same validation pairs, optimistic); cv_tuned: the same choice made on half the "
              "validation questions and scored on the other half (2 folds, 5 deals)."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
