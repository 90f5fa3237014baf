"""Run configuration: built-in defaults, deep-merged with a YAML file; unknown keys are errors."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from utils.tasks.eedi import DEFAULT_QUERY_TEMPLATE

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA_DIR = REPO_ROOT / "data" / "sample"

NOTEBOOKS = [
    "01_mine_hn", "02_train_embedder", "03_eval_embedder", "04_recall",
    "05_train_reranker", "06_rerank", "07_export", "08_fuse_submit",
]

DEFAULTS: dict[str, Any] = {
    "seed": 42,
    "show_progress": "auto",  # progress bars; auto = on, off where CI=true (resolve_progress)
    "cpu_threads": "auto",  # torch CPU threads; auto = 1 on machines with <= 2 CPUs (see utils.stages.context.configure_threads)
    "notebooks": ["01_mine_hn", "02_train_embedder", "03_eval_embedder", "04_recall", "05_train_reranker",
                  "06_rerank", "08_fuse_submit"],
    "data": {"query_template": DEFAULT_QUERY_TEMPLATE},
    "split": {"n_folds": 5, "fold": 0, "unseen_share": 0.2, "val_share": 0.2, "group_by": "SubjectId",
              "cv_scheme": "v1"},  # split cv: v1 (grouped K-fold) or v2 (each fold its own misconceptions)
    "embedder": {"model": "default", "max_length": 256, "batch_size": 64, "query_prefix": "",
                 "passage_prefix": "", "pooling": None,
                 # In-context examples in the query (bge-en-icl style, decoder embedders): k examples
                 # from training pairs, never from the query's own question.
                 "icl": {"enabled": False, "k": 3, "task": None, "same_subject": True}},
    # CPU defaults, sized for the bundled sample on 2 cores; configs/gpu.yaml has the full recipe.
    "mining": {"range_min": 2, "range_max": 100, "n": 7, "max_score_ratio": None, "prompt": ""},
    # init previous: round r continues from round r-1's embedder (5-fold CV of configs/gpu.yaml, round 3:
    # +0.032 MAP@25 over restarting from the base model; benchmarks/results/cv_defaults/)
    "train": {"init": "previous", "epochs": 1.0, "lr": 1e-4, "batch_size": 16, "n_negatives": 3, "temperature": 0.05,
              "max_query_length": 128, "max_passage_length": 32},
    "recall": {"k": 100},
    # Cross-encoder initialised from this round's fine-tuned embedder, mean-pooled head, cut to
    # 3 layers, 120 training groups and the top 8 so 05+06 fit the default run's 10 minutes on 2 CPU cores.
    "rerank": {"model": "embedder", "head": "mean", "num_layers": 3, "max_groups": 120, "epochs": 1.0,
               "n_negatives": 3, "top_k": 8, "max_length": 96, "lr": 1e-4, "loss": "listwise", "batch_size": 16,
               "score_batch_size": 32},
    "fusion": {},
    "export": {},
    "submission": {"k": 25, "dir": "submissions"},  # dir: also copy to <dir>/<run>/ (null: don't)
}


class ConfigError(ValueError):
    """A config file names an unknown key or a value of the wrong type."""


@dataclass(frozen=True)
class Rule:
    """What one config value may be: one of ``kinds`` within the bounds, or one of ``choices``.

    kinds: ``int``, ``number`` (int or float), ``bool``, ``str``, ``list``, ``dict``, ``any``;
    ``null`` also allows None; ``item`` checks each element of a list.
    """

    kinds: tuple[str, ...] = ()
    choices: tuple = ()
    null: bool = False
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    item: "Rule | None" = None


def _int(ge: float | None = None, null: bool = False) -> Rule:
    return Rule(("int",), null=null, ge=ge)


def _num(gt: float | None = None, ge: float | None = None, le: float | None = None, null: bool = False) -> Rule:
    return Rule(("number",), null=null, gt=gt, ge=ge, le=le)


def _one_of(*choices, null: bool = False) -> Rule:
    return Rule(choices=choices, null=null)


# Types and ranges beyond what a key's default shows (a key not listed here must keep its default's
# type: int, float (any number), bool, str, list, dict; a None default allows anything).
RULES: dict[str, Rule] = {
    "seed": _int(ge=0),
    "show_progress": Rule(("bool",), choices=("auto",)),
    "cpu_threads": Rule(("int",), choices=("auto",), ge=1),
    "notebooks": Rule(("list",), item=Rule(("str",))),
    "split.n_folds": _int(ge=2), "split.fold": _int(ge=0), "split.cv_scheme": _one_of("v1", "v2"),
    "split.unseen_share": _num(ge=0, le=1), "split.val_share": _num(ge=0, le=1),
    "embedder.model": Rule(("str",), null=True), "embedder.max_length": _int(ge=1), "embedder.batch_size": _int(ge=1),
    "embedder.pooling": _one_of("mean", "cls", "last", null=True),
    "embedder.icl.k": _int(ge=0), "embedder.icl.task": Rule(("str",), null=True),
    "mining.range_min": _int(ge=0), "mining.range_max": _int(ge=1), "mining.n": _int(ge=1),
    "mining.max_score_ratio": _num(gt=0, null=True),
    "train.init": _one_of("base", "previous"), "train.gpus": _int(ge=1),
    "train.epochs": _num(gt=0), "train.lr": _num(gt=0), "train.batch_size": _int(ge=2),
    "train.n_negatives": _int(ge=0), "train.temperature": _num(gt=0), "train.warmup_ratio": _num(ge=0, le=1),
    "train.weight_decay": _num(ge=0), "train.max_grad_norm": _num(ge=0), "train.max_query_length": _int(ge=1),
    "train.max_passage_length": _int(ge=1), "train.seed": _int(ge=0), "train.lora": Rule(("dict",), null=True),
    "train.grad_cache_chunk": _int(ge=1, null=True), "train.distill_weight": _num(ge=0),
    "train.distill_temperature": _num(gt=0), "train.log_every": _int(ge=1), "train.extra": Rule(("dict",)),
    "recall.k": _int(ge=1),
    "rerank.family": _one_of("cross_encoder", "llm_pointwise", "llm_listwise"),
    "rerank.model": Rule(("str",), null=True), "rerank.head": _one_of("mean", "cls"),
    "rerank.num_layers": _int(ge=1, null=True), "rerank.max_groups": _int(ge=1, null=True),
    "rerank.top_k": _int(ge=1), "rerank.candidates": _one_of("current", "mining", "crossfit"),
    "rerank.crossfit_folds": _int(ge=2), "rerank.retrieval_weight": _num(ge=0),
    "rerank.item_bias_l2": _num(ge=0, null=True), "rerank.item_prior_weight": Rule(("number",), choices=("tune",)),
    "rerank.n_negatives": _int(ge=1), "rerank.epochs": _num(gt=0), "rerank.lr": _num(gt=0),
    "rerank.batch_size": _int(ge=1), "rerank.max_length": _int(ge=1), "rerank.loss": _one_of("pointwise", "listwise"),
    "rerank.lora": Rule(("dict",), null=True), "rerank.window": _int(ge=1), "rerank.stride": _int(ge=1),
    "rerank.blend": Rule(("bool", "number"), ge=0, le=1), "rerank.score_batch_size": _int(ge=1),
    "fusion.method": _one_of("auto", "rrf", "rank_average", "score_sum", "none"),
    "fusion.rounds": Rule(("list",), choices=("all",), item=_int(ge=1)),
    "fusion.sources": Rule(("list",), item=_one_of("rerank", "candidates")),
    "fusion.weights": Rule(("list",), null=True, item=_num(ge=0)), "fusion.top_k": _int(ge=1),
    "submission.k": _int(ge=1), "submission.dir": Rule(("str",), null=True),
    "export.owner": Rule(("str",), null=True), "export.name": Rule(("str",), null=True),
    "export.title": Rule(("str",), null=True),
}
_KIND_OF = {bool: "bool", int: "int", float: "number", str: "str", list: "list", dict: "dict"}
_WORDS = {"int": "an integer", "number": "a number", "bool": "true or false", "str": "a string", "list": "a list",
          "dict": "a mapping"}


def _section_defaults() -> dict[str, dict]:
    """Every key of the sections other modules own, with its default (imported here, not at the top:
    those modules import this one)."""
    from dataclasses import MISSING, fields

    from utils.kaggle.inference import EXPORT_DEFAULTS
    from utils.retrieval.train_embedder import TrainConfig

    train = {f.name: f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
             for f in fields(TrainConfig)}
    return {"train": {**train, "init": DEFAULTS["train"]["init"], "gpus": 1}, "rerank": RERANK_DEFAULTS, "fusion": FUSION_DEFAULTS,
            "export": EXPORT_DEFAULTS}


def rule_for(key: str, default: Any) -> Rule:
    """The rule of ``key`` in RULES, else the type of its default."""
    if key in RULES:
        return RULES[key]
    kind = _KIND_OF.get(type(default))
    return Rule((kind,)) if kind else Rule(("any",))


def _is(value: Any, kind: str) -> bool:
    if kind == "any":
        return True
    if kind in ("int", "number") and isinstance(value, bool):
        return False
    return isinstance(value, {"int": int, "number": (int, float), "bool": bool, "str": str, "list": list,
                              "dict": dict}[kind])


def _describe(rule: Rule) -> str:
    words = [repr(c) for c in rule.choices] + [_WORDS[k] for k in rule.kinds if k != "any"]
    return " or ".join(words) + (" or null" if rule.null else "")


def check_value(key: str, value: Any, rule: Rule) -> None:
    """Raise ConfigError naming ``key`` unless ``value`` follows ``rule``."""
    if (value is None and rule.null) or (rule.choices and value in rule.choices and not isinstance(value, bool)):
        return
    kind = next((k for k in rule.kinds if _is(value, k)), None)
    if kind is None:
        hint = ""
        if isinstance(value, str) and "number" in rule.kinds:
            try:
                float(value)
                hint = " (YAML reads 1e-4 as text: write 1.0e-4)"
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected {_describe(rule)}, got {value!r}{hint}")
    if kind in ("int", "number"):
        for op, bound, ok in ((">", rule.gt, lambda b: value > b), (">=", rule.ge, lambda b: value >= b),
                              ("<=", rule.le, lambda b: value <= b)):
            if bound is not None and not ok(bound):
                word = f"in [{rule.ge:g}, {rule.le:g}]" if rule.ge is not None and rule.le is not None else f"{op} {bound:g}"
                raise ConfigError(f"{key}: must be {word}, got {value!r}")
    if kind == "list" and rule.item is not None:
        for i, v in enumerate(value):
            check_value(f"{key}[{i}]", v, rule.item)


def validate_config(cfg: dict) -> dict:
    """Check every key and value of a merged config (see ``RULES``); raise ConfigError naming the key."""
    owned = _section_defaults()

    def walk(values: dict, defaults: dict, where: str) -> None:
        for key, value in values.items():
            path = f"{where}.{key}" if where else key
            if key not in defaults:
                raise ConfigError(f"unknown config key {path!r}; known here: {sorted(defaults)}")
            if isinstance(defaults[key], dict) and isinstance(value, dict) and path not in RULES:
                walk(value, defaults[key], path)
            else:
                check_value(path, value, rule_for(path, defaults[key]))

    walk(cfg, {**DEFAULTS, **owned}, "")
    unknown_nb = [n for n in cfg["notebooks"] if n not in NOTEBOOKS]
    if unknown_nb:
        raise ConfigError(f"unknown notebook(s) {unknown_nb}; known: {NOTEBOOKS}")
    mining, split, fusion = cfg["mining"], cfg["split"], cfg.get("fusion") or {}
    if mining["range_min"] >= mining["range_max"]:
        raise ConfigError(f"mining.range_min ({mining['range_min']}) must be below mining.range_max ({mining['range_max']})")
    if split["fold"] >= split["n_folds"]:
        raise ConfigError(f"split.fold {split['fold']}: must be below split.n_folds ({split['n_folds']})")
    if fusion.get("weights") is not None:
        rounds = fusion.get("rounds", "all")
        if fusion.get("method", "auto") == "auto" or rounds == "all" or len(fusion["weights"]) != len(rounds):
            raise ConfigError("fusion.weights: needs a fusion.method other than auto and one weight per entry of "
                              f"fusion.rounds, got weights {fusion['weights']} for rounds {rounds!r}")
    return cfg


def _merge(base: dict, override: dict, where: str, open_sections: tuple[str, ...]) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        path = f"{where}.{key}" if where else key
        if key not in base and path.split(".")[0] not in open_sections:
            raise ConfigError(f"unknown config key {path!r}; known here: {sorted(base)}")
        if isinstance(base.get(key), dict) and isinstance(value, dict):
            out[key] = _merge(base[key], value, path, open_sections)
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """Defaults, then the YAML file at ``path``, then ``overrides`` (all deep-merged).

    Every key and value is checked here, before anything runs (``validate_config``); an error
    names the file (or the overrides) and the key.
    """
    # Sections whose keys live in their own module (TrainConfig, RERANK_DEFAULTS, ...): checked in validate_config.
    open_sections = ("train", "rerank", "fusion", "export")
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path}: config file not found")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        try:
            cfg = validate_config(_merge(cfg, loaded, "", open_sections))
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    if overrides:
        try:
            cfg = validate_config(_merge(cfg, overrides, "", open_sections))
        except ConfigError as e:
            raise ConfigError(f"config overrides: {e}") from None
    elif path is None:
        validate_config(cfg)
    cfg["show_progress"] = resolve_progress(cfg["show_progress"])
    return cfg


def resolve_progress(setting: bool | str, environ: dict | None = None) -> bool:
    """``show_progress``: ``auto`` is on, except off where the environment has ``CI=true``."""
    if isinstance(setting, bool):
        return setting
    if setting == "auto":
        env = os.environ if environ is None else environ
        return env.get("CI", "").strip().lower() not in ("true", "1", "yes")
    raise ConfigError(f"show_progress {setting!r}: true, false or auto")


def deep_update(base: dict, new: dict) -> dict:
    """``base`` with ``new`` merged in, section by section (unchecked: ``load_config`` checks the result)."""
    out = dict(base)
    for key, value in new.items():
        out[key] = deep_update(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def dump_config(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)


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

FUSION_DEFAULTS = {
    "method": "auto",  # auto (best of the methods on validation) | rrf | rank_average | score_sum | none
    "rounds": "all",  # "all" = rounds 1..r, or a list of round numbers
    "sources": ["rerank", "candidates"],  # per round: the reranked ranking if present, else the recall
    "all_sources": False,  # fuse reranked *and* recall rankings of every round
    "weights": None,  # one per entry of ``rounds`` (e.g. chosen by CV, utils.run.cv); None = tuned on validation
    "top_k": 100,
}


def _section(config: dict, name: str, defaults: dict) -> dict:
    """Config section ``name`` over its defaults; an unknown key is an error."""
    given = config.get(name) or {}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {name} option(s) {unknown}; known: {sorted(defaults)}")
    return {**defaults, **given}


def rerank_config_from(config: dict) -> dict:
    """The ``rerank`` section of a whole config over ``RERANK_DEFAULTS``, checked."""
    cfg = _section(config, "rerank", RERANK_DEFAULTS)
    if cfg["family"] not in ("cross_encoder", "llm_pointwise", "llm_listwise"):
        raise ValueError(f"rerank.family {cfg['family']!r}: choose cross_encoder, llm_pointwise or llm_listwise")
    return cfg


def fusion_config_from(config: dict) -> dict:
    return _section(config, "fusion", FUSION_DEFAULTS)
