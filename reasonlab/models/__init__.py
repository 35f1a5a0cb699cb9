"""Causal LMs and tokenizers: load and save standard Hugging Face folders, build tiny ones.

    from reasonlab import models
    model, tokenizer = models.load("runs/base", dtype="float32")
    models.save(model, tokenizer, "runs/base-copy")

`models.tiny` builds a small tokenizer and Qwen2/Llama model from scratch (no hub download);
`models.pretrain` trains one on a task's synthetic corpus. Every folder written here loads with
`AutoModelForCausalLM.from_pretrained` / `AutoTokenizer.from_pretrained`, and any local Hugging Face
causal LM folder loads here.
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

DTYPES: dict[str, Any] = {
    "auto": "auto",
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def resolve_device(name: str | None = "auto") -> torch.device:
    """`name` as a torch device; "auto" (or None): cuda when available (the process's current
    GPU, which `reasonlab.parallel.Dist.from_env` sets to LOCAL_RANK under torchrun), else cpu."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load(path: str | os.PathLike, dtype: str = "auto", device: str = "cpu") -> tuple[Any, Any]:
    """Load `(model, tokenizer)` from a local Hugging Face folder (never from the hub).

    The tokenizer pads on the left (what batched generation needs) and gets a pad token (its EOS)
    when it has none; the model's config and generation config get the same pad id.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(path)
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of: {', '.join(DTYPES)}")
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {str(folder)!r} does not exist")
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"{str(folder)!r} is not a model folder (no config.json); expected a folder written by "
            "save_pretrained, `reasonlab pretrain` or `reasonlab.models.save`"
        )
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=DTYPES[dtype], local_files_only=True)
    model.to(device)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"tokenizer in {str(folder)!r} has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def save(
    model: Any, tokenizer: Any, path: str | os.PathLike, state_dict: dict | None = None
) -> Path:
    """Write `model` (safetensors) and `tokenizer` to `path` as a standard Hugging Face folder.
    `state_dict`: the weights to write instead of the model's own (the full weights gathered from
    FSDP shards); tied weights (`lm_head.weight` tied to the embeddings) are written once.

    Atomic: everything is written to a temporary sibling folder that then replaces `path`, so a
    crash never leaves a half-written model where a reader expects a whole one. Refuses (ValueError)
    when `AutoTokenizer` would load the written tokenizer as one that splits text differently (see
    `reasonlab.models.tiny` on Qwen2 folders).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        extra = {}
        if state_dict is not None:  # without tied copies (a gathered FSDP state dict has them)
            tied = getattr(model, "all_tied_weights_keys", None) or {}
            extra["state_dict"] = {k: v for k, v in state_dict.items() if k not in tied}
        model.save_pretrained(tmp, safe_serialization=True, **extra)
        tokenizer.save_pretrained(tmp)
        _check_tokenizer_round_trip(tokenizer, tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


ROUND_TRIP_PROBE = (
    "A conversation between User and Assistant. User: Using the numbers [19, 36, 55], create an "
    "equation that equals 65. Assistant: <think> 19 + 36 = 55, wait, check it. </think> "
    "<answer> (55 - 36) * 19 </answer> déjà vu 1234567"
)


def _check_tokenizer_round_trip(tokenizer: Any, folder: Path) -> None:
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    want = tokenizer(ROUND_TRIP_PROBE, add_special_tokens=False)["input_ids"]
    got = loaded(ROUND_TRIP_PROBE, add_special_tokens=False)["input_ids"]
    if got != want:
        raise ValueError(
            f"AutoTokenizer loads this tokenizer back as {type(loaded).__name__}, which splits text "
            "differently from the tokenizer being saved (transformers rebuilds the pre-tokenizer "
            "of some model types, qwen2 among them); use arch='llama' for a tiny model with a "
            "compact tokenizer, or build_tokenizer(..., pre_tokenizer='qwen2')"
        )


DROPOUT_NAMES = ("dropout", "layerdrop")
"""Float attributes (of modules and of the model config) whose names contain one of these are
dropout probabilities read in training mode (Llama's `attention_dropout`, OPT's `layerdrop`)."""


def disable_dropout(model: torch.nn.Module) -> int:
    """Set every dropout probability of `model` to 0, so training mode computes what eval mode
    does (TRL's `disable_dropout_in_model`, which zeroes `nn.Dropout`; here also the float
    `*dropout*` / `*layerdrop*` attributes that attention layers and configs read in training mode).
    RL needs the update's logprobs to be the sampling policy's. Returns how many were non-zero."""
    changed = 0
    holders: list[Any] = list(model.modules())
    if getattr(model, "config", None) is not None:
        holders.append(model.config)
    for holder in holders:
        if isinstance(holder, torch.nn.modules.dropout._DropoutNd) and holder.p:
            holder.p, changed = 0.0, changed + 1
        for name, value in list(vars(holder).items()):
            if isinstance(value, float) and value and any(key in name for key in DROPOUT_NAMES):
                setattr(holder, name, 0.0)
                changed += 1
    return changed


def enable_gradient_checkpointing(model: Any) -> None:
    """Turn on transformers' activation (gradient) checkpointing of every decoder layer,
    non-reentrant (`use_reentrant=False`): what TRL uses too, and what lets gradients reach a KV
    cache computed outside the layer (the RL learner's shared-prompt pass). Transformers checkpoints
    only in training mode with gradients on, so the RL learner runs its update in training mode
    (dropout disabled with `disable_dropout`)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def num_params(model: torch.nn.Module) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def cache_keyword(model: Any) -> str:
    """The keyword argument by which `model.forward` takes a KV cache: `cache` where transformers
    has renamed it (and logs a deprecation warning for the old name), else `past_key_values`.

    Callers that pass a cache object they made keep using that object: its layers are updated in
    place, so the output's cache field (renamed the same way) need not be read back."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


__all__ = [
    "DROPOUT_NAMES",
    "DTYPES",
    "cache_keyword",
    "disable_dropout",
    "enable_gradient_checkpointing",
    "load",
    "num_params",
    "save",
]
