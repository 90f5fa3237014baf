"""One reranker interface over the families: ``Reranker`` (train, score, item prior, token lengths).

``get_reranker(rc)`` is the only place that reads ``rc["family"]``; stages, notebooks and
inference call the returned object, never ``cross_encoder`` / ``llm`` directly. ``rc`` is the
``rerank`` config section (``utils.config.rerank_config_from``). Each method passes the same
arguments to the family's module (``utils.rerank.cross_encoder``, ``utils.rerank.llm``) that the
stages used to; those modules stay importable on their own (tests and benchmarks use them).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np
import pandas as pd

from utils.rerank.data import NAME


class Reranker(ABC):
    """What 05 / 06 / ``infer`` need from a reranker family."""

    family: str = ""

    def n_negatives(self, rc: dict) -> int:
        """Hard negatives per training group (``rerank.n_negatives``)."""
        return int(rc["n_negatives"])

    @abstractmethod
    def train(self, df: pd.DataFrame, out_dir: str | os.PathLike, rc: dict, seed: int,
              embedder_dir: str | os.PathLike | None = None) -> str:
        """Fit on ``build_rerank_train`` output and save to ``out_dir``; ``embedder_dir``: this round's embedder."""

    @abstractmethod
    def score(self, rows: pd.DataFrame, model_dir: str | os.PathLike, rc: dict) -> np.ndarray:
        """Scores (higher = better) aligned with the rows of ``build_rerank_candidates`` output."""

    def item_prior(self, names: Sequence[str], model_dir: str | os.PathLike) -> np.ndarray:
        """The saved model's fitted bias of each misconception name (0 where none); zeros by default."""
        return np.zeros(len(names), dtype=np.float64)

    @abstractmethod
    def length_stats(self, train_df: pd.DataFrame, model_dir: str | os.PathLike, rc: dict) -> dict:
        """Untruncated token lengths of the training inputs: ``{"lengths": [...], "stats": {...}}``."""


class CrossEncoderReranker(Reranker):
    """``utils.rerank.cross_encoder``: a (query, misconception) encoder with one logit."""

    family = "cross_encoder"

    def train(self, df: pd.DataFrame, out_dir: str | os.PathLike, rc: dict, seed: int,
              embedder_dir: str | os.PathLike | None = None) -> str:
        """``train_cross_encoder``; ``rc["model"]``: ``default`` (MiniLM), ``embedder`` or a path / hub id."""
        from utils.rerank.cross_encoder import train_cross_encoder

        embedder = None if embedder_dir is None else str(embedder_dir)
        model = {"default": None, None: None, "embedder": embedder}.get(rc["model"], rc["model"])
        return train_cross_encoder(df, model, out_dir, epochs=rc["epochs"], lr=rc["lr"], batch_size=rc["batch_size"],
                                   max_length=rc["max_length"], loss=rc["loss"], seed=seed, logging_steps=50,
                                   head=rc["head"], num_layers=rc["num_layers"], max_groups=rc["max_groups"],
                                   item_bias_l2=rc["item_bias_l2"])

    def score(self, rows: pd.DataFrame, model_dir: str | os.PathLike, rc: dict) -> np.ndarray:
        """Raw logits of ``score_cross_encoder``."""
        from utils.rerank.cross_encoder import score_cross_encoder

        return score_cross_encoder(str(model_dir), rows["query_text"].tolist(), rows[NAME].tolist(),
                                   batch_size=rc["score_batch_size"], max_length=rc["max_length"])

    def item_prior(self, names: Sequence[str], model_dir: str | os.PathLike) -> np.ndarray:
        """Biases fitted beside a product-of-experts model (``item_bias_l2``); zeros without them."""
        from utils.rerank.cross_encoder import item_bias

        bias = item_bias(model_dir)
        return np.array([bias.get(n, 0.0) for n in names], dtype=np.float64)

    def length_stats(self, train_df: pd.DataFrame, model_dir: str | os.PathLike, rc: dict) -> dict:
        """Token lengths of the (query, misconception) pairs with the saved model's tokenizer."""
        from transformers import AutoTokenizer

        from utils.rerank.llm import length_stats

        tok = AutoTokenizer.from_pretrained(str(model_dir))
        enc = tok(train_df["query_text"].tolist(), train_df[NAME].tolist(), truncation=False)
        lengths = [len(x) for x in enc["input_ids"]]
        return {"lengths": lengths, "stats": length_stats(lengths)}


class LLMReranker(Reranker):
    """``utils.rerank.llm``: a LoRA-tuned causal LM, ``pointwise`` (Yes/No) or ``listwise`` (lettered options)."""

    MODES = ("pointwise", "listwise")

    def __init__(self, mode: str):
        if mode not in self.MODES:
            raise ValueError(f"unknown LLM reranker mode {mode!r}; choose one of {self.MODES}")
        self.mode = mode
        self.family = f"llm_{mode}"

    def n_negatives(self, rc: dict) -> int:
        """Listwise: ``window - 1`` (a training group fills one scoring window); pointwise: ``n_negatives``."""
        return int(rc["window"]) - 1 if self.mode == "listwise" else int(rc["n_negatives"])

    def train(self, df: pd.DataFrame, out_dir: str | os.PathLike, rc: dict, seed: int,
              embedder_dir: str | os.PathLike | None = None) -> str:
        """``train_llm_reranker`` with ``rc["lora"]`` (r, alpha, dropout, optional target_modules) over ``rc["model"]``."""
        from utils.rerank.llm import train_llm_reranker

        lora = rc["lora"]
        return train_llm_reranker(df, rc["model"], out_dir, mode=self.mode,
                                  r=lora.get("r", 16), alpha=lora.get("alpha", 32), dropout=lora.get("dropout", 0.05),
                                  **({"target_modules": lora["target_modules"]} if "target_modules" in lora else {}),
                                  load_in_4bit=rc["load_in_4bit"], epochs=rc["epochs"], lr=rc["lr"],
                                  batch_size=rc["batch_size"], max_length=rc["max_length"], seed=seed,
                                  gradient_checkpointing=rc["gradient_checkpointing"], prompts=rc.get("prompts"),
                                  compile=rc["compile"],
                                  listwise_permutations=rc["permutations"])

    def score(self, rows: pd.DataFrame, model_dir: str | os.PathLike, rc: dict) -> np.ndarray:
        """``score_llm_reranker`` (mode, base and wording from the adapter's config)."""
        from utils.rerank.llm import score_llm_reranker

        return score_llm_reranker(rows, str(model_dir), batch_size=rc["score_batch_size"], max_length=rc["max_length"],
                                  window=rc["window"], stride=rc["stride"], tta=rc["tta"])

    def length_stats(self, train_df: pd.DataFrame, model_dir: str | os.PathLike, rc: dict) -> dict:
        """Prompt lengths (``prompt_length_stats``) with the adapter's tokenizer."""
        from utils.lora import load_tokenizer
        from utils.rerank.llm import prompt_length_stats

        stats = prompt_length_stats(train_df, load_tokenizer(str(model_dir)), mode=self.mode, window=rc["window"],
                                    verbose=False, prompts=rc.get("prompts"))
        return {"lengths": stats.pop("lengths", []), "stats": stats}


FAMILIES = {
    "cross_encoder": CrossEncoderReranker,
    "llm_pointwise": lambda: LLMReranker("pointwise"),
    "llm_listwise": lambda: LLMReranker("listwise"),
}


def get_reranker(rc: dict | str) -> Reranker:
    """The reranker of ``rc["family"]`` (or a family name); an unknown family is a ValueError naming the choices."""
    family = rc if isinstance(rc, str) else rc.get("family")
    if family not in FAMILIES:
        raise ValueError(f"unknown rerank.family {family!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[family]()
