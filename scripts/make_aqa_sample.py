#!/usr/bin/env python
"""Generate a small synthetic dataset in the raw layout of KDD Cup 2024 OAG-AQA.

    python scripts/make_aqa_sample.py [--out data/aqa_sample] [--seed 0]

Writes ``qa_train.txt``, ``qa_valid_wo_ans.txt``, ``qa_test_wo_ans.txt`` (JSON lines:
``question``, ``body`` (HTML), ``pids`` in train only) and ``pid_to_title_abs_update_filter.json``
(``{pid: {"title", "abstract"}}``, 24-hex-char pids, a few nulls).

How it is made learnable but not trivial: 60 fine-grained topics are method x problem x
domain triples, built as 30 (method, problem) pairs (over 6 problems, so ~50 papers share a
problem) each set in two domains, so every topic has a "sister" topic that differs only by
its domain. Each topic has 5 papers split into groups sharing an *aspect* (e.g. "under
noisy labels"); a question asks about one (topic, aspect) group, so it has 1-3 relevant
papers. Papers are written with canonical terms; questions mostly with synonyms ("GNNs",
"record linkage", "online shops") and StackExchange-like HTML bodies (``<p>``, ``<code>``,
``<a href>``), sometimes naming a method the asker tried that is not the answer, and
leaving out the domain or the aspect (so some questions stay ambiguous). About a third of
the synonyms are ones all-MiniLM-L6-v2 maps to the wrong canonical term ("record linkage"
nearest to "link prediction"): zero-shot it scores MAP@20 0.45 on the train questions, 0.72
once synonyms are replaced by canonical terms (what learning the vocabulary can gain); a
4-epoch contrastive fine-tune with mined negatives on the 240 train questions lifted it on
the 80 valid + test questions from 0.45 to 0.51 (Recall@20 0.84 to 0.88).
Distractors: sister topics, the same aspect in the sister topic, abstracts that mention
other methods, aspects and domains. Output is deterministic for a seed (byte-identical
files). No text is taken from the real competition files.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "data" / "aqa_sample"

# canonical term (used in papers) -> paraphrases (mostly used in questions)
METHODS: dict[str, list[str]] = {
    "graph neural networks": ["GNNs", "message-passing networks", "graph convolutional models"],
    "transformer encoders": ["self-attention models", "BERT-style encoders", "attention-based architectures"],
    "contrastive learning": ["contrastive pretraining", "InfoNCE-style objectives", "self-supervised contrastive methods"],
    "reinforcement learning": ["RL agents", "policy optimisation", "reward-driven learning"],
    "variational autoencoders": ["VAEs", "latent variable generative models", "variational inference networks"],
    "gradient boosted trees": ["XGBoost-like ensembles", "boosting with decision trees", "tree ensembles"],
    "diffusion models": ["denoising diffusion", "score-based generative models", "diffusion probabilistic models"],
    "knowledge distillation": ["teacher-student training", "model compression by distillation", "distilling a big model into a small one"],
    "Bayesian optimisation": ["Gaussian-process surrogate search", "BO", "sequential model-based optimisation"],
    "recurrent neural networks": ["LSTMs", "GRU networks", "sequence RNNs"],
    "meta-learning": ["learning to learn", "MAML-style adaptation", "few-shot meta-training"],
    "matrix factorisation": ["low-rank factorisation", "latent factor models", "SVD-based decomposition"],
}
PROBLEMS: dict[str, list[str]] = {
    "link prediction": ["predicting missing edges", "edge forecasting", "inferring unobserved connections"],
    "anomaly detection": ["outlier detection", "spotting unusual events", "detecting abnormal behaviour"],
    "entity resolution": ["record linkage", "deduplicating records", "matching duplicate entities"],
    "text classification": ["document categorisation", "labelling texts", "assigning categories to documents"],
    "time series forecasting": ["predicting future values of a sequence", "temporal forecasting", "sequence prediction over time"],
    "recommendation": ["recommender systems", "suggesting items to users", "personalised ranking"],
    "question answering": ["answering natural-language questions", "QA systems", "reading comprehension"],
    "image segmentation": ["pixel-wise labelling", "delineating object regions", "semantic segmentation"],
    "named entity recognition": ["NER", "tagging entity mentions", "extracting names of people and places"],
    "route planning": ["path finding", "trajectory planning", "finding optimal routes"],
}
DOMAINS: dict[str, list[str]] = {
    "biomedical literature": ["medical papers", "PubMed abstracts", "clinical research articles"],
    "e-commerce platforms": ["online shops", "retail websites", "marketplace data"],
    "social networks": ["online social media", "friendship graphs", "user interaction networks"],
    "urban traffic": ["road sensor data", "city traffic flows", "vehicle traffic"],
    "financial markets": ["stock data", "trading records", "banking transactions"],
    "source code repositories": ["software projects", "GitHub code", "program source files"],
    "satellite imagery": ["remote sensing images", "earth observation data", "aerial photos"],
    "scholarly citation graphs": ["academic citation networks", "bibliographic data", "paper citation links"],
    "electronic health records": ["patient records", "hospital EHR data", "clinical notes"],
    "power grids": ["electricity networks", "energy consumption data", "smart meter readings"],
}
ASPECTS: dict[str, list[str]] = {
    "under noisy labels": ["when the annotations are unreliable", "with corrupted training labels", "when labels contain errors"],
    "with very few labelled examples": ["in a few-shot regime", "when annotation is scarce", "with almost no training labels"],
    "in a federated setting": ["without centralising the data", "across decentralised clients", "with data that stays on devices"],
    "with interpretable outputs": ["so that predictions can be explained", "with human-readable explanations", "keeping the model explainable"],
    "at low inference latency": ["in real time", "with fast predictions", "under tight latency budgets"],
    "under distribution shift": ["when test data differ from training data", "across changing domains", "with out-of-distribution inputs"],
    "with privacy guarantees": ["under differential privacy", "while protecting sensitive data", "without leaking personal information"],
    "on streaming data": ["online as data arrive", "in an incremental setting", "with continuously arriving records"],
    "at web scale": ["on billions of records", "for very large datasets", "scaling to huge inputs"],
    "with multimodal inputs": ["combining text and images", "fusing several modalities", "using heterogeneous input types"],
    "robust to adversarial attacks": ["against adversarial perturbations", "resisting malicious inputs", "with adversarial robustness"],
    "with class imbalance": ["when positives are rare", "with skewed label distributions", "for highly imbalanced classes"],
}

CHALLENGES = [
    "the data are sparse and heterogeneous", "labels are expensive to collect", "the inputs are long and noisy",
    "the underlying structure changes over time", "existing baselines do not scale", "errors are costly in practice",
]
TECHNIQUES = [
    "combines a learned encoder with a margin ranking loss", "adds a hierarchical attention layer over local features",
    "uses a two-stage pipeline of candidate generation and refinement", "regularises the representation with an auxiliary reconstruction task",
    "shares parameters across tasks through a lightweight adapter", "calibrates its scores with temperature scaling",
    "builds a memory bank of hard examples during training", "prunes redundant units after pretraining",
]
RESULTS = [
    "Experiments on {n} {domain} benchmarks show gains of {x}% over strong baselines.",
    "On {n} public {domain} datasets it improves accuracy by {x}% while using fewer parameters.",
    "Results on {n} {domain} collections show a relative improvement of {x}% in F1.",
]
EXTRAS = [
    "Unlike methods designed {other_aspect}, it makes no assumption on the data.",
    "We also report results on {other_domain}.",
    "Unlike earlier work based on {other}, the approach needs no hand-crafted features.",
    "We compare against {other} and discuss when each is preferable.",
    "An ablation study shows that every component contributes to the final score.",
    "We release code and data to support reproducibility.",
    "A theoretical analysis bounds the error of the proposed estimator.",
]
SYLLABLES = ["cor", "vex", "lin", "tra", "neo", "qua", "mira", "sol", "den", "tal", "rix", "ven", "hel", "dra", "fen", "gal"]

Q_TITLES_BOTH = [
    "How can I approach {problem} {aspect} for {domain}?",
    "What works for {problem} on {domain} {aspect}?",
]
Q_TITLES_ASPECT = [
    "{Problem} {aspect}: which method should I use?",
    "Best way to do {problem} {aspect}?",
]
Q_TITLES_DOMAIN = [
    "Looking for papers on {problem} with {domain}",
    "State of the art for {problem} on {domain}?",
]
Q_TITLES_METHOD = [
    "Is {method} a good choice for {problem} {aspect}?",
    "{Method} for {problem}: how to handle it {aspect}?",
]
Q_OPENERS = [
    "I work with {domain} and need {problem}.", "My project is about {problem} on {domain}.",
    "We are building a system for {problem} using {domain}.", "I have a dataset of {domain} and want to do {problem}.",
]
Q_OPENERS_NO_DOMAIN = ["I need {problem} for a project.", "My task is {problem}.", "Our team works on {problem}."]
Q_ASPECT = [
    "The tricky part is that it has to work {aspect}.", "The main constraint: everything must run {aspect}.",
    "Our setting is special because we operate {aspect}.", "I need a method that still works {aspect}.",
]
Q_METHOD_YES = [
    "I was thinking of using {method}.", "People suggested {method}, is that reasonable?",
    "Would {method} be the right tool here?",
]
Q_METHOD_NO = [
    "I tried {method} but the results were poor.", "So far {method} did not help much.",
]
Q_CLOSERS = ["Any pointers to papers are appreciated.", "Thanks in advance!", "References welcome.", ""]
SNIPPETS = [
    "model.fit(X_train, y_train)", "loss = criterion(pred, target)", "df.groupby('id').agg('mean')",
    "torch.nn.Linear(256, 1)", "scores = model.predict(X_test)", "np.argsort(-scores)[:20]",
]
LINK_TEXT = ["this blog post", "a tutorial", "this thread", "the docs", "an older answer"]

N_PROBLEMS = 6
N_PAIRS = 30          # (method, problem) pairs, each in 2 domains -> 60 topics
PAPERS_PER_TOPIC = 5  # -> 300 papers
GROUP_PATTERNS = [[2, 1, 1, 1], [3, 1, 1], [2, 2, 1], [1, 1, 1, 1, 1], [2, 1, 1, 1], [3, 2]]
assert all(sum(p) == PAPERS_PER_TOPIC for p in GROUP_PATTERNS)
N_TRAIN, N_VALID, N_TEST = 240, 40, 40


def _pick(rng: random.Random, canon: str, table: dict[str, list[str]], p_canon: float) -> str:
    """A paraphrase of ``canon`` (or, with probability ``p_canon``, the canonical term)."""
    return canon if rng.random() < p_canon else rng.choice(table[canon])


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _pid(rng: random.Random, seen: set[str]) -> str:
    while True:
        pid = "".join(rng.choice("0123456789abcdef") for _ in range(24))
        if pid not in seen:
            seen.add(pid)
            return pid


def _model_name(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(2)).capitalize() + rng.choice(["", "Net", "Former", "-X", "++"])


def _paper(rng: random.Random, topic: tuple[str, str, str], aspect: str) -> tuple[str, str]:
    method, problem, domain = topic
    name = _model_name(rng)
    title = rng.choice([
        f"{_cap(method)} for {problem} in {domain} {aspect}",
        f"{name}: {problem} {aspect} with {method}",
        f"Towards {problem} {aspect}: a {method} approach for {domain}",
        f"On {problem} in {domain} with {method} {aspect}",
    ])
    other = rng.choice([m for m in METHODS if m != method])
    other_aspect = rng.choice([x for x in ASPECTS if x != aspect])
    other_domain = rng.choice([x for x in DOMAINS if x != domain])
    sents = [
        f"{_cap(problem)} in {domain} is difficult because {rng.choice(CHALLENGES)}.",
        f"We propose {name}, a {method} approach that performs {problem} {aspect}.",
        f"{name} {rng.choice(TECHNIQUES)}.",
        rng.choice(RESULTS).format(n=rng.randint(2, 5), domain=domain, x=rng.randint(2, 19)),
    ]
    target = rng.randint(40, 78)
    for e in rng.sample(EXTRAS, 4):
        if len(" ".join(sents).split()) >= target:
            break
        sents.insert(rng.randint(2, len(sents)), e.format(other=other, other_aspect=other_aspect, other_domain=other_domain))
    abstract = " ".join(sents)
    words = abstract.split()
    if len(words) > 80:
        abstract = " ".join(words[:80]).rstrip(",.") + "."
    return title, abstract


def _question(rng: random.Random, topic: tuple[str, str, str], aspect: str) -> dict[str, str]:
    """A StackExchange-like question about (topic, aspect): mostly paraphrases, some parts left out."""
    method, problem, domain = topic
    p = _pick(rng, problem, PROBLEMS, 0.1)
    d = _pick(rng, domain, DOMAINS, 0.1) if rng.random() < 0.65 else ""
    a = _pick(rng, aspect, ASPECTS, 0.05) if (not d or rng.random() < 0.75) else ""
    r = rng.random()
    m = _pick(rng, method, METHODS, 0.15) if r < 0.45 else ""
    fill = {"method": m, "problem": p, "domain": d, "aspect": a, "Method": _cap(m), "Problem": _cap(p)}
    if m and a and rng.random() < 0.5:
        templates = Q_TITLES_METHOD
    elif a and d:
        templates = Q_TITLES_BOTH
    else:
        templates = Q_TITLES_ASPECT if a else Q_TITLES_DOMAIN
    question = rng.choice(templates).format(**fill)
    # The body re-phrases with independent picks: more wording per question to learn from.
    p2 = _pick(rng, problem, PROBLEMS, 0.1)
    opener = rng.choice(Q_OPENERS if d else Q_OPENERS_NO_DOMAIN)
    paras = [opener.format(problem=p2, domain=_pick(rng, domain, DOMAINS, 0.1))]
    if a:
        paras[0] += " " + rng.choice(Q_ASPECT).format(aspect=_pick(rng, aspect, ASPECTS, 0.0))
    if m:
        paras.append(rng.choice(Q_METHOD_YES).format(method=_pick(rng, method, METHODS, 0.15)))
    elif r < 0.7:  # a method the asker tried: a lexical distractor
        wrong = rng.choice([x for x in METHODS if x != method])
        paras.append(rng.choice(Q_METHOD_NO).format(method=_pick(rng, wrong, METHODS, 0.5)))
    if rng.random() < 0.5:
        paras.append(f"My current code is <code>{rng.choice(SNIPPETS)}</code> and it is not enough.")
    if rng.random() < 0.4:
        slug = "-".join(rng.choice(SYLLABLES) for _ in range(3))
        paras.append(f'I read <a href="https://example.org/{slug}">{rng.choice(LINK_TEXT)}</a> but it did not cover my case.')
    closer = rng.choice(Q_CLOSERS)
    if closer:
        paras.append(closer)
    body = "".join(f"<p>{x}</p>\n" for x in paras)
    return {"question": question, "body": body}


def build(seed: int = 0) -> tuple[dict[str, dict[str, str | None]], list[dict]]:
    """The papers ``{pid: {title, abstract}}`` and every question with its ``pids`` (train,
    then valid, then test: the answers of valid and test too, for checks of learnability)."""
    rng = random.Random(seed)
    problems = rng.sample(list(PROBLEMS), N_PROBLEMS)  # few problems: ~50 papers share each
    pairs = rng.sample([(m, p) for m in METHODS for p in problems], N_PAIRS)
    topics: list[tuple[str, str, str]] = []
    for m, p in pairs:
        for d in rng.sample(list(DOMAINS), 2):
            topics.append((m, p, d))

    seen: set[str] = set()
    papers: list[tuple[str, str | None, str | None]] = []
    groups: list[tuple[tuple[str, str, str], str, list[str]]] = []  # (topic, aspect, pids)
    prev_aspects: list[str] = []
    for t_idx, topic in enumerate(topics):
        sizes = rng.choice(GROUP_PATTERNS)
        aspects = rng.sample(list(ASPECTS), len(sizes))
        if t_idx % 2 == 1 and rng.random() < 0.6 and prev_aspects[0] not in aspects:
            aspects[-1] = prev_aspects[0]  # sister topic, same aspect: a hard distractor
        prev_aspects = aspects
        for size, aspect in zip(sizes, aspects):
            pids = []
            for _ in range(size):
                pid = _pid(rng, seen)
                title, abstract = _paper(rng, topic, aspect)
                papers.append((pid, title, abstract))
                pids.append(pid)
            groups.append((topic, aspect, pids))

    # A few nulls (never both for one paper), as in the real file.
    idx = rng.sample(range(len(papers)), 10)
    for i in idx[:4]:
        papers[i] = (papers[i][0], None, papers[i][2])
    for i in idx[4:]:
        papers[i] = (papers[i][0], papers[i][1], None)
    rng.shuffle(papers)

    # Every group is asked at least once if possible; multi-paper groups a bit more often.
    n_q = N_TRAIN + N_VALID + N_TEST
    order = list(range(len(groups)))
    rng.shuffle(order)
    weights = [1.0 + 0.5 * (len(g[2]) - 1) for g in groups]
    chosen = order[:n_q] + rng.choices(range(len(groups)), weights=weights, k=max(0, n_q - len(order)))
    rng.shuffle(chosen)
    qs = []
    for g in chosen:
        topic, aspect, pids = groups[g]
        q = _question(rng, topic, aspect)
        q["pids"] = rng.sample(pids, len(pids))
        qs.append(q)
    return {pid: {"title": t, "abstract": a} for pid, t, a in papers}, qs


def generate(seed: int = 0) -> dict[str, str]:
    """Return ``{file name: file content}`` for the sample (deterministic for ``seed``)."""
    paper_map, qs = build(seed)

    def jsonl(rows: list[dict], with_pids: bool) -> str:
        keep = ("question", "body", "pids") if with_pids else ("question", "body")
        return "".join(json.dumps({k: r[k] for k in keep}, ensure_ascii=False) + "\n" for r in rows)

    return {
        "qa_train.txt": jsonl(qs[:N_TRAIN], True),
        "qa_valid_wo_ans.txt": jsonl(qs[N_TRAIN:N_TRAIN + N_VALID], False),
        "qa_test_wo_ans.txt": jsonl(qs[N_TRAIN + N_VALID:], False),
        "pid_to_title_abs_update_filter.json": json.dumps(paper_map, ensure_ascii=False, indent=1) + "\n",
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: data/aqa_sample)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in generate(args.seed).items():
        (args.out / name).write_bytes(text.encode("utf-8"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
