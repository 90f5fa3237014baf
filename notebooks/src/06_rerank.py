# %% [markdown]
# # 06 · Rerank
#
# Score the top-K candidates of the validation and test pairs with the reranker; the final ranking is the reranked head followed by the retrieval tail, optionally a blend of retrieval and reranker scores tuned on validation. Output: `rerank_val.parquet`, `rerank_test.parquet`.

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
from utils.stages.rerank import rerank_all

pd.set_option("display.max_colwidth", 80)
ctx = load_context(run_dir, data_dir, split, round_idx, config_path, model)
print(f"split={ctx.split} round={ctx.round_idx}: {len(ctx.train_pairs)} labelled train pairs, "
      f"{len(ctx.val_pairs)} validation pairs, {len(ctx.test_pairs)} test pairs, {len(ctx.corpus)} candidates (task {ctx.task.name}, MAP@{ctx.k})")

# %%
res = rerank_all(ctx)
c = res['choice']
print('blend alpha (reranker weight):', c['blend_alpha'], '| item prior weight:', c['item_prior_weight'],
      '| tuned on validation' if c['tuned_on_validation'] else '| not tuned (no validation pairs, or fixed in the config)')
if 'summary' in res:
    s = res['summary']
    table = pd.DataFrame({k: s[k] for k in ('retrieval', 'reranker_only', 'reranked')}).T
    g = s['gain_ci']
    print(f"MAP@{ctx.k} gain over retrieval: {g['gain']:+.4f} (95% bootstrap interval over questions "
          f"{g['lo']:+.4f} .. {g['hi']:+.4f}; optimistic when alpha was tuned on these pairs)")
    if 'gain_out_of_fold' in s:
        o = s['gain_out_of_fold']
        print(f"... tuned out of fold (alpha chosen on the other half of the questions): {o['gain']:+.4f} "
              f"({o['lo']:+.4f} .. {o['hi']:+.4f}), what to expect on new questions")
    display(table.round(4))

# %%
if 'summary' in res:
    plots.metric_bars(table, k=ctx.k, title='validation: retrieval vs reranked')
    plots.recall_curves({'retrieval': res['candidates_val'], 'reranked': res['val']}, ctx.val_pairs, max_k=50, k=ctx.k);

# %%
if 'blend_table' in res:
    display(res['blend_table'].round(4))

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
