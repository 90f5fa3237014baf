"""What each notebook does, as functions over a ``RunContext`` (notebooks stay narratives).

A run folder is ``<out>/round_<r>/``; the split and the embedding cache live in ``<out>/``.
Round r mines with round r-1's fine-tuned embedder (round 1 with the base model).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import io
from .config import DEFAULTS, REPO_ROOT, SAMPLE_DATA_DIR, load_config
from .data import Competition, load_competition, to_pairs
from .embed import Embedder, cached_encode
from .metrics import evaluate, paired_bootstrap, per_query_ap, ranking_lists, recall_at_k
from .mining import mine_hard_negatives, to_flag_records
from .recall import retrieve
from .splits import make_split


@dataclass
class RunContext:
    """Everything a notebook needs: config, data, split and the round's paths."""

    run_dir: Path
    split: str
    round_idx: int
    config: dict
    comp: Competition
    pairs: pd.DataFrame  # all train.csv pairs, with a ``fold`` column
    test_pairs: pd.DataFrame  # test.csv pairs (empty frame when there is no test.csv)
    base_model: str
    extra: dict = field(default_factory=dict)

    @property
    def out_dir(self) -> Path:
        return self.run_dir.parent

    @property
    def cache_dir(self) -> Path:
        return self.out_dir / "cache"

    @property
    def misconceptions(self) -> pd.DataFrame:
        return self.comp.misconceptions

    @property
    def train_pairs(self) -> pd.DataFrame:
        """Labelled training pairs (what the models learn from)."""
        p = self.pairs
        return p[(p["fold"] == "train") & p["MisconceptionId"].notna()].reset_index(drop=True)

    @property
    def val_pairs(self) -> pd.DataFrame:
        """Labelled validation pairs (what is scored); empty for ``split=full``."""
        p = self.pairs
        return p[(p["fold"] == "val") & p["MisconceptionId"].notna()].reset_index(drop=True)

    @property
    def embedder_dir(self) -> Path:
        return self.run_dir / "embedder"

    @property
    def reranker_dir(self) -> Path:
        return self.run_dir / "reranker"

    def round_dir(self, r: int) -> Path:
        return self.out_dir / f"round_{r}"

    @property
    def mining_model(self) -> str:
        """Round r-1's fine-tuned embedder, or the base model in round 1."""
        if self.round_idx > 1:
            prev = self.round_dir(self.round_idx - 1) / "embedder"
            if not (prev / "embedder_config.json").exists():
                raise FileNotFoundError(f"round {self.round_idx} mines with {prev}, which does not exist: run round {self.round_idx - 1} first")
            return str(prev)
        return self.base_model

    def embedder(self, which: str | os.PathLike = "current") -> Embedder:
        """``"base"``, ``"mining"``, ``"current"`` (this round's fine-tuned) or a path."""
        e = self.config["embedder"]
        path = {"base": self.base_model, "mining": self.mining_model, "current": str(self.embedder_dir)}.get(str(which), str(which))
        if str(which) == "current" and not (self.embedder_dir / "embedder_config.json").exists():
            raise FileNotFoundError(f"{self.embedder_dir}: no fine-tuned embedder yet (run 02_train_embedder)")
        fresh = path == self.base_model
        emb = Embedder(path, pooling=e["pooling"] if fresh else None,
                       max_length=e["max_length"] if fresh else None,
                       query_prefix=e["query_prefix"], passage_prefix=e["passage_prefix"])
        if (e.get("icl") or {}).get("enabled"):
            emb.tokenizer.truncation_side = "left"  # a long ICL prompt loses its first example, never the query
        return emb

    def metrics(self, section: str, values: dict) -> dict:
        return io.update_metrics(self.run_dir, section, values)


def load_context(
    run_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    split: str = "v1",
    round_idx: int = 1,
    config_path: str | os.PathLike | None = None,
    model: str | None = None,
) -> RunContext:
    """Load config, data and split (made once per ``<out>`` folder, then read back).

    Relative paths are taken from the repository root, so a notebook opened in Jupyter
    (cwd ``notebooks/``) and one run by papermill find the same files.
    """
    run_dir = _from_root(run_dir)
    data_dir = _from_root(data_dir) if data_dir else None
    config_path = _from_root(config_path) if config_path else None
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = load_config(config_path)
    configure_threads(cfg["cpu_threads"])
    comp = load_competition(data_dir or SAMPLE_DATA_DIR, require_test=(split == "full"))
    pairs = to_pairs(comp.train, cfg["data"]["query_template"])
    split_path = run_dir.parent / "split.parquet"
    if split_path.exists():
        split_df = pd.read_parquet(split_path)
        if set(split_df["QuestionId"]) != set(comp.train["QuestionId"]):
            raise ValueError(f"{split_path} was made for other data; remove it or use another --out")
    else:
        split_df = make_split(comp.train, split, seed=cfg["seed"], **cfg["split"])
        io.write_parquet(split_path, split_df)
    pairs["fold"] = pairs["QuestionId"].map(split_df.set_index("QuestionId")["fold"])
    test_pairs = to_pairs(comp.test, cfg["data"]["query_template"]) if comp.test is not None else pairs.iloc[:0].copy()
    return RunContext(run_dir, split, int(round_idx), cfg, comp, pairs, test_pairs,
                      model or cfg["embedder"]["model"])


def configure_threads(setting: int | str) -> None:
    """Set torch's CPU threads. ``auto``: 1 thread on machines with <= 2 CPUs.

    Measured on the 2-vCPU build machine: one thread ran a 1024^2 matmul at 34.9 GFLOP/s vs
    26.3 with two, MiniLM encoding at 14.3 vs 11.7 texts/s, and a training step 1.7x faster
    (the second vCPU is shared, so two threads mostly wait on each other).
    """
    import torch

    if setting == "auto":
        if (os.cpu_count() or 1) <= 2:
            torch.set_num_threads(1)
    elif setting:
        torch.set_num_threads(int(setting))


def _from_root(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def corpus_ids(ctx: RunContext) -> np.ndarray:
    return ctx.misconceptions["MisconceptionId"].to_numpy()


def encode_corpus(ctx: RunContext, emb: Embedder) -> np.ndarray:
    e = ctx.config["embedder"]
    return cached_encode(emb, ctx.misconceptions["MisconceptionName"].tolist(), ctx.cache_dir,
                         batch_size=e["batch_size"], show_progress=ctx.config["show_progress"])


def icl_pairs(ctx: RunContext, pairs: pd.DataFrame) -> pd.DataFrame:
    """``pairs`` with ``query_text`` turned into an in-context-examples prompt when ``embedder.icl`` is on."""
    icl = ctx.config["embedder"].get("icl") or {}
    if not icl.get("enabled") or pairs.empty:
        return pairs
    from .icl import DEFAULT_TASK, with_icl_queries

    return with_icl_queries(pairs, ctx.train_pairs, ctx.misconceptions, k=icl["k"], task=icl.get("task") or DEFAULT_TASK,
                            seed=ctx.config["seed"], same_subject=icl.get("same_subject", True))


def encode_queries(ctx: RunContext, emb: Embedder, pairs: pd.DataFrame) -> np.ndarray:
    e = ctx.config["embedder"]
    return emb.encode_queries(icl_pairs(ctx, pairs)["query_text"].tolist(), batch_size=e["batch_size"],
                              show_progress=ctx.config["show_progress"])


def rank(ctx: RunContext, emb: Embedder, pairs: pd.DataFrame, k: int | None = None) -> pd.DataFrame:
    """Rank the corpus for ``pairs`` with ``emb`` (top ``recall.k``)."""
    k = k or ctx.config["recall"]["k"]
    return retrieve(pairs["QuestionId_Answer"].tolist(), encode_queries(ctx, emb, pairs), corpus_ids(ctx), encode_corpus(ctx, emb), k)


# -- 01: mining ----------------------------------------------------------------------------
def mine(ctx: RunContext) -> tuple[list[dict], dict]:
    """Mine hard negatives for the labelled training pairs; write ``hard_negatives.jsonl``."""
    m = ctx.config["mining"]
    emb = ctx.embedder("mining")
    train = ctx.train_pairs
    if train.empty:
        raise ValueError("no labelled training pairs in this split")
    records, q, c, pos_scores, neg_scores = mine_records(ctx, emb, train)
    io.write_jsonl(ctx.run_dir / "hard_negatives.jsonl", records)
    ranking = retrieve(train["QuestionId_Answer"].tolist(), q, corpus_ids(ctx), c, 100)
    stats = {"mining_model": emb.name_or_path, "n_queries": len(records), "n_negatives": m["n"],
             "train_map@25_of_mining_model": evaluate(ranking, train)["map@25"],
             "mean_pos_score": float(np.mean(pos_scores)),
             "mean_neg_score": float(np.mean([s for r in neg_scores for s in r]))}
    ctx.metrics("01_mine_hn", stats)
    return records, stats


def mine_records(ctx: RunContext, emb: Embedder, pairs: pd.DataFrame):
    """The config's mining recipe on labelled ``pairs`` with ``emb``.

    Returns ``(records, query_emb, corpus_emb, pos_scores, neg_scores)``; records are FlagEmbedding's.
    """
    m = ctx.config["mining"]
    q = encode_queries(ctx, emb, pairs)
    c = encode_corpus(ctx, emb)
    id_to_row = {int(v): i for i, v in enumerate(corpus_ids(ctx))}
    positives = [id_to_row[int(v)] for v in pairs["MisconceptionId"]]
    negs, neg_scores, pos_scores = mine_hard_negatives(
        q, c, positives, m["range_min"], m["range_max"], m["n"], m["max_score_ratio"], ctx.config["seed"])
    records = to_flag_records(icl_pairs(ctx, pairs), ctx.misconceptions, negs, neg_scores, pos_scores, m["prompt"])
    return records, q, c, pos_scores, neg_scores


# -- 02: training --------------------------------------------------------------------------
def train(ctx: RunContext) -> list[dict]:
    """Fine-tune the base model (or the previous round's, see ``train.init``) on this round's negatives."""
    log, start = fit_embedder(ctx, ctx.run_dir / "hard_negatives.jsonl", ctx.embedder_dir)
    ctx.metrics("02_train_embedder", {"start_model": start, "steps": log[-1]["step"] + 1,
                                      "final_loss": log[-1]["loss"], "texts_per_s": log[-1]["texts_per_s"]})
    return log


def fit_embedder(ctx: RunContext, records_path: Path, out_dir: Path, start: str | None = None) -> tuple[list[dict], str]:
    """The config's training recipe on the records in ``records_path``, saved to ``out_dir``.

    ``start``: the model to fine-tune (default: by ``train.init``). Returns the loss log and the start model.
    """
    from .train_embedder import TrainConfig, train_embedder

    tcfg = dict(ctx.config["train"])
    tcfg.setdefault("seed", ctx.config["seed"])
    init = tcfg.pop("init", DEFAULTS["train"]["init"])  # "previous": round r continues from r-1; "base": restarts
    gpus = int(tcfg.pop("gpus", 1))  # > 1: torchrun, one process per GPU, negatives shared across GPUs
    start = start or (ctx.mining_model if init == "previous" else ctx.base_model)
    cfg = TrainConfig.from_dict(tcfg)
    if gpus > 1:
        from .train_embedder import train_distributed

        log = train_distributed(records_path, start, out_dir, cfg, nproc=gpus)
    else:
        log = train_embedder(io.read_jsonl(records_path), start, out_dir, cfg, show_progress=ctx.config["show_progress"])
    return log, start


# -- 03/04: evaluation and recall ------------------------------------------------------------
def evaluate_embedders(ctx: RunContext) -> dict[str, pd.DataFrame]:
    """Rankings of the validation pairs by the base and the fine-tuned embedder."""
    val = ctx.val_pairs
    out = {}
    for name in ("base", "current"):
        out["finetuned" if name == "current" else name] = rank(ctx, ctx.embedder(name), val)
    io.write_parquet(ctx.run_dir / "base_val.parquet", out["base"])  # the zero-shot stage of a CV report
    save_val_pairs(ctx)
    ctx.metrics("03_eval_embedder", {k: evaluate(v, val) for k, v in out.items()})
    return out


def recall_candidates(ctx: RunContext) -> dict[str, pd.DataFrame]:
    """Top-K candidates of validation and test pairs from this round's embedder (parquet)."""
    emb = ctx.embedder("current")
    out = {}
    for name, pairs in (("val", ctx.val_pairs), ("test", ctx.test_pairs)):
        ranking = rank(ctx, emb, pairs) if len(pairs) else pd.DataFrame(columns=["QuestionId_Answer", "MisconceptionId", "rank", "score"])
        io.write_parquet(ctx.run_dir / f"candidates_{name}.parquet", ranking)
        out[name] = ranking
    if len(ctx.val_pairs):
        ctx.metrics("04_recall", {"val": evaluate(out["val"], ctx.val_pairs)})
    save_val_pairs(ctx)
    return out


def save_val_pairs(ctx: RunContext) -> None:
    """The labelled pairs this round is scored on, so that ``utils.cv`` pools folds without the data."""
    io.write_parquet(ctx.run_dir / "val_pairs.parquet", ctx.val_pairs[["QuestionId_Answer", "QuestionId", "MisconceptionId"]])


def per_group_map(ranking: pd.DataFrame, pairs: pd.DataFrame, column: str = "SubjectName") -> pd.DataFrame:
    """MAP@25 per value of ``column`` (e.g. subject), with counts, best first."""
    rows = []
    for value, grp in pairs.groupby(column):
        r = evaluate(ranking[ranking["QuestionId_Answer"].isin(grp["QuestionId_Answer"])], grp)
        rows.append({column: value, "n": len(grp), "map@25": r["map@25"], "recall@25": r["recall@25"]})
    return pd.DataFrame(rows).sort_values(["n", "map@25"], ascending=False).reset_index(drop=True)


# -- 08: submission ------------------------------------------------------------------------
def submit(ctx: RunContext, ranking: pd.DataFrame) -> Path | None:
    """Write and validate ``submission.csv`` for test.csv in the round, in ``<out>/`` and in ``<submission.dir>/<run>/``.

    All or none: built and validated once, staged beside every target, then renamed into place,
    so a failure leaves none of this call's copies.
    """
    from contextlib import ExitStack

    from .submission import write_submission

    if ctx.test_pairs.empty:
        return None
    k = ctx.config["submission"]["k"]
    ids = ctx.test_pairs["QuestionId_Answer"].tolist()
    valid = corpus_ids(ctx).tolist()
    path = ctx.run_dir / "submission.csv"
    targets = [path, ctx.out_dir / "submission.csv"]
    if ctx.config["submission"].get("dir"):
        targets.append(_from_root(ctx.config["submission"]["dir"]) / ctx.out_dir.name / "submission.csv")
    with ExitStack() as stack:  # each staged file is renamed onto its target only if the block succeeds
        staged = [stack.enter_context(io.atomic_path(t)) for t in targets]
        write_submission(ranking, ids, valid, staged[0], k)
        for tmp in staged[1:]:
            tmp.write_bytes(staged[0].read_bytes())
    return path


def load_split(ctx: RunContext) -> pd.DataFrame:
    return pd.read_parquet(ctx.out_dir / "split.parquet")


# -- 05/06: reranker -------------------------------------------------------------------------
RERANK_DEFAULTS = {
    "family": "cross_encoder",  # cross_encoder | llm_pointwise | llm_listwise
    "model": "default",  # cross-encoder init (encoder; "embedder" = this round's fine-tuned one) or base LLM
    "head": "mean",  # cross-encoder head: mean (pooled tokens + linear) | cls (sequence-classification head)
    "num_layers": None,  # cross-encoder: keep only the first N layers (speed on CPU); None = all
    "max_groups": None,  # cross-encoder: train on a seeded sample of N query groups (CPU time budget)
    "top_k": 25,  # candidates per query shown to the reranker (training and scoring)
    "candidates": "current",  # training candidates from: current | mining | crossfit (see reranker_train_candidates)
    "crossfit_folds": 3,
    # cross-encoder, listwise: > 0 trains against logit + w * retrieval score (a correction to the retriever)
    "retrieval_weight": 0.0,
    # cross-encoder, listwise: an L2 weight fits a per-misconception bias first and trains the model
    # with it (product of experts), so it does not memorise which misconceptions were gold; null = off
    "item_bias_l2": None,
    # 06: score = logit + weight * fitted bias (0 for misconceptions never in training groups); 0 = the
    # debiased model alone, 1 = the product of experts as trained; "tune" = best of ITEM_PRIOR_GRID on validation
    "item_prior_weight": 0.0,
    "n_negatives": 7,
    "epochs": 1.0,
    "lr": 2e-5,
    "batch_size": 16,
    "max_length": 256,
    "loss": "pointwise",  # cross-encoder: pointwise | listwise
    "lora": {"r": 16, "alpha": 32, "dropout": 0.05},
    "load_in_4bit": False,
    "window": 8,
    "stride": 4,
    "tta": True,
    # 06's final score: blend of retrieval and reranker scores. true = alpha tuned on validation (with
    # split full, where nothing is held out: UNTUNED_BLEND_ALPHA); false = the reranker alone;
    # a number in [0, 1] = that alpha (e.g. the one 06 chose on v2, for the split-full run)
    "blend": True,
    "score_batch_size": 64,
}


def _section(config: dict, name: str, defaults: dict) -> dict:
    """Config section ``name`` over its defaults; an unknown key is an error."""
    given = config.get(name) or {}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {name} option(s) {unknown}; known: {sorted(defaults)}")
    return {**defaults, **given}


def rerank_config(ctx: RunContext) -> dict:
    return rerank_config_from(ctx.config)


def rerank_config_from(config: dict) -> dict:
    """The ``rerank`` section of a whole config over ``RERANK_DEFAULTS``, checked."""
    cfg = _section(config, "rerank", RERANK_DEFAULTS)
    if cfg["family"] not in ("cross_encoder", "llm_pointwise", "llm_listwise"):
        raise ValueError(f"rerank.family {cfg['family']!r}: choose cross_encoder, llm_pointwise or llm_listwise")
    return cfg


def train_reranker(ctx: RunContext) -> dict:
    """Training groups from this round's recall on the training pairs, then fine-tune the reranker."""
    from .rerank_data import build_rerank_train

    rc = rerank_config(ctx)
    train = ctx.train_pairs
    cands = reranker_train_candidates(ctx, rc)
    n_neg = rc["window"] - 1 if rc["family"] == "llm_listwise" else rc["n_negatives"]
    df = build_rerank_train(cands, train, ctx.misconceptions, n_neg, rc["top_k"], ctx.config["seed"])
    gold_in_head = recall_at_k(ranking_lists(cands, train["QuestionId_Answer"].tolist()),
                               train["MisconceptionId"].astype(int).tolist(), rc["top_k"])
    stats = {"family": rc["family"], "candidates": rc["candidates"], "groups": int(df["group"].nunique()),
             "rows": len(df), "gold_in_top_k_of_train_queries": gold_in_head}
    if rc["family"] == "cross_encoder":
        from .cross_encoder import train_cross_encoder

        model = {"default": None, None: None, "embedder": str(ctx.embedder_dir)}.get(rc["model"], rc["model"])
        train_cross_encoder(df, model, ctx.reranker_dir, epochs=rc["epochs"], lr=rc["lr"], batch_size=rc["batch_size"],
                            max_length=rc["max_length"], loss=rc["loss"], seed=ctx.config["seed"],
                            logging_steps=50, head=rc["head"], num_layers=rc["num_layers"],
                            max_groups=rc["max_groups"], retrieval_weight=rc["retrieval_weight"],
                            item_bias_l2=rc["item_bias_l2"])
    else:
        from .llm_reranker import train_llm_reranker

        lora = rc["lora"]
        train_llm_reranker(df, rc["model"], ctx.reranker_dir, mode=rc["family"].split("_")[1],
                           r=lora.get("r", 16), alpha=lora.get("alpha", 32), dropout=lora.get("dropout", 0.05),
                           **({"target_modules": lora["target_modules"]} if "target_modules" in lora else {}),
                           load_in_4bit=rc["load_in_4bit"], epochs=rc["epochs"], lr=rc["lr"],
                           batch_size=rc["batch_size"], max_length=rc["max_length"], seed=ctx.config["seed"])
    log = io.read_json(ctx.reranker_dir / "train_log.json", default={})
    ctx.metrics("05_train_reranker", stats)
    return {"stats": stats, "log": log, "train_df": df}


def reranker_train_candidates(ctx: RunContext, rc: dict) -> pd.DataFrame:
    """Candidates of the training pairs the reranker learns from, by ``rerank.candidates``.

    ``current``: this round's fine-tuned embedder (it was trained on these questions, so the
    gold is nearly always first); ``mining``: the model this round mined with (base model in
    round 1); ``crossfit``: out-of-fold embedders (``utils.crossfit``), candidates like those
    of unseen questions at the price of ``crossfit_folds`` extra fine-tunes.
    """
    k = max(rc["top_k"], rc["n_negatives"] + 1)
    source = rc["candidates"]
    if source == "crossfit":
        from .crossfit import crossfit_candidates

        return crossfit_candidates(ctx, int(rc["crossfit_folds"]), k)
    if source not in ("current", "mining"):
        raise ValueError(f"rerank.candidates {source!r}: choose current, mining or crossfit")
    return rank(ctx, ctx.embedder(source), ctx.train_pairs, k=k)


def score_reranker(ctx: RunContext, candidates: pd.DataFrame, pairs: pd.DataFrame) -> np.ndarray:
    """Reranker scores for the top-``top_k`` rows of ``candidates`` (in their row order)."""
    from .rerank_data import build_rerank_candidates

    rc = rerank_config(ctx)
    rows = build_rerank_candidates(candidates, pairs, ctx.misconceptions, rc["top_k"])
    if rc["family"] == "cross_encoder":
        from .cross_encoder import retrieval_weight, score_cross_encoder

        logits = score_cross_encoder(str(ctx.reranker_dir), rows["query_text"].tolist(), rows["MisconceptionName"].tolist(),
                                     batch_size=rc["score_batch_size"], max_length=rc["max_length"])
        w = retrieval_weight(ctx.reranker_dir)  # a residually trained model scores logit + w * retrieval
        return logits + w * rows["score"].to_numpy(np.float32) if w else logits
    from .llm_reranker import score_llm_reranker

    return score_llm_reranker(rows, str(ctx.reranker_dir), batch_size=rc["score_batch_size"], max_length=rc["max_length"],
                              window=rc["window"], stride=rc["stride"], tta=rc["tta"])


ITEM_PRIOR_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def reranker_item_prior(ctx: RunContext, candidates: pd.DataFrame) -> np.ndarray:
    """Fitted bias of each head candidate's misconception (rows as ``score_reranker``'s); 0 where none.

    Only a cross-encoder trained with ``item_bias_l2`` has biases; any other reranker gets zeros.
    """
    from .cross_encoder import item_bias

    rc = rerank_config(ctx)
    head = candidates[candidates["rank"] <= rc["top_k"]]
    bias = item_bias(ctx.reranker_dir) if rc["family"] == "cross_encoder" else {}
    if not bias:
        return np.zeros(len(head))
    names = dict(zip(ctx.misconceptions["MisconceptionId"].astype(int), ctx.misconceptions["MisconceptionName"]))
    return np.array([bias.get(names[int(m)], 0.0) for m in head["MisconceptionId"]], dtype=np.float64)


def _item_prior_weights(rc: dict, has_prior: bool) -> tuple[float, ...]:
    """Prior weights 06 tries: the configured one, the grid for "tune", only 0 without fitted biases."""
    weight = rc["item_prior_weight"]
    if weight == "tune":
        weights = ITEM_PRIOR_GRID
    else:
        try:
            weights = (float(weight),)
        except (TypeError, ValueError):
            raise ValueError(f"rerank.item_prior_weight {weight!r}: a number or 'tune'") from None
    return weights if has_prior else (0.0,)


# Blend weight of the reranker when it cannot be tuned (split full): the reranker alone ranks below
# the fine-tuned retriever in nearly every measured run, so an untuned run must still blend. With
# configs/gpu.yaml and no item prior, 0.4 is the best fixed alpha averaged over four v2 splits
# (+0.014 MAP@25) and close to the best over three v1 splits (+0.011 against +0.013 at 0.3)
# (benchmarks/results/bench_rerank_seeds/).
UNTUNED_BLEND_ALPHA = 0.4


def blend_setting(rc: dict) -> float | None:
    """``rerank.blend`` as a fixed alpha, or None when it is to be tuned on validation."""
    value = rc["blend"]
    if value is True:
        return None
    if value is False:
        return 1.0
    try:
        alpha = float(value)
    except (TypeError, ValueError):
        alpha = float("nan")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"rerank.blend {value!r}: true (tune alpha on validation), false (reranker alone) "
                         "or an alpha in [0, 1]")
    return alpha


def rerank_all(ctx: RunContext) -> dict:
    """Rerank validation and test candidates; tune the blend (and the item-prior weight) on validation; save rankings."""
    from .rerank import final_ranking, out_of_fold_ap, rerank, tune_prior_and_blend

    rc = rerank_config(ctx)
    out: dict = {}
    parts = {"val": ctx.val_pairs, "test": ctx.test_pairs}
    scores, priors = {}, {}
    for part, pairs in parts.items():
        cands = pd.read_parquet(ctx.run_dir / f"candidates_{part}.parquet")
        scores[part] = (cands, score_reranker(ctx, cands, pairs) if len(cands) else np.array([]))
        priors[part] = reranker_item_prior(ctx, cands) if len(cands) else np.array([])
    weights = _item_prior_weights(rc, any(np.any(p != 0) for p in priors.values()))
    prior_weight, fixed_alpha = weights[0], blend_setting(rc)
    tuned = bool(len(ctx.val_pairs)) and (fixed_alpha is None or len(weights) > 1)
    if tuned:
        prior_weight, alpha, _, table = tune_prior_and_blend(*scores["val"], priors["val"], weights, ctx.val_pairs,
                                                             rc["top_k"], fixed_alpha)
        if table is not None:
            out["blend_table"] = table
    else:  # nothing to tune on (split full) or nothing to tune
        alpha = UNTUNED_BLEND_ALPHA if fixed_alpha is None else fixed_alpha
    out["choice"] = {"blend_alpha": alpha, "item_prior_weight": prior_weight, "tuned_on_validation": tuned}
    out["val_scores_without_prior"] = scores["val"][1]
    if len(scores["val"][0]):  # raw head scores, for choosing alpha and the prior weight by CV (utils.cv)
        cands = scores["val"][0]
        head = cands[cands["rank"] <= rc["top_k"]]
        io.write_parquet(ctx.run_dir / "rerank_scores_val.parquet", pd.DataFrame({
            "QuestionId_Answer": head["QuestionId_Answer"].to_numpy(), "MisconceptionId": head["MisconceptionId"].to_numpy(),
            "reranker_score": scores["val"][1], "item_prior": priors["val"], "top_k": rc["top_k"]}))
    scores = {part: (c, s + prior_weight * priors[part]) for part, (c, s) in scores.items()}
    for part, (cands, s) in scores.items():
        ranking = final_ranking(cands, s, alpha, rc["top_k"]) if len(cands) else cands
        io.write_parquet(ctx.run_dir / f"rerank_{part}.parquet", ranking)
        out[part] = ranking
        out[f"candidates_{part}"] = cands
    if len(ctx.val_pairs):
        val = ctx.val_pairs
        reranked_only = rerank(scores["val"][0], scores["val"][1], rc["top_k"])
        out["val_scores"] = scores["val"][1]
        retrieval_ap, groups, seed = per_query_ap(scores["val"][0], val), val["QuestionId"].to_numpy(), ctx.config["seed"]
        summary = {"retrieval": evaluate(scores["val"][0], val),
                   "reranker_only": evaluate(reranked_only, val),
                   "reranked": evaluate(out["val"], val), "blend_alpha": alpha,
                   "item_prior_weight": prior_weight,
                   # per-question bootstrap of the MAP@25 gain (optimistic when alpha was tuned on these pairs)
                   "gain_ci": paired_bootstrap(retrieval_ap, per_query_ap(out["val"], val), groups=groups, seed=seed)}
        if tuned and len(np.unique(groups)) >= 2:  # the same tuning done out of fold: the gain to expect on new questions
            oof = out_of_fold_ap(scores["val"][0], out["val_scores_without_prior"], priors["val"], weights, val,
                                 rc["top_k"], fixed_alpha, seed=seed)
            summary["gain_out_of_fold"] = paired_bootstrap(retrieval_ap, oof, groups=groups, seed=seed)
            out["val_ap_out_of_fold"] = oof
        out["summary"] = summary
    # what infer / 07_export reproduce, also when there was no validation to tune on
    ctx.metrics("06_rerank", {**out.get("summary", {}), **out["choice"]})
    return out


def reranker_lengths(ctx: RunContext, train_df: pd.DataFrame) -> dict:
    """Token lengths of the reranker's training inputs and their percentiles."""
    rc = rerank_config(ctx)
    if rc["family"] == "cross_encoder":
        from transformers import AutoTokenizer

        from .llm_reranker import length_stats

        tok = AutoTokenizer.from_pretrained(str(ctx.reranker_dir))
        enc = tok(train_df["query_text"].tolist(), train_df["MisconceptionName"].tolist(), truncation=False)
        lengths = [len(x) for x in enc["input_ids"]]
        return {"lengths": lengths, "stats": length_stats(lengths)}
    from .llm_reranker import prompt_length_stats
    from .lora import load_tokenizer

    stats = prompt_length_stats(train_df, load_tokenizer(str(ctx.reranker_dir)), mode=rc["family"].split("_")[1],
                                window=rc["window"], verbose=False)
    return {"lengths": stats.pop("lengths", []), "stats": stats}


def reranker_losses(log: dict) -> list[dict]:
    """Per-step losses of either reranker family as ``loss_curve`` points (x = fraction of training)."""
    losses = log.get("losses") or []
    return [{"epoch": (i + 1) / len(losses), "loss": float(v)} for i, v in enumerate(losses)]


# -- 08: fusion across rounds ----------------------------------------------------------------
FUSION_DEFAULTS = {
    "method": "auto",  # auto (best of the methods on validation) | rrf | rank_average | score_sum | none
    "rounds": "all",  # "all" = rounds 1..r, or a list of round numbers
    "sources": ["rerank", "candidates"],  # per round: the reranked ranking if present, else the recall
    "all_sources": False,  # fuse reranked *and* recall rankings of every round
    "weights": None,  # one per entry of ``rounds`` (e.g. chosen by CV, utils.cv); None = tuned on validation
    "top_k": 100,
}


def fusion_config(ctx: RunContext) -> dict:
    return fusion_config_from(ctx.config)


def fusion_config_from(config: dict) -> dict:
    return _section(config, "fusion", FUSION_DEFAULTS)


def round_rankings(ctx: RunContext) -> list[tuple[str, dict[str, pd.DataFrame]]]:
    """(name, {"val": ranking, "test": ranking}) for every round/source to fuse."""
    fc = fusion_config(ctx)
    # rounds not run yet (an earlier round of the run) are left out; none left: this round alone
    rounds = range(1, ctx.round_idx + 1) if fc["rounds"] == "all" else [r for r in fc["rounds"] if r <= ctx.round_idx] or [ctx.round_idx]
    out = []
    for r in rounds:
        d = ctx.round_dir(r)
        found = [s for s in fc["sources"] if (d / f"{s}_val.parquet").exists() or (d / f"{s}_test.parquet").exists()]
        for source in found if fc["all_sources"] else found[:1]:
            parts = {p: pd.read_parquet(d / f"{source}_{p}.parquet") if (d / f"{source}_{p}.parquet").exists() else None
                     for p in ("val", "test")}
            out.append((f"round_{r}/{source}", parts))
    if not out:
        raise FileNotFoundError(f"{ctx.out_dir}: no rankings to fuse (run 04_recall first)")
    return out


def fuse_rounds(ctx: RunContext) -> dict:
    """Fuse the rankings of this and earlier rounds with weights tuned on validation.

    ``method: auto`` tries RRF, rank average and score sum and keeps the best on validation;
    the tuned weights always include equal weights, and a single ranking passes through.
    """
    from .fusion import fuse, tune_weights

    fc = fusion_config(ctx)
    named = round_rankings(ctx)
    names = [n for n, _ in named]
    has_val = len(ctx.val_pairs) > 0 and all(p["val"] is not None for _, p in named)
    singles = {n: evaluate(p["val"], ctx.val_pairs) for n, p in named} if has_val else {}
    if len(named) == 1 or fc["method"] == "none":
        best = max(singles, key=lambda n: singles[n]["map@25"]) if singles else names[-1]
        pick = dict(named)[best]
        if pick["val"] is not None and len(pick["val"]):
            io.write_parquet(ctx.run_dir / "fused_val.parquet", pick["val"])
        return {"method": "none", "inputs": names, "weights": [1.0], "singles": singles, "val": pick["val"],
                "test": pick["test"], "source": best}
    methods = ["rrf", "rank_average", "score_sum"] if fc["method"] == "auto" else [fc["method"]]
    if fc["weights"] is not None:  # fixed (by CV): the weights of the rounds present
        if fc["method"] == "auto" or fc["rounds"] == "all" or len(fc["weights"]) != len(fc["rounds"]):
            raise ValueError("fusion.weights needs a fusion.method and one weight per entry of fusion.rounds")
        by_round = dict(zip(fc["rounds"], fc["weights"]))
        weights = [float(by_round[int(n.split("/")[0].split("_")[1])]) for n in names]
        method, tuned = fc["method"], {}
        weights = weights if sum(weights) > 0 else [1.0] * len(named)
    elif has_val:
        tuned = {m: tune_weights([p["val"] for _, p in named], ctx.val_pairs, m) for m in methods}
        method = max(tuned, key=lambda m: tuned[m][1])
        weights = list(tuned[method][0])
    else:  # split=full: no validation; equal-weight RRF is the safe default
        method, weights, tuned = (methods[0] if fc["method"] != "auto" else "rrf"), [1.0] * len(named), {}
    fused = {p: fuse([r[p] for _, r in named], method, weights, fc["top_k"])
             for p in ("val", "test") if all(r[p] is not None and len(r[p]) for _, r in named)}
    if "val" in fused:
        io.write_parquet(ctx.run_dir / "fused_val.parquet", fused["val"])
    return {"method": method, "inputs": names, "weights": weights, "singles": singles,
            "tuned": {m: v[1] for m, v in tuned.items()}, "val": fused.get("val"), "test": fused.get("test"),
            "source": f"fused({method})"}
