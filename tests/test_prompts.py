"""The LLM reranker's wording and the ICL instruction come from the task (issue 16), checked up front."""

from __future__ import annotations

import pytest

from utils.config import ConfigError, load_config
from utils.rerank import llm as lr
from utils.retrieval.icl import DEFAULT_TASK
from utils.tasks import get_task
from utils.tasks.base import task_icl_instruction, task_prompts

ROW = {"query_id": "1_A", "query_text": "What is 2 + 2?", "SubjectName": "Addition", "ConstructName": "Add",
       "QuestionText": "2 + 2", "CorrectAnswerText": "4", "AnswerText": "5"}


def test_each_task_has_its_own_wording_and_the_config_overrides_it():
    eedi, aqa, beir = (task_prompts(get_task(n)) for n in ("eedi", "aqa", "beir"))
    assert lr.query_block(ROW, eedi["query"]) == ("Subject: Addition\nConstruct: Add\nQuestion: 2 + 2\n"
                                                  "Correct answer: 4\nWrong answer: 5\n")
    assert lr.pointwise_tail("Adds wrongly", eedi["pointwise"]) == (
        "Misconception: Adds wrongly\nDoes this misconception explain the wrong answer?\nAnswer:")
    assert lr.query_block(ROW, aqa["query"]) == "Question: What is 2 + 2?\n"
    assert lr.pointwise_tail("Title. Abstract", aqa["pointwise"]) == (
        "Paper: Title. Abstract\nDoes this paper answer the question?\nAnswer:")
    assert lr.listwise_tail(["x", "y"], aqa["listwise"]) == "Papers:\nA. x\nB. y\nWhich paper answers the question?\nAnswer:"
    assert beir == lr.PROMPTS and "misconception" not in " ".join(beir.values()).lower()
    assert lr.query_block(ROW, beir["query"]) == "Query: What is 2 + 2?\n"
    mixed = task_prompts(get_task("eedi"), {"pointwise": "Is {candidate} it?\nAnswer:"})
    assert mixed["pointwise"] == "Is {candidate} it?\nAnswer:" and mixed["query"] == eedi["query"]


def test_icl_instruction_config_then_task_then_generic():
    assert "misconception" in task_icl_instruction(get_task("eedi"))
    assert "paper" in task_icl_instruction(get_task("aqa"))
    assert task_icl_instruction(get_task("beir")) == DEFAULT_TASK and "misconception" not in DEFAULT_TASK
    assert task_icl_instruction(get_task("eedi"), "Find it.") == "Find it."


@pytest.mark.parametrize("prompts, message", [
    ({"pointwse": "x {candidate} Answer:"}, r"unknown key\(s\) \['pointwse'\]"),
    ({"pointwise": "Is it relevant?\nAnswer:"}, r"rerank.prompts.pointwise: needs exactly one field \{candidate\}"),
    ({"listwise": "{options} {candidate}\nAnswer:"}, r"needs exactly one field \{options\}"),
    ({"pointwise": "{candidate}\nRelevant?"}, r"rerank.prompts.pointwise: must end with 'Answer:'"),
    ({"query": ""}, r"rerank.prompts.query: expected a non-empty string"),
])
def test_bad_prompts_are_refused_when_the_config_loads(prompts, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, {"rerank": {"prompts": prompts}})


def test_a_query_field_the_rows_lack_is_named():
    with pytest.raises(ValueError, match=r"rerank.prompts.query names 'Body'.*fields: \['query_id', 'query_text'\]"):
        lr.query_block({"query_id": "q", "query_text": "t"}, "Q: {query_text}\n{Body}\n")
