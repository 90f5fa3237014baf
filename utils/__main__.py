"""Command line: ``python -m utils run|report|infer|kaggle ...``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .splits import SPLITS


def _run(args: argparse.Namespace) -> int:
    from .runner import run_chain

    out = Path(args.out or f"runs/{args.split}")
    t0 = time.perf_counter()
    run_chain(out, args.data_dir, args.split, args.rounds, args.config, args.model, args.force)
    print(f"finished in {time.perf_counter() - t0:.1f} s; executed notebooks under {out}/round_*/")
    sub = out / "submission.csv"
    if sub.exists():
        print(f"submission: {sub}")
    else:
        print("no submission.csv written (08_fuse_submit not in the chain, or no test.csv)")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report import write_report

    paths = write_report(args.runs, args.out or args.runs)
    for p in paths.values():
        print(p)
    return 0


def _infer(args: argparse.Namespace) -> int:
    from .inference import infer

    infer(args.data_dir, args.models, args.out, args.config)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the notebook chain with papermill")
    run.add_argument("--data-dir", default=None, help="folder in Kaggle's Eedi layout (default: bundled sample)")
    run.add_argument("--split", choices=SPLITS, default="v1")
    run.add_argument("--rounds", type=int, default=1)
    run.add_argument("--config", default=None, help="YAML file overriding configs defaults")
    run.add_argument("--out", default=None, help="run folder (default runs/<split>)")
    run.add_argument("--model", default=None, help="base embedder: local path or hub id (default: bundled MiniLM)")
    run.add_argument("--force", action="store_true", help="redo notebooks that already finished")
    run.set_defaults(func=_run)

    rep = sub.add_parser("report", help="table and plots across runs")
    rep.add_argument("--runs", default="runs")
    rep.add_argument("--out", default=None)
    rep.set_defaults(func=_report)

    inf = sub.add_parser("infer", help="inference only: embed, recall, rerank test.csv with packed models")
    inf.add_argument("--data-dir", required=True, help="folder in Kaggle's Eedi layout (test.csv required)")
    inf.add_argument("--models", required=True, help="folder holding embedder/ (+ reranker/): an exported dataset or a round")
    inf.add_argument("--out", required=True, help="folder for submission.csv")
    inf.add_argument("--config", default=None, help="YAML config (default: <models>/config.yaml, else the defaults)")
    inf.set_defaults(func=_infer)

    from .kaggle_export import add_kaggle_subparser

    add_kaggle_subparser(sub)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
