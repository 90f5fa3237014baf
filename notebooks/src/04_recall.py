# %% [markdown]
# # 04 · Recall candidates
#
# Top-K candidates (faiss exact inner product; torch on GPUs without faiss-gpu) for the validation and test pairs with this round's embedder. Output: `candidates_val.parquet`, `candidates_test.parquet`.

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
from utils.metrics import evaluate
from utils.stages.context import load_context
from utils.stages.recall import recall_candidates

pd.set_option("display.max_colwidth", 80)
ctx = load_context(run_dir, data_dir, split, round_idx, config_path, model)
print(f"split={ctx.split} round={ctx.round_idx}: {len(ctx.train_pairs)} labelled train pairs, "
      f"{len(ctx.val_pairs)} validation pairs, {len(ctx.test_pairs)} test pairs, {len(ctx.corpus)} candidates (task {ctx.task.name}, MAP@{ctx.k})")

# %%
from utils.retrieval.recall import search_backend
print('search backend:', search_backend(), '| k =', ctx.config['recall']['k'])
candidates = recall_candidates(ctx)
pd.Series({k: v['query_id'].nunique() for k, v in candidates.items()}, name='queries')

# %%
if not ctx.val_pairs.empty:
    display(pd.Series(evaluate(candidates['val'], ctx.val_pairs, k=ctx.k)).to_frame('validation').round(4))
    plots.recall_curves({'fine-tuned': candidates['val']}, ctx.val_pairs, title='candidate recall', k=ctx.k);

# %%
candidates['test'].head(10)
