"""Cross-validation over whole runs: pooled out-of-fold scores with intervals, and the choices 06/08 make.

A CV run is ``<out>/fold_<k>/round_<r>/``: fold k is a whole run (every notebook, every round)
whose validation questions are fold k of ``utils.splits.cv_folds``, so every labelled pair is
scored exactly once, by models that never saw its question. A plain run (``<out>/round_<r>/``)
reads as one fold. What each round leaves for pooling (docs/DESIGN.md): ``val_pairs.parquet``
(04), ``base_val.parquet`` (03), ``candidates_val.parquet`` (04), ``rerank_scores_val.parquet``
(06), ``rerank_val.parquet`` (06), ``fused_val.parquet`` (08).

``choose`` scores every alternative 06 and 08 can pick (each round's recall; each round reranked
at every (item prior weight, blend alpha); a round's recall or best reranked ranking re-scored by 08
(``utils.rescore``); fusions of the rounds by method and weights) on the
pooled pairs, picks one, and estimates that choice *out of fold*: for each fold, the pick made on
the other folds is scored on it. The pooled figure of the winner is optimistic (it was picked on
those pairs); the out-of-fold one is the figure to expect on new questions. Written here (not
ranx or sklearn) because the alternatives are whole rankings of several stages and rounds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from utils import io
from utils.metrics import ITEM, QUERY, bootstrap_means, paired_bootstrap, per_query_ap

FOLD_RE = re.compile(r"^fold_(\d+)$")
ROUND_RE = re.compile(r"^round_(\d+)$")
CHOICES_FILE = "choices.yaml"
RERANKERS = ("05_train_reranker", "06_rerank")
# Cheaper alternatives win unless a dearer one is better with 95% confidence (paired, by question):
# in-sample gains of +0.02 from a reranker or a fusion did not carry over to unseen questions.
COSTS = {"retrieval": 0, "reranked": 1, "rescored": 1, "fused": 2}
N_BOOT = 1000


def fold_dirs(root: str | Path) -> dict[int, Path]:
    """{fold index: folder} of a CV run; a plain run is fold 0 of itself."""
    root = Path(root)
    folds = {int(m.group(1)): p for p in root.iterdir() if p.is_dir() and (m := FOLD_RE.match(p.name))} \
        if root.is_dir() else {}
    if folds:
        return dict(sorted(folds.items()))
    return {0: root} if any(root.glob("round_*/val_pairs.parquet")) else {}


def is_cv_fold(run_dir: str | Path) -> bool:
    """Whether ``<...>/fold_<k>/round_<r>`` is a round of a CV run."""
    return bool(FOLD_RE.match(Path(run_dir).resolve().parent.name))


def interval(ap: np.ndarray, groups: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the mean of ``ap``, resampling whole questions (``groups``)."""
    boot = bootstrap_means(ap, groups, n_boot, np.random.default_rng(seed))
    return float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def metric_k(folds: dict[int, Path]) -> int:
    """The run's MAP@k cut-off (``submission.k`` of its first round; 25 for runs that predate it)."""
    for d in folds.values():
        for cfg_path in sorted(d.glob("round_*/config.yaml")):
            return int(((yaml.safe_load(cfg_path.read_text()) or {}).get("submission") or {}).get("k") or 25)
    return 25


def _summary(ap: np.ndarray, groups: np.ndarray, k: int = 25, **keys) -> dict:
    lo, hi = interval(ap, groups)
    # hit@k: the share of queries with a relevant item in the top k (AP@k > 0); it equals Recall@k when
    # each query has one relevant item (Eedi), and is the CV tables' only recall-like figure because
    # the alternatives are kept as per-query AP
    return {**keys, "pairs": len(ap), f"map@{k}": float(ap.mean()), "lo": lo, "hi": hi,
            f"hit@{k}": float((ap > 0).mean())}


def _pooled(folds: dict[int, Path], r: int, name: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(ranking, labelled pairs with ``fold``) pooled over the folds whose round r has ``name``.parquet."""
    rankings, pairs = [], []
    for k, d in folds.items():
        d = d / f"round_{r}"
        if (d / f"{name}.parquet").exists() and (d / "val_pairs.parquet").exists():
            rankings.append(pd.read_parquet(d / f"{name}.parquet"))
            pairs.append(pd.read_parquet(d / "val_pairs.parquet").assign(fold=k))
    if not pairs:
        return None
    return pd.concat(rankings, ignore_index=True), pd.concat(pairs, ignore_index=True)


def _rounds(folds: dict[int, Path]) -> list[int]:
    found = {int(m.group(1)) for d in folds.values() for p in d.glob("round_*/val_pairs.parquet")
             if (m := ROUND_RE.match(p.parent.name))}
    return sorted(found)


def stage_table(root: str | Path) -> pd.DataFrame:
    """Pooled MAP@k (95% interval) and Hit@k per round and stage, over the folds finished so far.

    Stages as each fold ran them: ``base`` (zero-shot, 03), ``retrieval`` (04), ``reranked`` (06,
    its blend tuned in fold: optimistic), ``fused`` (08, tuned in fold); ``choose`` gives the honest
    out-of-fold figures of 06's and 08's choices.
    """
    folds = fold_dirs(root)
    k = metric_k(folds)
    rows = []
    for r in _rounds(folds):
        for stage, name in (("base", "base_val"), ("retrieval", "candidates_val"), ("reranked", "rerank_val"),
                            ("fused", "fused_val")):
            got = _pooled(folds, r, name)
            if got is None:
                continue
            ranking, pairs = got
            ap = per_query_ap(ranking, pairs, k)
            rows.append(_summary(ap, pairs["group"].to_numpy(), k, round=r, stage=stage,
                                 folds=int(pairs["fold"].nunique())))
    return pd.DataFrame(rows, columns=["round", "stage", "folds", "pairs", f"map@{k}", "lo", "hi", f"hit@{k}"])


@dataclass
class Alternatives:
    """Per-pair AP@k of every alternative on the pooled pairs, and what each one means."""

    pairs: pd.DataFrame  # pooled labelled queries (query_id, group, positives, fold)
    names: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # retrieval | reranked | rescored | fused
    rounds: list[int] = field(default_factory=list)  # the round a single belongs to (fusions: the last)
    specs: list[dict] = field(default_factory=list)  # config overrides that reproduce it
    ap: list[np.ndarray] = field(default_factory=list)

    def add(self, name: str, kind: str, round_idx: int, spec: dict, ap: np.ndarray) -> None:
        self.names.append(name)
        self.kinds.append(kind)
        self.rounds.append(round_idx)
        self.specs.append(spec)
        self.ap.append(np.asarray(ap, np.float64))

    def matrix(self) -> np.ndarray:
        return np.vstack(self.ap)


def _align_pairs(got: tuple[pd.DataFrame, pd.DataFrame] | None, pairs: pd.DataFrame) -> pd.DataFrame | None:
    if got is None:
        return None
    if len(got[1]) != len(pairs) or not (got[1][QUERY].to_numpy() == pairs[QUERY].to_numpy()).all():
        return None  # not every fold has this round's file (yet)
    return got[0]


def _round_config(folds: dict[int, Path], r: int) -> dict:
    return yaml.safe_load((next(iter(folds.values())) / f"round_{r}" / "config.yaml").read_text()) or {}


def _rerank_inputs(folds: dict[int, Path], r: int, pairs: pd.DataFrame):
    """(candidates, head scores, head priors, top_k) of round r pooled over folds, or None."""
    got = _pooled(folds, r, "rerank_scores_val")
    cands = _align_pairs(_pooled(folds, r, "candidates_val"), pairs)
    if got is None or cands is None or _align_pairs(got, pairs) is None:
        return None
    scores = got[0]
    top_k = int(scores["top_k"].iloc[0])
    head = cands[cands["rank"] <= top_k][[QUERY, ITEM]]
    merged = head.merge(scores[[QUERY, ITEM, "reranker_score", "item_prior"]], on=[QUERY, ITEM], how="left")
    if merged["reranker_score"].isna().any():
        raise ValueError(f"round_{r}/rerank_scores_val.parquet does not cover the top {top_k} of candidates_val.parquet")
    return cands, merged["reranker_score"].to_numpy(), merged["item_prior"].to_numpy(), top_k


def alternatives(root: str | Path) -> tuple[Alternatives, dict]:
    """Every alternative of 06/08 scored on the pooled pairs (rounds finished in every fold)."""
    from utils.fusion import METHODS, per_pair_ap, weight_grid
    from utils.config import rerank_config_from
    from utils.stages.rerank import ITEM_PRIOR_GRID, blend_setting
    from utils.rerank.blend import DEFAULT_GRID, final_ranking

    folds = fold_dirs(root)
    if not folds:
        raise FileNotFoundError(f"{root}: no finished rounds (round_<r>/val_pairs.parquet) to pool")
    rounds = [r for r in _rounds(folds) if all((d / f"round_{r}" / "val_pairs.parquet").exists() for d in folds.values())]
    if not rounds:
        raise FileNotFoundError(f"{root}: no round is finished in every fold")
    pairs = _pooled(folds, rounds[0], "candidates_val")[1]
    alts = Alternatives(pairs)
    k = metric_k(folds)
    info: dict = {"folds": sorted(folds), "rounds": rounds, "rerank_grid": [], "k": k}
    candidates: dict[int, pd.DataFrame] = {}
    for r in rounds:
        ranking = _align_pairs(_pooled(folds, r, "candidates_val"), pairs)
        if ranking is None:
            continue
        candidates[r] = ranking
        alts.add(f"round_{r}/candidates", "retrieval", r, {"fusion": {"method": "none", "rounds": [r],
                                                                     "sources": ["candidates"]}},
                 per_query_ap(ranking, pairs, k))
    reranked: dict[int, pd.DataFrame] = {}
    rerank_rows = {}
    for r in rounds:
        inputs = _rerank_inputs(folds, r, pairs)
        if inputs is None:
            continue
        cands, scores, prior, top_k = inputs
        rc = rerank_config_from(_round_config(folds, r))
        weights = ITEM_PRIOR_GRID if rc["item_prior_weight"] == "tune" else (float(rc["item_prior_weight"]),)
        weights = weights if np.any(prior != 0) else (0.0,)
        fixed = blend_setting(rc)
        alphas = [a for a in DEFAULT_GRID if a > 0] if fixed is None else [fixed]
        for w in weights:
            for a in alphas:  # alpha 0 is the retrieval alternative
                ap = per_query_ap(final_ranking(cands, scores + w * prior, a, top_k), pairs, k)
                name = f"round_{r}/rerank(w={w:g},a={a:g})"
                alts.add(name, "reranked", r, {"rerank": {"blend": float(a), "item_prior_weight": float(w)},
                                               "fusion": {"method": "none", "rounds": [r], "sources": ["rerank"]}}, ap)
                rerank_rows[name] = (r, w, a, cands, scores + w * prior, top_k)
        info["rerank_grid"].append({"round": r, "weights": list(map(float, weights)), "alphas": list(map(float, alphas))})
    if rerank_rows:  # fusion inputs: each round reranked at the (w, alpha) best on the last reranked round
        last = max(v[0] for v in rerank_rows.values())
        best = max((n for n in rerank_rows if rerank_rows[n][0] == last), key=lambda n: alts.ap[alts.names.index(n)].mean())
        _, w_best, a_best, _, _, _ = rerank_rows[best]
        for n, (r, w, a, cands, s, top_k) in rerank_rows.items():
            if w == w_best and a == a_best:
                reranked[r] = final_ranking(cands, s, a, top_k)
        info["fusion_rerank_setting"] = {"item_prior_weight": w_best, "blend": a_best}
    _add_rescored(alts, pairs, k, candidates, rerank_rows)
    # 08's sources [rerank, candidates] take each round's reranked ranking where there is one, else its recall:
    # with only the last round reranked (rerank.rounds: last), that round's rerank fused with the earlier recalls
    mixed = {r: reranked.get(r, ranking) for r, ranking in candidates.items()}
    mixed = mixed if reranked and set(reranked) != set(candidates) else {}
    for source, by_round in (("candidates", candidates), ("rerank", reranked), ("rerank+candidates", mixed)):
        used = sorted(by_round)
        if len(used) < 2:
            continue
        points = weight_grid(len(used))
        for method in METHODS:
            aps = per_pair_ap([by_round[r] for r in used], pairs, method, points, at=k)
            for point, ap in zip(points, aps):
                spec = {"fusion": {"method": method, "rounds": used, "sources": source.split("+"),
                                   "weights": list(point)}}
                if source != "candidates":
                    spec["rerank"] = dict(info["fusion_rerank_setting"])
                alts.add(f"fused({method},{source},w={'/'.join(f'{x:.2f}' for x in point)})", "fused", used[-1], spec, ap)
    return alts, info


def _add_rescored(alts: Alternatives, pairs: pd.DataFrame, k: int, candidates: dict[int, pd.DataFrame],
                  rerank_rows: dict) -> None:
    """Each round's recall, and its reranked ranking at the (w, alpha) best pooled, re-scored over the grid of
    ``utils.rescore`` (08's ``fusion.prior_weight`` / ``sibling_weight``). A fold's item counts come from
    the other folds' pairs (its training pairs in K-fold CV); one fold alone gets the sibling term only."""
    from utils.rerank.blend import final_ranking
    from utils.rescore import PRIOR_GRID, SIBLING_GRID, item_counts, rescore

    folds = pairs["fold"].unique()
    counts = {f: item_counts(pairs[pairs["fold"] != f]) for f in folds}
    grid = [(a, b) for a in (PRIOR_GRID if len(folds) > 1 else (0.0,)) for b in SIBLING_GRID if a or b]
    bases = []
    for r, ranking in candidates.items():
        bases.append((r, f"round_{r}/candidates", ranking,
                      {"fusion": {"method": "none", "rounds": [r], "sources": ["candidates"]}}))
        names = [n for n in rerank_rows if rerank_rows[n][0] == r]
        if names:
            best = max(names, key=lambda n: alts.ap[alts.names.index(n)].mean())
            _, _, a, cands, scores, top_k = rerank_rows[best]
            bases.append((r, best, final_ranking(cands, scores, a, top_k), alts.specs[alts.names.index(best)]))
    for r, name, ranking, spec in bases:
        by_fold = {f: (ranking[ranking[QUERY].isin(pairs.loc[pairs["fold"] == f, QUERY])], pairs[pairs["fold"] == f])
                   for f in folds}
        for a, b in grid:
            re = pd.concat([rescore(rk, qs, counts[f], a, b) for f, (rk, qs) in by_fold.items()], ignore_index=True)
            alts.add(f"{name}+rescore(p={a:g},s={b:g})", "rescored", r,
                     {**spec, "fusion": {**spec["fusion"], "prior_weight": a, "sibling_weight": b}},
                     per_query_ap(re, pairs, k))


def pick(alts: Alternatives, mask: np.ndarray, kinds: tuple[str, ...] | None = None, seed: int = 0,
         costs: dict[str, int] = COSTS) -> int:
    """Index of the alternative chosen on the pairs in ``mask``.

    The best mean AP, unless a cheaper kind (``costs``: retrieval < reranked < fused) has an
    alternative the best does not beat with 95% confidence (paired bootstrap over questions): then
    the best of the cheapest such kind. ``kinds`` restricts the candidates.
    """
    A = alts.matrix()
    allowed = np.array([kinds is None or k in kinds for k in alts.kinds])
    means = np.where(allowed, A[:, mask].mean(axis=1), -np.inf)
    best = int(np.argmax(means))  # the first on ties: alternatives are added cheapest first
    groups = alts.pairs["group"].to_numpy()[mask]
    rng = np.random.default_rng(seed)
    for kind in sorted(costs, key=costs.get):
        if costs[kind] >= costs[alts.kinds[best]]:
            break
        of_kind = np.flatnonzero(allowed & (np.array(alts.kinds) == kind))
        if not len(of_kind):
            continue
        j = int(of_kind[np.argmax(means[of_kind])])
        boot = bootstrap_means(A[best, mask] - A[j, mask], groups, N_BOOT, rng)
        if np.percentile(boot, 2.5) <= 0:
            return j
    return best


def out_of_fold(alts: Alternatives, kinds: tuple[str, ...] | None = None,
                costs: dict[str, int] = COSTS) -> tuple[np.ndarray, list[str]]:
    """Per-pair AP of ``pick`` made out of fold (each fold scored with the pick of the other folds)."""
    folds = alts.pairs["fold"].to_numpy()
    uniq = np.unique(folds)
    if len(uniq) < 2:  # one run: deal its questions into 5 folds
        q = alts.pairs["group"].to_numpy()
        uq = np.unique(q)
        deal = dict(zip(uq, np.random.default_rng(0).permutation(len(uq)) % min(5, len(uq))))
        folds = np.array([deal[x] for x in q])
        uniq = np.unique(folds)
    A = alts.matrix()
    ap, chosen = np.zeros(A.shape[1]), []
    for f in uniq:
        j = pick(alts, folds != f, kinds, costs=costs)
        ap[folds == f] = A[j, folds == f]
        chosen.append(alts.names[j])
    return ap, chosen


def choose(root: str | Path, write: bool = True) -> dict:
    """Choose 06's and 08's settings on the pooled out-of-fold predictions; write the CV report.

    Writes ``cv.json``, ``cv.md``, ``cv_pairs.parquet`` (per-pair AP of each stage, for
    ``compare``) and ``choices.yaml`` (config overrides for ``run --split full --choices``).
    """
    root = Path(root)
    alts, info = alternatives(root)
    k = info["k"]
    pairs, A = alts.pairs, alts.matrix()
    groups = pairs["group"].to_numpy()
    everything = np.ones(len(pairs), bool)
    chosen = pick(alts, everything)
    stages, per_pair = [], []

    def stage(name: str, r: int, ap: np.ndarray, how: str) -> None:
        stages.append(_summary(ap, groups, k, round=r, stage=name, how=how))
        per_pair.append(pairs[[QUERY, "group", "fold"]].assign(round=r, stage=name, ap=ap))

    in_fold = stage_table(root)  # the stages as each fold ran them (06/08 tuned in fold), for the report
    folds = fold_dirs(root)
    for r in info["rounds"]:
        got = _align_pairs(_pooled(folds, r, "base_val"), pairs)
        if got is not None and r == info["rounds"][0]:
            stage("base", r, per_query_ap(got, pairs, k), "zero-shot")
        idx = [i for i, (kind, rr) in enumerate(zip(alts.kinds, alts.rounds)) if rr == r and kind == "retrieval"]
        if idx:
            stage("retrieval", r, A[idx[0]], "fine-tuned recall")
        if any(kind == "reranked" and rr == r for kind, rr in zip(alts.kinds, alts.rounds)):
            sub = _subset(alts, lambda kind, rr: rr == r and kind == "reranked")
            ap, _ = out_of_fold(sub)
            stage("reranked", r, ap, "blend and prior weight chosen out of fold")
        if any(kind == "rescored" and rr == r for kind, rr in zip(alts.kinds, alts.rounds)):
            sub = Alternatives(alts.pairs)  # the round's recall, as is or re-scored (not the reranked ones)
            for i, (kind, rr) in enumerate(zip(alts.kinds, alts.rounds)):
                if rr == r and (kind == "retrieval" or (kind == "rescored" and "/candidates+" in alts.names[i])):
                    sub.add(alts.names[i], kind, rr, alts.specs[i], alts.ap[i])
            ap, _ = out_of_fold(sub)
            stage("rescored", r, ap, "recall re-scored (item prior, siblings), weights chosen out of fold")
    if "fused" in alts.kinds:
        ap, _ = out_of_fold(alts, ("fused",))
        stage("fused", max(info["rounds"]), ap, "method, source and weights chosen out of fold")
    ap_final, picks = out_of_fold(alts)
    stage("final", max(info["rounds"]), ap_final, "all alternatives, chosen out of fold (the submission's recipe)")
    _add_gains(stages, per_pair)
    unseen = unseen_pairs(pairs)
    _add_unseen(stages, per_pair, unseen, k)
    rows = [_summary(A[i], groups, k, name=n, kind=kind) for i, (n, kind) in enumerate(zip(alts.names, alts.kinds))]
    alt_table = pd.DataFrame(rows).sort_values(f"map@{k}", ascending=False, ignore_index=True)
    spec = alts.specs[chosen]
    cfg = _round_config(folds, max(info["rounds"]))
    overrides = _overrides(spec, cfg)
    result = {"k": k, "folds": info["folds"], "rounds": info["rounds"], "pairs": len(pairs),
              "one_positive": bool(all(len(p) == 1 for p in pairs["positives"])),
              "questions": int(pairs["group"].nunique()), "unseen_pairs": int(unseen.sum()), "stages": stages,
              "chosen": {"name": alts.names[chosen], "kind": alts.kinds[chosen], "pooled": rows[chosen],
                         "out_of_fold": stages[-1], "fold_picks": picks},
              "alternatives": alt_table.to_dict("records"), "rerank_grid": info["rerank_grid"]}
    if write:
        io.write_json(root / "cv.json", result)
        io.write_parquet(root / "cv_pairs.parquet", pd.concat(per_pair, ignore_index=True).assign(k=k))
        io.write_text(root / "cv.md", to_markdown(result, in_fold))
        io.write_text(root / CHOICES_FILE, _choices_yaml(overrides, result, alt_table))
    return result


def _add_gains(stages: list[dict], per_pair: list[pd.DataFrame]) -> None:
    """Each reranked / fused / final stage's paired gain (95% interval) over the retrieval it starts from."""
    retrieval = {s["round"]: p for s, p in zip(stages, per_pair) if s["stage"] == "retrieval"}
    for s, p in zip(stages, per_pair):
        if s["stage"] in ("reranked", "rescored", "fused", "final") and retrieval:
            ref = retrieval.get(s["round"], retrieval[max(retrieval)])
            g = paired_bootstrap(ref["ap"].to_numpy(), p["ap"].to_numpy(), groups=p["group"].to_numpy())
            s.update({"gain": g["gain"], "gain_lo": g["lo"], "gain_hi": g["hi"]})


def unseen_pairs(pairs: pd.DataFrame) -> np.ndarray:
    """Pooled pairs none of whose positives is a positive of another fold's pairs: items the fold never
    trained on (exact when every fold is pooled; a fold left out makes its items look unseen)."""
    by_fold: dict = {}
    for f, pos in zip(pairs["fold"], pairs["positives"]):
        by_fold.setdefault(f, set()).update(pos)
    return np.array([not any(p in items for g, items in by_fold.items() if g != f for p in pos)
                     for f, pos in zip(pairs["fold"], pairs["positives"])], dtype=bool)


def _add_unseen(stages: list[dict], per_pair: list[pd.DataFrame], unseen: np.ndarray, k: int) -> None:
    """Each stage's MAP@k on pairs whose positives other folds had (seen) and had not (unseen), and the
    paired gain over its round's retrieval on the unseen ones: a gain that comes only from items the
    model trained on shrinks on a test with more new items."""
    if unseen.all() or not unseen.any():
        return
    retrieval = {s["round"]: p for s, p in zip(stages, per_pair) if s["stage"] == "retrieval"}
    for s, p in zip(stages, per_pair):
        ap = p["ap"].to_numpy()
        s.update({f"map@{k}_seen": float(ap[~unseen].mean()), f"map@{k}_unseen": float(ap[unseen].mean())})
        if "gain" in s:
            ref = retrieval.get(s["round"], retrieval[max(retrieval)])["ap"].to_numpy()
            g = paired_bootstrap(ref[unseen], ap[unseen], groups=p["group"].to_numpy()[unseen])
            s.update({"gain_unseen": g["gain"], "gain_unseen_lo": g["lo"], "gain_unseen_hi": g["hi"]})


def stage_gains(cv_pairs: pd.DataFrame, k: int = 25) -> pd.DataFrame:
    """The stage table (with gains over retrieval) of a ``cv_pairs.parquet`` (AP at cut-off ``k``)."""
    stages, per_pair = [], []
    for (r, name), p in cv_pairs.groupby(["round", "stage"], sort=False):
        stages.append(_summary(p["ap"].to_numpy(), p["group"].to_numpy(), k, round=r, stage=name))
        per_pair.append(p)
    _add_gains(stages, per_pair)
    return pd.DataFrame(stages)


def _subset(alts: Alternatives, keep) -> Alternatives:
    out = Alternatives(alts.pairs)
    for i, (k, r) in enumerate(zip(alts.kinds, alts.rounds)):
        if keep(k, r):
            out.add(alts.names[i], k, r, alts.specs[i], alts.ap[i])
    return out


def _overrides(spec: dict, cfg: dict) -> dict:
    """Config overrides reproducing ``spec`` in a run of ``cfg`` (the folds' config)."""
    out = {k: dict(v) for k, v in spec.items()}
    for key in ("prior_weight", "sibling_weight"):  # a ranking not re-scored is chosen as it is, whatever cfg says
        out.setdefault("fusion", {}).setdefault(key, 0.0)
    if "rerank" not in spec:  # reranking was not chosen: the full run skips 05/06
        out["notebooks"] = [n for n in cfg.get("notebooks", []) if n not in RERANKERS]
    return out


def _choices_yaml(overrides: dict, result: dict, alt_table: pd.DataFrame) -> str:
    c, m = result["chosen"], f"map@{result.get('k', 25)}"
    singles = alt_table[alt_table["kind"].isin(["retrieval", "reranked"])]
    rescored = alt_table[alt_table["kind"] == "rescored"].head(10)
    fused = alt_table[alt_table["kind"] == "fused"].head(10)
    doc = {
        "config": overrides,
        "cv": {
            "chosen": c["name"],
            f"pooled_{m}": round(c["pooled"][m], 4),
            f"out_of_fold_{m}": [round(c["out_of_fold"][key], 4) for key in (m, "lo", "hi")],
            "folds": result["folds"], "rounds": result["rounds"], "pairs": result["pairs"],
            "rule": f"best pooled {m.upper()}, unless a cheaper kind (retrieval < reranked, rescored < fused) is not "
                    "beaten with 95% confidence",
            "alternatives": {r["name"]: [round(r[m], 4), round(r["lo"], 4), round(r["hi"], 4)]
                             for r in pd.concat([singles, rescored, fused]).to_dict("records")},
        },
    }
    return ("# Written by python -m utils run --split cv; apply with: python -m utils run --split full --choices <this file>\n"
            f"# cv.alternatives: pooled out-of-fold {m.upper()} [value, 95% low, 95% high] (all singles, the 10 best "
            "re-scored, the 10 best fusions)\n"
            + yaml.safe_dump(doc, sort_keys=False))


def read_choices(path: str | Path) -> dict:
    """The config overrides of a ``choices.yaml``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: choices file not found (written by run --split cv)")
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise ValueError(f"{path}: no 'config' mapping (is it a choices.yaml written by run --split cv?)")
    config = doc["config"]
    if isinstance(config.get("fusion"), dict):  # the whole of 08's pick: weights the config fixes (gpu_retrieval.yaml's
        config["fusion"].setdefault("weights", None)  # for rounds 1-3) do not outlive a pick that has none
    return config


def _fmt(table: pd.DataFrame, cols: list[str]) -> str:
    t = table[cols].copy()
    for c in t.columns:
        if c.startswith(("map@", "hit@", "gain")) or c in ("lo", "hi"):
            t[c] = t[c].map(lambda v: "" if pd.isna(v) else f"{v:+.4f}" if c.startswith("gain") else f"{v:.4f}")
    return t.to_markdown(index=False) + "\n"


def _unseen_markdown(stages: pd.DataFrame, result: dict, k: int) -> list[str]:
    if f"map@{k}_unseen" not in stages:
        return []
    gains = [c for c in ("gain_unseen", "gain_unseen_lo", "gain_unseen_hi") if c in stages]
    return [f"\n## Seen and unseen items\n\n{result['unseen_pairs']} of {result['pairs']} pairs have no positive that "
            "another fold's pairs have (an item the fold never trained on); gain_unseen: paired, over the retrieval "
            "of the same round, on those pairs only.\n",
            _fmt(stages, ["round", "stage", f"map@{k}_seen", f"map@{k}_unseen"] + gains)]


def to_markdown(result: dict, in_fold: pd.DataFrame | None = None) -> str:
    """The CV report: out-of-fold stages, the choice, the best alternatives."""
    stages = pd.DataFrame(result["stages"])
    c, k = result["chosen"], result.get("k", 25)
    m, rec = f"map@{k}", f"hit@{k}"
    alts = pd.DataFrame(result["alternatives"])
    md = [f"# Cross-validation\n\n{len(result['folds'])} folds, {result['questions']} questions, {result['pairs']} "
          f"labelled pairs, each scored once out of fold; MAP@{k} with a 95% bootstrap interval over questions; "
          f"Hit@{k}: the share of pairs with a relevant item in the top {k} (= Recall@{k} with one per pair).\n",
          "## Stages (choices made out of fold; gain: paired, over the retrieval of the same round)\n",
          _fmt(stages, ["round", "stage", m, "lo", "hi", rec] +
               [c for c in ("gain", "gain_lo", "gain_hi") if c in stages] + ["how"]),
          *_unseen_markdown(stages, result, k),
          f"\n## Choice\n\n`{c['name']}` ({c['kind']}): pooled {c['pooled'][m]:.4f} (picked on these pairs); "
          f"out of fold {c['out_of_fold'][m]:.4f} ({c['out_of_fold']['lo']:.4f} .. {c['out_of_fold']['hi']:.4f}). "
          f"Picks per held-out fold: {', '.join(c['fold_picks'])}.\n",
          "\n## Alternatives (pooled; the best 20 and every retrieval single)\n",
          _fmt(pd.concat([alts.head(20), alts[alts["kind"] == "retrieval"]]).drop_duplicates("name"),
               ["name", "kind", m, "lo", "hi", rec])]
    if in_fold is not None and len(in_fold):
        md += ["\n## As each fold ran (06/08 tuned in fold: optimistic)\n",
               _fmt(in_fold, ["round", "stage", "folds", "pairs", m, "lo", "hi", rec])]
    return "\n".join(md)


def compare(runs: dict[str, str | Path]) -> pd.DataFrame:
    """Paired comparison of finished runs (CV or plain) per round and stage, on their common pairs.

    Reads each run's ``cv_pairs.parquet`` (made by ``choose``; a run may also be given as that
    file). Columns: MAP@k and Hit@k of each run, and the difference of each later run
    against the first (``b - a``) with its 95% interval (``b - a lo`` / ``b - a hi``, a paired
    bootstrap over questions).
    """
    names = list(runs)
    tables = {}
    for name, root in runs.items():
        path = Path(root) if str(root).endswith(".parquet") else Path(root) / "cv_pairs.parquet"
        if not path.exists():
            choose(root)
        tables[name] = pd.read_parquet(path)
    first = names[0]
    ks = {n: int(t["k"].iloc[0]) if "k" in t and len(t) else 25 for n, t in tables.items()}  # no column: before k existed
    if len(set(ks.values())) > 1:
        raise ValueError(f"runs scored at different MAP cut-offs cannot be compared: {ks}")
    k = ks[first]
    rows = []
    keys = tables[first][["round", "stage"]].drop_duplicates().itertuples(index=False)
    for r, stage in keys:
        sel = {n: t[(t["round"] == r) & (t["stage"] == stage)].set_index(QUERY) for n, t in tables.items()}
        if any(s.empty for s in sel.values()):
            continue
        common = sel[first].index
        for s in sel.values():
            common = common.intersection(s.index)
        if not len(common):
            continue
        row = {"round": r, "stage": stage, "pairs": len(common)}
        a = sel[first].loc[common, "ap"].to_numpy()
        for n in names:
            ap = sel[n].loc[common, "ap"].to_numpy()
            row[f"{n} map@{k}"], row[f"{n} hit@{k}"] = float(ap.mean()), float((ap > 0).mean())
            if n != first:
                d = paired_bootstrap(a, ap, groups=sel[first].loc[common, "group"].to_numpy())
                diff = f"{n} - {first}"  # each run's own interval columns (shared ones kept only the last run's)
                row[diff], row[f"{diff} lo"], row[f"{diff} hi"] = d["gain"], d["lo"], d["hi"]
        rows.append(row)
    return pd.DataFrame(rows)
