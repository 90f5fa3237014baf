# %% [markdown]
# # 02 · Fine-tune the embedder
#
# Contrastive (InfoNCE) fine-tuning on this round's hard negatives with in-batch negatives (`utils.retrieval.train_embedder`). Output: `embedder/` in this round's folder.

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
from utils.stages.train_embedder import train

pd.set_option("display.max_colwidth", 80)
ctx = load_context(run_dir, data_dir, split, round_idx, config_path, model)
print(f"split={ctx.split} round={ctx.round_idx}: {len(ctx.train_pairs)} labelled train pairs, "
      f"{len(ctx.val_pairs)} validation pairs, {len(ctx.test_pairs)} test pairs, {len(ctx.corpus)} candidates (task {ctx.task.name}, MAP@{ctx.k})")

# %%
print('training settings:', ctx.config['train'])
log = train(ctx)
pd.DataFrame(log).tail()

# %%
plots.loss_curve(log);
