"""Any retrieval data set in the BEIR layout, as a task (no code per data set).

Layout (as read by BEIR's ``GenericDataLoader``)::

    corpus.jsonl       {"_id": str, "title": str, "text": str, ...}   one document a line
    queries.jsonl      {"_id": str, "text": str, ...}                 one query a line
    qrels/<split>.tsv  query-id<TAB>corpus-id<TAB>score               header line first; score int, > 0 = relevant

Every ``qrels/*.tsv`` (train, dev, test, ...) is pooled: the suite does its own CV and
validation split. A query with a positive in any of them is a labelled training query; the
queries of ``queries.jsonl`` that appear in no qrels file are the ones to predict (``test``);
a query judged only non-relevant (score <= 0) is in neither. Both query tables carry a task
field ``splits`` (the qrels files naming the query, e.g. ``"train"`` or ``"dev,test"``); the
corpus keeps ``title`` and ``text`` beside ``item_text`` (``title. text``).
The submission is a TREC run file (``qid Q0 docid rank score run_name``), top ``metric_k`` per
test query.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from ..io import atomic_path
from .base import DataError, TaskData, check_contract

LAYOUT = "expected the BEIR layout: corpus.jsonl, queries.jsonl, qrels/<split>.tsv"
QRELS_HEADER = ["query-id", "corpus-id", "score"]
SAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "beir_sample"


def _err(path: Path, lineno: int, field: str | None, msg: str) -> DataError:
    where = f"{path}: line {lineno}" + (f", field '{field}'" if field else "")
    return DataError(f"{where}: {msg}")


def _read_jsonl(path: Path, kind: str, required: tuple[str, ...]) -> list[dict]:
    """Rows of a JSON-lines file; ``_id`` (str or int) unique and non-empty, ``required`` fields strings."""
    if not path.is_file():
        raise DataError(f"{path}: missing {kind} file; {LAYOUT}")
    rows: list[dict] = []
    seen: dict[str, int] = {}
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise _err(path, lineno, None, f"not UTF-8 ({e.reason} at byte {e.start})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise _err(path, lineno, None, f"invalid JSON ({e.msg}, column {e.colno})") from None
            if not isinstance(obj, dict):
                raise _err(path, lineno, None, f"expected a JSON object, got {type(obj).__name__}")
            if "_id" not in obj:
                raise _err(path, lineno, "_id", "missing")
            rid = obj["_id"]
            if isinstance(rid, bool) or not isinstance(rid, (str, int)):
                raise _err(path, lineno, "_id", f"expected a string, got {json.dumps(rid)}")
            rid = str(rid)
            if not rid.strip():
                raise _err(path, lineno, "_id", "empty")
            if rid in seen:
                raise _err(path, lineno, "_id", f"duplicate {rid!r} (first on line {seen[rid]})")
            seen[rid] = lineno
            row = {"_id": rid, "_line": lineno}
            for field in ("title", "text"):
                if field not in obj:
                    if field in required:
                        raise _err(path, lineno, field, "missing")
                    row[field] = ""
                    continue
                value = obj[field]
                if value is None and field not in required:
                    value = ""
                if not isinstance(value, str):
                    raise _err(path, lineno, field, f"expected a string, got {json.dumps(value)[:40]}")
                row[field] = value
            rows.append(row)
    if not rows:
        raise DataError(f"{path}: no {kind} (the file is empty)")
    return rows


def _read_qrels(path: Path, query_ids: set[str], doc_ids: set[str]) -> list[tuple[str, str, int]]:
    """``(query-id, corpus-id, score)`` rows of one qrels file, every id checked."""
    rows: list[tuple[str, str, int]] = []
    header_seen = False
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise _err(path, lineno, None, f"not UTF-8 ({e.reason} at byte {e.start})") from None
            if not line.strip():
                continue
            cells = [c.strip() for c in line.split("\t")]
            if len(cells) != 3:
                raise _err(path, lineno, None, f"expected 3 tab-separated columns (query-id, corpus-id, score), got {len(cells)}")
            if not header_seen:
                header_seen = True
                if [c.lower().replace("_", "-") for c in cells] != QRELS_HEADER:
                    raise _err(path, lineno, None, f"expected the header {chr(9).join(QRELS_HEADER)!r}, got {line!r}")
                continue
            qid, did, score = cells
            try:
                value = int(score)
            except ValueError:
                raise _err(path, lineno, "score", f"expected an integer, got {score!r}") from None
            if qid not in query_ids:
                raise _err(path, lineno, "query-id", f"{qid!r} is not in queries.jsonl")
            if did not in doc_ids:
                raise _err(path, lineno, "corpus-id", f"{did!r} is not in corpus.jsonl")
            rows.append((qid, did, value))
    return rows


def _join_title(title: str, text: str) -> str:
    """``title. text``; just the one that is non-empty; no extra '.' after a title ending in punctuation."""
    title, text = title.strip(), text.strip()
    if not title:
        return text
    if not text:
        return title
    return f"{title}{' ' if title[-1] in '.?!:;' else '. '}{text}"


def _score_strings(scores: list[float], ranks: list[int], k: int) -> list[str]:
    """The given scores when they strictly fall with rank (trec_eval sorts by score), else ``k + 1 - rank``."""
    shown = [format(float(s), ".8g") for s in scores]
    values = [float(s) for s in shown]
    if all(math.isfinite(v) for v in values) and all(a > b for a, b in zip(values, values[1:])):
        return shown
    return [str(k + 1 - r) for r in ranks]


class BeirTask:
    """The ``beir`` task: a BEIR folder in, a TREC run file out."""

    name = "beir"
    sample_dir = SAMPLE_DIR

    def __init__(self, metric_k: int = 10, run_name: str = "suite") -> None:
        if metric_k < 1:
            raise ValueError(f"metric_k must be >= 1, got {metric_k}")
        if not run_name or any(c.isspace() for c in run_name):
            raise ValueError(f"run_name must be one word, got {run_name!r}")
        self.metric_k = int(metric_k)
        self.submission_file = "run.trec"
        # under the user's config; the sample's passages are p95 55 / max 60 MiniLM tokens (01 prints them)
        self.config_defaults = {"train": {"max_passage_length": 64}}
        self.run_name = run_name

    def load(self, data_dir: Path, require_test: bool = False) -> TaskData:
        """Read ``corpus.jsonl``, ``queries.jsonl`` and every ``qrels/*.tsv``; errors name file, line and field."""
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise DataError(f"{data_dir}: not a folder; {LAYOUT}")
        docs = _read_jsonl(data_dir / "corpus.jsonl", "documents", ("text",))
        queries = _read_jsonl(data_dir / "queries.jsonl", "queries", ("text",))
        qrels_dir = data_dir / "qrels"
        qrels_files = sorted(qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
        if not qrels_files:
            raise DataError(f"{qrels_dir}: no qrels file (qrels/<split>.tsv, e.g. qrels/train.tsv); {LAYOUT}")

        item_of = {d["_id"]: i for i, d in enumerate(docs)}
        query_ids = {q["_id"] for q in queries}
        positives: dict[str, set[int]] = {}
        splits: dict[str, list[str]] = {}
        for path in qrels_files:
            for qid, did, score in _read_qrels(path, query_ids, set(item_of)):
                positives.setdefault(qid, set())
                if score > 0:
                    positives[qid].add(item_of[did])
                if path.stem not in splits.setdefault(qid, []):
                    splits[qid].append(path.stem)

        corpus = pd.DataFrame({
            "item_id": range(len(docs)),
            "item_text": [_join_title(d["title"], d["text"]) for d in docs],
            "raw_id": [d["_id"] for d in docs],
            "title": [d["title"] for d in docs],
            "text": [d["text"] for d in docs],
        })

        def table(rows: list[dict]) -> pd.DataFrame:
            return pd.DataFrame({
                "query_id": [q["_id"] for q in rows],
                "group": [q["_id"] for q in rows],
                "query_text": [q["text"] for q in rows],
                "positives": [tuple(sorted(positives.get(q["_id"], ()))) for q in rows],
                "splits": [",".join(splits.get(q["_id"], [])) for q in rows],
            }, columns=["query_id", "group", "query_text", "positives", "splits"])

        labelled = table([q for q in queries if positives.get(q["_id"])])
        unjudged = [q for q in queries if q["_id"] not in positives]
        test = table(unjudged) if unjudged else None
        if test is None and require_test:
            raise DataError(f"{data_dir / 'queries.jsonl'}: no query to predict (every query appears in a qrels file)")
        data = TaskData(data_dir=data_dir, queries=labelled, corpus=corpus, test=test)
        check_contract(data, str(data_dir))
        return data

    def write_submission(self, ranking: pd.DataFrame, data: TaskData, path: Path) -> Path:
        """Write a TREC run file for ``data.test``: top ``metric_k`` unique items per query, in test order."""
        if data.test is None:
            raise ValueError("no test queries to write a run for (data.test is None)")
        raw = dict(zip(data.corpus["item_id"].tolist(), data.corpus["raw_id"].tolist()))
        groups = {q: g for q, g in ranking.sort_values(["query_id", "rank"], kind="stable").groupby("query_id", sort=False)}
        lines = []
        for qid in data.test["query_id"]:
            g = groups.get(qid)
            if g is None or g.empty:
                raise ValueError(f"test query {qid!r} has no row in the ranking")
            g = g.drop_duplicates("item_id").head(self.metric_k)
            unknown = [i for i in g["item_id"].tolist() if i not in raw]
            if unknown:
                raise ValueError(f"test query {qid!r}: item_id {unknown[0]!r} is not in the corpus")
            ranks = list(range(1, len(g) + 1))
            scores = _score_strings(g["score"].tolist(), ranks, self.metric_k)
            for item, r, s in zip(g["item_id"].tolist(), ranks, scores):
                lines.append(f"{qid} Q0 {raw[item]} {r} {s} {self.run_name}\n")
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text("".join(lines), encoding="utf-8")
        return path

    def validate_submission(self, path: Path, data: TaskData) -> None:
        """Raise ``DataError`` naming the line: wrong column count, unknown qid/docid, duplicate docid, bad rank/score, missing query."""
        path = Path(path)
        if data.test is None:
            raise DataError(f"{path}: no test queries to check the run against (data.test is None)")
        if not path.is_file():
            raise DataError(f"{path}: missing run file")
        test_ids = set(data.test["query_id"])
        doc_ids = set(data.corpus["raw_id"])
        seen: dict[str, dict[str, int]] = {}
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                cells = line.split()
                if len(cells) != 6:
                    raise _err(path, lineno, None, f"expected 6 columns (qid Q0 docid rank score run_name), got {len(cells)}")
                qid, _, did, rank, score, _ = cells
                if qid not in test_ids:
                    raise _err(path, lineno, "qid", f"{qid!r} is not a test query")
                if did not in doc_ids:
                    raise _err(path, lineno, "docid", f"{did!r} is not in the corpus")
                try:
                    int(rank)
                except ValueError:
                    raise _err(path, lineno, "rank", f"expected an integer, got {rank!r}") from None
                try:
                    float(score)
                except ValueError:
                    raise _err(path, lineno, "score", f"expected a number, got {score!r}") from None
                docs = seen.setdefault(qid, {})
                if did in docs:
                    raise _err(path, lineno, "docid", f"duplicate {did!r} for query {qid!r} (first on line {docs[did]})")
                docs[did] = lineno
        missing = [q for q in data.test["query_id"] if q not in seen]
        if missing:
            raise DataError(f"{path}: test query {missing[0]!r} has no line ({len(missing)} missing)")


TASK = BeirTask()
