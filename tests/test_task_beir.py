"""The ``beir`` task: loading the BEIR layout, its errors, the TREC run file, the sample generator."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from utils.tasks.base import DataError
from utils.tasks.beir import TASK, BeirTask

REPO = Path(__file__).resolve().parents[1]

CORPUS = [
    {"_id": "d1", "title": "Alpha", "text": "first doc"},
    {"_id": "d2", "title": "", "text": "second doc"},
    {"_id": "d3", "title": "Gamma?", "text": "third doc", "metadata": {"url": "x"}},
]
QUERIES = [{"_id": "q1", "text": "find alpha"}, {"_id": "q2", "text": "what is gamma"}]
TRAIN = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td3\t2\n"


def _jsonl(rows: list) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def make_folder(root: Path, corpus: list | None = None, queries: list | None = None, qrels: dict | None = None) -> Path:
    """A BEIR folder; ``corpus``/``queries`` rows are dicts (or raw lines), ``qrels`` maps file name -> text."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text(_jsonl(CORPUS if corpus is None else corpus))
    (root / "queries.jsonl").write_text(_jsonl(QUERIES if queries is None else queries))
    (root / "qrels").mkdir(exist_ok=True)
    for name, text in ({"train.tsv": TRAIN} if qrels is None else qrels).items():
        (root / "qrels" / name).write_text(text)
    return root


def _load_script():
    spec = importlib.util.spec_from_file_location("make_beir_sample", REPO / "scripts" / "make_beir_sample.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --- loading -----------------------------------------------------------------------------

def test_task_attributes():
    assert TASK.name == "beir" and TASK.metric_k == 10
    assert TASK.sample_dir == REPO / "data" / "beir_sample"
    assert BeirTask(metric_k=25).metric_k == 25
    with pytest.raises(ValueError):
        BeirTask(metric_k=0)


def test_sample_loads_with_expected_counts():
    data = TASK.load(TASK.sample_dir, require_test=True)
    assert len(data.corpus) == 200 and len(data.queries) == 160 and len(data.test) == 20
    assert data.corpus["item_id"].tolist() == list(range(200))
    assert data.queries["positives"].map(len).value_counts().to_dict() == {1: 120, 2: 40}
    assert all(isinstance(p, int) for pos in data.queries["positives"] for p in pos)
    assert data.queries["splits"].value_counts().to_dict() == {"train": 120, "test": 40}
    assert (data.test["positives"].map(len) == 0).all()
    assert not set(data.test["query_id"]) & set(data.queries["query_id"])


def test_hand_written_folder_gives_exact_tables(tmp_path):
    data = TASK.load(make_folder(tmp_path / "b"))
    assert data.corpus.to_dict("records") == [
        {"item_id": 0, "item_text": "Alpha. first doc", "raw_id": "d1", "title": "Alpha", "text": "first doc"},
        {"item_id": 1, "item_text": "second doc", "raw_id": "d2", "title": "", "text": "second doc"},
        {"item_id": 2, "item_text": "Gamma? third doc", "raw_id": "d3", "title": "Gamma?", "text": "third doc"},
    ]
    assert data.queries.to_dict("records") == [
        {"query_id": "q1", "group": "q1", "query_text": "find alpha", "positives": (0, 2), "splits": "train"},
    ]
    assert data.test.to_dict("records") == [
        {"query_id": "q2", "group": "q2", "query_text": "what is gamma", "positives": (), "splits": ""},
    ]
    assert data.data_dir == tmp_path / "b"


def test_qrels_files_are_pooled_and_zero_scores_are_not_positives(tmp_path):
    folder = make_folder(tmp_path / "b", qrels={
        "train.tsv": "query-id\tcorpus-id\tscore\nq1\td3\t1\n",
        "test.tsv": "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq2\td2\t0\n",
    })
    data = TASK.load(folder)
    assert data.queries.to_dict("records") == [
        {"query_id": "q1", "group": "q1", "query_text": "find alpha", "positives": (0, 2), "splits": "test,train"},
    ]
    assert data.test is None  # q2 is judged (score 0 only): neither labelled nor to predict
    with pytest.raises(DataError, match=r"queries\.jsonl: no query to predict"):
        TASK.load(folder, require_test=True)


def test_int_ids_missing_title_and_blank_lines_are_accepted(tmp_path):
    folder = make_folder(tmp_path / "b", corpus=[{"_id": 7, "text": "seven"}, "", {"_id": "8", "title": None, "text": "eight"}],
                         qrels={"dev.tsv": "query-id\tcorpus-id\tscore\nq1\t7\t1\n\n"})
    data = TASK.load(folder)
    assert data.corpus["raw_id"].tolist() == ["7", "8"]
    assert data.corpus["item_text"].tolist() == ["seven", "eight"]
    assert data.queries["positives"].tolist() == [(0,)]


BAD = [
    # (what to change, expected file name, expected fragment)
    ({"corpus": [CORPUS[0], '{"_id": "d2", "text": '] }, "corpus.jsonl", "line 2: invalid JSON"),
    ({"corpus": [CORPUS[0], CORPUS[1], {"text": "no id"}]}, "corpus.jsonl", "line 3, field '_id': missing"),
    ({"corpus": [CORPUS[0], {"_id": "d2", "title": "t"}]}, "corpus.jsonl", "line 2, field 'text': missing"),
    ({"corpus": [CORPUS[0], {"_id": "d2", "text": 5}]}, "corpus.jsonl", "line 2, field 'text': expected a string"),
    ({"corpus": [CORPUS[0], {"_id": None, "text": "x"}]}, "corpus.jsonl", "line 2, field '_id': expected a string"),
    ({"corpus": [CORPUS[0], CORPUS[1], {"_id": "d1", "text": "again"}]}, "corpus.jsonl", "line 3, field '_id': duplicate 'd1' (first on line 1)"),
    ({"corpus": [CORPUS[0], "[1, 2]"]}, "corpus.jsonl", "line 2: expected a JSON object"),
    ({"corpus": []}, "corpus.jsonl", "no documents"),
    ({"queries": [QUERIES[0], {"_id": "q2"}]}, "queries.jsonl", "line 2, field 'text': missing"),
    ({"queries": [QUERIES[0], {"_id": "q1", "text": "dup"}]}, "queries.jsonl", "line 2, field '_id': duplicate 'q1'"),
    ({"queries": [QUERIES[0], "not json"]}, "queries.jsonl", "line 2: invalid JSON"),
    ({"qrels": {"train.tsv": "query-id\tcorpus-id\tscore\nq1\td1\n"}}, "train.tsv", "line 2: expected 3 tab-separated columns"),
    ({"qrels": {"train.tsv": "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t1.5\n"}}, "train.tsv", "line 3, field 'score': expected an integer, got '1.5'"),
    ({"qrels": {"train.tsv": "query-id\tcorpus-id\tscore\nq9\td1\t1\n"}}, "train.tsv", "line 2, field 'query-id': 'q9' is not in queries.jsonl"),
    ({"qrels": {"dev.tsv": "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td9\t1\n"}}, "dev.tsv", "line 3, field 'corpus-id': 'd9' is not in corpus.jsonl"),
    ({"qrels": {"train.tsv": "q1\td1\t1\n"}}, "train.tsv", "line 1: expected the header"),
    ({"qrels": {}}, "qrels", "no qrels file"),
    ({"qrels": {"train.tsv": "query-id\tcorpus-id\tscore\nq1\td1\t0\n"}}, "", "no labelled training queries"),
]


@pytest.mark.parametrize("change,fname,fragment", BAD, ids=[f"{i}-{b[2][:30]}" for i, b in enumerate(BAD)])
def test_bad_input_is_one_named_data_error(tmp_path, change, fname, fragment):
    folder = make_folder(tmp_path / "b", **change)
    with pytest.raises(DataError) as e:
        TASK.load(folder)
    msg = str(e.value)
    assert "\n" not in msg and fragment in msg and fname in msg, msg


def test_missing_files_name_the_layout(tmp_path):
    for missing, fragment in [("corpus.jsonl", "missing documents file"), ("queries.jsonl", "missing queries file")]:
        folder = make_folder(tmp_path / missing)
        (folder / missing).unlink()
        with pytest.raises(DataError, match=rf"{missing}: {fragment}; expected the BEIR layout"):
            TASK.load(folder)
    folder = make_folder(tmp_path / "noqrels")
    (folder / "qrels" / "train.tsv").unlink()
    (folder / "qrels").rmdir()
    with pytest.raises(DataError, match=r"qrels: no qrels file .*BEIR layout"):
        TASK.load(folder)
    with pytest.raises(DataError, match="not a folder"):
        TASK.load(tmp_path / "nowhere")


def test_non_utf8_names_the_line(tmp_path):
    folder = make_folder(tmp_path / "b")
    (folder / "queries.jsonl").write_bytes(b'{"_id": "q1", "text": "a"}\n{"_id": "q2", "text": "\xff"}\n')
    with pytest.raises(DataError, match=r"queries\.jsonl: line 2: not UTF-8"):
        TASK.load(folder)


# --- run file ----------------------------------------------------------------------------

@pytest.fixture
def run_data(tmp_path):
    corpus = CORPUS + [{"_id": "d4", "title": "Delta", "text": "fourth doc"}]
    queries = [{"_id": "t1", "text": "test one"}, QUERIES[0], {"_id": "t2", "text": "test two"}]
    return TASK.load(make_folder(tmp_path / "b", corpus=corpus, queries=queries))


RANKING = pd.DataFrame(
    [  # t2 first, out of order; its scores do not fall with rank (reranked head + tail); a duplicate item
        ("t2", 3, 2, 0.7), ("t2", 1, 1, 0.2), ("t2", 1, 3, 0.1), ("q1", 0, 1, 1.0),
        ("t1", 0, 1, 0.9), ("t1", 2, 2, 0.5), ("t1", 3, 3, 0.125),
    ],
    columns=["query_id", "item_id", "rank", "score"],
)


def test_run_file_round_trip(tmp_path, run_data):
    task = BeirTask(metric_k=2)
    path = task.write_submission(RANKING, run_data, tmp_path / "out" / "run.txt")
    assert path == tmp_path / "out" / "run.txt"
    assert path.read_text() == (
        "t1 Q0 d1 1 0.9 suite\n"
        "t1 Q0 d3 2 0.5 suite\n"
        "t2 Q0 d2 1 2 suite\n"
        "t2 Q0 d4 2 1 suite\n"
    )
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.txt"]  # no temp file left
    task.validate_submission(path, run_data)
    full = TASK.write_submission(RANKING, run_data, tmp_path / "run10.txt").read_text().splitlines()
    assert full[:3] == ["t1 Q0 d1 1 0.9 suite", "t1 Q0 d3 2 0.5 suite", "t1 Q0 d4 3 0.125 suite"]
    assert full[3:] == ["t2 Q0 d2 1 10 suite", "t2 Q0 d4 2 9 suite"]  # fewer than k: all there is


def test_write_refuses_missing_query_and_unknown_item(tmp_path, run_data):
    with pytest.raises(ValueError, match="test query 't2' has no row"):
        TASK.write_submission(RANKING[RANKING["query_id"] != "t2"], run_data, tmp_path / "run.txt")
    bad = pd.concat([RANKING, pd.DataFrame([("t1", 99, 0, 5.0)], columns=RANKING.columns)])
    with pytest.raises(ValueError, match="item_id 99 is not in the corpus"):
        TASK.write_submission(bad, run_data, tmp_path / "run.txt")
    assert not (tmp_path / "run.txt").exists()


GOOD_RUN = "t1 Q0 d1 1 0.9 suite\nt2 Q0 d2 1 0.8 suite\n"
BAD_RUNS = [
    ("t1 Q0 d1 1 0.9\nt2 Q0 d2 1 0.8 suite\n", "line 1: expected 6 columns"),
    ("t1 Q0 d1 1 0.9 suite\nq1 Q0 d2 1 0.8 suite\n", "line 2, field 'qid': 'q1' is not a test query"),
    ("t1 Q0 d1 1 0.9 suite\nt2 Q0 d9 1 0.8 suite\n", "line 2, field 'docid': 'd9' is not in the corpus"),
    (GOOD_RUN + "t1 Q0 d1 2 0.5 suite\n", "line 3, field 'docid': duplicate 'd1' for query 't1' (first on line 1)"),
    ("t1 Q0 d1 one 0.9 suite\nt2 Q0 d2 1 0.8 suite\n", "line 1, field 'rank': expected an integer"),
    ("t1 Q0 d1 1 high suite\nt2 Q0 d2 1 0.8 suite\n", "line 1, field 'score': expected a number"),
    ("t1 Q0 d1 1 0.9 suite\n", "test query 't2' has no line"),
    ("", "test query 't1' has no line (2 missing)"),
]


@pytest.mark.parametrize("text,fragment", BAD_RUNS)
def test_validate_catches_bad_run_files(tmp_path, run_data, text, fragment):
    path = tmp_path / "run.txt"
    path.write_text(GOOD_RUN)
    TASK.validate_submission(path, run_data)
    path.write_text(text)
    with pytest.raises(DataError) as e:
        TASK.validate_submission(path, run_data)
    assert str(e.value).startswith(str(path)) and fragment in str(e.value), str(e.value)


# --- sample generator --------------------------------------------------------------------

def test_generator_is_deterministic_and_matches_bundled_sample(tmp_path):
    gen = _load_script()
    files = gen.generate(0)
    assert files == gen.generate(0) and files != gen.generate(1)
    for name, content in files.items():
        assert (TASK.sample_dir / name).read_bytes() == content.encode("utf-8"), name
    assert sum(len(c.encode()) for c in files.values()) < 300_000
    gen.main(["--out", str(tmp_path / "s1"), "--seed", "1"])
    data = TASK.load(tmp_path / "s1", require_test=True)
    assert (len(data.corpus), len(data.queries), len(data.test)) == (200, 160, 20)
