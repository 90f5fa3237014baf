"""Command line: ``python -m utils run|compare|report|infer|export|kaggle ...``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from utils.splits import CV_SCHEMES, SPLITS
from utils.tasks import TASKS


def _error(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _folds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise SystemExit(f"error: --folds {text!r}: fold numbers separated by commas, e.g. 0,2") from None


def _run(args: argparse.Namespace) -> int:
    """``run``, with errors as one line: the suite's own (bad flags, config, data, run folder) exit 2, a notebook's 1."""
    from papermill.exceptions import PapermillExecutionError

    try:
        return _run_chain(args)
    except PapermillExecutionError as err:
        nb = getattr(err, "notebook", None)
        message = " ".join(str(err.evalue).split())  # one line
        print(f"error: {nb or 'notebook'}: {err.ename}: {message}", file=sys.stderr)
        failed = getattr(err, "failed_notebook", None)
        if failed:
            print(f"  traceback in the executed notebook: {failed}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as err:  # ConfigError, DataError, RunFolderError are ValueErrors
        return _error(str(err))


def _run_chain(args: argparse.Namespace) -> int:
    from utils.config import deep_update, load_config
    from utils.run.cv import read_choices
    from utils.run.runner import run_chain, run_cv, untuned_fallbacks

    if args.rounds < 1:
        return _error(f"--rounds {args.rounds}: at least 1")
    if args.split != "cv" and (args.folds is not None or args.cv_scheme is not None):
        return _error("--folds and --cv-scheme go with --split cv")
    choices = read_choices(args.choices) if args.choices else None
    overrides = deep_update(choices or {}, {"show_progress": False}) if args.quiet else choices
    if args.task:
        overrides = deep_update(overrides or {}, {"data": {"task": args.task}})
    out = Path(args.out or (f"runs/{args.task}_{args.split}" if args.task not in (None, "eedi") else f"runs/{args.split}"))
    t0 = time.perf_counter()
    if args.split == "cv":
        result = run_cv(out, args.data_dir, args.rounds, args.config, args.model, args.force, _folds(args.folds),
                        args.cv_scheme, overrides)
        print(f"finished in {time.perf_counter() - t0:.1f} s; folds under {out}/fold_*/")
        if result:
            print((out / "cv.md").read_text().split("\n## Alternatives")[0])
            print(f"CV report: {out / 'cv.md'}\nchoices: {out / 'choices.yaml'} "
                  f"(apply: python -m utils run --split full --choices {out / 'choices.yaml'})")
        return 0
    if choices:
        print(f"applying the CV choices of {args.choices}: {choices}")
    elif args.split == "full":
        fallbacks = untuned_fallbacks(load_config(args.config), args.rounds)
        if fallbacks:
            print("WARNING: --split full without --choices: nothing is held out to tune on, so this run uses untuned "
                  "fallbacks:\n" + "".join(f"  - {f}\n" for f in fallbacks) +
                  "  Run --split cv with the same config first and pass --choices <cv out>/choices.yaml.", file=sys.stderr)
    run_chain(out, args.data_dir, args.split, args.rounds, args.config, args.model, args.force, overrides=overrides)
    print(f"finished in {time.perf_counter() - t0:.1f} s; executed notebooks under {out}/round_*/")
    from utils.tasks import get_task

    name = get_task(load_config(args.config, overrides)["data"]["task"]).submission_file
    sub = out / name
    if sub.exists():
        print(f"submission: {sub}")
    else:
        print(f"no {name} written (08_fuse_submit not in the chain, or no test queries)")
    return 0


def _named(paths: list[str], taken: dict | None = None) -> dict[str, Path]:
    """{folder name: path} for run folders, a name already used (or in ``taken``) suffixed with ``_``."""
    out: dict[str, Path] = {}
    for run in paths:
        name = Path(run).name
        while name in out or name in (taken or {}):
            name += "_"
        out[name] = Path(run)
    return out


def _ensemble(args: argparse.Namespace) -> int:
    from utils.run.ensemble import apply_ensemble, choose_ensemble, parse_members, to_markdown

    try:
        members = parse_members(args.runs)
        if args.choices:
            print(f"submission: {apply_ensemble(list(members.values()), args.choices, args.out)}")
            return 0
        result = choose_ensemble(members, args.out)
    except (ValueError, FileNotFoundError) as err:
        return _error(str(err))
    print(to_markdown(result))
    print(f"written: {Path(args.out) / 'ensemble.md'}, {Path(args.out) / 'ensemble.yaml'} (apply with --choices)")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from utils.run.cv import choose, compare
    from utils.run.runner import run_chain, run_cv

    out = Path(args.out)
    runs: dict[str, Path] = {}
    for config in args.config or []:
        name = Path(config).stem
        while name in runs:
            name += "_"
        runs[name] = out / name
        if args.split == "cv":
            if run_cv(runs[name], args.data_dir, args.rounds, config, args.model) is None:
                return _error(f"{runs[name]}: CV did not finish")
        else:
            run_chain(runs[name], args.data_dir, args.split, args.rounds, config, args.model)
            choose(runs[name])
    runs.update(_named(args.run or [], taken=runs))
    if len(runs) < 2:
        return _error("compare needs two runs: --config A --config B, or --run DIR for finished runs")
    table = compare(runs)
    md = (f"# Compare\n\nRuns: {', '.join(f'`{n}` ({p})' for n, p in runs.items())}. MAP@25 / Recall@25 on the "
          f"pairs all runs scored; differences against `{next(iter(runs))}` with a 95% paired bootstrap interval "
          "over questions.\n\n" + table.to_markdown(index=False, floatfmt=".4f") + "\n")
    print(md)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(md)
    print(f"written: {out / 'compare.md'}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from utils.run.report import write_report

    paths = write_report(args.runs, args.out or args.runs)
    for p in paths.values():
        print(p)
    return 0


def _infer(args: argparse.Namespace) -> int:
    from utils.kaggle.inference import infer

    infer(args.data_dir, args.models, args.out, args.config)
    return 0


def _export(args: argparse.Namespace) -> int:
    """``export``: pack a finished round for Kaggle (what 07_export does), as one command."""
    from utils.kaggle.inference import export

    try:
        exp = export(args.run_dir, args.round, name=args.name, owner=args.owner, out_root=args.out, wheels=args.wheels)
    except (ValueError, FileNotFoundError) as err:  # ConfigError is a ValueError
        return _error(" ".join(str(err).split()))
    print(f"dataset {exp['dataset_id']}: {exp['dataset_dir']}\nkernel  {exp['kernel_id']}: {exp['kernel_dir']}")
    for w in exp["warnings"]:
        print(f"WARNING: {w}", file=sys.stderr)
    print("push (each command validates only, without --no-dry-run):\n" + "\n".join(f"  {c}" for c in exp["push_commands"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the notebook chain with papermill")
    run.add_argument("--task", choices=sorted(TASKS), default=None,
                     help="the competition: eedi (default), aqa (KDD Cup 2024 OAG-AQA) or beir (any BEIR-layout folder); "
                          "also data.task in the config")
    run.add_argument("--data-dir", default=None, help="folder in the task's raw layout (default: the task's bundled sample)")
    run.add_argument("--split", choices=SPLITS, default="v1")
    run.add_argument("--rounds", type=int, default=1)
    run.add_argument("--config", default=None, help="YAML file overriding configs defaults")
    run.add_argument("--out", default=None, help="run folder (default runs/<split>; runs/<task>_<split> for another task)")
    run.add_argument("--model", default=None, help="base embedder: local path or hub id (default: bundled MiniLM)")
    run.add_argument("--force", action="store_true",
                     help="redo everything (also in a folder made with other data or config); clears its old submission first")
    run.add_argument("--quiet", action="store_true", help="no progress bars (show_progress false; also off when CI=true)")
    run.add_argument("--cv-scheme", choices=CV_SCHEMES, default=None,
                     help="split cv: v1 grouped K-fold (default) or v2 (each fold holds out its own misconceptions)")
    run.add_argument("--folds", default=None, help="split cv: run only these folds, e.g. 0,2 (default: all)")
    run.add_argument("--choices", default=None, help="choices.yaml of a CV run: apply its 06/08 choices (e.g. to --split full)")
    run.set_defaults(func=_run)

    cmp = sub.add_parser("compare", help="run two or more configs (or read finished runs) and compare them paired")
    cmp.add_argument("--config", action="append", help="a config to run (repeat)")
    cmp.add_argument("--run", action="append", help="a finished run folder to read (repeat)")
    cmp.add_argument("--split", choices=SPLITS, default="cv")
    cmp.add_argument("--rounds", type=int, default=1)
    cmp.add_argument("--data-dir", default=None)
    cmp.add_argument("--model", default=None)
    cmp.add_argument("--out", default="runs/compare", help="runs of --config go to <out>/<config name>; compare.md here")
    cmp.set_defaults(func=_compare)

    ens = sub.add_parser("ensemble", help="fuse the rankings of finished runs (e.g. other embedders): "
                                          "choose out of fold on CV runs, then apply to --split full runs")
    ens.add_argument("runs", nargs="+", help="run folders: CV runs (to choose), or full runs with --choices; RUN is its "
                                             "last round, RUN@1,2,3 or RUN@all one member per round")
    ens.add_argument("--choices", default=None,
                     help="ensemble.yaml from the CV runs: fuse these --split full runs (same order) and write the submission")
    ens.add_argument("--out", default="runs/ensemble", help="folder for ensemble.{md,json,yaml} or the submission")
    ens.set_defaults(func=_ensemble)

    rep = sub.add_parser("report", help="table and plots across runs")
    rep.add_argument("--runs", default="runs")
    rep.add_argument("--out", default=None)
    rep.set_defaults(func=_report)

    inf = sub.add_parser("infer", help="inference only: embed, recall, rerank test.csv with packed models")
    inf.add_argument("--data-dir", required=True, help="folder in the task's raw layout (data.task of the config; its test queries required)")
    inf.add_argument("--models", required=True, help="folder holding embedder/ (+ reranker/): an exported dataset or a round")
    inf.add_argument("--out", required=True, help="folder for submission.csv")
    inf.add_argument("--config", default=None, help="YAML config (default: <models>/config.yaml, else the defaults)")
    inf.set_defaults(func=_infer)

    exp = sub.add_parser("export", help="pack a finished round for Kaggle (07_export's work) without re-running notebooks")
    exp.add_argument("run_dir", help="the run folder (e.g. runs/v1) or one of its round_<r>/ folders")
    exp.add_argument("--round", type=int, default=None, help="round to pack (default: the last one with an embedder)")
    exp.add_argument("--name", default=None, help="dataset slug (default: export.name, else <task>-<run>-r<round>)")
    exp.add_argument("--owner", default=None, help="Kaggle username (default: export.owner, else $KAGGLE_USERNAME)")
    exp.add_argument("--out", default=None, help="output root (default: export.dir, kaggle_datasets/)")
    exp.add_argument("--wheels", action=argparse.BooleanOptionalAction, default=None,
                     help="also pack the pinned transformers/sentence-transformers/peft wheels as <slug>-wheels "
                          "for the offline kernel (default: export.wheels)")
    exp.set_defaults(func=_export)

    from utils.kaggle.api import add_kaggle_subparser

    add_kaggle_subparser(sub)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
