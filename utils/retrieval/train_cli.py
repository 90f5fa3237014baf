"""Command-line entry for ``train_embedder`` — what ``torchrun`` starts on every GPU.

    torchrun --standalone --nproc_per_node 2 -m utils.retrieval.train_cli \\
        --records runs/v1/round_1/hard_negatives.jsonl --model <base> --out runs/v1/round_1/embedder \\
        --config '{"batch_size": 64, "lora": {"r": 16}}'

(``utils.retrieval.distributed.launch`` / ``utils.retrieval.train_embedder.train_distributed`` build this command.)
"""

from __future__ import annotations

import argparse
import json

from utils.io import read_jsonl
from utils.retrieval.train_embedder import TrainConfig, train_embedder


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", required=True, help="FlagEmbedding jsonl (hard_negatives.jsonl)")
    ap.add_argument("--model", required=True, help="base model: local folder or hub id")
    ap.add_argument("--out", required=True, help="output folder (written by rank 0)")
    ap.add_argument("--config", default="{}", help="TrainConfig as a JSON object")
    ap.add_argument("--device", default=None)
    ap.add_argument("--progress", action="store_true")
    a = ap.parse_args(argv)
    cfg = TrainConfig.from_dict(json.loads(a.config))
    train_embedder(read_jsonl(a.records), a.model, a.out, cfg, device=a.device, show_progress=a.progress)


if __name__ == "__main__":
    main()
