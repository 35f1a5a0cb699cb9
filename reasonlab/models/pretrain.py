"""Pretraining a tiny causal LM on a synthetic corpus (the base model of the CPU demo).

What is implemented (nanoGPT-style, on a Hugging Face model):

- data: each sample is a text, or a `(prompt, completion)` pair, tokenised once and ended with the
  EOS token. Samples are *packed* greedily, in a fresh random order each epoch, into rows of
  `seq_len` tokens; `position_ids` restart at 0 for each sample and no attention mask is passed, so
  transformers builds a block-diagonal causal mask from them and samples in a row never see each
  other. A sample longer than `seq_len` is cut (counted in the stats as `cut_samples`).
- loss: next-token cross-entropy averaged over target tokens. `loss_on="completion"` counts only
  the completion tokens of pairs (and their EOS), as in SFT on prompt/response data; "all" counts
  every token after the first of each sample.
- optimiser: AdamW (betas 0.9, 0.95), linear warm-up for `warmup` steps then cosine decay to
  `min_lr_ratio * lr`, gradient clipping at `grad_clip`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

Sample = str | tuple[str, str]


def tokenize_samples(
    samples: Sequence[Sample], tokenizer: Any, loss_on: str = "completion"
) -> list[tuple[list[int], list[bool]]]:
    """Per sample, (token ids ending with EOS, which of those ids are loss targets)."""
    if loss_on not in ("completion", "all"):
        raise ValueError(f"loss_on must be 'completion' or 'all', got {loss_on!r}")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token")
    out = []
    for i, sample in enumerate(samples):
        if isinstance(sample, str):
            prompt, completion = "", sample
        elif isinstance(sample, tuple) and len(sample) == 2:
            prompt, completion = sample
        else:
            raise TypeError(
                f"sample {i}: expected a str or a (prompt, completion) pair, got {type(sample).__name__}"
            )
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [eos]
        ids = prompt_ids + completion_ids
        if loss_on == "all" or not prompt_ids:
            target = [True] * len(ids)
        else:
            target = [False] * len(prompt_ids) + [True] * len(completion_ids)
        target[0] = False  # nothing predicts a sample's first token
        out.append((ids, target))
    return out


def pack(
    samples: list[tuple[list[int], list[bool]]], seq_len: int, pad_id: int, rng: random.Random
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Samples packed greedily in a random order into rows of `seq_len`.

    Returns input_ids, position_ids and target masks, each [rows, seq_len]; position ids restart
    at 0 for each sample (the padding at a row's end is one more sample with no targets).
    """
    order = list(range(len(samples)))
    rng.shuffle(order)
    rows: list[list[tuple[list[int], list[bool]]]] = [[]]
    used = 0
    for i in order:
        ids, target = samples[i]
        ids, target = ids[:seq_len], target[:seq_len]
        if used + len(ids) > seq_len:
            rows.append([])
            used = 0
        rows[-1].append((ids, target))
        used += len(ids)
    input_ids = torch.full((len(rows), seq_len), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), seq_len), dtype=torch.long)
    targets = torch.zeros((len(rows), seq_len), dtype=torch.bool)
    for r, row in enumerate(rows):
        at = 0
        for ids, target in row:
            n = len(ids)
            input_ids[r, at : at + n] = torch.tensor(ids)
            positions[r, at : at + n] = torch.arange(n)
            targets[r, at : at + n] = torch.tensor(target)
            at += n
        positions[r, at:] = torch.arange(seq_len - at)
    return input_ids, positions, targets


def lr_at(step: int, steps: int, warmup: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak learning rate at `step` (0-based): linear warm-up, cosine decay."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def pretrain(
    samples: Sequence[Sample],
    tokenizer: Any,
    model: Any,
    *,
    steps: int,
    batch_size: int = 16,
    lr: float = 3e-3,
    seq_len: int = 256,
    seed: int = 0,
    warmup: int = 20,
    log_every: int = 25,
    loss_on: str = "completion",
    weight_decay: float = 0.01,
    grad_clip: float = 1.0,
    min_lr_ratio: float = 0.1,
    num_threads: int | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train `model` in place on `samples` (texts or (prompt, completion) pairs, see module doc).

    batch_size is in packed rows of `seq_len` tokens. num_threads sets torch's intra-op threads for
    the run (None: leave torch's setting). callback(record) is called every `log_every` steps with
    {step, loss, lr, tokens_per_s (packed tokens processed), seconds}. Returns stats: steps, final_loss (mean of the last
    `log_every` steps), first_loss, losses (one per log), seconds, tokens (target tokens seen),
    epochs, num_params, cut_samples.
    """
    if steps < 1 or batch_size < 1 or seq_len < 2:
        raise ValueError(
            f"need steps >= 1, batch_size >= 1, seq_len >= 2; got {steps}, {batch_size}, {seq_len}"
        )
    data = tokenize_samples(samples, tokenizer, loss_on)
    if not data:
        raise ValueError("no samples to train on")
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    device = next(model.parameters()).device
    rng = random.Random(seed)
    old_threads = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
        betas=(0.9, 0.95),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_at(s, steps, warmup, min_lr_ratio)
    )

    was_training = model.training
    model.train()
    losses: list[float] = []
    window: list[float] = []
    first_loss = None
    tokens_seen = 0
    epoch, cursor = 0, 0
    input_ids, positions, targets = pack(data, seq_len, pad_id, rng)
    start = last_log = time.perf_counter()
    steps_at_log = 0
    try:
        for step in range(steps):
            if cursor + batch_size > len(input_ids):
                epoch += 1
                input_ids, positions, targets = pack(data, seq_len, pad_id, rng)
                cursor = 0
            rows = slice(cursor, cursor + batch_size)
            cursor += batch_size
            ids, pos, tgt = (
                input_ids[rows].to(device),
                positions[rows].to(device),
                targets[rows].to(device),
            )
            logits = model(input_ids=ids, position_ids=pos, use_cache=False).logits  # [B, T, V]
            # logits at t predict token t + 1
            mask = tgt[:, 1:]
            loss = torch.nn.functional.cross_entropy(logits[:, :-1][mask].float(), ids[:, 1:][mask])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            scheduler.step()

            value = float(loss.detach())
            first_loss = value if first_loss is None else first_loss
            window.append(value)
            tokens_seen += int(mask.sum())
            if (step + 1) % log_every == 0 or step == steps - 1:
                now = time.perf_counter()
                record = {
                    "step": step + 1,
                    "loss": sum(window) / len(window),
                    "lr": scheduler.get_last_lr()[0],
                    "tokens_per_s": (step + 1 - steps_at_log)
                    * batch_size
                    * seq_len
                    / max(now - last_log, 1e-9),
                    "seconds": now - start,
                }
                losses.append(record["loss"])
                window = []
                last_log, steps_at_log = now, step + 1
                if callback is not None:
                    callback(record)
    finally:
        model.train(was_training)
        torch.set_num_threads(old_threads)
    from reasonlab.models import num_params

    return {
        "steps": steps,
        "first_loss": first_loss,
        "final_loss": losses[-1],
        "losses": losses,
        "seconds": time.perf_counter() - start,
        "tokens": tokens_seen,
        "epochs": epoch + cursor / max(1, len(input_ids)),
        "num_params": num_params(model),
        "cut_samples": sum(len(ids) > seq_len for ids, _ in data),
    }


__all__ = ["lr_at", "pack", "pretrain", "tokenize_samples"]
