# %% [markdown]
# # 03 · Evaluate the embedder
#
# MAP@k (Eedi: MAP@25) and Recall@K on the validation pairs, before (base model) and after fine-tuning; the Recall@K curve and a per-subject breakdown (Eedi).

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
from utils.stages.eval_embedder import evaluate_embedders, per_group_map

pd.set_option("display.max_colwidth", 80)
ctx = load_context(run_dir, data_dir, split, round_idx, config_path, model)
print(f"split={ctx.split} round={ctx.round_idx}: {len(ctx.train_pairs)} labelled train pairs, "
      f"{len(ctx.val_pairs)} validation pairs, {len(ctx.test_pairs)} test pairs, {len(ctx.corpus)} candidates (task {ctx.task.name}, MAP@{ctx.k})")

# %%
if ctx.val_pairs.empty:
    print('split=full: no validation pairs to score')
    rankings = {}
else:
    rankings = evaluate_embedders(ctx)
    table = pd.DataFrame({k: evaluate(v, ctx.val_pairs, k=ctx.k) for k, v in rankings.items()}).T
    display(table.round(4))

# %%
if rankings:
    plots.metric_bars(table, k=ctx.k, title='validation, before vs after fine-tuning')
    plots.recall_curves(rankings, ctx.val_pairs, k=ctx.k);

# %%
if rankings and 'SubjectName' in ctx.val_pairs:  # a task field (Eedi); other tasks have no subject
    by_subject = {k: per_group_map(v, ctx.val_pairs, k=ctx.k) for k, v in rankings.items()}
    display(by_subject['finetuned'].head(15).round(3))
    plots.per_group_bars(by_subject['base'], by_subject['finetuned'], k=ctx.k);

# %% [markdown]
# When this round belongs to a CV run (`--split cv`), the pooled out-of-fold table over the folds finished so far (every labelled pair scored once, by the fold that held it out; 95% bootstrap interval over questions). The choices made out of fold are in `<out>/cv.md` once all folds finish.

# %%
from utils.run import cv
if cv.is_cv_fold(ctx.run_dir):
    cv_table = cv.stage_table(ctx.out_dir.parent)
    print(f"cross-validation: {cv_table['folds'].max()} of {ctx.config['split']['n_folds']} folds pooled "
          f"(reranked / fused as each fold tuned them, in fold)")
    display(cv_table.round(4))
else:
    print('not a CV run (--split cv): no pooled table')
