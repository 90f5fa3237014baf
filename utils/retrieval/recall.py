"""Exact inner-product top-K search: faiss (GPU build where a GPU is), else torch.

faiss-gpu is too large to carry everywhere, so GPUs without it use an exact chunked
``torch.topk`` on the device; both give the same ids up to ties.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch


def _faiss():
    try:
        import faiss  # noqa: F401

        return faiss
    except ImportError:
        return None


def search_backend() -> str:
    """Which backend ``topk`` will use here: faiss-gpu, torch-cuda, faiss-cpu or torch-cpu."""
    faiss = _faiss()
    if torch.cuda.is_available():
        if faiss is not None and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
            return "faiss-gpu"
        return "torch-cuda"
    return "faiss-cpu" if faiss is not None else "torch-cpu"


def topk(
    queries: np.ndarray | torch.Tensor,
    corpus: np.ndarray | torch.Tensor,
    k: int,
    backend: str | None = None,
    chunk: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` corpus rows by inner product for each query: (scores, indices), best first."""
    k = min(k, len(corpus))
    backend = backend or search_backend()
    if backend.startswith("faiss"):
        faiss = _faiss()
        q = np.ascontiguousarray(_numpy(queries), dtype=np.float32)
        c = np.ascontiguousarray(_numpy(corpus), dtype=np.float32)
        index = faiss.IndexFlatIP(c.shape[1])
        if backend == "faiss-gpu":
            index = faiss.index_cpu_to_all_gpus(index)
        index.add(c)
        scores, idx = index.search(q, k)
        return scores, idx.astype(np.int64)
    device = "cuda" if backend == "torch-cuda" else "cpu"
    q = torch.as_tensor(queries, device=device, dtype=torch.float32)
    c = torch.as_tensor(corpus, device=device, dtype=torch.float32)
    s_out, i_out = [], []
    for start in range(0, len(q), chunk):
        s, i = torch.topk(q[start : start + chunk] @ c.T, k, dim=1)
        s_out.append(s)
        i_out.append(i)
    return torch.cat(s_out).cpu().numpy(), torch.cat(i_out).cpu().numpy()


def _numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def to_ranking(query_ids: Sequence[str], corpus_ids: Sequence[int], scores: np.ndarray, idx: np.ndarray) -> pd.DataFrame:
    """Long ranking table (``query_id, item_id, rank, score``)."""
    n, k = idx.shape
    corpus_ids = np.asarray(corpus_ids)
    return pd.DataFrame({
        "query_id": np.repeat(np.asarray(query_ids, dtype=object), k),
        "item_id": corpus_ids[idx.ravel()].astype(np.int64),
        "rank": np.tile(np.arange(1, k + 1), n),
        "score": scores.ravel().astype(np.float32),
    })


def retrieve(
    query_ids: Sequence[str], query_emb, corpus_ids: Sequence[int], corpus_emb, k: int = 100, backend: str | None = None
) -> pd.DataFrame:
    """Embeddings in, ranking table out."""
    scores, idx = topk(query_emb, corpus_emb, k, backend)
    return to_ranking(query_ids, corpus_ids, scores, idx)
