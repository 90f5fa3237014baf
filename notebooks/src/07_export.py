# %% [markdown]
# # 07 · Export for Kaggle
#
# Pack this round for an offline Kaggle kernel (`utils.kaggle.inference.export_round`): a dataset `kaggle_datasets/<slug>/` with the fine-tuned `embedder/`, the `reranker/` when this round trained one, a copy of the `utils/` package and the effective `config.yaml`; and a kernel `kaggle_datasets/<slug>-inference/` running `kaggle_inference.ipynb` on it (GPU on, internet off). Both metadata files are validated offline; nothing is sent from here. The same, for a finished round without re-running any notebook: `python -m utils export runs/v1 --round 1`.

# %% tags=["parameters"]
# Parameters (papermill injects these; edit them to explore in Jupyter)
run_dir = "runs/v1/round_1"   # this round's folder; the split lives one level up
data_dir = None               # folder in the task's raw layout (data.task), None means its bundled sample data
split = "v1"                  # v1 | v2 | v3 | full
round_idx = 1                 # round r mines with round r-1's embedder
config_path = None            # YAML overriding utils.config.DEFAULTS
model = None                  # base embedder path or hub id, None means the config default

# %%
import pandas as pd
from IPython.display import display
from utils import plots
from utils.stages.context import load_context

pd.set_option("display.max_colwidth", 80)
ctx = load_context(run_dir, data_dir, split, round_idx, config_path, model)
print(f"split={ctx.split} round={ctx.round_idx}: {len(ctx.train_pairs)} labelled train pairs, "
      f"{len(ctx.val_pairs)} validation pairs, {len(ctx.test_pairs)} test pairs, {len(ctx.corpus)} candidates (task {ctx.task.name}, MAP@{ctx.k})")

# %%
import json
from utils.kaggle.inference import export_round
exp = export_round(ctx)
pd.Series({k: str(exp[k]) for k in ('dataset_id', 'dataset_dir', 'kernel_id', 'kernel_dir')}).to_frame('value')

# %%
for w in exp['warnings']:
    print('WARNING:', w)
print('dataset-metadata.json:')
print(json.dumps(exp['dataset_metadata'], indent=2))
print('kernel-metadata.json:')
print(json.dumps(exp['kernel_metadata'], indent=2))

# %% [markdown]
# Files in the dataset (weights are copied, not linked):

# %%
files = exp['files']
top = files.assign(entry=files['path'].str.split('/').str[0]).groupby('entry').agg(files=('path', 'size'), MB=('MB', 'sum'))
display(top.round(3))
print(f"total: {files['MB'].sum():.1f} MB in {len(files)} files")
files.sort_values('bytes', ascending=False).head(15)

# %% [markdown]
# To push (needs `KAGGLE_USERNAME`/`KAGGLE_KEY`; without `--no-dry-run` each command only validates). Set `export.owner` in the config (or `KAGGLE_USERNAME`) before pushing.

# %%
for cmd in exp['push_commands']:
    print(cmd)
