"""Run a ``python -m MODULE ARGS`` training entry point and report its timing and peak GPU memory.

    python benchmarks/_flag_runner.py REPORT.json MODULE [ARGS...]

Used by bench_train.py around FlagEmbedding's finetune: ``transformers.Trainer.train`` is
wrapped (FlagEmbedding's trainer inherits it) to record the trainer's own metrics
(``train_runtime`` etc.), the global step and ``torch.cuda.max_memory_allocated`` from the
start of training; wall seconds cover the whole module run (model loading and data included).
"""

from __future__ import annotations

import json
import runpy
import sys
import time


def main() -> None:
    report, module, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    info: dict = {"module": module, "argv": argv}
    orig = transformers.Trainer.train

    def train(self, *a, **k):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        out = orig(self, *a, **k)
        if cuda:
            torch.cuda.synchronize()
        info["train_call_seconds"] = time.perf_counter() - t0
        info["global_step"] = int(out.global_step)
        info["metrics"] = {k: float(v) for k, v in (out.metrics or {}).items() if isinstance(v, (int, float))}
        info["max_memory_allocated"] = torch.cuda.max_memory_allocated() if cuda else None
        return out

    transformers.Trainer.train = train
    t0 = time.perf_counter()
    sys.argv = [module] + argv
    ok = False
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        ok = True
    finally:
        info["ok"] = ok
        info["wall_seconds"] = time.perf_counter() - t0
        with open(report, "w") as f:
            json.dump(info, f, indent=2)


if __name__ == "__main__":
    main()
