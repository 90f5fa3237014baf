"""OAG-AQA task: the bundled sample, validation errors, the submission, the generator."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from utils.tasks.aqa import TASK, clean_html
from utils.tasks.base import DataError, check_contract

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "make_aqa_sample.py"
PAPERS = "pid_to_title_abs_update_filter.json"


def pid(i: int) -> str:
    return f"{i:024x}"


def make_dir(tmp_path: Path, train: list[str] | bytes, papers: dict | str | None = None,
             test: list[str] | None = None, valid: list[str] | None = None) -> Path:
    """A tiny raw folder; lines are written as given (JSON strings), papers default to 25."""
    d = tmp_path / "aqa"
    d.mkdir(parents=True, exist_ok=True)
    if papers is None:
        papers = {pid(i): {"title": f"Title {i}", "abstract": f"Abstract {i}."} for i in range(25)}
    (d / PAPERS).write_text(papers if isinstance(papers, str) else json.dumps(papers, indent=1))
    if isinstance(train, bytes):
        (d / "qa_train.txt").write_bytes(train)
    else:
        (d / "qa_train.txt").write_text("".join(line + "\n" for line in train))
    for name, lines in (("qa_test_wo_ans.txt", test), ("qa_valid_wo_ans.txt", valid)):
        if lines is not None:
            (d / name).write_text("".join(line + "\n" for line in lines))
    return d


def q(question: str = "How?", body: str | None = "<p>Body</p>", pids: list | None = None, **extra) -> str:
    rec: dict = {"question": question, "body": body, **extra}
    if pids is not None:
        rec["pids"] = pids
    return json.dumps(rec)


GOOD_TRAIN = [q("Q one", pids=[pid(0)]), q("Q two", pids=[pid(1), pid(2)]), q("Q three", pids=[pid(3)])]
GOOD_TEST = [q("T one"), q("T two")]


# --------------------------------------------------------------------------- the sample


def test_sample_loads_with_file_counts():
    d = TASK.sample_dir
    assert TASK.name == "aqa" and TASK.metric_k == 20 and d == REPO / "data" / "aqa_sample"
    data = TASK.load(d, require_test=True)
    check_contract(data, str(d))
    train = [json.loads(x) for x in (d / "qa_train.txt").read_text().splitlines()]
    test = (d / "qa_test_wo_ans.txt").read_text().splitlines()
    papers = json.loads((d / PAPERS).read_text())
    assert len(data.queries) == len(train) == 240
    assert len(data.test) == len(test) == 40
    assert len((d / "qa_valid_wo_ans.txt").read_text().splitlines()) == 40
    assert len(data.corpus) == len(papers) == 300
    assert list(data.corpus["item_id"]) == list(range(300))
    assert list(data.corpus["raw_id"]) == list(papers)
    assert all(re.fullmatch(r"[0-9a-f]{24}", p) for p in papers)
    # positives are the file's pids, mapped to item ids; some questions have 2-3
    pid_to_item = dict(zip(data.corpus["raw_id"], data.corpus["item_id"]))
    for rec, pos in zip(train, data.queries["positives"]):
        assert pos == tuple(pid_to_item[p] for p in rec["pids"]) and all(type(i) is int for i in pos)
    sizes = data.queries["positives"].map(len)
    assert sizes.min() >= 1 and sizes.max() == 3 and (sizes > 1).sum() >= 20
    assert list(data.queries["query_id"][:2]) == ["train_0", "train_1"]
    assert (data.queries["group"] == data.queries["query_id"]).all()
    assert list(data.test["query_id"][:2]) == ["test_0", "test_1"] and data.test["positives"].map(len).eq(0).all()
    # HTML gone from the texts, raw fields kept
    assert not data.queries["query_text"].str.contains("<|>").any()
    assert data.queries["body"].str.contains("<a href=").any() and data.queries["body"].str.contains("<code>").any()
    # a few null titles/abstracts, read as ""
    nulls = [p for p, r in papers.items() if r["title"] is None or r["abstract"] is None]
    assert 0 < len(nulls) < 20
    assert not data.corpus["item_text"].str.contains("None").any() and data.corpus["item_text"].str.len().gt(0).all()
    words = data.corpus["abstract"][data.corpus["abstract"] != ""].str.split().map(len)
    assert 40 <= words.min() and words.max() <= 80


def test_sample_size_under_1mb():
    assert sum(p.stat().st_size for p in TASK.sample_dir.iterdir()) < 1_000_000


# --------------------------------------------------------------------------- texts


def test_clean_html():
    body = ('<p>See <a href="x">anchor</a> and <code>f(x) &lt; 2</code>.</p>\n'
            '<p>Thanks &amp;\n  bye<br/>now</p><!-- note --><script>alert(1)</script>H<sub>2</sub>O')
    assert clean_html(body) == "See anchor and f(x) < 2. Thanks & bye now H2O"
    assert clean_html(None) == "" and clean_html("") == ""
    assert clean_html('<a href="a>b" title=\'c\'>link</a> x < y') == "link x < y"


def test_query_and_item_text(tmp_path):
    papers = {pid(i): {"title": f"Title {i}", "abstract": f"Abstract {i}."} for i in range(25)}
    papers[pid(1)] = {"title": None, "abstract": "Only <i>abstract</i>."}
    papers[pid(2)] = {"title": "Only title?", "abstract": None}
    papers[pid(3)] = {"title": "Ends with dot.", "abstract": "Abs."}
    d = make_dir(tmp_path, [q("  How   to\ndo it? ", '<p>Use <a href="https://e.org">this lib</a>.</p>', [pid(0)]),
                            q("No body", None, [])], papers, test=GOOD_TEST)
    data = TASK.load(d)
    assert data.queries["query_text"].tolist() == ["How to do it?\nUse this lib.", "No body"]
    assert data.queries["body"].tolist()[1] == "" and data.queries["question"][0] == "  How   to\ndo it? "
    assert data.queries["positives"].tolist() == [(0,), ()]
    assert data.corpus["item_text"][:4].tolist() == ["Title 0. Abstract 0.", "Only abstract.", "Only title?", "Ends with dot. Abs."]
    assert data.corpus["title"][1] == "" and data.corpus["abstract"][2] == ""


def test_duplicate_pids_blank_lines_and_paper_without_text(tmp_path):
    papers = {pid(i): {"title": f"T{i}", "abstract": "A"} for i in range(25)}
    papers[pid(7)] = {"title": None, "abstract": ""}
    d = make_dir(tmp_path, [q(pids=[pid(1), pid(1), pid(2)]), "", "   ", q(pids=[pid(7)])], papers, test=GOOD_TEST)
    with pytest.warns(UserWarning, match=f"1 paper.*{pid(7)}"):
        data = TASK.load(d)
    assert data.queries["query_id"].tolist() == ["train_0", "train_3"]
    assert data.queries["positives"].tolist() == [(1, 2), (7,)]
    assert data.corpus["item_text"][7] == ""


def test_test_file_fallback(tmp_path):
    d = make_dir(tmp_path, GOOD_TRAIN, valid=[q("V one"), q("V two"), q("V three")])
    assert TASK.load(d).test["question"].tolist() == ["V one", "V two", "V three"]
    (d / "qa_test_wo_ans.txt").write_text(q("T one") + "\n")
    assert TASK.load(d).test["question"].tolist() == ["T one"]  # the test file wins over valid
    d2 = make_dir(tmp_path / "other", GOOD_TRAIN)
    assert TASK.load(d2).test is None
    with pytest.raises(DataError, match="qa_test_wo_ans.txt.*not found"):
        TASK.load(d2, require_test=True)


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("lines, expected", [
    ([GOOD_TRAIN[0], GOOD_TRAIN[1], '{"question": "x", "pids": [', GOOD_TRAIN[2]], ["line 3", "invalid JSON"]),
    ([GOOD_TRAIN[0], q(pids=[pid(1), "ffffffffffffffffffffffff"])], ["line 2", "'pids'", "ffffffffffffffffffffffff", PAPERS]),
    ([GOOD_TRAIN[0], json.dumps({"body": "b", "pids": [pid(1)]})], ["line 2", "'question'"]),
    ([GOOD_TRAIN[0], GOOD_TRAIN[1], q()], ["line 3", "missing field 'pids'"]),
    ([q(pids=pid(1))], ["line 1", "'pids'", "list of strings"]),
    ([q(pids=[1, 2])], ["line 1", "'pids'", "list of strings"]),
    ([q(question=3, pids=[])], ["line 1", "'question'", "string"]),
    ([q(body=["x"], pids=[])], ["line 1", "'body'"]),
    ([GOOD_TRAIN[0], "[1, 2]"], ["line 2", "JSON object"]),
    ([q("", "", pids=[])], ["line 1", "empty"]),
    ([], ["empty file"]),
    ([q(pids=[])], ["no labelled training queries"]),
])
def test_bad_train_file(tmp_path, lines, expected):
    d = make_dir(tmp_path, lines, test=GOOD_TEST)
    with pytest.raises(DataError) as e:
        TASK.load(d)
    msg = str(e.value)
    assert "\n" not in msg
    if "no labelled" not in msg:
        assert "qa_train.txt" in msg
    for part in expected:
        assert part in msg, msg


def test_non_utf8_names_the_line(tmp_path):
    raw = (GOOD_TRAIN[0] + "\n").encode() + b'{"question": "caf\xe9", "pids": []}\n'
    d = make_dir(tmp_path, raw)
    with pytest.raises(DataError, match=r"qa_train.txt: line 2, column 18: byte 0xe9 is not UTF-8"):
        TASK.load(d)


def test_bad_test_file(tmp_path):
    d = make_dir(tmp_path, GOOD_TRAIN, test=[q("ok"), "{oops"])
    with pytest.raises(DataError, match=r"qa_test_wo_ans.txt: line 2: invalid JSON"):
        TASK.load(d)


@pytest.mark.parametrize("papers, expected", [
    ('{\n "a": {"title": "t", "abstract": "a"},\n "b": {"title": "t",\n}', ["line 4", "invalid JSON"]),
    ('[1, 2]', ["expected a JSON object"]),
    ('{}', ["no papers"]),
    ('   \n', ["empty file"]),
    ('{\n "a": {"title": "t", "abstract": null},\n "b": {"title": 3, "abstract": "x"}\n}', ["line 3", "'b'", "'title'", "string or null"]),
    ('{\n "a": {"title": "t", "abstract": null},\n "b": "text"\n}', ["line 3", "'b'", "expected an object"]),
    ('{\n "a": {"title": "t"},\n "a": {"title": "u"}\n}', ["line 3", "duplicate key 'a'"]),
])
def test_bad_papers_file(tmp_path, papers, expected):
    d = make_dir(tmp_path, [q(pids=["a"])], papers)
    with pytest.raises(DataError) as e:
        TASK.load(d)
    assert PAPERS in str(e.value)
    for part in expected:
        assert part in str(e.value), str(e.value)


def test_missing_files_name_the_layout(tmp_path):
    d = make_dir(tmp_path, GOOD_TRAIN)
    (d / PAPERS).unlink()
    with pytest.raises(DataError, match=f"{PAPERS}: file not found.*OAG-AQA's layout"):
        TASK.load(d)
    with pytest.raises(DataError, match="qa_train.txt: file not found"):
        TASK.load(tmp_path / "nowhere")


# --------------------------------------------------------------------------- submission


@pytest.fixture
def small(tmp_path):
    return TASK.load(make_dir(tmp_path, GOOD_TRAIN, test=GOOD_TEST))


def ranking_for(data, per_query: dict[str, list[int]]) -> pd.DataFrame:
    rows = [{"query_id": qid, "item_id": item, "rank": r, "score": -float(r)}
            for qid, items in per_query.items() for r, item in enumerate(items, 1)]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # row order must not matter


def test_submission_round_trip(small, tmp_path):
    ranking = ranking_for(small, {
        "test_1": list(range(24, -1, -1)),                   # 24, 23, ..., 0
        "test_0": [3, 3, 1] + list(range(5, 25)),            # duplicate 3 dropped
        "train_0": [0, 1],                                   # not a test query: ignored
    })
    out = TASK.write_submission(ranking, small, tmp_path / "sub" / "submission.txt")
    expected = (",".join(pid(i) for i in [3, 1] + list(range(5, 23))) + "\n"
                + ",".join(pid(i) for i in range(24, 4, -1)) + "\n")
    assert out.read_text() == expected
    assert [p.name for p in out.parent.iterdir()] == ["submission.txt"]  # no temp file left
    TASK.validate_submission(out, small)


def test_write_submission_errors(small, tmp_path):
    with pytest.raises(ValueError, match="'test_1'.*not in the ranking"):
        TASK.write_submission(ranking_for(small, {"test_0": list(range(25))}), small, tmp_path / "s.txt")
    with pytest.raises(ValueError, match="'test_1'.*only 19 candidates"):
        TASK.write_submission(ranking_for(small, {"test_0": list(range(25)), "test_1": list(range(19)) + [0]}),
                              small, tmp_path / "s.txt")
    assert not (tmp_path / "s.txt").exists()


@pytest.mark.parametrize("lines, expected", [
    ([list(range(20))], "1 line(s), expected 2"),
    ([list(range(20))] * 3, "3 line(s), expected 2"),
    ([list(range(20)), list(range(19))], "line 2: 19 pid(s), expected 20"),
    ([list(range(20)), list(range(19)) + [4]], f"line 2: duplicate pid '{pid(4)}'"),
    ([list(range(19)) + ["zz"], list(range(20))], "line 1: unknown pid 'zz'"),
])
def test_validate_submission_catches(small, tmp_path, lines, expected):
    path = tmp_path / "bad.txt"
    path.write_text("".join(",".join(x if isinstance(x, str) else pid(x) for x in line) + "\n" for line in lines))
    with pytest.raises(DataError) as e:
        TASK.validate_submission(path, small)
    assert expected in str(e.value) and "bad.txt" in str(e.value)


# --------------------------------------------------------------------------- generator


def test_generator_is_deterministic_and_matches_the_bundled_sample(tmp_path):
    for out in ("a", "b"):
        subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / out)], check=True, capture_output=True)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(["qa_train.txt", "qa_valid_wo_ans.txt", "qa_test_wo_ans.txt", PAPERS])
    for name in names:
        got = (tmp_path / "a" / name).read_bytes()
        assert got == (tmp_path / "b" / name).read_bytes(), name
        assert got == (TASK.sample_dir / name).read_bytes(), f"{name}: re-run scripts/make_aqa_sample.py"
