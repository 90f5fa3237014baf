"""Fuse the final rankings of several finished runs: different embedders (MiniLM + mpnet + a decoder,
the OAG-AQA runner-up's recipe) or different rerankers, each a whole run of the chain.

A member is a run's last round (``RUN``: its reranked ranking where 06 ran, else its recall) or
named rounds of it (``RUN@1,2,3``, ``RUN@all``: one member per round), so one embedder's rounds and
another embedder can be fused in one choice (the round fusion 08 would make is one of the points).
``choose_ensemble`` reads CV runs made on the same data and folds (``run --split cv`` with each
config), scores every single member and every fusion (method x weights, ``utils.fusion``) on the
pooled out-of-fold pairs, and picks one with ``utils.run.cv``'s rule: a single member unless a
fusion beats it with 95% confidence (paired over questions). The pick is scored out of fold (each
fold with the pick made on the others): the figure to expect on new questions. ``apply_ensemble``
fuses the same members of the runs trained with ``--split full`` as chosen and writes the
validated submission.

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
MAX_MEMBERS = 6  # the weight grid grows as (grid points)^members: 5^4 points up to 4 members, 3^6 up to 6
Member = tuple[Path, int | None]  # (run folder, round; None = its last round)


def _round_numbers(run_dir: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in run_dir.glob("round_*") if (m := ROUND_RE.match(p.name)))


def parse_members(specs: list[str]) -> dict[str, Member]:
    """{name: (run folder, round)} for ``RUN``, ``RUN@1,3`` or ``RUN@all`` (every round of the run, of its
    first fold for a CV run); names are the folder's (``name@r1`` for a round), a repeat suffixed ``_``."""
    out: dict[str, Member] = {}
    for spec in specs:
        run, _, rounds = str(spec).rpartition("@") if "@" in Path(spec).name else (spec, "", "")
        run = Path(run)
        if rounds == "all":
            folds = fold_dirs(run)
            found = _round_numbers(folds[min(folds)] if folds else run)
            if not found:
                raise FileNotFoundError(f"{spec}: {run} has no round_<r> folder")
            picked: list[int | None] = list(found)
        elif rounds:
            try:
                picked = [int(r) for r in rounds.split(",")]
            except ValueError:
                raise ValueError(f"{spec}: rounds after @ are numbers (RUN@1,2,3) or 'all'") from None
        else:
            picked = [None]
        for r in picked:
            name = run.name + (f"@r{r}" if r is not None else "")
            while name in out:
                name += "_"
            out[name] = (run, r)
    return out


def last_ranking(run_dir: str | Path, part: str, round_: int | None = None) -> tuple[Path, str]:
    """(round folder, source) of the last round of ``run_dir`` holding ``<source>_<part>.parquet``, or of
    round ``round_``."""
    run_dir = Path(run_dir)
    rounds = [r for r in _round_numbers(run_dir) if round_ is None or r == round_]
    for r in reversed(rounds):
        d = run_dir / f"round_{r}"
        for source in SOURCES:
            if (d / f"{source}_{part}.parquet").exists():
                return d, source
    where = f"{run_dir}/round_{round_}" if round_ is not None else f"{run_dir}: no round"
    raise FileNotFoundError(f"{where} has no {' or '.join(f'{s}_{part}.parquet' for s in SOURCES)} "
                            "(run 04_recall first)")


def _as_members(runs) -> dict[str, Member]:
    """``runs`` as {name: (folder, round)}: a plain folder stands for its last round."""
    return {n: (Path(v[0]), v[1]) if isinstance(v, tuple) else (Path(v), None) for n, v in runs.items()}


def cv_inputs(runs: dict) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], dict[str, list[str]]]:
    """Pooled validation pairs (with ``fold``), each member's pooled ranking, and what was read.
    ``runs``: {name: run folder or (run folder, round)}."""
    members = _as_members(runs)
    folds = {name: fold_dirs(root) for name, (root, _) in members.items()}
    first = next(iter(runs))
    for name, f in folds.items():
        if not f:
            raise FileNotFoundError(f"{members[name][0]}: not a finished run (no round_<r>/val_pairs.parquet)")
        if sorted(f) != sorted(folds[first]):
            raise ValueError(f"{members[name][0]} has folds {sorted(f)}, {members[first][0]} has "
                             f"{sorted(folds[first])}: ensemble runs made with the same split and folds")
    pairs, rankings, read = [], {n: [] for n in runs}, {n: [] for n in runs}
    for k in sorted(folds[first]):
        ref = None
        for name, (root, round_) in members.items():
            d, source = last_ranking(folds[name][k], "val", round_)
            val = pd.read_parquet(d / "val_pairs.parquet")
            ids = val[QUERY].astype(str).tolist()
            if ref is None:
                ref, pairs_k = ids, val.assign(fold=k)
            elif sorted(ids) != sorted(ref):
                raise ValueError(f"{d}/val_pairs.parquet: other validation queries than {members[first][0]}'s fold "
                                 f"{k} (runs made with other data or split cannot be ensembled)")
            rankings[name].append(pd.read_parquet(d / f"{source}_val.parquet"))
            read[name].append(f"{d.relative_to(root)}/{source}_val.parquet")
        pairs.append(pairs_k)
    return (pd.concat(pairs, ignore_index=True),
            {n: pd.concat(r, ignore_index=True) for n, r in rankings.items()}, read)


def alternatives(runs: dict) -> tuple[Alternatives, int, dict]:
    """Every single member and every fusion (method x weight point) scored per pooled pair."""
    from utils.fusion import DEFAULT_GRID, METHODS, per_pair_ap, weight_grid

    if len(runs) < 2:
        raise ValueError("an ensemble needs at least two members (runs, or rounds of a run: RUN@1,2)")
    if len(runs) > MAX_MEMBERS:
        raise ValueError(f"{len(runs)} members ({', '.join(runs)}): at most {MAX_MEMBERS} (the weight grid grows "
                         "as points^members)")
    pairs, rankings, read = cv_inputs(runs)
    k = metric_k(fold_dirs(next(iter(_as_members(runs).values()))[0]))
    alts = Alternatives(pairs)
    names = list(runs)
    for n in names:
        alts.add(n, "single", 0, {"method": "none", "runs": [n], "weights": [1.0]}, per_query_ap(rankings[n], pairs, k))
    points = weight_grid(len(names), DEFAULT_GRID if len(names) <= 4 else (0.0, 0.5, 1.0))
    for method in METHODS:
        aps = per_pair_ap([rankings[n] for n in names], pairs, method, points, at=k)
        for point, ap in zip(points, aps):
            alts.add(f"{method}({', '.join(f'{n}={w:.2f}' for n, w in zip(names, point))})", "fused", 0,
                     {"method": method, "runs": names, "weights": [float(w) for w in point]}, ap)
    return alts, k, read


def choose_ensemble(runs: dict, out: str | Path | None = None) -> dict:
    """Choose a single member or a fusion of ``runs`` ({name: CV run folder, or (folder, round)}) out of fold;
    write ``ensemble.{json,md,yaml}`` to ``out``."""
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
    result = {"k": k, "runs": {n: str(root) + (f"@{r}" if r is not None else "")
                               for n, (root, r) in _as_members(runs).items()}, "read": read, "pairs": len(pairs),
              "questions": int(pairs["group"].nunique()), "folds": sorted(pairs["fold"].unique().tolist()),
              "singles": singles, "best_single": singles[best_single]["name"], "out_of_fold": stages,
              "each_run_alone": _each_run_alone(alts, _as_members(runs), ap_oof, k),
              "chosen": {"name": alts.names[chosen], "kind": alts.kinds[chosen], **spec},
              "best_fusions": fused_rows[:10]}
    if out is not None:
        out = Path(out)
        io.write_json(out / "ensemble.json", result)
        io.write_text(out / "ensemble.md", to_markdown(result))
        io.write_text(out / CHOICES, _choices_yaml(result))
    return result


def _each_run_alone(alts: Alternatives, members: dict[str, Member], ap_oof: np.ndarray, k: int) -> list[dict]:
    """Per run: the same out-of-fold choice among its own members only (e.g. its rounds fused, as 08 would),
    and the paired gain of the whole ensemble's choice over it: what the other runs add."""
    groups = alts.pairs["group"].to_numpy()
    rows = []
    for root in dict.fromkeys(r for r, _ in members.values()):
        own = {n for n, (r, _) in members.items() if r == root}
        only = Alternatives(alts.pairs)
        for i, spec in enumerate(alts.specs):
            if all(w == 0 or n in own for n, w in zip(spec["runs"], spec["weights"])):
                only.add(alts.names[i], alts.kinds[i], 0, spec, alts.ap[i])
        ap, picks = out_of_fold(only, costs=COSTS)
        g = paired_bootstrap(ap, ap_oof, groups=groups)
        rows.append(dict(_summary(ap, groups, k, name=f"{root.name} alone"), picks=picks, gain=g["gain"],
                         gain_lo=g["lo"], gain_hi=g["hi"]))
    return rows


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
        f"# Ensemble of {len(result['runs'])} members\n\n{len(result['folds'])} folds, {result['questions']} questions, "
        f"{result['pairs']} labelled pairs, each scored once out of fold; MAP@{k} with a 95% bootstrap interval over "
        f"questions. Each member is a run's last round, or the round after @ (reranked where 06 ran, else recall): "
        + "; ".join(f"`{n}` = {p}" for n, p in result["runs"].items()) + ".\n",
        "## Single members (pooled)\n", table(result["singles"], ["name", m, "lo", "hi", hit]),
        f"## Chosen out of fold (gain: paired, over the best single member `{result['best_single']}`)\n",
        table(result["out_of_fold"], ["name", m, "lo", "hi", hit, "gain", "gain_lo", "gain_hi"]),
        f"Picks per held-out fold: {', '.join(result['out_of_fold'][0]['picks'])}.\n",
        "## Each run alone (its own members, chosen out of fold the same way; gain: the ensemble's choice over it)\n",
        table(result["each_run_alone"], ["name", m, "lo", "hi", hit, "gain", "gain_lo", "gain_hi"]),
        f"## Choice (all folds; rule: a single member unless a fusion beats it with 95% confidence)\n\n{how}\n",
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
            "# given in this order and with the same @rounds: python -m utils ensemble RUN[@ROUNDS] [...] --choices <this file> --out DIR\n"
            + yaml.safe_dump(doc, sort_keys=False))


def apply_ensemble(runs: list, choices: str | Path, out: str | Path) -> Path:
    """Fuse the test rankings of ``runs`` (``--split full`` run folders or (folder, round) members, in the order
    of ``choices``' ``runs``) as ``choices`` says; write and validate the task's submission in ``out``."""
    from utils.fusion import fuse
    from utils.tasks import get_task

    doc = yaml.safe_load(Path(choices).read_text()) if Path(choices).exists() else None
    if not isinstance(doc, dict) or not {"runs", "method", "weights"} <= set(doc):
        raise ValueError(f"{choices}: not an ensemble.yaml (needs runs, method, weights; written by python -m utils ensemble)")
    members = [(Path(m[0]), m[1]) if isinstance(m, tuple) else (Path(m), None) for m in runs]
    if len(members) != len(doc["runs"]):
        raise ValueError(f"{choices} fuses {len(doc['runs'])} members ({', '.join(doc['runs'])}); {len(members)} "
                         "given (name rounds as the CV runs were: RUN@1,2,3)")
    infos = []
    for r in dict.fromkeys(root for root, _ in members):
        info = io.read_json(Path(r) / "run.json")
        if info is None:
            raise FileNotFoundError(f"{r}/run.json: not a finished run folder")
        if info.get("split") != "full":
            raise ValueError(f"{r}: made with --split {info.get('split')}; an ensemble submission fuses --split full runs")
        if infos and info.get("data") != infos[0].get("data"):
            raise ValueError(f"{r}: made from other data than {members[0][0]} ({info.get('data_dir')} vs "
                             f"{infos[0].get('data_dir')})")
        infos.append(info)
    named = dict(zip(doc["runs"], members))
    if doc["method"] == "none":
        root, round_ = named[doc["chosen"]]
        d, source = last_ranking(root, "test", round_)
        ranking = pd.read_parquet(d / f"{source}_test.parquet")
    else:
        rankings = []
        for root, round_ in members:
            d, source = last_ranking(root, "test", round_)
            rankings.append(pd.read_parquet(d / f"{source}_test.parquet"))
        ranking = fuse(rankings, doc["method"], doc["weights"], top_k=100)
    task = get_task(infos[0]["config"]["data"]["task"])
    data = task.load(infos[0]["data_dir"], require_test=True)
    path = Path(out) / task.submission_file
    with io.atomic_path(path) as tmp:
        task.write_submission(ranking, data, tmp)
        task.validate_submission(tmp, data)
    return path
