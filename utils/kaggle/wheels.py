"""Offline wheels for the Kaggle kernel (issue 17).

Models are saved by this machine's transformers / sentence-transformers; Kaggle's image may
hold older ones, and the kernel has no internet. ``pack_wheels`` downloads (once, into a local
cache) the wheels of the pinned packages the kernel needs, plus the wheels of their
dependencies as installed here, for Kaggle's Python (``--python-version``, default 3.11,
pure-Python or manylinux x86_64), and lays them out as a Kaggle dataset with a
``requirements.txt`` naming the pinned packages. The inference notebook then runs
``pip install --no-index --find-links <that dataset> -r requirements.txt`` before it imports
``utils``: pip installs the pinned packages and takes from the folder only the dependencies
the image lacks or holds in a too-old version.

torch (and what only torch needs), numpy, scipy, scikit-learn, pandas and pyarrow are never
packed: Kaggle has them, and they are large.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

from utils.config import REPO_ROOT

# What the kernel imports that a saved model ties to a version (modules.json, config.json fields).
CORE_PACKAGES = ("transformers", "sentence-transformers", "peft", "accelerate", "safetensors", "tokenizers",
                 "huggingface-hub")
NEVER_PACK = {"torch", "torchvision", "torchaudio", "triton", "numpy", "scipy", "scikit-learn", "pandas", "pyarrow",
              "setuptools", "pip", "wheel", "sympy", "networkx", "jinja2", "markupsafe", "mpmath"}
NEVER_PACK_PREFIXES = ("nvidia-", "cuda-")
DEFAULT_PYTHON = "3.11"
DEFAULT_CACHE = Path.home() / ".cache" / "eedi-wheels"
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "any")
REQUIREMENTS = "requirements.txt"  # in the wheels dataset: the pinned names the kernel installs
WHEELS_MANIFEST = "wheels.json"
_PIN_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")


def canonical(name: str) -> str:
    """PEP 503 normalised name: ``Sentence_Transformers`` -> ``sentence-transformers``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _check_python(python_version: str) -> str:
    if not re.fullmatch(r"3\.\d{1,2}", str(python_version)):
        raise ValueError(f"export.wheels_python: expected a Python version like '3.11', got {python_version!r}")
    return str(python_version)


def requirement_pins(path: Path = REPO_ROOT / "requirements.txt") -> dict[str, str]:
    """``name==version`` lines of a requirements file, by canonical name (other lines ignored)."""
    if not Path(path).is_file():
        return {}
    pins = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        m = _PIN_RE.match(line)
        if m:
            pins[canonical(m.group(1))] = m.group(2)
    return pins


def pinned(names: Iterable[str] = CORE_PACKAGES, requirements_file: Path | None = REPO_ROOT / "requirements.txt") -> list[str]:
    """``name==version`` for each name: the pin of ``requirements_file``, else the installed version."""
    pins = requirement_pins(requirements_file) if requirements_file else {}
    out = []
    for name in names:
        version = pins.get(canonical(name))
        if version is None:
            try:
                version = md.version(name)
            except md.PackageNotFoundError:
                raise ValueError(f"export wheels: {name!r} is neither pinned in {requirements_file} nor installed; "
                                 "cannot tell which version the kernel needs") from None
        out.append(f"{canonical(name)}=={version}")
    return out


def _skip(name: str) -> bool:
    return name in NEVER_PACK or name.startswith(NEVER_PACK_PREFIXES)


def dependency_closure(requirements: Sequence[str], python_version: str = DEFAULT_PYTHON) -> list[str]:
    """``requirements`` plus, as ``name==installed version``, every dependency (transitively) that is installed
    here and needed on Linux x86_64 with ``python_version``; torch, numpy & co. (``NEVER_PACK``) left out."""
    from packaging.requirements import Requirement

    env = {"python_version": _check_python(python_version), "python_full_version": f"{python_version}.0",
           "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    out = {canonical(r.split("==")[0]): r for r in requirements}
    todo = list(out)
    while todo:
        try:
            dist = md.distribution(todo.pop())
        except md.PackageNotFoundError:
            continue
        for text in dist.requires or []:
            req = Requirement(text)
            name = canonical(req.name)
            if name in out or _skip(name) or (req.marker is not None and not req.marker.evaluate(env)):
                continue
            try:
                out[name] = f"{name}=={md.version(req.name)}"
            except md.PackageNotFoundError:
                continue  # not installed here: not needed by what runs here
            todo.append(name)
    return list(out.values())


def _target_tags(python_version: str) -> set:
    from packaging import tags

    major, minor = (int(x) for x in python_version.split("."))
    platforms = [f"manylinux_2_{v}_x86_64" for v in range(28, 16, -1)] + ["manylinux2014_x86_64",
                                                                         "manylinux2010_x86_64", "manylinux1_x86_64"]
    interp = f"cp{major}{minor}"
    return (set(tags.cpython_tags((major, minor), abis=[interp, "abi3", "none"], platforms=platforms))
            | set(tags.compatible_tags((major, minor), interp, platforms=platforms)))


def _cached_wheel(cache: Path, requirement: str, wanted: set) -> Path | None:
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    name, version = requirement.split("==")
    for path in sorted(cache.glob("*.whl")):
        try:
            wname, wversion, _, wtags = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            continue
        if canonical(wname) == canonical(name) and str(wversion) == version and wtags & wanted:
            return path
    return None


def download_wheels(requirements: Sequence[str], cache: Path | None = None, python_version: str = DEFAULT_PYTHON,
                    verbose: bool = True) -> dict[str, Path]:
    """The wheel of each ``name==version`` for Kaggle's Python, from ``cache`` or else ``pip download``-ed into it.

    A second call with the same requirements downloads nothing. Raises RuntimeError (pip's last lines)
    when a wheel cannot be had, e.g. a package with no wheel for ``python_version`` on manylinux x86_64.
    """
    python_version = _check_python(python_version)
    cache = Path(cache or DEFAULT_CACHE).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    wanted = _target_tags(python_version)
    found = {r: _cached_wheel(cache, r, wanted) for r in requirements}
    missing = [r for r, p in found.items() if p is None]
    if missing:
        if verbose:
            print(f"downloading {len(missing)} wheel(s) for Python {python_version} into {cache}: {' '.join(missing)}",
                  flush=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
               python_version, "--implementation", "cp", *[a for p in PLATFORMS for a in ("--platform", p)],
               "--dest", str(cache), "--quiet", *missing]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise RuntimeError(f"pip download of {' '.join(missing)} for Python {python_version} failed: {tail}")
        for r in missing:
            found[r] = _cached_wheel(cache, r, wanted)
        still = [r for r in missing if found[r] is None]
        if still:
            raise RuntimeError(f"pip download gave no wheel for Python {python_version} manylinux x86_64 of {still}")
    elif verbose:
        print(f"{len(found)} wheel(s) for Python {python_version} from the cache {cache}", flush=True)
    return found  # type: ignore[return-value]


def pack_wheels(out_root: Path, dataset_id: str, title: str, requirements: Sequence[str] | None = None,
                python_version: str = DEFAULT_PYTHON, cache: Path | None = None, with_dependencies: bool = True,
                license_name: str = "CC0-1.0", verbose: bool = True) -> dict:
    """Build the Kaggle dataset ``out_root/<slug>/`` holding the wheels of ``requirements`` (default:
    ``pinned(CORE_PACKAGES)``) and, with ``with_dependencies``, of their installed dependencies; its
    ``requirements.txt`` names ``requirements`` (what the kernel installs), ``wheels.json`` what was packed.
    Returns ``{"dir", "dataset_id", "install", "wheels", "python_version"}``.
    """
    from utils.kaggle.api import build_dataset

    python_version = _check_python(python_version)
    install = list(requirements) if requirements is not None else pinned()
    bad = [r for r in install if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[^\s=;]+", r)]
    if bad or not install:
        raise ValueError(f"pack_wheels: want a non-empty list of 'name==version', got {bad or install}")
    every = dependency_closure(install, python_version) if with_dependencies else install
    wheels = download_wheels(every, cache, python_version, verbose=verbose)
    manifest = {"python_version": python_version, "install": install,
                "wheels": sorted(p.name for p in wheels.values())}
    with tempfile.TemporaryDirectory(prefix="eedi_wheels_") as tmp:
        stage = Path(tmp)
        (stage / REQUIREMENTS).write_text("".join(f"{r}\n" for r in install), encoding="utf-8")
        (stage / WHEELS_MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        src = {p.name: p for p in wheels.values()}
        src[REQUIREMENTS] = stage / REQUIREMENTS
        src[WHEELS_MANIFEST] = stage / WHEELS_MANIFEST
        target = build_dataset(src, Path(out_root), dataset_id, title, license_name=license_name)
    return {"dir": target, "dataset_id": dataset_id, "install": install, "wheels": manifest["wheels"],
            "python_version": python_version}
