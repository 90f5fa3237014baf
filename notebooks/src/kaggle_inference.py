# %% [markdown]
# # Inference on Kaggle
#
# Inference only, offline (`utils.kaggle.inference.infer`): embed the task's test queries (Eedi: the wrong answers of `test.csv`) with the packed fine-tuned embedder, recall the top-K candidates, rerank the head with the packed reranker when there is one, fuse the earlier rounds' rankings when 08 fused them (their embedders are packed too), and write the task's submission (Eedi: `submission.csv`). `models_dir` is the dataset made by `07_export` (it also holds the `utils` package this notebook imports).

# %% tags=["parameters"]
# Parameters (07_export sets models_dir to the exported dataset and data_dir to the task's data)
data_dir = "/kaggle/input/eedi-mining-misconceptions-in-mathematics"   # the task's data (07_export sets it)
models_dir = "/kaggle/input/<slug>"   # dataset with embedder/ [+ reranker/], utils/, config.yaml
out_dir = "/kaggle/working"   # submission.csv goes here
config_path = None   # None: models_dir/config.yaml
wheels_dir = None   # 07_export with export.wheels sets it to "/kaggle/input/<slug>-wheels"

# %%
import sys
from pathlib import Path

# An input not attached (Add Input) stops here with one line, before `import utils` (which lives in models_dir).
for name, what in (('models_dir', 'the dataset'), ('data_dir', 'the competition or data set')):
    value = globals().get(name)  # None: not set here (e.g. this cell run alone), nothing to check
    if value is not None and not Path(value).is_dir():
        raise SystemExit(f"{name} = {str(value)!r} is not a folder: attach {what} {Path(value).name!r} "
                         f"to this notebook (Add Input), or set {name}")
# Offline wheels (export.wheels): install the pinned transformers, sentence-transformers, ... the models were
# saved with, before anything imports them; pip takes from the folder only what the image lacks.
wheels = globals().get('wheels_dir')
if wheels and (Path(wheels) / 'requirements.txt').is_file():
    import subprocess
    names = [l.strip() for l in (Path(wheels) / 'requirements.txt').read_text().splitlines() if l.strip()]
    pip = [sys.executable, '-m', 'pip', 'install', '--quiet', '--no-index', '--find-links', str(wheels)]
    proc = subprocess.run(pip + names, capture_output=True, text=True)
    how = ''
    if proc.returncode:  # a dependency neither in the image nor packed: install the pinned ones alone
        proc, how = subprocess.run(pip + ['--no-deps'] + names, capture_output=True, text=True), ' (--no-deps)'
    if proc.returncode:
        raise SystemExit(f"pip install --no-index from {wheels} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    print(f"installed from {wheels}{how}: {' '.join(names)}")
elif wheels:
    print(f"note: wheels_dir {wheels!r} is not attached: using the image's packages (attach {Path(wheels).name!r} if loading fails)")
if (Path(models_dir) / 'utils').is_dir():  # import the packed utils offline
    sys.path.insert(0, str(models_dir))
import utils
print('utils from', Path(utils.__file__).parent)

# %%
import time
import pandas as pd
from utils.kaggle.inference import infer

t0 = time.perf_counter()
path = infer(data_dir, models_dir, out_dir, config_path)
print(f'{time.perf_counter() - t0:.1f} s')
sub = pd.read_csv(path)
print(len(sub), 'rows')
sub.head()
