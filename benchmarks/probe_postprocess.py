"""Probe, before building it: would re-scoring the final ranking with two cheap terms help, chosen out of fold?

    python benchmarks/probe_postprocess.py RUN [RUN ...]      # CV runs' folders (fold files suffice, e.g. from
                                                             # benchmarks/device_cv.sh); last round's recall
Terms, added to each query's scores min-max scaled to [0, 1] over its list (so one grid fits every source):
- ``prior``: log(1 + times the item is a positive in the fold's training pairs), weight ``a``;
- ``siblings``: sum of the item's scaled scores in the lists of the other queries of the same group (Eedi:
  the other wrong answers of the question; 0 where absent), weight ``b`` (negative: an item strong for a
  sibling answer is less likely for this one).
The weights are chosen on the other folds' pairs and scored on the held-out fold (nested: nothing is tuned
on the pairs it is scored on); gains are paired over questions with a 95% bootstrap interval.
Writes benchmarks/results/probe_postprocess.{md,json}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS  # noqa: E402

from utils.metrics import ITEM, QUERY, paired_bootstrap, per_query_ap  # noqa: E402
from utils.run.cv import _pooled, _rounds, fold_dirs, metric_k  # noqa: E402

PRIOR = (0.0, 0.02, 0.05, 0.1, 0.2)
SIBLINGS = (0.0, -0.05, -0.1, -0.2, -0.3)


def features(ranking: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """The ranking with ``fold``, ``group``, scaled ``s``, ``prior`` (training counts of its own fold) and ``sib``."""
    df = ranking.merge(pairs[[QUERY, "group", "fold"]], on=QUERY)
    lo, hi = df.groupby(QUERY)["score"].transform("min"), df.groupby(QUERY)["score"].transform("max")
    df["s"] = (df["score"] - lo) / (hi - lo).replace(0, 1)
    df["sib"] = df.groupby(["group", ITEM])["s"].transform("sum") - df["s"]
    prior = np.zeros(len(df))
    for k in pairs["fold"].unique():  # K-fold: a fold trains on every other fold's pairs
        counts = pd.Series([p for ps in pairs.loc[pairs["fold"] != k, "positives"] for p in ps]).value_counts()
        at = (df["fold"] == k).to_numpy()
        prior[at] = np.log1p(df.loc[at, ITEM].map(counts).fillna(0).to_numpy())
    df["prior"] = prior
    return df


def ap_at(df: pd.DataFrame, pairs: pd.DataFrame, a: float, b: float, k: int) -> np.ndarray:
    s = df.assign(score=df["s"] + a * df["prior"] + b * df["sib"]).sort_values([QUERY, "score"], ascending=[True, False])
    s["rank"] = s.groupby(QUERY).cumcount() + 1
    return per_query_ap(s.loc[s["rank"] <= k, [QUERY, ITEM, "rank", "score"]], pairs, k)


def probe(root: Path) -> dict:
    folds = fold_dirs(root)
    r, k = max(_rounds(folds)), metric_k(folds)
    ranking, pairs = _pooled(folds, r, "candidates_val")
    df = features(ranking, pairs)
    fold = pairs["fold"].to_numpy()
    out = {"run": str(root), "round": r, "pairs": len(pairs), "k": k}
    for name, grid in (("prior", [(a, 0.0) for a in PRIOR]), ("siblings", [(0.0, b) for b in SIBLINGS]),
                       ("both", list(itertools.product(PRIOR, SIBLINGS)))):
        ap = {ab: ap_at(df, pairs, *ab, k) for ab in grid}
        oof, picks = ap[(0.0, 0.0)].copy(), {}
        for f in sorted(set(fold)):  # the weights the other folds choose, scored on this one
            best = max(grid, key=lambda ab: ap[ab][fold != f].mean())
            oof[fold == f], picks[int(f)] = ap[best][fold == f], best
        g = paired_bootstrap(ap[(0.0, 0.0)], oof, groups=pairs["group"].to_numpy())
        out[name] = {"base": float(ap[(0.0, 0.0)].mean()), "out_of_fold": float(oof.mean()), "gain": g["gain"],
                     "lo": g["lo"], "hi": g["hi"], "picks": {f: list(ab) for f, ab in picks.items()},
                     "best_pooled": list(max(grid, key=lambda ab: ap[ab].mean())),
                     "best_pooled_map": float(max(x.mean() for x in ap.values()))}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", default=str(RESULTS / "probe_postprocess"))
    args = ap.parse_args(argv)
    results = [probe(Path(r)) for r in args.runs]
    lines = ["# Re-scoring the last round's recall: item prior and sibling terms, weights chosen out of fold",
             "", "Written by `benchmarks/probe_postprocess.py` (its docstring says how). MAP@k pooled over the folds; "
             "gain = out of fold − as is, paired over questions (95% bootstrap).", "",
             "| run | round | pairs | terms | as is | out of fold | gain (95%) | weights (a, b) per held-out fold | in-sample best |",
             "|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        for name in ("prior", "siblings", "both"):
            x = res[name]
            picks = ", ".join(f"({a:g}, {b:g})" for a, b in x["picks"].values())
            lines.append(f"| `{Path(res['run']).name}` | {res['round']} | {res['pairs']} | {name} | {x['base']:.4f} | "
                         f"{x['out_of_fold']:.4f} | {x['gain']:+.4f} ({x['lo']:+.4f} … {x['hi']:+.4f}) | {picks} | "
                         f"{x['best_pooled_map']:.4f} at {tuple(x['best_pooled'])} |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    Path(args.out + ".json").write_text(json.dumps(results, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
