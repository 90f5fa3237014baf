"""Prepare what the GPU machine lacks, in git-ignored folders that `run` can carry.

    python benchmarks/prepare_device.py            # model + data -> .cache/bench/
    python benchmarks/prepare_device.py --wheels   # also FlagEmbedding + datasets wheels -> .whl/

- ``.cache/bench/minilm``: all-MiniLM-L6-v2 with its weights stored in fp16 (44 MB instead of
  87 MB: the whole carried tree must stay under 64 MiB); ``config.json`` says float32, so every
  loader (ours, sentence-transformers, FlagEmbedding) upcasts to fp32 master weights as usual.
  All three libraries read the same copy, so the comparisons stay like for like.
- ``.cache/bench/eedi``: train.csv + misconception_mapping.csv (the ``../shared`` folder beside
  the checkout does not travel).
- ``.whl/`` (``--wheels``): FlagEmbedding, datasets and the two datasets needs the GPU image
  lacks (dill, multiprocess), for Python 3.12, installed there with ``--no-deps``.

The benchmark scripts find both folders by themselves (benchmarks/_common.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEVICE_BUNDLE, ROOT, default_data_dir  # noqa: E402

WHEELS = ["FlagEmbedding==1.4.2", "datasets==5.2.0", "dill==0.4.0", "multiprocess==0.70.18"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--wheels", action="store_true", help="also download the wheels into .whl/ (PyPI)")
    args = ap.parse_args(argv)

    import torch
    from safetensors.torch import load_file, save_file

    from utils.embed import resolve_model

    src = Path(resolve_model(None))
    dst = DEVICE_BUNDLE / "minilm"
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for f in src.rglob("*"):
        rel = f.relative_to(src)
        if f.is_dir() or f.suffix in (".safetensors", ".bin") or rel.parts[0] in ("onnx", "openvino"):
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dst / rel)
    weights = load_file(str(src / "model.safetensors"))
    save_file({k: v.to(torch.float16) if v.is_floating_point() else v for k, v in weights.items()},
              str(dst / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((dst / "config.json").read_text())
    cfg["dtype"] = "float32"  # loaders using dtype="auto" must not pick the fp16 storage type
    cfg["torch_dtype"] = "float32"
    (dst / "config.json").write_text(json.dumps(cfg, indent=2))

    data_src = Path(args.data_dir) if args.data_dir else default_data_dir()
    data_dst = DEVICE_BUNDLE / "eedi"
    data_dst.mkdir(parents=True, exist_ok=True)
    for name in ("train.csv", "misconception_mapping.csv", "test.csv", "sample_submission.csv"):
        if (data_src / name).exists():
            shutil.copy2(data_src / name, data_dst / name)

    if args.wheels:
        whl = ROOT / ".whl"
        whl.mkdir(exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                        "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "--platform", "any",
                        "-d", str(whl)] + WHEELS, check=True)

    size = sum(f.stat().st_size for f in DEVICE_BUNDLE.rglob("*") if f.is_file())
    if (ROOT / ".whl").exists():
        size += sum(f.stat().st_size for f in (ROOT / ".whl").rglob("*") if f.is_file())
    print(f"model  -> {dst}\ndata   -> {data_dst} (from {data_src})")
    print(f"carried size {size / 2**20:.1f} MiB (limit 64 MiB with the working tree)")


if __name__ == "__main__":
    main()
