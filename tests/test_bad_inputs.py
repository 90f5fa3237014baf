"""Bad inputs fail loudly, naming what is wrong: never a silent wrong result or a bare library error."""

import json
import os
import re
import shutil
import stat
import warnings
from pathlib import Path

import pandas as pd
import pytest

from utils import io
from utils.config import SAMPLE_DATA_DIR
from utils.tasks.eedi import LABEL_COLUMNS, TASK, DataError, load_competition, queries_of, to_pairs
from utils.retrieval.embed import resolve_model


@pytest.fixture
def data_copy(tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(SAMPLE_DATA_DIR, dst)
    return dst


def _no_overlap_warning(data_dir: Path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        comp = load_competition(data_dir)
    assert not [w for w in caught if "also in train.csv" in str(w.message)]
    return comp


# -- 1. empty files ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["train.csv", "test.csv", "misconception_mapping.csv"])
def test_zero_byte_csv_names_the_file(data_copy, name):
    (data_copy / name).write_bytes(b"")
    with pytest.raises(DataError) as err:
        load_competition(data_copy)
    msg = str(err.value)
    assert str(data_copy / name) in msg and "empty file" in msg
    assert "\n" not in msg


# -- 2. non-UTF-8 bytes ------------------------------------------------------------------
@pytest.mark.parametrize("name,column,row", [("train.csv", "QuestionText", 7), ("misconception_mapping.csv", "MisconceptionName", 30)])
def test_latin1_bytes_name_file_and_line(data_copy, name, column, row):
    path = data_copy / name
    df = pd.read_csv(path)
    df[column] = df[column].astype(object)
    marker = "MARKER caf\N{LATIN SMALL LETTER E WITH ACUTE}"
    df.loc[row, column] = marker
    text = df.to_csv(index=False)
    path.write_bytes(text.encode("utf-8").replace(marker.encode("utf-8"), marker.encode("latin-1")))
    # the physical line (header = line 1) holding the bad byte; sample questions span several lines
    line = text[: text.index("MARKER")].count("\n") + 1
    with pytest.raises(DataError) as err:
        load_competition(data_copy)
    msg = str(err.value)
    assert str(path) in msg
    assert re.search(rf"\bline {line}\b", msg), msg
    assert "0xe9" in msg and "UTF-8" in msg


def test_valid_utf8_still_reads(data_copy):
    _edit(data_copy / "train.csv", lambda df: df.__setitem__("QuestionText", df["QuestionText"] + " caf\u00e9 \u2264 \U0001d465"))
    comp = load_competition(data_copy)
    assert comp.train["QuestionText"].str.endswith("caf\u00e9 \u2264 \U0001d465").all()


# -- 3. test questions that are training questions ---------------------------------------
def _edit(path: Path, fn):
    df = pd.read_csv(path)
    fn(df)
    df.to_csv(path, index=False)


def test_test_ids_also_in_train_warn(data_copy):
    train_ids = pd.read_csv(data_copy / "train.csv")["QuestionId"].tolist()
    shared = sorted(train_ids[:7])

    def f(df):
        df.loc[:6, "QuestionId"] = shared
    _edit(data_copy / "test.csv", f)
    with pytest.warns(UserWarning, match="also in train.csv") as caught:
        comp = load_competition(data_copy)
    msg = str([w for w in caught if "also in train.csv" in str(w.message)][0].message)
    assert "test.csv" in msg and "7 QuestionId" in msg
    assert str(shared[:5]) in msg and "+2 more" in msg
    listed = msg.split("also in train.csv: ")[1].split("]")[0]  # after the path, which may hold digits
    assert listed == str(shared[:5])[:-1]  # only the first five are listed
    assert comp.test is not None  # a warning, not an error


def test_sample_and_tiny_data_load_without_overlap_warning(tiny_data):
    for data_dir in (SAMPLE_DATA_DIR, tiny_data):
        comp = _no_overlap_warning(data_dir)
        assert to_pairs(comp.train)["MisconceptionId"].notna().any()
        assert (queries_of(comp.train)["positives"].map(len) > 0).any()


# -- 4. a training file without labels ---------------------------------------------------
def test_unlabelled_train_fails_at_load(data_copy):
    _edit(data_copy / "train.csv", lambda df: [df.__setitem__(c, pd.NA) for c in LABEL_COLUMNS])
    with pytest.raises(DataError) as err:
        load_competition(data_copy)
    msg = str(err.value)
    assert str(data_copy / "train.csv") in msg and "no labelled training pairs" in msg
    assert all(c in msg for c in LABEL_COLUMNS)


def test_labels_only_on_correct_answers_count_as_unlabelled(data_copy):
    def f(df):
        for a in "ABCD":
            col = f"Misconception{a}Id"
            df[col] = df[col].where(df["CorrectAnswer"] == a, pd.NA).astype("Int64")
        df.loc[0, f"Misconception{df.loc[0, 'CorrectAnswer']}Id"] = 1
    _edit(data_copy / "train.csv", f)
    with pytest.raises(DataError, match=r"train.csv: no labelled training pairs"):
        load_competition(data_copy)


def test_one_label_is_enough_and_test_needs_none(data_copy):
    known = int(pd.read_csv(data_copy / "misconception_mapping.csv")["MisconceptionId"].iloc[0])

    def f(df):
        for c in LABEL_COLUMNS:
            df[c] = pd.array([pd.NA] * len(df), dtype="Int64")
        wrong = "A" if df.loc[0, "CorrectAnswer"] != "A" else "B"
        df.loc[0, f"Misconception{wrong}Id"] = known
    _edit(data_copy / "train.csv", f)
    comp = load_competition(data_copy)
    assert to_pairs(comp.train)["MisconceptionId"].notna().sum() == 1
    positives = TASK.load(data_copy).queries["positives"]
    assert (positives.map(len) > 0).sum() == 1 and (known,) in positives.tolist()
    assert not any(c in comp.test.columns for c in LABEL_COLUMNS)


# -- 5. file modes follow the umask -----------------------------------------------------
@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_and_folders_follow_umask(tmp_path, umask_022):
    df = pd.DataFrame({"a": [1, 2]})
    written = [
        io.write_text(tmp_path / "a.txt", "x"),
        io.write_json(tmp_path / "a.json", {"a": 1}),
        io.write_parquet(tmp_path / "a.parquet", df),
        io.write_csv(tmp_path / "submission.csv", df),
        io.write_jsonl(tmp_path / "a.jsonl", [{"a": 1}]),
    ]
    io.update_metrics(tmp_path / "run", "x", {"a": 1})
    written.append(tmp_path / "run" / "metrics.json")
    with io.atomic_path(tmp_path / "plot.png") as tmp:
        tmp.write_bytes(b"png")
    written.append(tmp_path / "plot.png")
    with io.atomic_dir(tmp_path / "model") as tmp:
        (tmp / "weights.bin").write_bytes(b"w")
    for path in written + [tmp_path / "model" / "weights.bin"]:
        assert _mode(path) == 0o644, (path.name, oct(_mode(path)))
    assert _mode(tmp_path / "model") == 0o755
    assert _mode(tmp_path / "run") == 0o755
    with io.atomic_dir(tmp_path / "model") as tmp:  # replacing an existing folder too
        (tmp / "weights.bin").write_bytes(b"v")
    assert _mode(tmp_path / "model") == 0o755
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": 1}
    assert not list(tmp_path.glob(".*"))  # no temp files left behind


def test_stricter_umask_is_respected(tmp_path):
    old = os.umask(0o077)
    try:
        path = io.write_text(tmp_path / "secret.txt", "x")
        with io.atomic_dir(tmp_path / "d"):
            pass
    finally:
        os.umask(old)
    assert _mode(path) == 0o600 and _mode(tmp_path / "d") == 0o700


# -- 6. model arguments that are paths ---------------------------------------------------
@pytest.mark.parametrize("arg", ["/no/such/path", "./no/such/model", "../no/such/model", "~/no/such/model",
                                 "C:\\no\\such\\model"])
def test_missing_model_folder_is_named(arg):
    with pytest.raises(FileNotFoundError, match=re.escape(f"no such model folder: {arg}")):
        resolve_model(arg)


def test_embedder_with_missing_folder_fails_before_loading(monkeypatch):
    import transformers

    from utils.retrieval.embed import Embedder

    def boom(*a, **k):
        raise AssertionError("tried to load")
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", boom)
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", boom)
    with pytest.raises(FileNotFoundError, match="no such model folder: /no/such/path"):
        Embedder("/no/such/path", device="cpu")


def test_hub_ids_default_and_existing_folders_still_resolve(tmp_path, monkeypatch):
    assert resolve_model("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"
    assert resolve_model("runs/v1/round_1/embedder") == "runs/v1/round_1/embedder"  # relative: passed on
    for alias in (None, "default"):
        assert Path(resolve_model(alias)).is_dir()
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model(tmp_path) == str(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    assert resolve_model("./m") == "./m"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_model("~/m") == str(tmp_path / "m")
