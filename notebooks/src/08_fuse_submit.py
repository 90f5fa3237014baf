# %% [markdown]
# # 08 · Fuse and submit
#
# Fuse the rankings of this and earlier rounds (each round's reranked ranking if `06_rerank` ran, else its recall) by RRF, rank average or score sum, with weights tuned on validation (`fusion.method: auto` keeps the best method); then write the task's validated submission (Eedi: `submission.csv`, 25 ids per wrong answer in `test.csv`) into the round, the run folder and `submissions/<run>/`.

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
from utils.stages.fuse_submit import fuse_rounds, submit

pd.set_option("display.max_colwidth", 80)
ctx = load_context(run_dir, data_dir, split, round_idx, config_path, model)
print(f"split={ctx.split} round={ctx.round_idx}: {len(ctx.train_pairs)} labelled train pairs, "
      f"{len(ctx.val_pairs)} validation pairs, {len(ctx.test_pairs)} test pairs, {len(ctx.corpus)} candidates (task {ctx.task.name}, MAP@{ctx.k})")

# %%
res = fuse_rounds(ctx)
print('inputs:', res['inputs'])
print('method:', res['method'], '| weights:', [round(w, 3) for w in res['weights']])
if res.get('rescore'):
    print('re-scored (item prior, same-question siblings):', res['rescore'])
if res['singles']:
    table = pd.DataFrame(res['singles']).T
    if res['val'] is not None and (len(res['inputs']) > 1 or res.get('rescore')):
        table.loc[res['source'] + (' re-scored' if res.get('rescore') else '')] = evaluate(res['val'], ctx.val_pairs, k=ctx.k)
    display(table[[f'map@{ctx.k}', f'recall@{ctx.k}', 'recall@100']].round(4))

# %%
summary = {'source': res['source'], 'method': res['method'], 'weights': res['weights'], 'inputs': res['inputs'],
           'rescore': res.get('rescore')}
if res['singles']:
    summary['final'] = evaluate(res['val'], ctx.val_pairs, k=ctx.k)
    plots.metric_bars(table, k=ctx.k, title='validation: rounds and fusion');
ctx.metrics('08_fuse_submit', summary)

# %%
path = submit(ctx, res['test']) if res['test'] is not None else None
print('submission:', path)
print(''.join(path.read_text().splitlines(True)[:5]) if path else '')

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
