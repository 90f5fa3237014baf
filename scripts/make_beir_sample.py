#!/usr/bin/env python
"""Generate a tiny synthetic retrieval data set in the BEIR layout.

    python scripts/make_beir_sample.py --out data/beir_sample --seed 0

Writes ``corpus.jsonl``, ``queries.jsonl``, ``qrels/train.tsv`` and ``qrels/test.tsv``.
40 subjects (tomato plants, road bicycles, ...) each get 4 of 6 facets (cost, upkeep,
safety, origins, storage, first steps); every (subject, facet) cell has one document, 40
cells a second one (200 documents). Each cell has one labelled query (160, their positives
the cell's 1–2 documents; a few score-0 judgements too), split 120 / 40 into train / test
qrels, and 20 more queries with no qrels are the ones to predict. Queries paraphrase their
cell (a synonym of the subject, other words for the facet), while distractor documents share
the subject (other facets) or the facet wording (other subjects), plus filler sentences drawn
from one shared pool: learnable, not trivial. Every text comes from the templates below and a
seeded RNG; output is deterministic for a seed (byte-identical files).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

# (name in documents, synonym used by queries)
SUBJECTS: list[tuple[str, str]] = [
    ("tomato plants", "tomatoes"), ("sourdough loaves", "homemade breads"),
    ("road bicycles", "racing bikes"), ("honey bees", "beehives"),
    ("cast iron pans", "iron skillets"), ("houseplants", "indoor plants"),
    ("acoustic guitars", "guitars"), ("electric scooters", "e-scooters"),
    ("sea kayaks", "touring kayaks"), ("wool sweaters", "knitted jumpers"),
    ("leather boots", "hiking boots"), ("aquarium fish", "fish tanks"),
    ("backyard chickens", "hens"), ("espresso machines", "coffee makers"),
    ("solar panels", "photovoltaic modules"), ("camping tents", "tents"),
    ("vinyl records", "LPs"), ("chef knives", "kitchen knives"),
    ("rose bushes", "roses"), ("film cameras", "analog cameras"),
    ("wooden chairs", "timber seats"), ("electric guitars", "electrics"),
    ("snowboards", "boards for snow"), ("mountain bikes", "trail bikes"),
    ("fountain pens", "ink pens"), ("herb gardens", "kitchen herbs"),
    ("pet rabbits", "bunnies"), ("rock climbing shoes", "climbing shoes"),
    ("canvas paintings", "oil paintings"), ("compost heaps", "compost bins"),
    ("ceramic bowls", "clay pots"), ("paper books", "hardbacks"),
    ("wind chimes", "chimes"), ("kitchen blenders", "blenders"),
    ("sailing dinghies", "small sailboats"), ("bonsai trees", "miniature trees"),
    ("swimming pools", "backyard pools"), ("mechanical watches", "wristwatches"),
    ("board games", "tabletop games"), ("wood stoves", "log burners"),
]

# facet -> (title words, document templates, query templates); {s} = subject, {q} = query subject
FACETS: dict[str, tuple[str, list[str], list[str]]] = {
    "cost": (
        "prices and budget",
        [
            "The price of {s} varies widely. Entry models are cheap, while premium {s} can cost several times more.",
            "Budgeting for {s}: the purchase is only part of the expense, since running costs add up over the years.",
        ],
        [
            "how much money do {q} cost",
            "are {q} expensive to buy",
            "cheapest way to afford {q}",
        ],
    ),
    "upkeep": (
        "care and maintenance",
        [
            "Caring for {s} means regular cleaning and small checks. A little maintenance every week keeps {s} in good shape.",
            "Maintenance routine for {s}: inspect, clean and adjust on a schedule, and fix wear before it spreads.",
        ],
        [
            "how do i look after my {q}",
            "weekly routine to keep {q} working well",
            "what looking after do {q} need",
        ],
    ),
    "safety": (
        "risks and safety",
        [
            "{S} can be hazardous if handled carelessly. Wear protection and follow the safety guidance to avoid injury.",
            "Safety with {s}: most accidents come from haste, so read the warnings and keep children at a distance.",
        ],
        [
            "are {q} dangerous",
            "can you get hurt using {q}",
            "precautions to avoid accidents with {q}",
        ],
    ),
    "origins": (
        "history and origins",
        [
            "{S} have a long history. The first {s} appeared centuries ago, and their design changed slowly over time.",
            "The origins of {s} go back to early craftsmen, whose inventions shaped the {s} we know today.",
        ],
        [
            "where did {q} come from originally",
            "who invented {q} and when",
            "past of {q} through the centuries",
        ],
    ),
    "storage": (
        "storing it well",
        [
            "Store {s} in a cool, dry place away from sunlight. Damp storage ruins {s} faster than heavy use.",
            "Between seasons, keep {s} covered and off the floor; a dry shelf or cupboard is the best place for storage.",
        ],
        [
            "best place to keep {q} when not in use",
            "where should i put {q} over winter",
            "can damp spoil {q} while they sit unused",
        ],
    ),
    "beginners": (
        "getting started",
        [
            "Beginners with {s} should start simple. Learn the basics first, then move on to harder projects with {s}.",
            "A first guide to {s}: pick an easy starting point, practise often, and ask experienced people for advice.",
        ],
        [
            "tips for a newcomer to {q}",
            "i am new to {q}, where do i begin",
            "easiest way to learn about {q} as a novice",
        ],
    ),
}

# Filler shared by every document: words that tie unrelated documents together.
FILLER: list[str] = [
    "Many people ask about this every year.",
    "Local clubs and shops are a good source of advice.",
    "Quality matters more than quantity here.",
    "Experienced owners often disagree on the details.",
    "Weather and climate change the answer in some regions.",
    "A notebook of what you tried helps a lot.",
    "Small mistakes early on are common and easy to fix.",
    "Online forums have long threads on this question.",
    "The right choice depends on how often you use it.",
    "Patience pays off more than expensive tools.",
]

QUERY_PREFIXES = ["", "", "", "question: ", "quick question - ", "help: "]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _doc_text(rng: random.Random, template: str, subject: str) -> str:
    text = template.format(s=subject, S=_cap(subject))
    extra = rng.sample(FILLER, rng.randint(1, 2))
    return " ".join([text] + extra)


def _query_text(rng: random.Random, template: str, subject: str, synonym: str) -> str:
    q = synonym if rng.random() < 0.6 else subject
    return rng.choice(QUERY_PREFIXES) + template.format(q=q)


def generate(seed: int = 0) -> dict[str, str]:
    """File name -> file content of the sample (deterministic for ``seed``)."""
    rng = random.Random(seed)
    facets = list(FACETS)
    cells = [(si, f) for si in range(len(SUBJECTS)) for f in sorted(rng.sample(facets, 4), key=facets.index)]
    double = set(rng.sample(range(len(cells)), 40))

    docs = []  # (cell index, title, text)
    for ci, (si, f) in enumerate(cells):
        subject = SUBJECTS[si][0]
        words, doc_templates, _ = FACETS[f]
        variants = [0, 1] if ci in double else [rng.randrange(2)]
        for v in variants:
            title = "" if rng.random() < 0.1 else f"{_cap(subject)}: {words}"
            docs.append((ci, title, _doc_text(rng, doc_templates[v], subject)))
    rng.shuffle(docs)
    doc_ids = [f"doc{i:04d}" for i in range(len(docs))]
    docs_of: dict[int, list[str]] = {}
    for did, (ci, _, _) in zip(doc_ids, docs):
        docs_of.setdefault(ci, []).append(did)

    queries = []  # (cell index, text, role)
    for ci, (si, f) in enumerate(cells):
        template = rng.choice(FACETS[f][2])
        queries.append((ci, _query_text(rng, template, *SUBJECTS[si]), "labelled"))
    for ci in rng.sample(range(len(cells)), 20):
        si, f = cells[ci]
        template = rng.choice(FACETS[f][2])
        queries.append((ci, _query_text(rng, template, *SUBJECTS[si]), "predict"))
    rng.shuffle(queries)
    query_ids = [f"q{i:04d}" for i in range(len(queries))]

    labelled = [i for i, q in enumerate(queries) if q[2] == "labelled"]
    test_part = set(rng.sample(labelled, 40))
    qrels = {"train": [], "test": []}
    for i in labelled:
        ci = queries[i][0]
        rows = [(query_ids[i], did, 1) for did in sorted(docs_of[ci])]
        if rng.random() < 0.15:  # a judged non-relevant document: same subject, other facet
            si = cells[ci][0]
            near = [c for c in range(len(cells)) if cells[c][0] == si and c != ci]
            rows.append((query_ids[i], sorted(docs_of[rng.choice(near)])[0], 0))
        qrels["test" if i in test_part else "train"].extend(rows)

    def jsonl(rows: list[dict]) -> str:
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)

    def tsv(rows: list[tuple[str, str, int]]) -> str:
        return "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in rows)

    return {
        "corpus.jsonl": jsonl([{"_id": d, "title": t, "text": x} for d, (_, t, x) in zip(doc_ids, docs)]),
        "queries.jsonl": jsonl([{"_id": q, "text": t} for q, (_, t, _) in zip(query_ids, queries)]),
        "qrels/train.tsv": tsv(qrels["train"]),
        "qrels/test.tsv": tsv(qrels["test"]),
    }


def write_sample(out: Path, seed: int = 0) -> None:
    """Write the sample files under ``out``."""
    for name, content in generate(seed).items():
        path = Path(out) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8", newline="\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "beir_sample")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write_sample(args.out, args.seed)
    print(args.out)


if __name__ == "__main__":
    main()
