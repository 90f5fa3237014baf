"""Regenerate notebooks/*.ipynb from the cell sources below (one place to edit them).

Every notebook: a markdown header, a cell tagged ``parameters`` (papermill), then calls into
``utils``. Kernelspec metadata (python3) is always set: papermill and Kaggle kernels need it.
Run: ``python scripts/build_notebooks.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent

PARAMETERS = '''# Parameters (papermill injects these; edit them to explore in Jupyter)
run_dir = "runs/v1/round_1"   # this round's folder; the split lives one level up
data_dir = None               # folder in Kaggle's Eedi layout, None means the bundled sample data
split = "v1"                  # v1 | v2 | v3 | full
round_idx = 1                 # round r mines with round r-1's embedder
config_path = None            # YAML overriding utils.config.DEFAULTS
model = None                  # base embedder path or hub id, None means the config default'''

SETUP = '''import pandas as pd
from IPython.display import display
from utils import pipeline as P, plots

pd.set_option("display.max_colwidth", 80)
ctx = P.load_context(run_dir, data_dir, split, round_idx, config_path, model)
print(f"split={ctx.split} round={ctx.round_idx}: {len(ctx.train_pairs)} labelled train pairs, "
      f"{len(ctx.val_pairs)} validation pairs, {len(ctx.test_pairs)} test pairs, {len(ctx.misconceptions)} misconceptions")'''

# 03, 06 and 08 of a CV fold (split cv): the pooled out-of-fold table of the folds finished so far
CV_TABLE = ("md", "When this round belongs to a CV run (`--split cv`), the pooled out-of-fold table over the folds "
                  "finished so far (every labelled pair scored once, by the fold that held it out; 95% bootstrap "
                  "interval over questions). The choices made out of fold are in `<out>/cv.md` once all folds finish.")
CV_CODE = ("code", "from utils import cv\nif cv.is_cv_fold(ctx.run_dir):\n    cv_table = cv.stage_table(ctx.out_dir.parent)\n"
                   "    print(f\"cross-validation: {cv_table['folds'].max()} of {ctx.config['split']['n_folds']} folds pooled \"\n"
                   "          f\"(reranked / fused as each fold tuned them, in fold)\")\n    display(cv_table.round(4))\n"
                   "else:\n    print('not a CV run (--split cv): no pooled table')")

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {
    "01_mine_hn": [
        ("md", "# 01 · Mine hard negatives\n\nEmbed the training queries and the misconception corpus with the "
               "current model (round 1: the base model; round r: round r-1's fine-tuned embedder), take the "
               "candidates ranked in `[range_min, range_max)`, drop the positive and sample `n`. Output: "
               "`hard_negatives.jsonl` in FlagEmbedding's format."),
        ("params", PARAMETERS),
        ("code", SETUP),
        ("code", "from utils.splits import unseen_share\n"
                 "display(ctx.pairs.groupby('fold').agg(pairs=('QuestionId_Answer', 'size'), "
                 "labelled=('MisconceptionId', 'count'), questions=('QuestionId', 'nunique')))\n"
                 "print(f\"validation pairs whose misconception is unseen in training: {unseen_share(P.load_split(ctx), ctx.pairs):.1%}\")\n"
                 "print('mining model:', ctx.mining_model)\n"
                 "print('mining settings:', ctx.config['mining'])"),
        ("code", "records, stats = P.mine(ctx)\npd.Series(stats).to_frame('value')"),
        ("md", "One training record (the query, its positive and the first mined negatives):"),
        ("code", "r = records[0]\nprint(r['query'][:400])\nprint('\\nPOS:', r['pos'][0])\n"
                 "for n in r['neg'][:5]:\n    print('NEG:', n)"),
        ("code", "plots.score_histogram(records);"),
    ],
    "02_train_embedder": [
        ("md", "# 02 · Fine-tune the embedder\n\nContrastive (InfoNCE) fine-tuning on this round's hard negatives "
               "with in-batch negatives (`utils.train_embedder`). Output: `embedder/` in this round's folder."),
        ("params", PARAMETERS),
        ("code", SETUP),
        ("code", "print('training settings:', ctx.config['train'])\nlog = P.train(ctx)\n"
                 "pd.DataFrame(log).tail()"),
        ("code", "plots.loss_curve(log);"),
    ],
    "03_eval_embedder": [
        ("md", "# 03 · Evaluate the embedder\n\nMAP@25 and Recall@K on the validation pairs, before (base model) "
               "and after fine-tuning; the Recall@K curve and a per-subject breakdown."),
        ("params", PARAMETERS),
        ("code", SETUP),
        ("code", "if ctx.val_pairs.empty:\n    print('split=full: no validation pairs to score')\n    rankings = {}\n"
                 "else:\n    rankings = P.evaluate_embedders(ctx)\n"
                 "    table = pd.DataFrame({k: P.evaluate(v, ctx.val_pairs) for k, v in rankings.items()}).T\n"
                 "    display(table.round(4))"),
        ("code", "if rankings:\n    plots.metric_bars(table, title='validation, before vs after fine-tuning')\n"
                 "    plots.recall_curves(rankings, ctx.val_pairs);"),
        ("code", "if rankings:\n    by_subject = {k: P.per_group_map(v, ctx.val_pairs) for k, v in rankings.items()}\n"
                 "    display(by_subject['finetuned'].head(15).round(3))\n"
                 "    plots.per_group_bars(by_subject['base'], by_subject['finetuned']);"),
        CV_TABLE,
        CV_CODE,
    ],
    "04_recall": [
        ("md", "# 04 · Recall candidates\n\nTop-K candidates (faiss exact inner product; torch on GPUs without "
               "faiss-gpu) for the validation and test pairs with this round's embedder. Output: "
               "`candidates_val.parquet`, `candidates_test.parquet`."),
        ("params", PARAMETERS),
        ("code", SETUP),
        ("code", "from utils.recall import search_backend\nprint('search backend:', search_backend(), '| k =', ctx.config['recall']['k'])\n"
                 "candidates = P.recall_candidates(ctx)\n"
                 "pd.Series({k: v['QuestionId_Answer'].nunique() for k, v in candidates.items()}, name='queries')"),
        ("code", "if not ctx.val_pairs.empty:\n    display(pd.Series(P.evaluate(candidates['val'], ctx.val_pairs)).to_frame('validation').round(4))\n"
                 "    plots.recall_curves({'fine-tuned': candidates['val']}, ctx.val_pairs, title='candidate recall');"),
        ("code", "candidates['test'].head(10)"),
    ],
    "05_train_reranker": [
        ("md", "# 05 · Train the reranker\n\nBuild training groups from recall on the training questions (the gold plus "
               "hard negatives from the top-K; the gold injected where recall missed it). `rerank.candidates` picks the "
               "recall: `current` (this round's embedder, which was trained on these questions), `mining` or `crossfit` "
               "(out-of-fold embedders, so the candidates look like those of unseen questions). "
               "then fine-tune the reranker the config names: a cross-encoder (the default: initialised from this "
               "round's fine-tuned embedder, a mean-pooled scoring head; on CPU cut to 3 layers), or an LLM "
               "(pointwise yes/no or listwise lettered options) with LoRA — QLoRA 4-bit on a GPU. Output: `reranker/`."),
        ("params", PARAMETERS),
        ("code", SETUP),
        ("code", "rc = P.rerank_config(ctx)\nprint({k: rc[k] for k in ('family', 'model', 'candidates', 'head', 'num_layers', 'top_k', 'n_negatives', 'epochs', 'lr', 'max_length', 'retrieval_weight', 'item_bias_l2')})"),
        ("code", "result = P.train_reranker(ctx)\npd.Series(result['stats']).to_frame('value')"),
        ("md", "Token lengths of the training inputs (choose `max_length` from the upper percentiles):"),
        ("code", "lengths = P.reranker_lengths(ctx, result['train_df'])\ndisplay(pd.Series(lengths['stats']).to_frame('tokens').round(1))\n"
                 "if lengths['lengths']:\n    plots.histogram(lengths['lengths'], 'reranker input lengths', 'tokens');"),
        ("code", "losses = P.reranker_losses(result['log'])\nif losses:\n    plots.loss_curve(losses);"),
        ("md", "With `item_bias_l2` set, the cross-encoder trained beside a fitted per-misconception bias (dropped "
               "at scoring); the largest biases are the misconceptions most often gold in training:"),
        ("code", "if result['log'].get('item_bias'):\n    display(pd.Series(result['log']['item_bias']).head(10).to_frame('fitted bias'))"),
    ],
    "06_rerank": [
        ("md", "# 06 · Rerank\n\nScore the top-K candidates of the validation and test pairs with the reranker; "
               "the final ranking is the reranked head followed by the retrieval tail, optionally a blend of "
               "retrieval and reranker scores tuned on validation. Output: `rerank_val.parquet`, `rerank_test.parquet`."),
        ("params", PARAMETERS),
        ("code", SETUP),
        ("code", "res = P.rerank_all(ctx)\nc = res['choice']\n"
                 "print('blend alpha (reranker weight):', c['blend_alpha'], '| item prior weight:', c['item_prior_weight'],\n"
                 "      '| tuned on validation' if c['tuned_on_validation'] else '| not tuned (no validation pairs, or fixed in the config)')\n"
                 "if 'summary' in res:\n    s = res['summary']\n"
                 "    table = pd.DataFrame({k: s[k] for k in ('retrieval', 'reranker_only', 'reranked')}).T\n"
                 "    g = s['gain_ci']\n"
                 "    print(f\"MAP@25 gain over retrieval: {g['gain']:+.4f} (95% bootstrap interval over questions \"\n"
                 "          f\"{g['lo']:+.4f} .. {g['hi']:+.4f}; optimistic when alpha was tuned on these pairs)\")\n"
                 "    if 'gain_out_of_fold' in s:\n        o = s['gain_out_of_fold']\n"
                 "        print(f\"... tuned out of fold (alpha chosen on the other half of the questions): {o['gain']:+.4f} \"\n"
                 "              f\"({o['lo']:+.4f} .. {o['hi']:+.4f}), what to expect on new questions\")\n"
                 "    display(table.round(4))"),
        ("code", "if 'summary' in res:\n    plots.metric_bars(table, title='validation: retrieval vs reranked')\n"
                 "    plots.recall_curves({'retrieval': res['candidates_val'], 'reranked': res['val']}, ctx.val_pairs, max_k=50);"),
        ("code", "if 'blend_table' in res:\n    display(res['blend_table'].round(4))"),
        CV_TABLE,
        CV_CODE,
    ],
    "07_export": [
        ("md", "# 07 · Export for Kaggle\n\nPack this round for an offline Kaggle kernel (`utils.inference.export_round`): "
               "a dataset `kaggle_datasets/<slug>/` with the fine-tuned `embedder/`, the `reranker/` when this round "
               "trained one, a copy of the `utils/` package and the effective `config.yaml`; and a kernel "
               "`kaggle_datasets/<slug>-inference/` running `kaggle_inference.ipynb` on it (GPU on, internet off). "
               "Both metadata files are validated offline; nothing is sent from here. The same, for a finished "
               "round without re-running any notebook: `python -m utils export runs/v1 --round 1`."),
        ("params", PARAMETERS),
        ("code", SETUP),
        ("code", "import json\nfrom utils.inference import export_round\n"
                 "exp = export_round(ctx)\n"
                 "pd.Series({k: str(exp[k]) for k in ('dataset_id', 'dataset_dir', 'kernel_id', 'kernel_dir')}).to_frame('value')"),
        ("code", "for w in exp['warnings']:\n    print('WARNING:', w)\n"
                 "print('dataset-metadata.json:')\nprint(json.dumps(exp['dataset_metadata'], indent=2))\n"
                 "print('kernel-metadata.json:')\nprint(json.dumps(exp['kernel_metadata'], indent=2))"),
        ("md", "Files in the dataset (weights are copied, not linked):"),
        ("code", "files = exp['files']\n"
                 "top = files.assign(entry=files['path'].str.split('/').str[0]).groupby('entry').agg(files=('path', 'size'), MB=('MB', 'sum'))\n"
                 "display(top.round(3))\nprint(f\"total: {files['MB'].sum():.1f} MB in {len(files)} files\")\n"
                 "files.sort_values('bytes', ascending=False).head(15)"),
        ("md", "To push (needs `KAGGLE_USERNAME`/`KAGGLE_KEY`; without `--no-dry-run` each command only validates). "
               "Set `export.owner` in the config (or `KAGGLE_USERNAME`) before pushing."),
        ("code", "for cmd in exp['push_commands']:\n    print(cmd)"),
    ],
    "08_fuse_submit": [
        ("md", "# 08 · Fuse and submit\n\nFuse the rankings of this and earlier rounds (each round's reranked "
               "ranking if `06_rerank` ran, else its recall) by RRF, rank average or score sum, with weights tuned "
               "on validation (`fusion.method: auto` keeps the best method); then write a validated "
               "`submission.csv` (25 ids per wrong answer in `test.csv`) into the round, the run folder and "
               "`submissions/<run>/`."),
        ("params", PARAMETERS),
        ("code", SETUP),
        ("code", "res = P.fuse_rounds(ctx)\nprint('inputs:', res['inputs'])\nprint('method:', res['method'], '| weights:', [round(w, 3) for w in res['weights']])\n"
                 "if res['singles']:\n    table = pd.DataFrame(res['singles']).T\n"
                 "    if res['val'] is not None and len(res['inputs']) > 1:\n        table.loc[res['source']] = P.evaluate(res['val'], ctx.val_pairs)\n"
                 "    display(table[['map@25', 'recall@25', 'recall@100']].round(4))"),
        ("code", "if res['singles']:\n    final = P.evaluate(res['val'], ctx.val_pairs)\n"
                 "    ctx.metrics('08_fuse_submit', {'final': final, 'source': res['source'], 'method': res['method'],\n"
                 "                                  'weights': res['weights'], 'inputs': res['inputs']})\n"
                 "    plots.metric_bars(table, title='validation: rounds and fusion');"),
        ("code", "path = P.submit(ctx, res['test']) if res['test'] is not None else None\n"
                 "print('submission:', path)\npd.read_csv(path).head() if path else None"),
        CV_TABLE,
        CV_CODE,
    ],
    "kaggle_inference": [
        ("md", "# Eedi · inference on Kaggle\n\nInference only, offline (`utils.inference.infer`): embed the wrong answers "
               "of `test.csv` with the packed fine-tuned embedder, recall the top-K misconceptions, rerank the head with "
               "the packed reranker when there is one, and write `submission.csv`. `models_dir` is the dataset made by "
               "`07_export` (it also holds the `utils` package this notebook imports)."),
        ("params", '# Parameters (07_export sets models_dir to the exported dataset)\n'
                   'data_dir = "/kaggle/input/eedi-mining-misconceptions-in-mathematics"   # competition data (test.csv)\n'
                   'models_dir = "/kaggle/input/<slug>"   # dataset with embedder/ [+ reranker/], utils/, config.yaml\n'
                   'out_dir = "/kaggle/working"   # submission.csv goes here\n'
                   'config_path = None   # None: models_dir/config.yaml\n'
                   'wheels_dir = None   # 07_export with export.wheels sets it to "/kaggle/input/<slug>-wheels"'),
        ("code", "import sys\nfrom pathlib import Path\n\n"
                 "# An input not attached (Add Input) stops here with one line, before `import utils` (which lives in models_dir).\n"
                 "for name, what in (('models_dir', 'the dataset'), ('data_dir', 'the competition')):\n"
                 "    value = globals().get(name)  # None: not set here (e.g. this cell run alone), nothing to check\n"
                 "    if value is not None and not Path(value).is_dir():\n"
                 "        raise SystemExit(f\"{name} = {str(value)!r} is not a folder: attach {what} {Path(value).name!r} \"\n"
                 "                         f\"to this notebook (Add Input), or set {name}\")\n"
                 "# Offline wheels (export.wheels): install the pinned transformers, sentence-transformers, ... the models were\n"
                 "# saved with, before anything imports them; pip takes from the folder only what the image lacks.\n"
                 "wheels = globals().get('wheels_dir')\n"
                 "if wheels and (Path(wheels) / 'requirements.txt').is_file():\n"
                 "    import subprocess\n"
                 "    names = [l.strip() for l in (Path(wheels) / 'requirements.txt').read_text().splitlines() if l.strip()]\n"
                 "    pip = [sys.executable, '-m', 'pip', 'install', '--quiet', '--no-index', '--find-links', str(wheels)]\n"
                 "    proc = subprocess.run(pip + names, capture_output=True, text=True)\n"
                 "    how = ''\n"
                 "    if proc.returncode:  # a dependency neither in the image nor packed: install the pinned ones alone\n"
                 "        proc, how = subprocess.run(pip + ['--no-deps'] + names, capture_output=True, text=True), ' (--no-deps)'\n"
                 "    if proc.returncode:\n"
                 "        raise SystemExit(f\"pip install --no-index from {wheels} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}\")\n"
                 "    print(f\"installed from {wheels}{how}: {' '.join(names)}\")\n"
                 "elif wheels:\n"
                 "    print(f\"note: wheels_dir {wheels!r} is not attached: using the image's packages (attach {Path(wheels).name!r} if loading fails)\")\n"
                 "if (Path(models_dir) / 'utils').is_dir():  # import the packed utils offline\n"
                 "    sys.path.insert(0, str(models_dir))\n"
                 "import utils\nprint('utils from', Path(utils.__file__).parent)"),
        ("code", "import time\nimport pandas as pd\nfrom utils.inference import infer\n\n"
                 "t0 = time.perf_counter()\npath = infer(data_dir, models_dir, out_dir, config_path)\n"
                 "print(f'{time.perf_counter() - t0:.1f} s')\nsub = pd.read_csv(path)\nprint(len(sub), 'rows')\nsub.head()"),
    ],
}


def build(name: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for kind, src in cells:
        if kind == "md":
            nb.cells.append(new_markdown_cell(src))
        else:
            cell = new_code_cell(src)
            if kind == "params":
                cell.metadata["tags"] = ["parameters"]
            nb.cells.append(cell)
    for i, cell in enumerate(nb.cells):  # stable ids keep diffs small
        cell["id"] = f"{name[:2]}-{i:02d}"
    return nb


def main(names: list[str] | None = None) -> None:
    out = ROOT / "notebooks"
    out.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        if names and name not in names:
            continue
        nbformat.write(build(name, cells), out / f"{name}.ipynb")
        print(out / f"{name}.ipynb")


if __name__ == "__main__":
    main(sys.argv[1:] or None)
