"""Fuse the final rankings of several finished runs: different embedders (MiniLM + mpnet + a decoder,
the OAG-AQA runner-up's recipe) or different rerankers, each a whole run of the chain.

``choose_ensemble`` reads CV runs made on the same data and folds (``run --split cv`` with each
config), takes each run's last round (its reranked ranking where 06 ran, else its recall), scores
every single run and every fusion (method x weights, ``utils.fusion``) on the pooled out-of-fold
pairs, and picks one with ``utils.run.cv``'s rule: a single run unless a fusion beats it with 95%
confidence (paired over questions). The pick is scored out of fold (each fold with the pick made on
the others): the figure to expect on new questions. ``apply_ensemble`` fuses the same runs trained
with ``--split full`` as chosen and writes the validated submission.

Each run's last round should have fixed 06 settings (a blend alpha, not ``true``): a blend tuned
in fold makes that run's out-of-fold ranking slightly optimistic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from utils import io
from utils.metrics import QUERY, paired_bootstrap, per_query_ap
from utils.run.cv import ROUND_RE, Alternatives, _summary, fold_dirs, metric_k, out_of_fold, pick

SOURCES = ("rerank", "candidates")  # a round's final ranking: reranked where 06 ran, else recall
COSTS = {"single": 0, "fused": 1}  # a single run unless a fusion is better with 95% confidence
CHOICES = "ensemble.yaml"


def last_ranking(run_dir: str | Path, part: str) -> tuple[Path, str]:
    """(round folder, source) of the last round of ``run_dir`` holding ``<source>_<part>.parquet``."""
    run_dir = Path(run_dir)
    rounds = sorted((int(m.group(1)), p) for p in run_dir.glob("round_*") if (m := ROUND_RE.match(p.name)))
    for _, d in reversed(rounds):
        for source in SOURCES:
            if (d / f"{source}_{part}.parquet").exists():
                return d, source
    raise FileNotFoundError(f"{run_dir}: no round has {' or '.join(f'{s}_{part}.parquet' for s in SOURCES)} "
                            "(run 04_recall first)")


def cv_inputs(runs: dict[str, str | Path]) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], dict[str, list[str]]]:
    """Pooled validation pairs (with ``fold``), each run's pooled last-round ranking, and what was read."""
    folds = {name: fold_dirs(root) for name, root in runs.items()}
    first = next(iter(runs))
    for name, f in folds.items():
        if not f:
            raise FileNotFoundError(f"{runs[name]}: not a finished run (no round_<r>/val_pairs.parquet)")
        if sorted(f) != sorted(folds[first]):
            raise ValueError(f"{runs[name]} has folds {sorted(f)}, {runs[first]} has {sorted(folds[first])}: "
                             "ensemble runs made with the same split and folds")
    pairs, rankings, read = [], {n: [] for n in runs}, {n: [] for n in runs}
    for k in sorted(folds[first]):
        ref = None
        for name in runs:
            d, source = last_ranking(folds[name][k], "val")
            val = pd.read_parquet(d / "val_pairs.parquet")
            ids = val[QUERY].astype(str).tolist()
            if ref is None:
                ref, pairs_k = ids, val.assign(fold=k)
            elif sorted(ids) != sorted(ref):
                raise ValueError(f"{d}/val_pairs.parquet: other validation queries than {runs[first]}'s fold {k} "
                                 "(runs made with other data or split cannot be ensembled)")
            rankings[name].append(pd.read_parquet(d / f"{source}_val.parquet"))
            read[name].append(f"{d.relative_to(Path(runs[name]))}/{source}_val.parquet")
        pairs.append(pairs_k)
    return (pd.concat(pairs, ignore_index=True),
            {n: pd.concat(r, ignore_index=True) for n, r in rankings.items()}, read)


def alternatives(runs: dict[str, str | Path]) -> tuple[Alternatives, int, dict]:
    """Every single run and every fusion (method x weight point) scored per pooled pair."""
    from utils.fusion import METHODS, per_pair_ap, weight_grid

    if len(runs) < 2:
        raise ValueError("an ensemble needs at least two runs")
    pairs, rankings, read = cv_inputs(runs)
    k = metric_k(fold_dirs(next(iter(runs.values()))))
    alts = Alternatives(pairs)
    names = list(runs)
    for n in names:
        alts.add(n, "single", 0, {"method": "none", "runs": [n], "weights": [1.0]}, per_query_ap(rankings[n], pairs, k))
    points = weight_grid(len(names))
    for method in METHODS:
        aps = per_pair_ap([rankings[n] for n in names], pairs, method, points, at=k)
        for point, ap in zip(points, aps):
            alts.add(f"{method}({', '.join(f'{n}={w:.2f}' for n, w in zip(names, point))})", "fused", 0,
                     {"method": method, "runs": names, "weights": [float(w) for w in point]}, ap)
    return alts, k, read


def choose_ensemble(runs: dict[str, str | Path], out: str | Path | None = None) -> dict:
    """Choose a single run or a fusion of ``runs`` (CV runs) out of fold; write ``ensemble.{json,md,yaml}`` to ``out``."""
    alts, k, read = alternatives(runs)
    pairs, A = alts.pairs, alts.matrix()
    groups = pairs["group"].to_numpy()
    m = f"map@{k}"
    chosen = pick(alts, np.ones(len(pairs), bool), costs=COSTS)
    ap_oof, fold_picks = out_of_fold(alts, costs=COSTS)
    ap_fused, fused_picks = out_of_fold(alts, ("fused",), costs=COSTS)
    singles = [_summary(A[i], groups, k, name=n) for i, n in enumerate(alts.names) if alts.kinds[i] == "single"]
    best_single = max(range(len(singles)), key=lambda i: singles[i][m])
    ref = A[best_single]
    stages = [dict(_summary(ap_oof, groups, k, name="chosen out of fold"), picks=fold_picks),
              dict(_summary(ap_fused, groups, k, name="best fusion, chosen out of fold"), picks=fused_picks)]
    for s, ap in zip(stages, (ap_oof, ap_fused)):
        g = paired_bootstrap(ref, ap, groups=groups)
        s.update(gain=g["gain"], gain_lo=g["lo"], gain_hi=g["hi"])
    fused_rows = sorted((_summary(A[i], groups, k, name=n) for i, n in enumerate(alts.names) if alts.kinds[i] == "fused"),
                        key=lambda r: -r[m])
    spec = alts.specs[chosen]
    result = {"k": k, "runs": {n: str(Path(r)) for n, r in runs.items()}, "read": read, "pairs": len(pairs),
              "questions": int(pairs["group"].nunique()), "folds": sorted(pairs["fold"].unique().tolist()),
              "singles": singles, "best_single": singles[best_single]["name"], "out_of_fold": stages,
              "chosen": {"name": alts.names[chosen], "kind": alts.kinds[chosen], **spec},
              "best_fusions": fused_rows[:10]}
    if out is not None:
        out = Path(out)
        io.write_json(out / "ensemble.json", result)
        io.write_text(out / "ensemble.md", to_markdown(result))
        io.write_text(out / CHOICES, _choices_yaml(result))
    return result


def to_markdown(result: dict) -> str:
    """The ensemble report: singles, the choice out of fold and its paired gain, the best fusions."""
    k = result["k"]
    m, hit = f"map@{k}", f"hit@{k}"

    def table(rows: list[dict], cols: list[str]) -> str:
        t = pd.DataFrame(rows)[cols].copy()
        for c in cols:
            if c.startswith(("map@", "hit@")) or c in ("lo", "hi"):
                t[c] = t[c].map(lambda v: f"{v:.4f}")
            elif c.startswith("gain"):
                t[c] = t[c].map(lambda v: f"{v:+.4f}")
        return t.to_markdown(index=False, disable_numparse=True) + "\n"

    c = result["chosen"]
    how = c["name"] if c["kind"] == "single" else f"{c['method']} with weights {c['weights']} over {c['runs']}"
    return "\n".join([
        f"# Ensemble of {len(result['runs'])} runs\n\n{len(result['folds'])} folds, {result['questions']} questions, "
        f"{result['pairs']} labelled pairs, each scored once out of fold; MAP@{k} with a 95% bootstrap interval over "
        f"questions. Each run's last round (reranked where 06 ran, else recall): "
        + "; ".join(f"`{n}` = {p}" for n, p in result["runs"].items()) + ".\n",
        "## Single runs (pooled)\n", table(result["singles"], ["name", m, "lo", "hi", hit]),
        f"## Chosen out of fold (gain: paired, over the best single run `{result['best_single']}`)\n",
        table(result["out_of_fold"], ["name", m, "lo", "hi", hit, "gain", "gain_lo", "gain_hi"]),
        f"Picks per held-out fold: {', '.join(result['out_of_fold'][0]['picks'])}.\n",
        f"## Choice (all folds; rule: a single run unless a fusion beats it with 95% confidence)\n\n{how}\n",
        "## Best fusions (pooled: picked on these pairs, optimistic)\n",
        table(result["best_fusions"], ["name", m, "lo", "hi", hit])])


def _choices_yaml(result: dict) -> str:
    c, m = result["chosen"], f"map@{result['k']}"
    oof = result["out_of_fold"][0]
    doc = {"runs": list(result["runs"]), "method": c["method"], "weights": c["weights"], "chosen": c["name"],
           "cv": {f"out_of_fold_{m}": [round(oof[x], 4) for x in (m, "lo", "hi")],
                  f"gain_over_{result['best_single']}": [round(oof[x], 4) for x in ("gain", "gain_lo", "gain_hi")],
                  "cv_runs": result["runs"], "folds": result["folds"], "pairs": result["pairs"]}}
    return ("# Written by python -m utils ensemble (CV runs). Apply to the same configs run with --split full,\n"
            "# given in this order: python -m utils ensemble RUN [RUN ...] --choices <this file> --out DIR\n"
            + yaml.safe_dump(doc, sort_keys=False))


def apply_ensemble(runs: list[str | Path], choices: str | Path, out: str | Path) -> Path:
    """Fuse the test rankings of ``runs`` (``--split full``, in the order of ``choices``' ``runs``) as
    ``choices`` says; write and validate the task's submission in ``out``. Returns its path."""
    from utils.fusion import fuse
    from utils.tasks import get_task

    doc = yaml.safe_load(Path(choices).read_text()) if Path(choices).exists() else None
    if not isinstance(doc, dict) or not {"runs", "method", "weights"} <= set(doc):
        raise ValueError(f"{choices}: not an ensemble.yaml (needs runs, method, weights; written by python -m utils ensemble)")
    if len(runs) != len(doc["runs"]):
        raise ValueError(f"{choices} fuses {len(doc['runs'])} runs ({', '.join(doc['runs'])}); {len(runs)} given")
    infos = []
    for r in runs:
        info = io.read_json(Path(r) / "run.json")
        if info is None:
            raise FileNotFoundError(f"{r}/run.json: not a finished run folder")
        if info.get("split") != "full":
            raise ValueError(f"{r}: made with --split {info.get('split')}; an ensemble submission fuses --split full runs")
        if infos and info.get("data") != infos[0].get("data"):
            raise ValueError(f"{r}: made from other data than {runs[0]} ({info.get('data_dir')} vs {infos[0].get('data_dir')})")
        infos.append(info)
    named = dict(zip(doc["runs"], runs))
    if doc["method"] == "none":
        d, source = last_ranking(named[doc["chosen"]], "test")
        ranking = pd.read_parquet(d / f"{source}_test.parquet")
    else:
        rankings = []
        for r in runs:
            d, source = last_ranking(r, "test")
            rankings.append(pd.read_parquet(d / f"{source}_test.parquet"))
        ranking = fuse(rankings, doc["method"], doc["weights"], top_k=100)
    task = get_task(infos[0]["config"]["data"]["task"])
    data = task.load(infos[0]["data_dir"], require_test=True)
    path = Path(out) / task.submission_file
    with io.atomic_path(path) as tmp:
        task.write_submission(ranking, data, tmp)
        task.validate_submission(tmp, data)
    return path
