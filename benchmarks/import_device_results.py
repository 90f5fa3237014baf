"""Fold result files that came back from the device machine into benchmarks/results/.

    python benchmarks/import_device_results.py /work/.device/3/r/bench_encode.json [--as bench_rerank]

For each ``X.json`` given: its ``X.history.jsonl`` rows are appended to
``results/<name>.history.jsonl`` (``--as`` renames, e.g. a second run written as
``bench_rerank2``), the JSON replaces ``results/<name>.json`` and the markdown table is
regenerated from the whole history with the imported run's notes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, render_markdown  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="+")
    ap.add_argument("--as", dest="name", default=None, help="target result name (default: the file's own)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="results folder to fold into (default benchmarks/results)")
    args = ap.parse_args(argv)
    for src in map(Path, args.json):
        name = args.name or src.stem
        hist_src = src.with_name(src.stem + ".history.jsonl")
        md_src = src.with_suffix(".md")
        target = args.results / f"{name}.json"
        with open(args.results / f"{name}.history.jsonl", "a") as f:
            f.write(hist_src.read_text())
        shutil.copyfile(src, target)
        text = md_src.read_text() if md_src.exists() else ""
        title = text.splitlines()[0].lstrip("# ") if text else name
        script = text.split("`benchmarks/", 1)[1].split("`", 1)[0] if "`benchmarks/" in text else f"{name}.py"
        notes = [ln[2:] for ln in text.split("Notes of the latest run", 1)[-1].splitlines()[2:] if ln.startswith("- ")] \
            if "Notes of the latest run" in text else None
        date = json.loads(hist_src.read_text().splitlines()[-1])["date"]
        print(render_markdown(target, title, notes, date, script=script))


if __name__ == "__main__":
    main()
