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


def pad(
    samples: list[tuple[list[int], list[bool]]], seq_len: int, pad_id: int, rng: random.Random
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One sample per row, in a random order, cut to `seq_len` and right-padded.

    Returns input_ids, position_ids, target masks and the attention mask (1 on real tokens), each
    [samples, seq_len]; `RowStream` trims a batch to its longest row.
    """
    order = list(range(len(samples)))
    rng.shuffle(order)
    input_ids = torch.full((len(order), seq_len), pad_id, dtype=torch.long)
    targets = torch.zeros((len(order), seq_len), dtype=torch.bool)
    attention = torch.zeros((len(order), seq_len), dtype=torch.long)
    for r, i in enumerate(order):
        ids, target = samples[i]
        n = min(len(ids), seq_len)
        input_ids[r, :n] = torch.tensor(ids[:n])
        targets[r, :n] = torch.tensor(target[:n])
        attention[r, :n] = 1
    positions = torch.arange(seq_len).expand(len(order), seq_len).clone()
    return input_ids, positions, targets, attention


class RowStream:
    """Training rows in epochs: all samples packed (`pack`) or padded (`pad`) in a fresh random
    order each epoch; `take(n)` hands out the next `n` rows, starting a new epoch (and dropping the
    last epoch's remainder) when fewer than `n` are left.

    `state_dict()` (the epoch, the position in it and the random state that ordered it) restores
    the stream exactly with `load_state_dict`, for checkpoints.
    """

    def __init__(
        self,
        samples: list[tuple[list[int], list[bool]]],
        seq_len: int,
        pad_id: int,
        seed: int = 0,
        packing: bool = True,
    ):
        if not samples:
            raise ValueError("no samples to train on")
        self.samples, self.seq_len, self.pad_id, self.packing = samples, seq_len, pad_id, packing
        self.rng = random.Random(seed)
        self.epoch, self.cursor = 0, 0
        self._arrange()

    def _arrange(self) -> None:
        self._rng_state = self.rng.getstate()  # what ordered this epoch, for state_dict
        if self.packing:
            self.rows = (*pack(self.samples, self.seq_len, self.pad_id, self.rng), None)
        else:
            self.rows = pad(self.samples, self.seq_len, self.pad_id, self.rng)

    def __len__(self) -> int:
        """Rows in the current epoch."""
        return len(self.rows[0])

    def take(self, n: int) -> dict[str, torch.Tensor]:
        """The next `n` rows: input_ids, position_ids, targets (bool) and, when padding,
        attention_mask, each [n, T] (padded rows trimmed to the longest of the n). An epoch of
        fewer than `n` rows gives all of them, re-ordered at every call."""
        if self.cursor + n > len(self):
            self.epoch += 1
            self._arrange()
            self.cursor = 0
        rows = slice(self.cursor, self.cursor + n)
        self.cursor += n
        input_ids, positions, targets, attention = self.rows
        batch = {
            "input_ids": input_ids[rows],
            "position_ids": positions[rows],
            "targets": targets[rows],
        }
        if attention is not None:
            width = max(1, int(attention[rows].sum(1).max()))
            batch = {k: v[:, :width] for k, v in batch.items()}
            batch["attention_mask"] = attention[rows, :width]
        return batch

    @property
    def epochs(self) -> float:
        """Epochs done, fractional."""
        return self.epoch + self.cursor / max(1, len(self))

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self._rng_state
        return {"epoch": self.epoch, "cursor": self.cursor, "rng": [version, list(internal), gauss]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self._arrange()
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])


LossFn = Callable[[Any, dict[str, torch.Tensor]], tuple[torch.Tensor, int]]
"""`loss_fn(model, batch) -> (mean loss over the batch's loss tokens, their count)`."""


def nll_loss(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Next-token cross-entropy, averaged over the target tokens of `batch` (see `RowStream`)."""
    ids = batch["input_ids"]
    logits = model(
        input_ids=ids,
        position_ids=batch["position_ids"],
        attention_mask=batch.get("attention_mask"),
        use_cache=False,
    ).logits  # [B, T, V]
    mask = batch["targets"][:, 1:]  # logits at t predict token t + 1
    return torch.nn.functional.cross_entropy(logits[:, :-1][mask].float(), ids[:, 1:][mask]), int(
        mask.sum()
    )


def supervised_step(
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    micro_batches: Sequence[dict[str, torch.Tensor]],
    *,
    max_grad_norm: float | None = 1.0,
    loss_fn: LossFn = nll_loss,
) -> dict[str, float]:
    """One optimiser step of pretraining and SFT, over `micro_batches` (gradient accumulation).

    The loss is the mean over every loss token of all micro-batches (each micro-batch's mean
    weighted by its share of the tokens, as transformers' `num_items_in_batch`), so 1 micro-batch
    of 8 rows and 8 of 1 row give the same gradient. Micro-batches without loss tokens are skipped.
    Then clipping at `max_grad_norm` (None: none), AdamW, one scheduler step. Returns loss,
    grad_norm (before clipping), tokens (loss tokens) and lr (the one used).
    """
    device = next(model.parameters()).device
    counts = [int(b["targets"][:, 1:].sum()) for b in micro_batches]
    total = sum(counts)
    lr = scheduler.get_last_lr()[0]
    optimizer.zero_grad(set_to_none=True)
    loss_value = 0.0
    for batch, count in zip(micro_batches, counts):
        if count == 0:
            continue
        batch = {k: v.to(device) for k, v in batch.items()}
        loss, _ = loss_fn(model, batch)
        # the same tokens counted by the step: the mean of this micro-batch times its share
        share = count / total
        (loss * share).backward()
        loss_value += float(loss.detach()) * share
    params = [p for p in model.parameters() if p.grad is not None]
    if max_grad_norm is not None:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_grad_norm))
    else:
        grad_norm = float(torch.nn.utils.get_total_norm([p.grad for p in params]))
    optimizer.step()
    scheduler.step()
    return {"loss": loss_value, "grad_norm": grad_norm, "tokens": total, "lr": lr}


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
    from reasonlab.optim import adamw, scheduler

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
    old_threads = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    optimizer = adamw(model, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.95))
    schedule = scheduler(
        optimizer, total_steps=steps, warmup_steps=warmup, min_lr_ratio=min_lr_ratio
    )
    was_training = model.training
    model.train()
    losses: list[float] = []
    window: list[float] = []
    first_loss = None
    tokens_seen = 0
    stream = RowStream(data, seq_len, pad_id, seed=seed)
    start = last_log = time.perf_counter()
    steps_at_log = 0
    try:
        for step in range(steps):
            out = supervised_step(
                model, optimizer, schedule, [stream.take(batch_size)], max_grad_norm=grad_clip
            )
            value = out["loss"]
            first_loss = value if first_loss is None else first_loss
            window.append(value)
            tokens_seen += out["tokens"]
            if (step + 1) % log_every == 0 or step == steps - 1:
                now = time.perf_counter()
                record = {
                    "step": step + 1,
                    "loss": sum(window) / len(window),
                    "lr": schedule.get_last_lr()[0],
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
        "epochs": stream.epochs,
        "num_params": num_params(model),
        "cut_samples": sum(len(ids) > seq_len for ids, _ in data),
    }


__all__ = [
    "RowStream",
    "nll_loss",
    "pack",
    "pad",
    "pretrain",
    "supervised_step",
    "tokenize_samples",
]
