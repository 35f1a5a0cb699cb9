"""The learning-rate schedule and AdamW parameter groups shared by pretraining, SFT and RL.

`lr_factor(step, ...)` is the multiplier of the peak learning rate used by optimiser step `step`
(0-based: the number of scheduler steps taken before it, so `LambdaLR(optimizer, lambda s:
lr_factor(s, ...))` is the schedule), as implemented:

- warm-up: `(step + 1) / warmup_steps` for `step < warmup_steps`, so the first step already moves
  (transformers' `get_cosine_schedule_with_warmup` starts at 0 instead);
- then, with `progress = (step - warmup_steps) / (total_steps - warmup_steps)` clipped to 1 (the
  decay convention of transformers' schedulers: the peak at the first step after warm-up, the floor
  reached after the last step), `constant`: 1; `cosine`: `m + (1 - m) * 0.5 * (1 + cos(pi *
  progress))`; `linear`: `m + (1 - m) * (1 - progress)`, where `m = min_lr_ratio`.

This module imports nothing of ours, so every room may use it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

SCHEDULES = ("constant", "cosine", "linear")


def lr_factor(
    step: int,
    *,
    total_steps: int,
    warmup_steps: int = 0,
    schedule: str = "cosine",
    min_lr_ratio: float = 0.0,
) -> float:
    """Multiplier of the peak learning rate at optimiser step `step` (0-based); see module doc."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "cosine":
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "linear":
        return min_lr_ratio + (1 - min_lr_ratio) * (1 - progress)
    raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")


def scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    warmup_steps: int = 0,
    schedule: str = "cosine",
    min_lr_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """`LambdaLR` stepping `lr_factor` once per optimiser step."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(
            s,
            total_steps=total_steps,
            warmup_steps=warmup_steps,
            schedule=schedule,
            min_lr_ratio=min_lr_ratio,
        ),
    )


def adamw(
    model: torch.nn.Module,
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only, not on embeddings, norms or biases (nanoGPT's
    grouping; transformers' Trainer also exempts norms and biases but decays embeddings)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in named if not (p.ndim >= 2 and "embed" not in n)]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
        betas=betas,
        eps=eps,
    )


__all__: list[Any] = ["SCHEDULES", "adamw", "lr_factor", "scheduler"]
