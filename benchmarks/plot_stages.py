"""Bar plot of seconds per stage from bench_round results.

    python benchmarks/plot_stages.py                                  # benchmarks/results/bench_round.json
    python benchmarks/plot_stages.py --in /tmp/bench_round.json --out /tmp/stages.png
    python benchmarks/plot_stages.py --default-run runs/v1   # + the default CPU run's notebooks

One stacked bar per split (setup, zero_shot, mine, train, recall), the round total (mine +
train + recall) written above each bar, and the 60 s H100 target as a dashed line when the
run was on a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS  # noqa: E402

STAGES = ("setup", "zero_shot", "mine", "train", "recall")


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--in", dest="inp", default=str(RESULTS / "bench_round.json"))
    ap.add_argument("--out", default=str(RESULTS / "stages.png"))
    ap.add_argument("--default-run", default=None,
                    help="an <out> folder of `python -m utils run`: also plot its round_1 seconds per notebook "
                         "(timings.json) to results/default_run_stages.png")
    args = ap.parse_args(argv)
    if args.default_run:
        plot_run_timings(Path(args.default_run), RESULTS / "default_run_stages.png")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = json.loads(Path(args.inp).read_text())
    splits = res["splits"]
    stages = res.get("stages", STAGES)
    m = res["machine"]
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(splits), 4.2))
    x = range(len(splits))
    bottom = [0.0] * len(splits)
    colors = plt.get_cmap("tab10")
    for k, st in enumerate(stages):
        vals = [s["seconds"].get(st, 0.0) for s in splits]
        ax.bar(x, vals, bottom=bottom, label=st, color=colors(k), width=0.6)
        bottom = [b + v for b, v in zip(bottom, vals)]
    for i, s in enumerate(splits):
        key = _map_key(s)
        ax.text(i, bottom[i], f"round {s['seconds']['round']:.1f}s\nMAP {s['before'][key]:.3f}"
                f"→{s['after'][key]:.3f}", ha="center", va="bottom", fontsize=8)
    if m.get("gpu"):
        ax.axhline(60, ls="--", color="grey", lw=1)
        ax.text(len(splits) - 0.5, 60, "60 s target (round)", ha="right", va="bottom", fontsize=7, color="grey")
    ax.set_xticks(list(x), [f"{s['split']}\n{s['n_train']} train / {s['n_val']} val" for s in splits], fontsize=8)
    ax.set_ylabel("seconds")
    top = max(bottom) * 1.25 if bottom else 1
    ax.set_ylim(0, max(top, 66) if m.get("gpu") else top)
    where = m.get("gpu") or f"CPU ({m.get('cpu_count')} cores)"
    ax.set_title(f"One round, {res['args'].get('epochs')} epochs — {where}\n{m['date'][:16]}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")
    return out


def _map_key(split: dict) -> str:
    """The MAP@k key of one split's metrics: ``map@<k>`` with the run's k (results before ``k`` was saved: map@25)."""
    if "k" in split:
        return f"map@{split['k']}"
    return next((key for key in split["before"] if key.startswith("map@")), "map@25")


def plot_run_timings(out_dir: Path, png: Path, budget_s: float = 600.0) -> Path:
    """One stacked bar of seconds per notebook of ``out_dir/round_1`` against the 10-minute budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timings = json.loads((out_dir / "round_1" / "timings.json").read_text())
    fig, ax = plt.subplots(figsize=(7, 2.6))
    left = 0.0
    colors = plt.get_cmap("tab10")
    for k, (name, sec) in enumerate(timings.items()):
        ax.barh([0], [sec], left=left, color=colors(k), label=f"{name} {sec:.0f} s")
        left += sec
    ax.axvline(budget_s, ls="--", color="grey", lw=1)
    ax.text(budget_s, 0.45, f"{budget_s / 60:.0f} min target", ha="right", va="bottom", fontsize=7, color="grey")
    ax.set_yticks([])
    ax.set_xlim(0, max(left, budget_s) * 1.05)
    ax.set_xlabel("seconds")
    ax.set_title(f"Default run (`python -m utils run`, sample data, CPU): {left:.0f} s", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    print(f"wrote {png}")
    return png


if __name__ == "__main__":
    main()
