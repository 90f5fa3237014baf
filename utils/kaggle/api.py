"""Package models and notebooks for Kaggle, validate their metadata, and push them.

Folders follow the `kaggle` CLI layout: a dataset folder holds ``dataset-metadata.json`` plus
the files, a kernel folder holds ``kernel-metadata.json`` plus the notebook. The validators
mirror (not copy) the checks that ``kaggle`` 2.x makes in ``KaggleApi.dataset_create_new`` /
``dataset_create_version`` / ``kernels_push`` / ``validate_*_string``, plus a few the server
makes later (slug syntax, a kernelspec in the notebook), so a bad folder fails here, offline,
with one message naming the file and field.

``kaggle_cli`` defaults to a dry run that only validates and prints; it imports the ``kaggle``
package only when really sending, because ``import kaggle`` authenticates at import time
(printing a help text and creating an empty config dir when no credentials exist).
Credentials are read by ``kaggle`` itself from KAGGLE_USERNAME/KAGGLE_KEY or its config
dir; this module never reads their values nor writes them anywhere. A response that carries
errors (``error``, invalid sources or tags) is a failure with Kaggle's message; ``submit`` of a
kernel folder first waits for the kernel's run to finish and names the version it submits.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from utils.io import atomic_dir, write_json
from utils.tasks import get_task

DATASET_METADATA = "dataset-metadata.json"
KERNEL_METADATA = "kernel-metadata.json"
ACTIONS = ("dataset", "kernel", "submit")
KERNEL_TYPES = ("script", "notebook")  # KaggleApi.valid_push_kernel_types
LANGUAGES = ("python", "r", "rmarkdown")  # KaggleApi.valid_push_language_types
PINNING_TYPES = ("original", "latest")  # KaggleApi.valid_push_pinning_types
SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")  # as KaggleApi._validate_slug_syntax
OWNER_RE = re.compile(r"^[a-z0-9]+(?:[_-][a-z0-9]+)*$")  # owner slugs may also hold "_"
ENTRY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SUBMISSION_COLUMNS = ["QuestionId_Answer", "MisconceptionId"]
MAX_PREDICTIONS = 25
PLACEHOLDER_OWNER = "your-kaggle-username"  # utils.kaggle.inference.DEFAULT_OWNER: export.owner was never set
PUSH_RECORD = "kernel-push.json"  # written into a kernel folder by a real push: id, version, url
KERNEL_TIMEOUT_S = 12 * 3600  # Kaggle's longest notebook session
POLL_INTERVAL_S = 60.0


def _fail(where: Path | str, field: str, problem: str) -> None:
    raise ValueError(f"{where}: field {field!r}: {problem}")


def _split_ref(ref: Any, where: Path | str, field: str, min_slug: int, max_slug: int | None) -> tuple[str, str]:
    """Check an ``owner/slug`` id; return (owner, slug)."""
    if not isinstance(ref, str) or ref.count("/") != 1:
        _fail(where, field, f"must be 'owner/slug', got {ref!r}")
    owner, slug = ref.split("/")
    if not OWNER_RE.match(owner):
        _fail(where, field, f"owner {owner!r} must be a lowercase Kaggle username ([a-z0-9_-])")
    if not SLUG_RE.match(slug):
        _fail(where, field, f"slug {slug!r} may hold only [a-z0-9-], without leading, trailing or double '-'")
    if len(slug) < min_slug or (max_slug is not None and len(slug) > max_slug):
        bounds = f"{min_slug}-{max_slug}" if max_slug else f">= {min_slug}"
        _fail(where, field, f"slug {slug!r} must be {bounds} characters, got {len(slug)}")
    if slug == "insert-slug-here" or "INSERT_SLUG_HERE" in ref:
        _fail(where, field, "still holds the template placeholder")
    return owner, slug


def _check_title(title: Any, where: Path | str, lo: int, hi: int) -> str:
    if not isinstance(title, str) or not title.strip():
        _fail(where, "title", "must be a non-empty string")
    if title in ("INSERT_TITLE_HERE", "INSERT_KERNEL_TITLE_HERE"):
        _fail(where, "title", "still holds the template placeholder")
    if not lo <= len(title) <= hi:
        _fail(where, "title", f"must be {lo}-{hi} characters, got {len(title)} ({title!r})")
    return title


def _check_sources(values: Any, where: Path | str, field: str, parts: tuple[int, ...], last_int: bool = False) -> None:
    """Each entry a string of ``parts`` non-empty '/'-separated pieces (as kaggle's validate_*_string)."""
    if not isinstance(values, list):
        _fail(where, field, f"must be a list of strings, got {type(values).__name__}")
    for v in values:
        pieces = v.split("/") if isinstance(v, str) else []
        if len(pieces) not in parts or not all(pieces):
            forms = " or ".join(str(p) for p in parts)
            _fail(where, field, f"entry {v!r} must have {forms} non-empty '/'-separated parts")
        if last_int and not pieces[-1].isdigit():
            _fail(where, field, f"entry {v!r} must end in an integer version number")


def check_dataset_metadata(meta: dict, where: Path | str = DATASET_METADATA, folder: Path | None = None) -> dict:
    """Raise ValueError naming ``where`` and the field unless ``meta`` is valid dataset metadata."""
    if not isinstance(meta, dict):
        _fail(where, "<root>", "must be a JSON object")
    for field in ("title", "id", "licenses"):
        if field not in meta:
            _fail(where, field, "is missing")
    _check_title(meta["title"], where, 6, 50)
    _split_ref(meta["id"], where, "id", 6, 50)
    licenses = meta["licenses"]
    if not isinstance(licenses, list) or len(licenses) != 1:
        n = len(licenses) if isinstance(licenses, list) else type(licenses).__name__
        _fail(where, "licenses", f"must list exactly one license, got {n}")
    if not isinstance(licenses[0], dict) or not str(licenses[0].get("name", "")).strip():
        _fail(where, "licenses[0].name", "is missing or empty")
    subtitle = meta.get("subtitle")
    if subtitle and not 20 <= len(subtitle) <= 80:
        _fail(where, "subtitle", f"must be 20-80 characters, got {len(subtitle)}")
    if folder is not None:
        for res in meta.get("resources") or []:
            if not (folder / str(res.get("path", ""))).is_file():
                _fail(where, "resources", f"file {res.get('path')!r} does not exist in {folder}")
    return meta


def check_kernel_metadata(meta: dict, where: Path | str = KERNEL_METADATA, folder: Path | None = None) -> dict:
    """Raise ValueError naming ``where`` and the field unless ``meta`` is valid kernel metadata."""
    if not isinstance(meta, dict):
        _fail(where, "<root>", "must be a JSON object")
    for field in ("id", "title", "code_file", "language", "kernel_type"):
        if not meta.get(field):
            _fail(where, field, "is missing or empty")
    # kaggle needs >= 5 characters; 50 is Kaggle's title limit elsewhere.
    title = _check_title(meta["title"], where, 5, 50)
    _, slug = _split_ref(meta["id"], where, "id", 5, None)
    # kernels_push only warns here, but a mismatch makes Kaggle file the notebook under the
    # title's slug, so later pushes/submissions by id miss it: fail early instead.
    from slugify import slugify  # python-slugify, the function kaggle uses

    if slugify(title) != slug:
        _fail(where, "id", f"slug {slug!r} differs from the title's slug {slugify(title)!r}")
    if meta["language"] not in LANGUAGES:
        _fail(where, "language", f"must be one of {LANGUAGES}, got {meta['language']!r}")
    if meta["kernel_type"] not in KERNEL_TYPES:
        _fail(where, "kernel_type", f"must be one of {KERNEL_TYPES}, got {meta['kernel_type']!r}")
    for flag in ("is_private", "enable_gpu", "enable_tpu", "enable_internet"):
        if flag in meta and not isinstance(meta[flag], bool) and str(meta[flag]).lower() not in ("true", "false"):
            _fail(where, flag, f"must be true or false, got {meta[flag]!r}")
    if str(meta.get("enable_gpu")).lower() == "true" and str(meta.get("enable_tpu")).lower() == "true":
        _fail(where, "enable_tpu", "cannot be true together with enable_gpu")
    _check_sources(meta.get("dataset_sources", []), where, "dataset_sources", (2, 3))
    _check_sources(meta.get("kernel_sources", []), where, "kernel_sources", (2, 3))
    _check_sources(meta.get("model_sources", []), where, "model_sources", (5,), last_int=True)
    _check_sources(meta.get("competition_sources", []), where, "competition_sources", (1,))
    pin = meta.get("docker_image_pinning_type")
    if pin is not None and pin not in PINNING_TYPES:
        _fail(where, "docker_image_pinning_type", f"must be one of {PINNING_TYPES}, got {pin!r}")
    if folder is not None:
        code = folder / meta["code_file"]
        if not code.is_file():
            _fail(where, "code_file", f"{code} does not exist")
        if meta["kernel_type"] == "notebook":
            check_notebook(code, language=meta["language"])
    return meta


def check_notebook(path: Path, language: str = "python") -> None:
    """Raise ValueError unless ``path`` is a readable notebook with a kernelspec.

    A notebook pushed without ``metadata.kernelspec`` fails on Kaggle with NoSuchKernel.
    """
    import nbformat

    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # nbformat raises several types for unreadable/invalid JSON
        raise ValueError(f"{path}: not a readable Jupyter notebook ({exc})") from None
    spec = nb.metadata.get("kernelspec") or {}
    want = "python3" if language == "python" else "ir"
    if spec.get("name") != want:
        raise ValueError(
            f"{path}: field 'metadata.kernelspec.name': must be {want!r} for a Kaggle {language} kernel, "
            f"got {spec.get('name')!r} (a kernel pushed without it fails with NoSuchKernel)"
        )


def _read_metadata(folder: Path, name: str) -> tuple[Path, dict]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a directory")
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: metadata file not found")
    try:
        return path, json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON ({exc})") from None


def validate_dataset_metadata(folder: Path) -> dict:
    """Validate ``folder/dataset-metadata.json`` and that the folder holds data; return the metadata."""
    path, meta = _read_metadata(folder, DATASET_METADATA)
    check_dataset_metadata(meta, path, Path(folder))
    if not any(p.name != DATASET_METADATA for p in Path(folder).iterdir()):
        raise ValueError(f"{folder}: dataset folder holds no files besides {DATASET_METADATA}")
    return meta


def validate_kernel_metadata(folder: Path) -> dict:
    """Validate ``folder/kernel-metadata.json`` and its code file; return the metadata."""
    path, meta = _read_metadata(folder, KERNEL_METADATA)
    return check_kernel_metadata(meta, path, Path(folder))


def validate_submission(path: Path, max_predictions: int = MAX_PREDICTIONS) -> pd.DataFrame:
    """Check a competition CSV: header, ids ``<int>_<A-D>``, <= 25 distinct integer ids per row."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: submission file not found")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(df.columns) != SUBMISSION_COLUMNS:
        raise ValueError(f"{path}: header must be {','.join(SUBMISSION_COLUMNS)}, got {','.join(df.columns)}")
    if df.empty:
        raise ValueError(f"{path}: no rows")
    bad_ids = df.loc[~df["QuestionId_Answer"].str.fullmatch(r"\d+_[A-D]"), "QuestionId_Answer"]
    if len(bad_ids):
        raise ValueError(f"{path}: field 'QuestionId_Answer': bad id {bad_ids.iloc[0]!r} (want e.g. '12_B')")
    if df["QuestionId_Answer"].duplicated().any():
        dup = df.loc[df["QuestionId_Answer"].duplicated(), "QuestionId_Answer"].iloc[0]
        raise ValueError(f"{path}: field 'QuestionId_Answer': {dup!r} appears twice")
    for qa, cell in zip(df["QuestionId_Answer"], df["MisconceptionId"]):
        ids = cell.split()
        if not ids or not all(i.isdigit() for i in ids) or len(ids) > max_predictions or len(set(ids)) != len(ids):
            raise ValueError(
                f"{path}: field 'MisconceptionId' of {qa}: want 1-{max_predictions} distinct space-separated "
                f"integers, got {cell[:80]!r}"
            )
    return df


def _copy_entry(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst)  # follows symlinks: HF cache links become real files
    else:
        shutil.copy2(src, dst)


def build_dataset(
    src_dirs: dict[str, Path],
    out_dir: Path,
    dataset_id: str,
    title: str,
    license_name: str = "CC0-1.0",
) -> Path:
    """Copy ``src_dirs`` (name -> dir or file) into ``out_dir/<slug>/<name>`` with dataset metadata.

    The folder is built in a temp dir and renamed into place, replacing an older build.
    """
    meta = {"title": title, "id": dataset_id, "licenses": [{"name": license_name}]}
    check_dataset_metadata(meta, where=f"dataset {dataset_id!r}")
    if not src_dirs:
        raise ValueError("build_dataset: src_dirs is empty; nothing to package")
    for name, src in src_dirs.items():
        if not ENTRY_RE.match(name) or name == DATASET_METADATA:
            raise ValueError(f"build_dataset: src_dirs key {name!r} is not a plain file/folder name")
        if not Path(src).exists():
            raise FileNotFoundError(f"build_dataset: src_dirs[{name!r}] = {src} does not exist")
    target = Path(out_dir) / dataset_id.split("/")[1]
    with atomic_dir(target) as tmp:
        for name, src in src_dirs.items():
            _copy_entry(Path(src), tmp / name)
        write_json(tmp / DATASET_METADATA, meta)
        check_dataset_metadata(meta, tmp / DATASET_METADATA, tmp)
    return target


def build_kernel(
    notebook: Path,
    out_dir: Path,
    kernel_id: str,
    title: str,
    dataset_sources: Sequence[str],
    competition_sources: Sequence[str] = (),
    model_sources: Sequence[str] = (),
    enable_gpu: bool = True,
    enable_internet: bool = False,
    is_private: bool = True,
    kernel_sources: Sequence[str] = (),
) -> Path:
    """Copy ``notebook`` into ``out_dir/<slug>/`` and write ``kernel-metadata.json`` beside it."""
    notebook = Path(notebook)
    if not notebook.is_file():
        raise FileNotFoundError(f"build_kernel: notebook {notebook} not found")
    check_notebook(notebook)
    meta = {
        "id": kernel_id,
        "title": title,
        "code_file": notebook.name,
        "language": "python",
        "kernel_type": "notebook",
        "is_private": bool(is_private),
        "enable_gpu": bool(enable_gpu),
        "enable_tpu": False,
        "enable_internet": bool(enable_internet),
        "dataset_sources": list(dataset_sources),
        "competition_sources": list(competition_sources),
        "kernel_sources": list(kernel_sources),
        "model_sources": list(model_sources),
    }
    check_kernel_metadata(meta, where=f"kernel {kernel_id!r}")
    target = Path(out_dir) / kernel_id.split("/")[1]
    with atomic_dir(target) as tmp:
        shutil.copy2(notebook, tmp / notebook.name)
        write_json(tmp / KERNEL_METADATA, meta)
        check_kernel_metadata(meta, tmp / KERNEL_METADATA, tmp)
    return target


# --- sending ------------------------------------------------------------------------------


def _credential_source() -> str | None:
    """Where kaggle would find credentials (a description, never the values), else None."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY environment variables"
    home = Path.home()
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"
    dirs = [Path(os.environ["KAGGLE_CONFIG_DIR"])] if os.environ.get("KAGGLE_CONFIG_DIR") else []
    dirs += [home / ".kaggle", xdg]
    for d in dirs:
        for name in ("kaggle.json", "access_token", "access_token.txt", "credentials.json"):
            if (d / name).is_file():
                return str(d / name)
    return None


def _kaggle_api() -> Any:
    """Import and authenticate the kaggle client (network side only; never called in dry runs)."""
    source = _credential_source()
    if source is None:
        raise RuntimeError(
            "no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY, or put kaggle.json in "
            "~/.kaggle (or $KAGGLE_CONFIG_DIR)"
        )
    # `import kaggle` runs api.authenticate() and prints a help text on failure: keep it quiet.
    with contextlib.redirect_stdout(io.StringIO()):
        module = importlib.import_module("kaggle.api.kaggle_api_extended")
    api = module.KaggleApi()
    try:
        api.authenticate()
    except SystemExit:  # kaggle calls exit(1) when it cannot authenticate
        raise RuntimeError(f"Kaggle rejected the credentials from {source}") from None
    return api


_ERROR_FIELDS = ("error", "errors", "errorMessage", "error_message")
_INVALID_FIELDS = ("invalidDatasetSources", "invalidCompetitionSources", "invalidKernelSources",
                   "invalidModelSources", "invalidTags")
SUBMIT_UPLOAD_FAILED = "Could not submit to competition"  # KaggleApi.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE


def _field(resp: Any, name: str) -> Any:
    """``resp.name`` (or its snake_case twin) from a kaggle response object or a dict; None if absent."""
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    for key in (name, snake):
        try:
            value = resp.get(key) if isinstance(resp, dict) else getattr(resp, key, None)
        except Exception:  # some response objects raise on unknown fields
            value = None
        if value is not None:
            return value
    return None


def response_errors(resp: Any) -> list[str]:
    """Kaggle's complaints in a push/submit response: its error text(s) and any invalid sources or tags."""
    if resp is None:
        return ["no response (see the kaggle output above)"]
    problems = []
    for name in _ERROR_FIELDS:
        value = _field(resp, name)
        values = value if isinstance(value, (list, tuple)) else [value]
        problems += [str(v) for v in values if v and str(v) not in problems]
    for name in _INVALID_FIELDS:
        value = _field(resp, name)
        if value:
            words = re.sub(r"(?<!^)(?=[A-Z])", " ", name[len("invalid"):]).lower()
            problems.append(f"invalid {words}: {', '.join(map(str, value)) if isinstance(value, (list, tuple)) else value}")
    if _field(resp, "message") == SUBMIT_UPLOAD_FAILED:
        problems.append(SUBMIT_UPLOAD_FAILED)
    return problems


def _check_response(resp: Any, what: str) -> Any:
    """Raise RuntimeError with Kaggle's message(s) unless ``resp`` is a clean success."""
    problems = response_errors(resp)
    if problems:
        raise RuntimeError(f"Kaggle {what} failed: {'; '.join(problems)}")
    return resp


def _is_not_found(exc: Exception) -> bool:
    return getattr(getattr(exc, "response", None), "status_code", None) == 404


def _folder_listing(folder: Path) -> list[str]:
    out = []
    for p in sorted(Path(folder).iterdir()):
        size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
        out.append(f"{p.name}{'/' if p.is_dir() else ''} ({size / 1e6:.1f} MB)")
    return out


def _recorded_version(folder: Path, kernel: str) -> int | None:
    """The version the last real push from ``folder`` recorded for ``kernel``, if any."""
    try:
        record = json.loads((Path(folder) / PUSH_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    version = record.get("version") if isinstance(record, dict) and record.get("id") == kernel else None
    return int(version) if isinstance(version, int) or str(version).isdigit() else None


def _plan(action: str, path: Path, message: str | None, competition: str | None, public: bool,
          kernel_version: int | None = None, timeout: float = KERNEL_TIMEOUT_S,
          poll_interval: float = POLL_INTERVAL_S) -> dict:
    """Validate ``path`` for ``action`` and describe the API call that would be made."""
    if action == "dataset":
        meta = validate_dataset_metadata(path)
        return {
            "action": action, "call": "dataset_create_new, or dataset_create_version if it exists",
            "folder": str(path), "id": meta["id"], "title": meta["title"],
            "license": meta["licenses"][0]["name"], "public": public, "dir_mode": "zip",
            "version_notes": message or "update", "files": _folder_listing(path),
        }
    if action == "kernel":
        meta = validate_kernel_metadata(path)
        keys = ("id", "title", "code_file", "enable_gpu", "enable_internet", "is_private",
                "dataset_sources", "competition_sources", "kernel_sources", "model_sources")
        return {"action": action, "call": "kernels_push", "folder": str(path), **{k: meta.get(k) for k in keys}}
    if action == "submit":
        if competition is not None and not competition.strip():
            raise ValueError("submit: competition is empty")
        if Path(path).is_dir():  # code competition: submit the pushed notebook's output
            meta = validate_kernel_metadata(path)
            competition = competition or next(iter(meta.get("competition_sources") or []), None)
            if not competition:
                raise ValueError(f"submit: {Path(path) / KERNEL_METADATA} lists no competition source; pass --competition")
            if kernel_version is not None and kernel_version < 1:
                raise ValueError(f"submit: --version must be a positive kernel version, got {kernel_version}")
            version = kernel_version or _recorded_version(path, meta["id"])
            source = ("--version" if kernel_version else f"{PUSH_RECORD} (the last push from this folder)"
                      if version else "none given nor recorded: Kaggle takes the latest")
            return {"action": action, "call": "competition_submit_code", "competition": competition,
                    "kernel": meta["id"], "kernel_version": version, "version_source": source,
                    "file_name": "submission.csv",
                    "message": message or (f"{meta['title']} v{version}" if version else meta["title"]),
                    "wait": "until the kernel's run is complete", "timeout_s": timeout,
                    "poll_interval_s": poll_interval}
        if kernel_version is not None:
            raise ValueError("submit: --version names a kernel version; it needs a kernel folder, not a CSV")
        rows = len(validate_submission(path))  # Eedi's CSV layout: its competition unless told otherwise
        competition = competition or get_task("eedi").kaggle_competition
        return {"action": action, "call": "competition_submit", "competition": competition,
                "file": str(path), "rows": rows, "message": message or Path(path).name}
    raise ValueError(f"unknown kaggle action {action!r}; choose one of {ACTIONS}")


def placeholder_refs(plan: dict) -> list[str]:
    """``field 'owner/slug'`` for each Kaggle id in ``plan`` still owned by ``PLACEHOLDER_OWNER``."""
    refs: list[tuple[str, Any]] = [(k, plan.get(k)) for k in ("id", "kernel")]
    refs += [(k, v) for k in ("dataset_sources", "kernel_sources", "model_sources") for v in plan.get(k) or []]
    return [f"{field} {ref!r}" for field, ref in refs
            if isinstance(ref, str) and ref.split("/")[0].lower() == PLACEHOLDER_OWNER]


def _placeholder_message(plan: dict, refs: list[str]) -> str:
    where = plan.get("folder") or plan.get("file") or ""
    return (f"{where}: {', '.join(refs)} still has the placeholder owner {PLACEHOLDER_OWNER!r}: set "
            "export.owner in the config (or KAGGLE_USERNAME) to your Kaggle username and re-run 07_export")


def _status_name(status: Any) -> str:
    """'running' from KernelWorkerStatus.RUNNING, 'RUNNING', 'KernelWorkerStatus.RUNNING' or 'running'."""
    return str(getattr(status, "name", status)).rsplit(".", 1)[-1].strip().lower()


def wait_for_kernel(
    api: Any,
    kernel: str,
    timeout: float = KERNEL_TIMEOUT_S,
    poll_interval: float = POLL_INTERVAL_S,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> str:
    """Poll ``api.kernels_status(kernel)`` until its latest run is complete; return the final status.

    Raises RuntimeError with the kernel's failure message when it errored or was cancelled,
    and when it is still queued/running after ``timeout`` seconds.
    """
    clock, sleep = clock or time.monotonic, sleep or time.sleep
    start, last = clock(), None
    while True:
        resp = api.kernels_status(kernel)
        status = _status_name(_field(resp, "status"))
        elapsed = clock() - start
        if status != last:
            print(f"kernel {kernel}: {status} ({elapsed:.0f} s)", flush=True)
            last = status
        if status == "complete":
            return status
        if status == "error" or status.startswith("cancel"):
            why = _field(resp, "failureMessage") or "no failure message; see the kernel's log"
            raise RuntimeError(f"kernel {kernel} ended with status {status!r} on Kaggle: {why} "
                               f"(https://www.kaggle.com/code/{kernel})")
        if elapsed >= timeout:
            raise RuntimeError(f"kernel {kernel} is still {status!r} after {elapsed:.0f} s (timeout {timeout:g} s); "
                               "submit again later, or raise --timeout")
        sleep(max(0.0, min(poll_interval, timeout - elapsed)))


def _send(plan: dict, api: Any) -> Any:
    action = plan["action"]
    if action == "dataset":
        try:
            api.dataset_status(plan["id"])
            exists = True
        except Exception as exc:  # kaggle raises requests' HTTPError; 404 = not created yet
            if not _is_not_found(exc):
                raise
            exists = False
        if exists:
            return _check_response(
                api.dataset_create_version(plan["folder"], version_notes=plan["version_notes"], dir_mode="zip"),
                "dataset_create_version",
            )
        return _check_response(
            api.dataset_create_new(plan["folder"], public=plan["public"], dir_mode="zip"), "dataset_create_new"
        )
    if action == "kernel":
        resp = _check_response(api.kernels_push(plan["folder"]), "kernels_push")
        version = _field(resp, "versionNumber")
        if version:
            write_json(Path(plan["folder"]) / PUSH_RECORD,
                       {"id": plan["id"], "version": int(version), "url": _field(resp, "url")})
        return resp
    if plan["call"] == "competition_submit_code":
        wait_for_kernel(api, plan["kernel"], plan["timeout_s"], plan["poll_interval_s"])
        version = plan["kernel_version"]
        print(f"submitting {plan['kernel']} version {version or 'latest'} ({plan['version_source']}) "
              f"to {plan['competition']}", flush=True)
        return _check_response(
            api.competition_submit_code(plan["file_name"], plan["message"], plan["competition"],
                                        kernel=plan["kernel"], kernel_version=version),
            "competition_submit_code",
        )
    return _check_response(
        api.competition_submit(plan["file"], plan["message"], plan["competition"]), "competition_submit"
    )


def kaggle_cli(
    action: str,
    path: Path,
    dry_run: bool = True,
    message: str | None = None,
    competition: str | None = None,
    public: bool = False,
    kernel_version: int | None = None,
    timeout: float = KERNEL_TIMEOUT_S,
    poll_interval: float = POLL_INTERVAL_S,
) -> dict:
    """Validate ``path`` for ``action`` (dataset | kernel | submit) and send it unless ``dry_run``.

    ``submit`` takes a submission CSV (competition_submit) or a kernel folder
    (competition_submit_code, which code competitions such as Eedi require): it first waits up
    to ``timeout`` seconds, polling every ``poll_interval``, for the kernel's run to complete,
    then submits ``kernel_version`` (default: the version the last push from the folder
    recorded in ``kernel-push.json``, else Kaggle's latest); ``competition`` defaults to the kernel's
    competition source (a CSV: Eedi's). A dry run prints the request and
    needs neither network nor credentials. Ids still owned by ``your-kaggle-username`` are an
    error outside a dry run. Returns the plan, plus ``response`` when sent.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown kaggle action {action!r}; choose one of {ACTIONS}")
    plan = _plan(action, Path(path), message, competition, public, kernel_version, timeout, poll_interval)
    refs = placeholder_refs(plan)
    if dry_run:
        print(f"[dry run] would call KaggleApi.{plan['call']} with:")
        for key, value in plan.items():
            print(f"  {key}: {value}")
        if refs:
            print(f"[dry run] warning: {_placeholder_message(plan, refs)}")
        print("[dry run] nothing sent; pass --no-dry-run to send")
        return plan
    if refs:
        raise ValueError(_placeholder_message(plan, refs))
    response = _send(plan, _kaggle_api())
    url = _field(response, "url") or _field(response, "ref")
    version = _field(response, "versionNumber") if action == "kernel" else None
    print(f"sent {action} via KaggleApi.{plan['call']}" + (f" (version {version})" if version else "")
          + (f": {url}" if url else ""))
    return {**plan, "response": response}


def add_kaggle_subparser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``kaggle {dataset,kernel,submit} PATH [--no-dry-run] ...`` to an argparse subparsers object."""
    p = subparsers.add_parser("kaggle", help="validate and (optionally) push a dataset, kernel or submission")
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("path", type=Path, help="dataset/kernel folder, or submission CSV (or kernel folder) for submit")
    p.add_argument("--no-dry-run", dest="dry_run", action="store_false", help="really send (needs credentials)")
    p.add_argument("-m", "--message", default=None, help="version notes / submission description")
    p.add_argument("--competition", default=None,
                   help="default: the kernel folder's competition source (kernel-metadata.json); for a CSV, Eedi's")
    p.add_argument("--public", action="store_true", help="make a new dataset public (default private)")
    p.add_argument("--version", dest="kernel_version", type=int, default=None, metavar="N",
                   help=f"submit: kernel version (default: the one {PUSH_RECORD} recorded, else the latest)")
    p.add_argument("--timeout", type=float, default=KERNEL_TIMEOUT_S, metavar="S",
                   help="submit: seconds to wait for the kernel's run to complete (default %(default)s)")
    p.add_argument("--poll-interval", type=float, default=POLL_INTERVAL_S, metavar="S",
                   help="submit: seconds between kernel status checks (default %(default)s)")
    p.set_defaults(func=run_kaggle_command)
    return p


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    known = isinstance(exc, (ValueError, FileNotFoundError, RuntimeError))
    return text if known else f"{type(exc).__name__}: {text}"


def run_kaggle_command(args: argparse.Namespace) -> int:
    """Run a parsed ``kaggle`` subcommand; print a one-line ``error: ...`` and return 1 on any failure.

    Network failures (requests' ConnectionError / HTTPError, OSError, the client's own
    exceptions) end the same way, without a traceback.
    """
    try:
        kaggle_cli(args.action, args.path, dry_run=args.dry_run, message=args.message,
                   competition=args.competition, public=getattr(args, "public", False),
                   kernel_version=getattr(args, "kernel_version", None),
                   timeout=getattr(args, "timeout", KERNEL_TIMEOUT_S),
                   poll_interval=getattr(args, "poll_interval", POLL_INTERVAL_S))
    except Exception as exc:  # one line for the user, whatever the kaggle client or the network raised
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    return 0
