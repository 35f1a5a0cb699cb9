"""Checkpoints that let a run resume exactly where it stopped.

A checkpoint is a folder `RUN_DIR/checkpoints/step_000120/` holding:

- `model/`: the policy as a standard Hugging Face folder (safetensors + tokenizer), loadable by
  `reasonlab.models.load` and `reasonlab eval` as it is; with LoRA, peft's adapter folder
  (adapter_config.json, adapter_model.safetensors) and the tokenizer: the base model is the
  run's `model.path`;
- `training.pt`: optimiser and LR-scheduler state, the value head (PPO), the reference model's
  weights when it was refreshed away from the initial model, and the RNG states of python, numpy
  and torch (CPU and CUDA);
- `state.json`: the step, the data stream's position, the count of consecutive bad steps, the step
  the reference model was last refreshed, and anything else the trainer records.

Under FSDP (`model.parallel=fsdp`, the model's parameters are shards) the optimiser state and the
weights are written by every rank through `torch.distributed.checkpoint` (DCP) into `sharded/`
(the model's and the optimiser's sharded state dicts, and the reference model's when it was
refreshed), and read back into the shards on resume, exactly, whatever the world size; `model/`
is still the full Hugging Face folder (gathered to rank 0), and `training.pt` holds no optimiser.

Written atomically: everything goes into a hidden temporary folder in `checkpoints/` that is
renamed (`os.replace`, atomic on POSIX) to its final name once complete, so a run killed mid-write
leaves a `.tmp-*` folder that `latest_checkpoint` ignores, never a half checkpoint under a real name.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINTS = "checkpoints"
_NAME = re.compile(r"^step_(\d+)$")


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No "Writing model shards" progress bar in the middle of the training bar."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def checkpoint_dir(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step_{step:06d}"


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run as (step, folder), oldest first (temporary folders skipped)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _NAME.match(child.name)
        if match and child.is_dir() and (child / "state.json").is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def remove_partial(run_dir: str | os.PathLike) -> int:
    """Delete the temporary folders a killed save left in `checkpoints/`; returns how many."""
    root = Path(run_dir) / CHECKPOINTS
    partial = [p for p in root.glob(".tmp-*") if p.is_dir()] if root.is_dir() else []
    for folder in partial:
        shutil.rmtree(folder, ignore_errors=True)
    return len(partial)


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    *,
    model: Any,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict[str, Any],
    value_head: torch.nn.Module | None = None,
    ref_model: torch.nn.Module | None = None,
    keep: int = 2,
    dist: Any = None,
    peft: Any = None,
) -> Path:
    """Write the checkpoint of `step` atomically and delete all but the newest `keep`.

    `state` is JSON-serialisable trainer state (data position, counters). `ref_model`: pass it only
    when it differs from the initial model (it was refreshed); it is then restored on resume.
    A replicated model is saved by rank 0 alone; an FSDP-sharded one by every rank of `dist` (a
    `reasonlab.rl.distributed.Dist`), each writing its shards. `peft`: the peft model around
    `model` (LoRA): only its adapters are written.
    """
    from reasonlab import models
    from reasonlab.parallel import full_state_dict, is_sharded

    root = Path(run_dir) / CHECKPOINTS
    final = checkpoint_dir(run_dir, step)
    sharded = is_sharded(model)
    main = dist is None or dist.is_main
    tmp = None
    if main:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step_{step:06d}-", dir=root))
    if sharded:  # every rank writes into rank 0's temporary folder
        tmp = Path(dist.all_gather_objects(str(tmp))[0])
    try:
        full = full_state_dict(model, rank0_only=True) if sharded else None  # a collective
        if sharded:
            _save_sharded(tmp / "sharded", model, optimizer, ref_model)
            dist.barrier()
        if not main:
            return final
        with _quiet_transformers():
            models.save(model if peft is None else peft, tokenizer, tmp / "model", full)
        torch.save(
            {
                "optimizer": None if sharded else optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "value_head": None if value_head is None else value_head.state_dict(),
                "ref_model": None if ref_model is None or sharded else ref_model.state_dict(),
                "rng": rng_state(),
            },
            tmp / "training.pt",
        )
        (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=1))
        if final.exists():  # a re-run of the same step (resume after a crash while saving)
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    for _, old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _sharded_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, ref_model: torch.nn.Module | None
) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optim_state}
    if ref_model is not None:
        state["ref_model"] = get_state_dict(ref_model, [])[0]
    return state


def _save_sharded(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    ref_model: torch.nn.Module | None,
) -> None:
    import torch.distributed.checkpoint as dcp

    dcp.save(_sharded_state(model, optimizer, ref_model), checkpoint_id=str(folder))


def _load_sharded(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    ref_model: torch.nn.Module | None,
) -> None:
    """Read the DCP checkpoint in `folder` into the model's and optimiser's shards (in place)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import Metadata
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_state_dict

    reader = dcp.FileSystemReader(str(folder))
    metadata: Metadata = reader.read_metadata()
    has_ref = any(key.startswith("ref_model.") for key in metadata.state_dict_metadata)
    state = _sharded_state(model, optimizer, ref_model if has_ref else None)
    dcp.load(state, checkpoint_id=str(folder))
    set_state_dict(
        model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"]
    )
    if has_ref:
        set_model_state_dict(ref_model, state["ref_model"])


def load_checkpoint(
    path: str | os.PathLike,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    value_head: torch.nn.Module | None = None,
    ref_model: torch.nn.Module | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load a checkpoint into the given objects (in place) and return its `state.json`.

    The model's weights come from `path/model/model.safetensors` (the exact tensors saved), or,
    for an FSDP-sharded model, with the optimiser state from the DCP checkpoint `path/sharded/`
    (every rank must call). The reference model is overwritten only when the checkpoint holds one
    (it had been refreshed).
    """
    from safetensors.torch import load_file

    folder = Path(path)
    extra = torch.load(folder / "training.pt", map_location="cpu", weights_only=False)
    adapters = folder / "model" / "adapter_model.safetensors"
    if adapters.is_file() or hasattr(model, "peft_config"):
        _load_adapters(folder, adapters, model)
        optimizer.load_state_dict(extra["optimizer"])
        return _load_rest(folder, extra, scheduler, value_head, ref_model, restore_rng)
    from reasonlab.parallel import is_sharded

    if is_sharded(model):
        if not (folder / "sharded").is_dir():
            raise RuntimeError(
                f"checkpoint {folder} has no sharded/ folder: it was not written by an FSDP run "
                "(model.parallel=fsdp); resume it with the parallel mode it was written with"
            )
        _load_sharded(folder / "sharded", model, optimizer, ref_model)
        return _load_rest(folder, extra, scheduler, value_head, None, restore_rng)
    if extra["optimizer"] is None:
        raise RuntimeError(
            f"checkpoint {folder} holds sharded optimiser state (an FSDP run): resume it with "
            "model.parallel=fsdp under torchrun"
        )
    weights = load_file(str(folder / "model" / "model.safetensors"), device="cpu")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if k not in tied and not k.endswith("lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(
            f"checkpoint {folder} does not match the model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    optimizer.load_state_dict(extra["optimizer"])
    return _load_rest(folder, extra, scheduler, value_head, ref_model, restore_rng)


def _load_adapters(folder: Path, adapters: Path, model: Any) -> None:
    """LoRA: the adapters saved in the checkpoint into `model` (a peft model), exactly."""
    if not hasattr(model, "peft_config") or not adapters.is_file():
        raise RuntimeError(
            f"checkpoint {folder} and the run disagree on LoRA (adapters saved: "
            f"{adapters.is_file()}, model.lora set: {hasattr(model, 'peft_config')}); resume with "
            "the recipe the run was started with"
        )
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    result = set_peft_model_state_dict(model, load_file(str(adapters), device="cpu"))
    if result.unexpected_keys:
        raise RuntimeError(
            f"checkpoint {folder}: unexpected adapter weights {result.unexpected_keys[:5]}"
        )


def _load_rest(
    folder: Path,
    extra: dict[str, Any],
    scheduler: Any,
    value_head: torch.nn.Module | None,
    ref_model: torch.nn.Module | None,
    restore_rng: bool,
) -> dict[str, Any]:
    scheduler.load_state_dict(extra["scheduler"])
    if value_head is not None:
        if extra["value_head"] is None:
            raise RuntimeError(f"checkpoint {folder} has no value head but the run needs one")
        value_head.load_state_dict(extra["value_head"])
    if ref_model is not None and extra["ref_model"] is not None:
        ref_model.load_state_dict(extra["ref_model"])
    if restore_rng:
        set_rng_state(extra["rng"])
    return json.loads((folder / "state.json").read_text())


__all__ = [
    "checkpoint_dir",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "remove_partial",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]
