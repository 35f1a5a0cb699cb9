"""Pretraining a tiny causal LM on a synthetic corpus (the base model of the CPU demo).

What is implemented (nanoGPT-style, on a Hugging Face model):

- data: each sample is a text, or a `(prompt, completion)` pair, tokenised once and ended with the
  EOS token. Samples are *packed* greedily, in a fresh random order each epoch, into rows of
  `seq_len` tokens; `position_ids` restart at 0 for each sample and no attention mask is passed, so
  transformers builds a block-diagonal causal mask from them and samples in a row never see each
  other. A sample longer than `seq_len` is cut (counted in the stats as `cut_samples`).
- shared-prompt packing (`packing="shared_prompt"`): samples with the same prompt (the corpus's
  attempts at one problem, or N sampled completions per prompt) are packed as *one* copy of the
  prompt followed by as many of its completions as fit in the row; each completion's position ids
  continue from the prompt's end, and a 4D attention mask (`shared_prompt_mask`) lets a completion
  see its prompt and itself only. Logits equal those of each sample alone (tested), while a prompt
  shared by m completions is computed once instead of m times: the demo's corpus (44-token
  prompts, ~63-token attempts, 16 attempts per problem) fits in about half the rows. The mask is
  passed to the model as a 4D `attention_mask`, which transformers' sdpa and eager attention take
  as given (flash-attention kernels do not take one: use "samples" packing there).
- loss: next-token cross-entropy averaged over target tokens. `loss_on="completion"` counts only
  the completion tokens of pairs (and their EOS), as in SFT on prompt/response data; "all" counts
  every token after the first of each sample.
- optimiser: AdamW (betas 0.9, 0.95), linear warm-up for `warmup` steps then cosine decay to
  `min_lr_ratio * lr`, gradient clipping at `grad_clip`.
"""

from __future__ import annotations

import bisect
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

Sample = str | tuple[str, str]
PACKING = ("samples", "shared_prompt")
"""Packing modes of `pretrain` (module doc)."""


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


class SharedRows:
    """Rows of shared-prompt packing, each tensor [rows, seq_len]: input ids, position ids, loss
    targets, and per token the segment (one prompt and its completions) and branch (0: the
    prompt, j >= 1: its j-th completion in the row) that `shared_prompt_mask` reads, and the
    row position whose logits predict the token (`source`: the previous position, except for a
    completion's first token, which its prompt's last token predicts)."""

    def __init__(self, input_ids, positions, targets, segment, branch, source):  # noqa: ANN001
        self.input_ids, self.positions, self.targets = input_ids, positions, targets
        self.segment, self.branch, self.source = segment, branch, source

    def __len__(self) -> int:
        return len(self.input_ids)


def group_by_prompt(
    data: list[tuple[list[int], list[bool]]], prompt_lengths: list[int]
) -> list[tuple[list[int], list[bool], list[tuple[list[int], list[bool]]]]]:
    """`tokenize_samples` output regrouped by prompt: (prompt ids, prompt targets, [(completion
    ids, completion targets), ...]) in first-seen order of the prompts."""
    groups: dict[tuple[int, ...], tuple[list[int], list[bool], list]] = {}
    for (ids, target), n in zip(data, prompt_lengths):
        key = tuple(ids[:n])
        if key not in groups:
            groups[key] = (ids[:n], target[:n], [])
        groups[key][2].append((ids[n:], target[n:]))
    return list(groups.values())


def _best_fit(sizes: list[int], capacity: int) -> list[list[int]]:
    """Best-fit decreasing bin packing: indices of `sizes` per bin (each bin's total <= capacity).
    Ties keep the input order, so a shuffled input gives a random packing."""
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i])
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin index), sorted
    for i in order:
        at = bisect.bisect_left(free, (sizes[i], -1))
        if at == len(free):
            bins.append([i])
            room, b = capacity - sizes[i], len(bins) - 1
        else:
            room, b = free.pop(at)
            bins[b].append(i)
            room -= sizes[i]
        bisect.insort(free, (room, b))
    return bins


def pack_shared(
    groups: list[tuple[list[int], list[bool], list[tuple[list[int], list[bool]]]]],
    seq_len: int,
    pad_id: int,
    rng: random.Random,
) -> SharedRows:
    """Shared-prompt packing (module doc). Each group's completions, in a random order, are
    packed into segments [prompt, completion, completion, ...] of at most `seq_len` tokens, and
    the segments of all groups into rows, both by best-fit decreasing bin packing; the rows are
    shuffled, so that a batch holds segments of different prompts. A prompt longer than half a row
    is cut to half of it; a completion is cut to what the row leaves after its prompt.
    """
    Piece = tuple[list[int], list[bool], int]  # ids, targets, branch (0 = prompt)
    segments: list[list[Piece]] = []
    for g in rng.sample(range(len(groups)), len(groups)):
        prompt, prompt_target, completions = groups[g]
        prompt, prompt_target = prompt[: seq_len // 2], prompt_target[: seq_len // 2]
        room = seq_len - len(prompt)
        picks = rng.sample(range(len(completions)), len(completions))
        cut = [(completions[j][0][:room], completions[j][1][:room]) for j in picks]
        for members in _best_fit([len(ids) for ids, _ in cut], room):
            pieces: list[Piece] = [(prompt, prompt_target, 0)]
            pieces += [(*cut[j], k + 1) for k, j in enumerate(members)]
            segments.append(pieces)
    sizes = [sum(len(ids) for ids, _, _ in pieces) for pieces in segments]
    rows = [[segments[i] for i in members] for members in _best_fit(sizes, seq_len)]
    rng.shuffle(rows)
    shape = (len(rows), seq_len)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    positions = torch.zeros(shape, dtype=torch.long)
    targets = torch.zeros(shape, dtype=torch.bool)
    segments = torch.zeros(shape, dtype=torch.long)
    branches = torch.zeros(shape, dtype=torch.long)
    sources = (torch.arange(seq_len) - 1).clamp(min=0).repeat(len(rows), 1)
    for r, row in enumerate(rows):
        at = 0
        for s, pieces in enumerate(row):
            prompt_len = len(pieces[0][0])
            prompt_end = at + prompt_len - 1  # its logits predict each completion's first token
            for ids, target, branch in pieces:
                n = len(ids)
                start = 0 if branch == 0 else prompt_len
                if branch and prompt_len:
                    sources[r, at] = prompt_end
                input_ids[r, at : at + n] = torch.tensor(ids, dtype=torch.long)
                positions[r, at : at + n] = torch.arange(start, start + n)
                targets[r, at : at + n] = torch.tensor(target, dtype=torch.bool)
                segments[r, at : at + n] = s
                branches[r, at : at + n] = branch
                at += n
        # the padding is one more segment (its own prompt) with no targets
        positions[r, at:] = torch.arange(seq_len - at)
        segments[r, at:] = len(row)
    return SharedRows(input_ids, positions, targets, segments, branches, sources)


def shared_prompt_mask(
    segment: torch.Tensor, branch: torch.Tensor, attn_implementation: str, dtype: torch.dtype
) -> torch.Tensor:
    """The 4D attention mask [B, 1, T, T] of shared-prompt rows (`segment`, `branch`: [B, T]): a
    token sees the earlier tokens of its own segment's prompt and of its own branch. sdpa takes it
    as booleans (True = attend), eager as additive floats (0 or the dtype's minimum)."""
    t = segment.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=segment.device).tril()  # [T, T]
    same_segment = segment[:, :, None] == segment[:, None, :]  # [B, Tq, Tk]
    visible_branch = (branch[:, None, :] == 0) | (branch[:, :, None] == branch[:, None, :])
    mask = (causal & same_segment & visible_branch)[:, None]  # [B, 1, T, T]
    if attn_implementation == "sdpa":
        return mask
    if attn_implementation == "eager":
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
            ~mask, torch.finfo(dtype).min
        )
    raise ValueError(
        f"shared-prompt packing needs a 4D attention mask, which attention implementation "
        f"{attn_implementation!r} does not take; valid: sdpa, eager (or packing='samples')"
    )


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
    packing: str = "samples",
    num_threads: int | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train `model` in place on `samples` (texts or (prompt, completion) pairs, see module doc).

    batch_size is in packed rows of `seq_len` tokens; packing is "samples" (position ids restart
    per sample) or "shared_prompt" (see module doc). num_threads sets torch's intra-op threads for
    the run (None: leave torch's setting). callback(record) is called every `log_every` steps with
    {step, loss, lr, tokens_per_s (packed tokens processed), seconds}. Returns stats: steps, final_loss (mean of the last
    `log_every` steps), first_loss, losses (one per log), seconds, tokens (target tokens seen),
    epochs, num_params, cut_samples.
    """
    if steps < 1 or batch_size < 1 or seq_len < 2:
        raise ValueError(
            f"need steps >= 1, batch_size >= 1, seq_len >= 2; got {steps}, {batch_size}, {seq_len}"
        )
    if packing not in PACKING:
        raise ValueError(f"packing must be one of {', '.join(PACKING)}; got {packing!r}")
    data = tokenize_samples(samples, tokenizer, loss_on)
    if not data:
        raise ValueError("no samples to train on")
    groups = None
    if packing == "shared_prompt":
        attn = getattr(model.config, "_attn_implementation", None) or "eager"
        shared_prompt_mask(
            torch.zeros(1, 1, dtype=torch.long),
            torch.zeros(1, 1, dtype=torch.long),
            attn,
            torch.float32,
        )
        prompt_lengths = [
            len(tokenizer(s[0], add_special_tokens=False)["input_ids"])
            if isinstance(s, tuple) and s[0]
            else 0
            for s in samples
        ]
        groups = group_by_prompt(data, prompt_lengths)
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

    def repack() -> tuple[torch.Tensor, ...]:
        if groups is None:
            return pack(data, seq_len, pad_id, rng)
        rows = pack_shared(groups, seq_len, pad_id, rng)
        return rows.input_ids, rows.positions, rows.targets, rows.segment, rows.branch, rows.source

    packed = repack()
    input_ids = packed[0]
    start = last_log = time.perf_counter()
    steps_at_log = 0
    try:
        for step in range(steps):
            if cursor + batch_size > len(input_ids):
                epoch += 1
                packed = repack()
                input_ids = packed[0]
                cursor = 0
            rows = slice(cursor, cursor + batch_size)
            cursor += batch_size
            ids, pos, tgt = (t[rows].to(device) for t in packed[:3])
            if groups is None:
                logits = model(input_ids=ids, position_ids=pos, use_cache=False).logits  # [B, T, V]
                # logits at t predict token t + 1
                mask = tgt[:, 1:]
                predicted, labels = logits[:, :-1][mask], ids[:, 1:][mask]
            else:
                segment, branch, source = (t[rows].to(device) for t in packed[3:])
                attention = shared_prompt_mask(segment, branch, attn, model.dtype)
                logits = model(
                    input_ids=ids, position_ids=pos, attention_mask=attention, use_cache=False
                ).logits  # [B, T, V]
                mask = tgt
                b, t = mask.nonzero(as_tuple=True)  # target tokens, each predicted at source[b, t]
                predicted, labels = logits[b, source[b, t]], ids[b, t]
            loss = torch.nn.functional.cross_entropy(predicted.float(), labels)
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
        "rows_per_epoch": len(input_ids),
    }


__all__ = [
    "PACKING",
    "SharedRows",
    "group_by_prompt",
    "lr_at",
    "pack",
    "pack_shared",
    "pretrain",
    "shared_prompt_mask",
    "tokenize_samples",
]
