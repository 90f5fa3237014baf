"""One module per notebook (``mine_hn`` = 01 … ``fuse_submit`` = 08), each readable top to bottom,
over the run's ``context`` and the operations the stages share (``ops``)."""

from utils.stages import (context, eval_embedder, fuse_submit, mine_hn, ops, recall, rerank, train_embedder,  # noqa: F401
                          train_reranker)
