"""Does reranking deeper help, with the same reranker? And does a second training run of it add anything?

    python benchmarks/rerank_depth.py RUN [--heads 25,50] [--also RUN2] [--out FILE.md]

RUN is a finished CV run (``fold_<k>/round_<r>/``, e.g. a ``cv_defaults.py`` variant's folder) whose
reranker scored the top K of its last round's recall (``rerank.top_k: K``). Each head size k <= K is ranked
with the very same reranker scores (06's blend, the blend alpha chosen out of fold over 06's grid, as
``utils.run.cv`` does), so the difference between head sizes is the depth's alone, not another training
run's. ``--also RUN2``: another run with the same folds and candidates (e.g. the same variant trained again)
whose reranker scored at least the top min(heads); its scores and RUN's, z-scored per query and averaged
(``utils.rerank.blend.combine``), give a two-run ensemble on the smallest head. Differences are paired: the
same pairs, questions resampled (95% bootstrap, 2,000 resamples).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from utils.metrics import paired_bootstrap, per_query_ap  # noqa: E402
from utils.rerank.blend import DEFAULT_GRID, combine, final_ranking  # noqa: E402
from utils.run.cv import Alternatives, _rerank_inputs, alternatives, fold_dirs, out_of_fold  # noqa: E402


def _oof(pairs: pd.DataFrame, cands: pd.DataFrame, scores: np.ndarray, head: int, k: int) -> tuple[np.ndarray, list]:
    """Per-pair AP of the blend over ``head`` with alpha picked out of fold (06's grid, alpha 0 excluded)."""
    alts = Alternatives(pairs)
    for a in (a for a in DEFAULT_GRID if a > 0):
        alts.add(f"a={a:g}", "reranked", 0, {}, per_query_ap(final_ranking(cands, scores, a, head), pairs, k))
    return out_of_fold(alts)


def depth_table(run: Path, heads: list[int], also: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(systems: MAP@k per system, comparisons: paired differences) for ``run``'s last round."""
    alts, info = alternatives(run)
    pairs, k, r = alts.pairs, info["k"], max(info["rounds"])
    got = _rerank_inputs(fold_dirs(run), r, pairs)
    if got is None:
        raise SystemExit(f"{run}: round {r} has no rerank_scores_val.parquet in every fold")
    cands, scores, _, scored = got
    if max(heads) > scored:
        raise SystemExit(f"{run}: its reranker scored the top {scored}, not {max(heads)}")
    ranks = cands.loc[cands["rank"] <= scored, "rank"].to_numpy()
    ap = {"retrieval": alts.ap[alts.names.index(f"round_{r}/candidates")]}
    picks = {"retrieval": ""}
    for h in sorted(heads):
        ap[f"top {h}"], chosen = _oof(pairs, cands, scores[ranks <= h], h, k)
        picks[f"top {h}"] = ", ".join(sorted(set(chosen)))
    if also is not None:
        h = min(heads)
        other = _rerank_inputs(fold_dirs(also), r, pairs)
        if other is None or not other[0].equals(cands) or other[3] < h:
            raise SystemExit(f"{also}: not the same candidates as {run}, or its reranker scored fewer than {h}")
        ranks2 = other[0].loc[other[0]["rank"] <= other[3], "rank"].to_numpy()
        ap[f"top {h}, {also.name}"], chosen = _oof(pairs, cands, other[1][ranks2 <= h], h, k)
        picks[f"top {h}, {also.name}"] = ", ".join(sorted(set(chosen)))
        mixed = combine(cands, [scores[ranks <= h], other[1][ranks2 <= h]], h)
        ap[f"top {h}, both runs averaged"], chosen = _oof(pairs, cands, mixed, h, k)
        picks[f"top {h}, both runs averaged"] = ", ".join(sorted(set(chosen)))
    groups = pairs["group"].to_numpy()
    systems = pd.DataFrame([{"system": n, f"map@{k}": a.mean(), "alpha (out of fold)": picks[n]} for n, a in ap.items()])
    names = list(ap)
    rows = []
    for i, b in enumerate(names[1:], 1):
        for a in names[:i]:
            d = paired_bootstrap(ap[a], ap[b], groups=groups)
            rows.append({"system": b, "over": a, "gain": d["gain"], "lo": d["lo"], "hi": d["hi"], "p_worse": d["p_worse"]})
    return systems, pd.DataFrame(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--heads", default="25,50", help="head sizes to rerank, each at most what the reranker scored")
    ap.add_argument("--also", type=Path, default=None, help="a second run of the reranker on the same candidates")
    ap.add_argument("--out", type=Path, default=None, help="write the tables as markdown here")
    args = ap.parse_args(argv)
    systems, comparisons = depth_table(args.run, [int(h) for h in args.heads.split(",")], args.also)
    text = (f"# Reranking depth: {args.run.name}\n\n`python benchmarks/rerank_depth.py {args.run.name} --heads {args.heads}"
            f"{f' --also {args.also.name}' if args.also else ''}`: pooled out of fold, "
            "alpha chosen out of fold; paired 95% bootstrap over questions.\n\n"
            + systems.to_markdown(index=False, floatfmt=".4f") + "\n\n"
            + comparisons.to_markdown(index=False, floatfmt=("", "", "+.4f", "+.4f", "+.4f", ".3f")) + "\n")
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
