"""KDD Cup 2024 OAG-AQA: for each technical question, rank 20 papers (metric MAP@20).

Raw layout (``data_dir``):

- ``qa_train.txt``: JSON lines ``{"question", "body", "pids"}``; ``body`` is HTML, ``pids`` the
  relevant papers (any number; an empty list = an unlabelled question).
- ``qa_test_wo_ans.txt``: the questions to predict (no ``pids``); when it is absent,
  ``qa_valid_wo_ans.txt`` (the competition's validation phase) is predicted instead.
- ``pid_to_title_abs_update_filter.json``: ``{pid: {"title": str|null, "abstract": str|null}}``.

Submission: one line per test question, in file order, its top 20 pids comma-separated, no
header. Every error is one ``DataError`` line naming the file, the line (1-based) and the field.
Blank lines in the JSON-lines files are skipped; query ids keep the 0-based physical line
(``train_{line}``, ``test_{line}``). A paper with neither title nor abstract is kept (a train
question may cite it) with an empty ``item_text``, and one warning counts such papers.
"""

from __future__ import annotations

import html
import json
import re
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from utils.io import atomic_path
from utils.tasks.base import DataError, TaskData, check_contract

TRAIN_FILE = "qa_train.txt"
TEST_FILE = "qa_test_wo_ans.txt"
VALID_FILE = "qa_valid_wo_ans.txt"
PAPERS_FILE = "pid_to_title_abs_update_filter.json"
LAYOUT = f"expected OAG-AQA's layout: {TRAIN_FILE}, {PAPERS_FILE}, and {TEST_FILE} or {VALID_FILE}"

# HTML is cleaned with regexes, not BeautifulSoup: bs4 is not a dependency of the suite, and
# StackExchange-style bodies need only tags dropped, entities decoded and whitespace collapsed.
_DROP_BLOCKS = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>|<!--.*?-->", re.S | re.I)
# A tag: "<" + name (or "/" or "!"), attributes whose quoted values may hold ">" or "<".
_TAG = re.compile(r"""<(/?)([a-zA-Z][a-zA-Z0-9]*|!)((?:[^<>"']|"[^"]*"|'[^']*')*)>""")
_BLOCK_TAGS = {
    "p", "div", "br", "li", "ul", "ol", "pre", "blockquote", "table", "tr", "td", "th", "hr",
    "h1", "h2", "h3", "h4", "h5", "h6", "dl", "dt", "dd", "section", "article",
}
_WS = re.compile(r"\s+")


def clean_html(text: str | None) -> str:
    """Plain text of an HTML fragment: tags dropped (links keep their anchor text, ``<code>``
    its content), block tags turned into spaces, entities decoded, whitespace collapsed."""
    if not text:
        return ""
    text = _DROP_BLOCKS.sub(" ", text)
    text = _TAG.sub(lambda m: " " if m.group(2).lower() in _BLOCK_TAGS else "", text)
    return _WS.sub(" ", html.unescape(text)).strip()


def _join_title_abstract(title: str, abstract: str) -> str:
    if title and abstract:
        return title + ("" if title[-1] in ".?!" else ".") + " " + abstract
    return title or abstract


def _decode(path: Path) -> str:
    """The file's text; non-UTF-8 bytes are an error naming the line (never a guessed encoding)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")  # a leading BOM (Windows editors) is dropped
    except UnicodeDecodeError:
        for n, line in enumerate(data.split(b"\n"), start=1):  # b"\n" never occurs inside a UTF-8 sequence
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}: line {n}, column {e.start + 1}: byte 0x{line[e.start]:02x} "
                                "is not UTF-8; re-save the file as UTF-8") from None
        raise DataError(f"{path}: not UTF-8; re-save the file as UTF-8") from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


class _DuplicateKey(ValueError):
    pass


def _line_of(text: str, needle: str, nth: int = 1) -> int | None:
    """1-based line of the ``nth`` occurrence of ``needle`` (for messages about the papers file)."""
    i = -1
    for _ in range(nth):
        i = text.find(needle, i + 1)
        if i < 0:
            return None
    return text.count("\n", 0, i) + 1


def read_papers(path: Path) -> pd.DataFrame:
    """Read and validate the papers file: one corpus row per pid, in file order."""
    if not path.exists():
        raise DataError(f"{path}: file not found ({LAYOUT})")
    text = _decode(path)
    if not text.strip():
        raise DataError(f"{path}: empty file")
    try:
        papers = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {e.lineno}, column {e.colno}: invalid JSON: {e.msg}") from None
    except _DuplicateKey as e:
        key = str(e)
        raise DataError(f"{path}: line {_line_of(text, json.dumps(key), 2) or '?'}: duplicate key {key!r}") from None
    if not isinstance(papers, dict):
        raise DataError(f"{path}: line 1: expected a JSON object {{pid: {{title, abstract}}}}, got {type(papers).__name__}")
    if not papers:
        raise DataError(f"{path}: no papers")

    def where(pid: str) -> str:
        return f"{path}: line {_line_of(text, json.dumps(pid)) or '?'}, paper {pid!r}"

    rows = []
    empty: list[str] = []
    for pid, rec in papers.items():
        if not pid.strip():
            raise DataError(f"{where(pid)}: empty pid")
        if not isinstance(rec, dict):
            raise DataError(f"{where(pid)}: expected an object with 'title' and 'abstract', got {type(rec).__name__}")
        fields = {}
        for f in ("title", "abstract"):
            v = rec.get(f)
            if v is not None and not isinstance(v, str):
                raise DataError(f"{where(pid)}, field {f!r}: expected a string or null, got {type(v).__name__}")
            fields[f] = clean_html(v)
        if not fields["title"] and not fields["abstract"]:
            empty.append(pid)
        rows.append((pid, fields["title"], fields["abstract"]))
    if empty:
        warnings.warn(f"{path}: {len(empty)} paper(s) with neither title nor abstract (e.g. {empty[0]!r}); "
                      "kept with an empty text", UserWarning, stacklevel=3)
    return pd.DataFrame({
        "item_id": range(len(rows)),
        "item_text": [_join_title_abstract(t, a) for _, t, a in rows],
        "raw_id": [p for p, _, _ in rows],
        "title": [t for _, t, _ in rows],
        "abstract": [a for _, _, a in rows],
    })


def read_questions(path: Path, prefix: str, pid_to_item: dict[str, int] | None) -> pd.DataFrame:
    """Read a JSON-lines question file; with ``pid_to_item`` the ``pids`` field is required
    and mapped to item ids (an empty list = unlabelled), else it is ignored."""
    if not path.exists():
        raise DataError(f"{path}: file not found ({LAYOUT})")
    rows = []
    for i, line in enumerate(_decode(path).split("\n")):
        if not line.strip():
            continue
        at = f"{path}: line {i + 1}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{at}: invalid JSON ({e.msg}, column {e.colno})") from None
        if not isinstance(rec, dict):
            raise DataError(f"{at}: expected a JSON object, got {type(rec).__name__}")
        if "question" not in rec:
            raise DataError(f"{at}: missing field 'question'")
        question = rec["question"]
        if not isinstance(question, str):
            raise DataError(f"{at}, field 'question': expected a string, got {type(question).__name__}")
        body = rec.get("body")
        if body is not None and not isinstance(body, str):
            raise DataError(f"{at}, field 'body': expected a string or null, got {type(body).__name__}")
        body = body or ""
        q = _WS.sub(" ", question).strip()
        b = clean_html(body)
        if not q and not b:
            raise DataError(f"{at}: empty 'question' and 'body'")
        positives: tuple[int, ...] = ()
        if pid_to_item is not None:
            if "pids" not in rec:
                raise DataError(f"{at}: missing field 'pids' (use [] for an unlabelled question)")
            pids = rec["pids"]
            if not isinstance(pids, list) or not all(isinstance(p, str) for p in pids):
                raise DataError(f"{at}, field 'pids': expected a list of strings, got {json.dumps(pids)[:80]}")
            unknown = [p for p in pids if p not in pid_to_item]
            if unknown:
                raise DataError(f"{at}, field 'pids': pid {unknown[0]!r} is not in {PAPERS_FILE}")
            positives = tuple(dict.fromkeys(pid_to_item[p] for p in pids))  # duplicates dropped, order kept
        qid = f"{prefix}_{i}"
        rows.append({"query_id": qid, "group": qid, "query_text": f"{q}\n{b}" if q and b else q or b,
                     "positives": positives, "question": question, "body": body})
    if not rows:
        raise DataError(f"{path}: empty file (no questions)")
    return pd.DataFrame(rows, columns=["query_id", "group", "query_text", "positives", "question", "body"])


def _check_lines(lines: list[str], data: TaskData, name: str, k: int) -> None:
    """Shared by ``write_submission`` (before writing) and ``validate_submission``."""
    n = 0 if data.test is None else len(data.test)
    if len(lines) != n:
        raise DataError(f"{name}: {len(lines)} line(s), expected {n} (one per test question)")
    known = set(data.corpus["raw_id"])
    for i, line in enumerate(lines, start=1):
        ids = [p.strip() for p in line.split(",")]
        if len(ids) != k:
            raise DataError(f"{name}: line {i}: {len(ids)} pid(s), expected {k}")
        dup = [p for p in dict.fromkeys(ids) if ids.count(p) > 1]
        if dup:
            raise DataError(f"{name}: line {i}: duplicate pid {dup[0]!r}")
        unknown = [p for p in ids if p not in known]
        if unknown:
            raise DataError(f"{name}: line {i}: unknown pid {unknown[0]!r} (not in {PAPERS_FILE})")


# The LLM reranker's wording (utils.rerank.llm.PROMPTS: keys and fields) and the ICL instruction.
PROMPTS = {
    "query": "Question: {query_text}\n",
    "pointwise": "Paper: {candidate}\nDoes this paper answer the question?\nAnswer:",
    "listwise": "Papers:\n{options}\nWhich paper answers the question?\nAnswer:",
}
ICL_TASK = "Given a technical question, retrieve the paper (title and abstract) that answers it."


class AQATask:
    """The OAG-AQA task (see the module docstring for the layout)."""

    name = "aqa"
    metric_k = 20
    submission_file = "submission.txt"
    # Under the user's config: title + abstract passages are long. On the sample (MiniLM tokens) queries
    # are p95 97 / max 107, passages p95 129 / max 138 (01 prints these statistics for any data).
    config_defaults = {"train": {"max_query_length": 128, "max_passage_length": 160}, "rerank": {"max_length": 256}}
    sample_dir = Path(__file__).resolve().parents[2] / "data" / "aqa_sample"
    prompts = PROMPTS
    icl_task = ICL_TASK

    def load(self, data_dir: Path, require_test: bool = False) -> TaskData:
        """Read and validate the folder. ``test`` comes from ``qa_test_wo_ans.txt``, else from
        ``qa_valid_wo_ans.txt``, else is None (a ``DataError`` with ``require_test``)."""
        data_dir = Path(data_dir)
        if not (data_dir / TRAIN_FILE).exists():
            raise DataError(f"{data_dir / TRAIN_FILE}: file not found ({LAYOUT})")
        corpus = read_papers(data_dir / PAPERS_FILE)
        pid_to_item = {p: int(i) for p, i in zip(corpus["raw_id"], corpus["item_id"])}
        queries = read_questions(data_dir / TRAIN_FILE, "train", pid_to_item)
        test = None
        for name in (TEST_FILE, VALID_FILE):
            if (data_dir / name).exists():
                test = read_questions(data_dir / name, "test", None)
                break
        else:
            if require_test:
                raise DataError(f"{data_dir / TEST_FILE}: file not found (nor {VALID_FILE}; needed to predict)")
        data = TaskData(data_dir, queries, corpus, test)
        check_contract(data, str(data_dir))
        return data

    def write_submission(self, ranking: pd.DataFrame, data: TaskData, path: Path) -> Path:
        """Write the top-20 pids of each test question (by ``rank``), in test-file order, atomically."""
        if data.test is None:
            raise ValueError("no test questions to write a submission for")
        missing_cols = [c for c in ("query_id", "item_id", "rank") if c not in ranking.columns]
        if missing_cols:
            raise ValueError(f"ranking lacks column(s) {missing_cols}")
        item_to_pid = {int(i): p for i, p in zip(data.corpus["item_id"], data.corpus["raw_id"])}
        by_query = {q: g for q, g in ranking.sort_values(["query_id", "rank"], kind="stable").groupby("query_id", sort=False)}
        lines = []
        for qid in data.test["query_id"]:
            if qid not in by_query:
                raise ValueError(f"query {qid!r}: not in the ranking")
            items = list(dict.fromkeys(int(i) for i in by_query[qid]["item_id"]))[: self.metric_k]
            if len(items) < self.metric_k:
                raise ValueError(f"query {qid!r}: only {len(items)} candidates, need {self.metric_k} (raise recall.k)")
            unknown = [i for i in items if i not in item_to_pid]
            if unknown:
                raise ValueError(f"query {qid!r}: item_id {unknown[0]} is not in the corpus")
            lines.append(",".join(item_to_pid[i] for i in items))
        path = Path(path)
        _check_lines(lines, data, str(path), self.metric_k)
        with atomic_path(path) as tmp:  # the umask's permissions, renamed into place only when written
            tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8", newline="\n")
        return path

    def validate_submission(self, path: Path, data: TaskData) -> None:
        """``DataError`` naming the line: wrong line count, not 20 pids, a duplicate or unknown pid."""
        path = Path(path)
        if not path.exists():
            raise DataError(f"{path}: file not found")
        lines = _decode(path).splitlines()
        _check_lines(lines, data, str(path), self.metric_k)


TASK = AQATask()
