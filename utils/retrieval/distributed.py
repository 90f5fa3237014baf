"""Multi-process / multi-GPU helpers: process group set-up, gathers with gradient, sharded encoding, launch.

Training across GPUs runs one process per GPU under ``torchrun`` (``launch``); each process
calls ``init()`` which reads the ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` variables torchrun sets.
Encoding can also use several GPUs from one process (``encode_multi_device``).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    initialized_here: bool = False  # we created the process group (so we tear it down)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def world_size() -> int:
    """Processes in the job (1 when not launched by torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def init(device: str | None = None) -> DistInfo:
    """Join the torchrun job (nccl on GPU, gloo on CPU); a no-op returning rank 0 of 1 otherwise.

    Each rank uses ``cuda:LOCAL_RANK`` when CUDA is available (else ``device`` or CPU).
    """
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if ws <= 1:
        return DistInfo(device=device or ("cuda" if torch.cuda.is_available() else "cpu"))
    use_cuda = torch.cuda.is_available() and not (device or "").startswith("cpu")
    if use_cuda:
        torch.cuda.set_device(local)
    here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        here = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, f"cuda:{local}" if use_cuda else "cpu", here)


def shutdown(info: DistInfo) -> None:
    """Destroy the process group if ``init`` created it."""
    if info.initialized_here and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard_range(n: int, rank_: int, world: int) -> slice:
    """Contiguous ``np.array_split``-style shard ``rank_`` of ``range(n)`` (sizes differ by at most 1)."""
    base, extra = divmod(n, world)
    start = rank_ * base + min(rank_, extra)
    return slice(start, start + base + (1 if rank_ < extra else 0))


def shard_sizes(n: int, world: int) -> list[int]:
    return [shard_range(n, r, world).stop - shard_range(n, r, world).start for r in range(world)]


class _AllGatherWithGrad(torch.autograd.Function):
    """Concatenate every rank's rows; backward sums the gradient over ranks and returns our slice.

    Hand-written because ``torch.distributed.nn.all_gather`` needs equal shapes on every rank
    (our passage shards differ by one row) — shards are padded to the largest, gathered, trimmed.
    """

    @staticmethod
    def forward(ctx, local: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
        r = dist.get_rank()
        ctx.sizes, ctx.rank = sizes, r
        width = max(sizes)
        padded = local.new_zeros((width,) + tuple(local.shape[1:]))
        padded[: local.shape[0]] = local
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([p[:s] for p, s in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # every rank's loss may depend on our rows
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None


def all_gather_with_grad(local: torch.Tensor, sizes: Sequence[int] | None = None) -> torch.Tensor:
    """Rows of every rank in rank order, differentiable; the identity in a single process.

    ``sizes``: rows per rank when every rank knows them (saves one collective).
    Every rank must call backward through the result (it runs a collective).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    if sizes is None:
        n = torch.tensor([local.shape[0]], device=local.device)
        got = [torch.empty_like(n) for _ in range(dist.get_world_size())]
        dist.all_gather(got, n)
        sizes = [int(x) for x in got]
    return _AllGatherWithGrad.apply(local, tuple(int(s) for s in sizes))


def all_reduce_grads(params: Sequence[torch.nn.Parameter], bucket_numel: int = 1 << 25) -> None:
    """Sum gradients over ranks in flat buckets (missing grads count as zeros)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    by_dtype: dict = {}
    for p in params:
        by_dtype.setdefault((p.grad.dtype, p.grad.device), []).append(p)
    for group in by_dtype.values():
        bucket: list = []
        size = 0
        for p in group + [None]:
            if p is not None:
                bucket.append(p)
                size += p.numel()
            if bucket and (p is None or size >= bucket_numel):
                flat = torch.cat([q.grad.reshape(-1) for q in bucket])
                dist.all_reduce(flat, op=dist.ReduceOp.SUM)
                offset = 0
                for q in bucket:
                    q.grad.copy_(flat[offset : offset + q.numel()].view_as(q.grad))
                    offset += q.numel()
                bucket, size = [], 0


def broadcast_params(params: Sequence[torch.nn.Parameter], src: int = 0) -> None:
    """Copy ``params`` from rank ``src`` to all ranks (identical start)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        with torch.no_grad():
            for p in params:
                dist.broadcast(p.data, src)


def all_reduce_sum(x: float, device: str | torch.device = "cpu") -> float:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return float(x)
    t = torch.tensor([float(x)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item())


# -- encoding over several devices ---------------------------------------------------------
def encode_multi_device(embedder, texts: Sequence[str], devices: Sequence[str] | None = None, **encode_kw) -> np.ndarray:
    """One process, several devices: a replica of ``embedder`` per device encodes a contiguous shard
    in its own thread (CUDA kernels release the GIL), results concatenated in input order.

    ``devices`` defaults to every visible GPU. Not for 4-bit models (they cannot be deep-copied).
    """
    devices = list(devices or [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"])
    if len(devices) == 1 or len(texts) < 2:
        return embedder.encode(list(texts), **encode_kw)
    replicas = []
    for i, dev in enumerate(devices):
        rep = embedder if i == 0 and str(embedder.model.device) == str(torch.device(dev)) else copy.deepcopy(embedder)
        rep.model.to(dev)
        replicas.append(rep)
    slices = [shard_range(len(texts), r, len(devices)) for r in range(len(devices))]
    encode_kw = {"show_progress": False, **encode_kw}
    with ThreadPoolExecutor(len(devices)) as pool:
        parts = list(pool.map(lambda a: a[0].encode(list(texts[a[1]]), **encode_kw) if a[1].stop > a[1].start else None,
                              zip(replicas, slices)))
    return np.concatenate([p for p in parts if p is not None])


# -- launching -----------------------------------------------------------------------------
def torchrun_command(module_args: Sequence[str], nproc: int, module: str = "utils.retrieval.train_cli") -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m <module> <args>``."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={int(nproc)}",
            "-m", module, *[str(a) for a in module_args]]


def launch(module_args: Sequence[str], nproc: int, module: str = "utils.retrieval.train_cli", cwd: str | None = None,
           env: dict | None = None, **popen_kw) -> subprocess.Popen:
    """Start ``torchrun`` with ``nproc`` processes running ``-m module module_args``; returns the Popen.

    ``cwd`` defaults to the repository root so ``utils`` is importable.
    """
    from utils.config import REPO_ROOT

    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO_ROOT), full_env.get("PYTHONPATH", "")] if p)
    return subprocess.Popen(torchrun_command(module_args, nproc, module), cwd=cwd or str(REPO_ROOT), env=full_env,
                            **popen_kw)
