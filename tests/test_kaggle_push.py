"""Tests for sending with utils.kaggle.api: error responses, placeholder owners, network
failures, and ``submit`` waiting for the kernel's run. The kaggle client is always a fake."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nbformat
import pytest
import requests

import utils.kaggle.api as ke
from utils.kaggle.api import (PLACEHOLDER_OWNER, PUSH_RECORD, add_kaggle_subparser, build_dataset, build_kernel,
                                 kaggle_cli, run_kaggle_command, wait_for_kernel)

COMPETITION = "eedi-mining-misconceptions-in-mathematics"
TITLE = "Eedi inference round 1"


class FakeApi:
    """Stands in for KaggleApi: records calls, answers from the given responses / statuses."""

    def __init__(self, push=None, statuses=("complete",), failure="", raises=None):
        self.calls: list[tuple] = []
        self.push = push if push is not None else {"error": None, "url": "https://kaggle/k", "versionNumber": 4}
        self.statuses = list(statuses)
        self.failure = failure
        self.raises = raises

    def _maybe_raise(self):
        if self.raises is not None:
            raise self.raises

    def dataset_status(self, ref):
        self.calls.append(("dataset_status", ref))
        self._maybe_raise()
        return "ready"

    def dataset_create_version(self, folder, version_notes, dir_mode="skip"):
        self.calls.append(("dataset_create_version", folder))
        return {"status": "ok", "error": None, "url": "https://kaggle/ds"}

    def kernels_push(self, folder):
        self.calls.append(("kernels_push", folder))
        self._maybe_raise()
        return self.push

    def kernels_status(self, kernel):
        self.calls.append(("kernels_status", kernel))
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return {"status": status, "failureMessage": self.failure if status == "error" else ""}

    def competition_submit_code(self, file_name, message, competition, kernel=None, kernel_version=None):
        self.calls.append(("competition_submit_code", file_name, message, competition, kernel, kernel_version))
        return {"message": "Successfully submitted", "ref": 123}


@pytest.fixture
def use_api(monkeypatch):
    """Install a FakeApi as the client kaggle_export gets; returns a setter."""

    def install(api: FakeApi) -> FakeApi:
        monkeypatch.setattr(ke, "_kaggle_api", lambda: api)
        return api

    return install


def make_kernel(tmp_path: Path, owner: str = "someuser", sources_owner: str | None = None) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('hi')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "kaggle_inference.ipynb"
    nbformat.write(nb, str(path))
    return build_kernel(path, tmp_path / "kernels", f"{owner}/eedi-inference-round-1", TITLE,
                        dataset_sources=[f"{sources_owner or owner}/eedi-models-r1"], competition_sources=[COMPETITION])


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="utils")
    add_kaggle_subparser(parser.add_subparsers(dest="command"))
    return run_kaggle_command(parser.parse_args(["kaggle", *argv]))


@pytest.mark.parametrize("push, message", [
    ({"error": "Notebook not found", "url": None}, "kernels_push failed: Notebook not found"),
    ({"error": None, "invalidDatasetSources": ["someuser/eedi-models-r1"]},
     "kernels_push failed: invalid dataset sources: someuser/eedi-models-r1"),
    ({"errors": ["Title too long", "bad slug"]}, "kernels_push failed: Title too long; bad slug"),
    ({"invalid_tags": ["nlp!"]}, "invalid tags: nlp!"),
])
def test_error_response_is_a_failure_with_kaggles_message(tmp_path, use_api, capsys, push, message):
    kernel = make_kernel(tmp_path)
    use_api(FakeApi(push=push))
    with pytest.raises(RuntimeError, match=message):
        kaggle_cli("kernel", kernel, dry_run=False)
    assert cli("kernel", str(kernel), "--no-dry-run") == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: Kaggle ") and message in captured.err
    assert "sent kernel" not in captured.out
    assert not (kernel / PUSH_RECORD).exists()


def test_successful_push_records_version(tmp_path, use_api, capsys):
    kernel = make_kernel(tmp_path)
    api = use_api(FakeApi())
    assert cli("kernel", str(kernel), "--no-dry-run") == 0
    assert api.calls == [("kernels_push", str(kernel))]
    assert "sent kernel via KaggleApi.kernels_push (version 4): https://kaggle/k" in capsys.readouterr().out
    assert json.loads((kernel / PUSH_RECORD).read_text()) == {
        "id": "someuser/eedi-inference-round-1", "version": 4, "url": "https://kaggle/k"}

    src = tmp_path / "emb"
    src.mkdir()
    (src / "config.json").write_text("{}")
    ds = build_dataset({"embedder": src}, tmp_path / "kd", "someuser/eedi-models-r1", "Eedi models round 1")
    assert cli("dataset", str(ds), "--no-dry-run", "-m", "r2") == 0
    assert api.calls[-1] == ("dataset_create_version", str(ds))


@pytest.mark.parametrize("owner, sources_owner", [(PLACEHOLDER_OWNER, None), ("someuser", PLACEHOLDER_OWNER)])
def test_placeholder_owner_refused_outside_dry_run(tmp_path, use_api, capsys, owner, sources_owner):
    kernel = make_kernel(tmp_path, owner, sources_owner)
    api = use_api(FakeApi())
    for action in ("kernel", "submit") if owner == PLACEHOLDER_OWNER else ("kernel",):
        with pytest.raises(ValueError, match=r"placeholder owner 'your-kaggle-username'.*export\.owner.*KAGGLE_USERNAME"):
            kaggle_cli(action, kernel, dry_run=False)
    assert cli("kernel", str(kernel), "--no-dry-run") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "export.owner" in err and "KAGGLE_USERNAME" in err
    assert api.calls == []  # refused before any request

    plan = kaggle_cli("kernel", kernel)  # a dry run is allowed, with a warning
    assert plan["call"] == "kernels_push"
    assert "[dry run] warning:" in capsys.readouterr().out
    assert api.calls == []


@pytest.mark.parametrize("exc", [requests.ConnectionError("Max retries exceeded with url: /api/v1\n(Caused by ...)"),
                                 OSError("[Errno 101] Network is unreachable"),
                                 requests.HTTPError("503 Server Error: Service Unavailable")])
def test_network_error_is_one_line(tmp_path, use_api, capsys, exc):
    kernel = make_kernel(tmp_path)
    use_api(FakeApi(raises=exc))
    assert cli("kernel", str(kernel), "--no-dry-run") == 1
    src = tmp_path / "emb"
    src.mkdir()
    (src / "w.bin").write_bytes(b"x")
    ds = build_dataset({"embedder": src}, tmp_path / "kd", "someuser/eedi-models-r1", "Eedi models round 1")
    assert cli("dataset", str(ds), "--no-dry-run") == 1  # dataset_status raises: not a 404, so no create
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"error: {type(exc).__name__}: ") for line in lines)
    assert "Traceback" not in captured.err + captured.out


def test_submit_waits_until_complete_and_names_version(tmp_path, use_api, capsys):
    kernel = make_kernel(tmp_path)
    api = use_api(FakeApi(statuses=["queued", "running", "running", "complete"]))
    assert cli("submit", str(kernel), "--no-dry-run", "--competition", COMPETITION, "--version", "3",
               "--poll-interval", "0") == 0
    assert [c[0] for c in api.calls] == ["kernels_status"] * 4 + ["competition_submit_code"]
    assert api.calls[-1] == ("competition_submit_code", "submission.csv", f"{TITLE} v3", COMPETITION,
                             "someuser/eedi-inference-round-1", 3)
    out = capsys.readouterr().out
    assert "kernel someuser/eedi-inference-round-1: running" in out and ": complete" in out
    assert "submitting someuser/eedi-inference-round-1 version 3 (--version)" in out

    # without --version: the version the last push from this folder recorded
    api = use_api(FakeApi(statuses=["running", "complete"]))
    assert cli("kernel", str(kernel), "--no-dry-run") == 0
    assert cli("submit", str(kernel), "--no-dry-run", "--poll-interval", "0") == 0
    assert api.calls[-1][-1] == 4
    assert "version 4 (kernel-push.json" in capsys.readouterr().out


def test_submit_fails_when_kernel_errored(tmp_path, use_api, capsys):
    kernel = make_kernel(tmp_path)
    api = use_api(FakeApi(statuses=["running", "error"], failure="CUDA out of memory"))
    with pytest.raises(RuntimeError, match="ended with status 'error' on Kaggle: CUDA out of memory"):
        kaggle_cli("submit", kernel, dry_run=False, poll_interval=0)
    assert cli("submit", str(kernel), "--no-dry-run", "--poll-interval", "0") == 1
    assert "CUDA out of memory" in capsys.readouterr().err
    assert "competition_submit_code" not in [c[0] for c in api.calls]


def test_submit_timeout(tmp_path, use_api, capsys):
    now = [0.0]
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    api = FakeApi(statuses=["running"])
    with pytest.raises(RuntimeError, match=r"still 'running' after 300 s \(timeout 300 s\)"):
        wait_for_kernel(api, "someuser/eedi-inference-round-1", timeout=300, poll_interval=60,
                        clock=lambda: now[0], sleep=sleep)
    assert sleeps == [60.0] * 5 and len(api.calls) == 6

    kernel = make_kernel(tmp_path)
    api = use_api(FakeApi(statuses=["running"]))
    assert cli("submit", str(kernel), "--no-dry-run", "--timeout", "0", "--poll-interval", "0") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "raise --timeout" in err
    assert "competition_submit_code" not in [c[0] for c in api.calls]


def test_submit_dry_run_shows_wait_and_version(tmp_path, capsys):
    kernel = make_kernel(tmp_path)
    plan = kaggle_cli("submit", kernel, kernel_version=2, timeout=600)
    assert plan["kernel_version"] == 2 and plan["timeout_s"] == 600 and plan["message"] == f"{TITLE} v2"
    assert "kernel_version: 2" in capsys.readouterr().out
    csv = tmp_path / "submission.csv"
    csv.write_text("QuestionId_Answer,MisconceptionId\n12_B,1\n")
    with pytest.raises(ValueError, match="needs a kernel folder"):
        kaggle_cli("submit", csv, kernel_version=2)


def test_placeholder_matches_inference_default():
    from utils.kaggle.inference import DEFAULT_OWNER

    assert PLACEHOLDER_OWNER == DEFAULT_OWNER
