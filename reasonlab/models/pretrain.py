"""Pretraining a tiny causal LM on a synthetic corpus (the base model of the CPU demo).

What is implemented (nanoGPT-style, on a Hugging Face model):

- data: each sample is a text, or a `(prompt, completion)` pair, tokenised once and ended with the
  EOS token. Samples are *packed* whole, in a fresh random order each epoch, into rows of
  `seq_len` tokens, greedily (`packing="samples"`) or best-fit decreasing (`packing="bfd"`, TRL's
  `packing_strategy="bfd"`: less padding); `position_ids` restart at 0 for each sample and no attention mask is passed, so
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
  `min_lr_ratio * lr` (`reasonlab.optim`), gradient clipping at `grad_clip`.

The step is `supervised_step` and the rows come from a `RowStream`: the same two that
`reasonlab.sft` trains with (pretraining is SFT on the corpus, with loss on all of each attempt or
on its completion). `RowStream` also pads one sample per row (`packing="none"`), for SFT.
"""

from __future__ import annotations

import bisect
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from reasonlab.parallel import Dist, Wrapped, clip_grad_norm, wrap_model

Sample = str | tuple[str, str]
PACKING = ("samples", "bfd", "shared_prompt")
"""Packing modes of `pretrain` (module doc): samples (whole samples, greedy), bfd (whole samples,
best-fit decreasing) and shared_prompt; `RowStream` also takes "none" (padding)."""


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
    samples: list[tuple[list[int], list[bool]]],
    seq_len: int,
    pad_id: int,
    rng: random.Random,
    strategy: str = "greedy",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Samples packed whole, in a random order, into rows of `seq_len`.

    `strategy` "greedy" fills each row in turn and starts the next when a sample does not fit;
    "bfd" is best-fit decreasing (TRL's `packing_strategy="bfd"`): each sample, longest first,
    goes to the row it fills most, which leaves less padding (the demo's corpus: 83% of the row
    tokens are samples against 74% greedy), and the rows are then shuffled.

    Returns input_ids, position_ids and target masks, each [rows, seq_len]; position ids restart
    at 0 for each sample (the padding at a row's end is one more sample with no targets).
    """
    if strategy not in ("greedy", "bfd"):
        raise ValueError(f"packing strategy must be greedy or bfd, got {strategy!r}")
    order = list(range(len(samples)))
    rng.shuffle(order)
    cut = [(samples[i][0][:seq_len], samples[i][1][:seq_len]) for i in order]
    rows: list[list[tuple[list[int], list[bool]]]] = [[]]
    if strategy == "bfd":
        bins = _best_fit([len(ids) for ids, _ in cut], seq_len)
        rng.shuffle(bins)
        rows = [[cut[i] for i in b] for b in bins]
    else:
        used = 0
        for ids, target in cut:
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
    """Training rows in epochs, in a fresh random order each epoch: `packing="samples"` or `"bfd"`
    (`pack`, greedy or best-fit decreasing),
    `"shared_prompt"` (`pack_shared`; needs `prompt_lengths`, the prompt tokens of each sample) or
    `"none"` (`pad`: one sample per row). `take(n)` hands out the next `n` rows, starting a new
    epoch (and dropping the last epoch's remainder) when fewer than `n` are left.

    `state_dict()` (the epoch, the position in it and the random state that ordered it) restores
    the stream exactly with `load_state_dict`, for checkpoints.
    """

    def __init__(
        self,
        samples: list[tuple[list[int], list[bool]]],
        seq_len: int,
        pad_id: int,
        seed: int = 0,
        packing: str = "samples",
        prompt_lengths: list[int] | None = None,
    ):
        if packing not in (*PACKING, "none"):
            raise ValueError(f"packing must be one of {', '.join(PACKING)}, none; got {packing!r}")
        if not samples:
            raise ValueError("no samples to train on")
        self.samples, self.seq_len, self.pad_id, self.packing = samples, seq_len, pad_id, packing
        self.groups = None
        if packing == "shared_prompt":
            if prompt_lengths is None:
                raise ValueError("shared_prompt packing needs the prompt length of each sample")
            self.groups = group_by_prompt(samples, prompt_lengths)
        self.rng = random.Random(seed)
        self.epoch, self.cursor = 0, 0
        self._arrange()

    def _arrange(self) -> None:
        self._rng_state = self.rng.getstate()  # what ordered this epoch, for state_dict
        if self.packing in ("samples", "bfd"):
            names = ("input_ids", "position_ids", "targets")
            strategy = "bfd" if self.packing == "bfd" else "greedy"
            packed = pack(self.samples, self.seq_len, self.pad_id, self.rng, strategy)
            self.rows = dict(zip(names, packed))
        elif self.packing == "shared_prompt":
            rows = pack_shared(self.groups, self.seq_len, self.pad_id, self.rng)
            self.rows = {
                "input_ids": rows.input_ids,
                "position_ids": rows.positions,
                "targets": rows.targets,
                "segment": rows.segment,
                "branch": rows.branch,
                "source": rows.source,
            }
        else:
            names = ("input_ids", "position_ids", "targets", "attention_mask")
            self.rows = dict(zip(names, pad(self.samples, self.seq_len, self.pad_id, self.rng)))

    def __len__(self) -> int:
        """Rows in the current epoch."""
        return len(self.rows["input_ids"])

    def take(self, n: int, dist: Dist | None = None) -> dict[str, torch.Tensor]:
        """The next `n` rows: input_ids, position_ids, targets (bool), and attention_mask
        (padding; the rows trimmed to the longest of the n) or segment, branch and source
        (shared_prompt, see `SharedRows`), each [n, T]. An epoch of fewer than `n` rows gives all
        of them, re-ordered at every call.

        Data parallel: every rank reads the same stream (same seed) and takes the same `n` rows of
        the global batch; with `dist` (`reasonlab.parallel.Dist`) this rank gets its contiguous
        share of them, [n / world_size, T] (n must divide evenly), so the ranks together train on
        the rows one process would and stay at the same stream position."""
        if self.cursor + n > len(self):
            self.epoch += 1
            self._arrange()
            self.cursor = 0
        rows = slice(self.cursor, self.cursor + n)
        self.cursor += n
        if dist is not None:
            share = dist.local_slice(n)
            rows = slice(rows.start + share.start, rows.start + share.stop)
        batch = {name: t[rows] for name, t in self.rows.items()}
        if "attention_mask" in batch:
            width = max(1, int(batch["attention_mask"].sum(1).max()))
            batch = {name: t[:, :width] for name, t in batch.items()}
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


def predicted_logits(
    model: Any, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits that predict each loss token of a `RowStream` batch, and those tokens: [N, V]
    and [N]. Packed and padded rows: logits at t predict token t + 1; shared-prompt rows: the
    logits at `source` (a completion's first token is predicted by its prompt's last one), under
    the 4D `shared_prompt_mask`. `model` may be a DDP wrapper (`reasonlab.parallel.wrap_model`).
    """
    ids = batch["input_ids"]
    if "segment" not in batch:
        logits = model(
            input_ids=ids,
            position_ids=batch["position_ids"],
            attention_mask=batch.get("attention_mask"),
            use_cache=False,
        ).logits  # [B, T, V]
        mask = batch["targets"][:, 1:]
        return logits[:, :-1][mask], ids[:, 1:][mask]
    inner = model.module if isinstance(model, DistributedDataParallel) else model
    attn = getattr(inner.config, "_attn_implementation", None) or "eager"
    attention = shared_prompt_mask(batch["segment"], batch["branch"], attn, inner.dtype)
    logits = model(
        input_ids=ids, position_ids=batch["position_ids"], attention_mask=attention, use_cache=False
    ).logits  # [B, T, V]
    b, t = batch["targets"].nonzero(as_tuple=True)  # target tokens, each predicted at source[b, t]
    return logits[b, batch["source"][b, t]], ids[b, t]


def nll_loss(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Next-token cross-entropy, averaged over the loss tokens of a `RowStream` batch."""
    predicted, labels = predicted_logits(model, batch)
    return torch.nn.functional.cross_entropy(predicted.float(), labels), len(labels)


def supervised_step(
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    micro_batches: Sequence[dict[str, torch.Tensor]],
    *,
    max_grad_norm: float | None = 1.0,
    loss_fn: LossFn = nll_loss,
    wrapped: Wrapped | None = None,
    dist: Dist | None = None,
) -> dict[str, float]:
    """One optimiser step of pretraining and SFT, over `micro_batches` (gradient accumulation).

    The loss is the mean over every loss token of all micro-batches (each micro-batch's mean
    weighted by its share of the tokens, as transformers' `num_items_in_batch`), so 1 micro-batch
    of 8 rows and 8 of 1 row give the same gradient. Micro-batches without loss tokens are skipped.
    Then clipping at `max_grad_norm` (None: none), AdamW, one scheduler step. Returns loss,
    grad_norm (before clipping), tokens (loss tokens) and lr (the one used).

    Data parallel (`wrapped`: `model` prepared by `reasonlab.parallel.wrap_model`; `dist`: its
    group): each rank passes its share of the global batch. The loss-token count is summed over
    ranks first and each rank divides by that global count, so its loss is its share of the
    global token-mean; DDP or FSDP2 sum the gradients over ranks once, in the last micro-batch's
    backward (`grad_sync`), which makes the one-process gradient on the combined batch. Every rank
    makes the same forward/backward calls (both engines communicate in them): a micro-batch
    without loss tokens on one rank runs as a zero-weighted pass there. The returned loss and
    tokens are global.
    """
    wrapped = wrapped or Wrapped(model, model, "none")
    dist = dist or Dist.single()
    device = next(model.parameters()).device
    # a row's first token is a sample's first token, never a target: every target is predicted
    counts = [int(b["targets"].sum()) for b in micro_batches]
    total = sum(counts)
    if dist.enabled:
        total = round(dist.sum_scalar(total, device))  # the global batch's loss tokens
    # collective engines need the same calls on every rank; one process skips empty micro-batches
    passes = [(b, c) for b, c in zip(micro_batches, counts) if c or wrapped.kind != "none"]
    if total == 0:
        passes = []  # nothing to learn from anywhere (every rank agrees: the count is global)
    lr = scheduler.get_last_lr()[0]
    optimizer.zero_grad(set_to_none=True)
    loss_value = 0.0
    for index, (batch, count) in enumerate(passes):
        batch = {k: v.to(device) for k, v in batch.items()}
        with wrapped.grad_sync(index == len(passes) - 1):
            loss, _ = loss_fn(wrapped.module, batch)
            if count == 0:  # the mean over no tokens is NaN: a zero with zero gradients instead
                loss = loss.nan_to_num(0.0)
            # the same tokens counted by the step: the mean of this micro-batch times its share
            share = count / total
            (loss * share).backward()
        loss_value += float(loss.detach()) * share
    if dist.enabled:
        loss_value = dist.sum_scalar(loss_value, device)
    params = [p for p in model.parameters() if p.grad is not None]
    clip = max_grad_norm if max_grad_norm is not None else float("inf")
    grad_norm = clip_grad_norm(params, clip)
    optimizer.step()
    scheduler.step()
    return {"loss": loss_value, "grad_norm": grad_norm, "tokens": total, "lr": lr}


def check_data_parallel(
    parallel: str,
    batch_size: int,
    world_size: int,
    fields: tuple[str, str] = ("parallel", "batch_size"),
) -> None:
    """ValueError naming the setting (`fields`: how the caller names parallel and batch_size)
    when `world_size` processes cannot pretrain with `parallel` and a global batch of
    `batch_size` rows: an unknown engine, a torchrun group with parallel none, or a batch that
    does not split evenly over the processes."""
    from reasonlab.parallel import PARALLEL

    name, batch = fields
    if parallel not in PARALLEL:
        raise ValueError(f"{name}: {parallel!r} is not one of: {', '.join(PARALLEL)}")
    if world_size > 1 and parallel == "none":
        raise ValueError(
            f"{name} is none but {world_size} processes were launched (torchrun): set it to ddp "
            "or fsdp"
        )
    if batch_size % world_size:
        raise ValueError(
            f"{batch}={batch_size} packed rows (the global batch) do not split evenly over "
            f"{world_size} processes; use a multiple of {world_size}"
        )


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
    parallel: str = "none",
    dist: Dist | None = None,
) -> dict[str, Any]:
    """Train `model` in place on `samples` (texts or (prompt, completion) pairs, see module doc).

    batch_size is in packed rows of `seq_len` tokens; packing is "samples" or "bfd" (whole
    samples, packed greedily or best-fit decreasing; position ids restart per sample) or
    "shared_prompt" (see module doc). num_threads sets torch's intra-op threads for
    the run (capped by OMP_NUM_THREADS, `reasonlab.threads`; None: leave torch's setting). callback(record) is called every `log_every` steps with
    {step, loss, lr, tokens_per_s (packed tokens processed), seconds}. Returns stats: steps, final_loss (mean of the last
    `log_every` steps), first_loss, losses (one per log), seconds, tokens (target tokens seen),
    epochs, num_params, cut_samples.

    Data parallel under torchrun, as SFT (`parallel` ddp or fsdp, `reasonlab.parallel.wrap_model`;
    `dist` this process's group): `batch_size` stays the global batch, so the settings that make
    a model do not depend on the number of processes. Every rank reads the same stream and trains
    on its `batch_size / world_size` rows of each step's `batch_size` (which must divide evenly),
    with the global token-mean loss of `supervised_step`: W ranks make the steps of one process.
    The losses, tokens and tokens_per_s returned are global; callback runs on rank 0 only. Under
    fsdp the model is left sharded: gather its weights with `reasonlab.parallel.full_state_dict`
    (every rank).
    """
    from reasonlab.optim import adamw, scheduler
    from reasonlab.threads import intra_op_threads

    if steps < 1 or batch_size < 1 or seq_len < 2:
        raise ValueError(
            f"need steps >= 1, batch_size >= 1, seq_len >= 2; got {steps}, {batch_size}, {seq_len}"
        )
    if packing not in PACKING:
        raise ValueError(f"packing must be one of {', '.join(PACKING)}; got {packing!r}")
    data = tokenize_samples(samples, tokenizer, loss_on)
    if not data:
        raise ValueError("no samples to train on")
    prompt_lengths = None
    if packing == "shared_prompt":
        attn = getattr(model.config, "_attn_implementation", None) or "eager"
        shared_prompt_mask(
            torch.zeros(1, 1, dtype=torch.long),
            torch.zeros(1, 1, dtype=torch.long),
            attn,
            torch.float32,
        )  # refuses an attention implementation that takes no 4D mask, before any work
        prompt_lengths = [
            len(tokenizer(s[0], add_special_tokens=False)["input_ids"])
            if isinstance(s, tuple) and s[0]
            else 0
            for s in samples
        ]
    dist = dist or Dist.single()
    check_data_parallel(parallel, batch_size, dist.world_size)
    wrapped = wrap_model(model, parallel=parallel)  # before the optimiser: fsdp makes shards
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
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
    stream = RowStream(
        data, seq_len, pad_id, seed=seed, packing=packing, prompt_lengths=prompt_lengths
    )
    if dist.enabled and len(stream) < batch_size:
        raise ValueError(
            f"batch_size={batch_size} (over {dist.world_size} processes) but the samples make only "
            f"{len(stream)} rows of seq_len={seq_len}; lower batch_size"
        )
    start = last_log = time.perf_counter()
    steps_at_log = 0
    with intra_op_threads(num_threads):
        try:
            for step in range(steps):
                out = supervised_step(
                    model,
                    optimizer,
                    schedule,
                    [stream.take(batch_size, dist)],
                    max_grad_norm=grad_clip,
                    wrapped=wrapped,
                    dist=dist,
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
                    if callback is not None and dist.is_main:
                        callback(record)
        finally:
            model.train(was_training)
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
        "rows_per_epoch": len(stream),
    }


__all__ = [
    "PACKING",
    "RowStream",
    "SharedRows",
    "group_by_prompt",
    "nll_loss",
    "pack",
    "pack_shared",
    "pad",
    "predicted_logits",
    "check_data_parallel",
    "pretrain",
    "shared_prompt_mask",
    "supervised_step",
    "tokenize_samples",
]
