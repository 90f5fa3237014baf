# %% [markdown]
# # 01 · Mine hard negatives
#
# Embed the training queries and the misconception corpus with the current model (round 1: the base model; round r: round r-1's fine-tuned embedder), take the candidates ranked in `[range_min, range_max)`, drop the positive and sample `n`. Output: `hard_negatives.jsonl` in FlagEmbedding's format.

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
from utils.stages.context import load_context, load_split
from utils.stages.mine_hn import mine

pd.set_option("display.max_colwidth", 80)
ctx = load_context(run_dir, data_dir, split, round_idx, config_path, model)
print(f"split={ctx.split} round={ctx.round_idx}: {len(ctx.train_pairs)} labelled train pairs, "
      f"{len(ctx.val_pairs)} validation pairs, {len(ctx.test_pairs)} test pairs, {len(ctx.corpus)} candidates (task {ctx.task.name}, MAP@{ctx.k})")

# %%
from utils.splits import unseen_share
display(ctx.pairs.assign(labelled=ctx.pairs['positives'].map(len) > 0, positives=ctx.pairs['positives'].map(len))
        .groupby('fold').agg(queries=('query_id', 'size'), labelled=('labelled', 'sum'), positives=('positives', 'sum'),
                             groups=('group', 'nunique')))
print(f"validation queries none of whose positives occurs in training (Eedi: unseen misconceptions): {unseen_share(load_split(ctx), ctx.pairs):.1%}")
print('mining model:', ctx.mining_model)
print('mining settings:', ctx.config['mining'])

# %%
from utils.stages.ops import length_stats
print('token lengths of the training queries and the corpus (set train.max_query_length / max_passage_length from these):')
display(length_stats(ctx, ctx.embedder('mining')).round(2))

# %%
records, stats = mine(ctx)
pd.Series(stats).to_frame('value')

# %% [markdown]
# One training record (the query, its positive and the first mined negatives):

# %%
r = records[0]
print(r['query'][:400])
print('\nPOS:', r['pos'][0])
for n in r['neg'][:5]:
    print('NEG:', n)

# %%
plots.score_histogram(records);
