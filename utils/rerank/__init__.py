"""Rerankers: ``get_reranker(rc)`` gives the family's ``Reranker`` (``utils.rerank.base``)."""

from utils.rerank.base import FAMILIES, CrossEncoderReranker, LLMReranker, Reranker, get_reranker

__all__ = ["FAMILIES", "CrossEncoderReranker", "LLMReranker", "Reranker", "get_reranker"]
