# %% [markdown]
# # 05 · Train the reranker
#
# Build training groups from recall on the training questions (one group per positive: the positive plus hard negatives from the top-K, never another positive; a positive injected where recall missed it). `rerank.candidates` picks the recall: `current` (this round's embedder, which was trained on these questions) or `mining` (the model this round mined with). Then fine-tune the reranker the config names: a cross-encoder (the default: initialised from this round's fine-tuned embedder, a mean-pooled scoring head; on CPU cut to 3 layers), or an LLM (pointwise yes/no or listwise lettered options) with LoRA — QLoRA 4-bit on a GPU. Output: `reranker/`.

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
from utils.stages.train_reranker import rerank_config, reranker_lengths, reranker_losses, train_reranker

pd.set_option("display.max_colwidth", 80)
ctx = load_context(run_dir, data_dir, split, round_idx, config_path, model)
print(f"split={ctx.split} round={ctx.round_idx}: {len(ctx.train_pairs)} labelled train pairs, "
      f"{len(ctx.val_pairs)} validation pairs, {len(ctx.test_pairs)} test pairs, {len(ctx.corpus)} candidates (task {ctx.task.name}, MAP@{ctx.k})")

# %%
rc = rerank_config(ctx)
print({k: rc[k] for k in ('family', 'model', 'candidates', 'head', 'num_layers', 'top_k', 'n_negatives', 'epochs', 'lr', 'max_length', 'item_bias_l2')})

# %%
result = train_reranker(ctx)
pd.Series(result['stats']).to_frame('value')

# %% [markdown]
# Token lengths of the training inputs (choose `max_length` from the upper percentiles):

# %%
lengths = reranker_lengths(ctx, result['train_df'])
display(pd.Series(lengths['stats']).to_frame('tokens').round(1))
if lengths['lengths']:
    plots.histogram(lengths['lengths'], 'reranker input lengths', 'tokens');

# %%
losses = reranker_losses(result['log'])
if losses:
    plots.loss_curve(losses);

# %% [markdown]
# With `item_bias_l2` set, the cross-encoder trained beside a fitted per-misconception bias (dropped at scoring); the largest biases are the misconceptions most often gold in training:

# %%
if result['log'].get('item_bias'):
    display(pd.Series(result['log']['item_bias']).head(10).to_frame('fitted bias'))
