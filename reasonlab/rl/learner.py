"""The optimisation half of an RL step, as implemented (`Learner.update`):

1. **One no-grad pass** over the step's responses computes what the estimator and the loss need:
   pi_old logprobs (unless the update is a single on-policy pass: one epoch, one minibatch, where
   the detached current logprobs *are* pi_old), reference logprobs (kl_coef > 0), values (gae).
   `algorithm.old_logprobs=rollout` takes pi_old from the engine's sampling logprobs instead.
2. **Advantages** with `reasonlab.rl.advantages.compute_advantages` on the global batch (under data
   parallelism the per-response tensors are all-gathered first; see `reasonlab.rl.distributed`).
3. **Updates**: `ppo_epochs` passes over the batch, cut into minibatches (one global order shuffled
   by (seed, step)); each minibatch is one AdamW step after gradient accumulation over
   micro-batches. Each micro-batch's loss is divided by the *whole minibatch's* normaliser (its
   token count for token-mean, response count for the sequence modes, summed over ranks), so the
   accumulated gradient does not depend on how the minibatch is cut (TRL's invariant test).
   Loss = policy_loss (PPO clip, clip-higher, dual clip) + kl_coef * KL (kl_in=loss)
   - entropy_coef * entropy + vf_coef * value_loss (gae); gradients clipped to `grad_clip`.
   A non-finite loss or gradient norm skips that optimiser step (no update, AdamW state
   untouched) and is counted in `skipped_updates`.

Teacher-forced passes (`Learner.forward`) put prompts left-padded and responses right-padded so
every response starts at one column, with position ids counted from each row's first real token
(as the rollout engine does), and score each response token at the sampling temperature. By default
each distinct prompt runs once and its KV cache is shared by its responses (`share_prompts`),
gradients flowing back through the cache.

The PPO critic is `ValueHead`, a linear head on the policy's last hidden state (a shared trunk, as
TRL's `AutoModelForCausalLMWithValueHead`), trained by the same optimiser; veRL's separate critic
model is not implemented.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import DynamicCache

from reasonlab.models import cache_keyword
from reasonlab.records import Rollout
from reasonlab.rl.advantages import compute_advantages
from reasonlab.rl.config import TrainConfig
from reasonlab.rl.data import derive_seed
from reasonlab.rl.distributed import Dist
from reasonlab.rl.losses import (
    aggregate,
    entropy_from_logits,
    kl_penalty,
    overlong_mask,
    policy_loss,
    token_logprobs,
    value_loss,
)


class ValueHead(torch.nn.Module):
    """V(s_t) = w . h_t + b on the policy's last hidden state h_t (zero-initialised: V = 0 at
    the start, so the first advantages are the whitened returns)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)  # [B, T, H] -> [B, T]


def build_optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.AdamW:
    o = cfg.optim
    return torch.optim.AdamW(
        params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay
    )


@dataclass
class StepBatch:
    """A step's training responses, grouped by prompt (`group_size` consecutive rows per prompt)."""

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    rewards: torch.Tensor
    """[B] total reward per response."""
    finish_reasons: list[str]
    group_size: int
    rollout_logprobs: list[list[float]] | None = None
    """Per completion token, from the engine (used when algorithm.old_logprobs=rollout)."""

    def __len__(self) -> int:
        return len(self.completion_ids)

    @classmethod
    def from_rollouts(cls, rollouts: Sequence[Rollout], rewards: Sequence[float], group_size: int):
        logprobs = [r.logprobs for r in rollouts]
        return cls(
            prompt_ids=[list(r.prompt_ids) for r in rollouts],
            completion_ids=[list(r.completion_ids) for r in rollouts],
            rewards=torch.tensor(list(rewards), dtype=torch.float32),
            finish_reasons=[r.finish_reason for r in rollouts],
            group_size=group_size,
            rollout_logprobs=None if any(lp is None for lp in logprobs) else logprobs,
        )


@dataclass
class Collated:
    """Model inputs for some rows: prompts left-padded to P, completions right-padded to T, so
    every completion starts at column P."""

    input_ids: torch.Tensor  # [b, P + T]
    attention_mask: torch.Tensor  # [b, P + T]
    position_ids: torch.Tensor  # [b, P + T], counted from each row's first real token
    prompt_len: int  # P
    response_len: int  # T


def collate(
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    pad_id: int,
    device: torch.device,
    response_len: int | None = None,
) -> Collated:
    prompt_len = max(len(p) for p in prompts)
    length = response_len or max(1, max(len(c) for c in completions))
    rows = len(prompts)
    ids = torch.full((rows, prompt_len + length), pad_id, dtype=torch.long)
    mask = torch.zeros((rows, prompt_len + length), dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        c = list(c)[:length]
        ids[i, prompt_len - len(p) : prompt_len] = torch.as_tensor(list(p), dtype=torch.long)
        ids[i, prompt_len : prompt_len + len(c)] = torch.as_tensor(c, dtype=torch.long)
        mask[i, prompt_len - len(p) : prompt_len + len(c)] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return Collated(ids.to(device), mask.to(device), positions.to(device), prompt_len, length)


class Learner:
    """The optimisation half of a step: a no-grad pass, advantages, then PPO-style epochs over
    minibatches with gradient accumulation. Usable on its own with fixed responses (the
    data-parallel test feeds the same `StepBatch` to one process and, split, to two)."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        config: TrainConfig,
        *,
        pad_id: int,
        value_head: ValueHead | None = None,
        ref_model: torch.nn.Module | None = None,
        dist: Dist | None = None,
        autocast_dtype: torch.dtype | None = None,
    ):
        self.model, self.optimizer, self.config = model, optimizer, config
        self.pad_id = pad_id
        self.value_head, self.ref_model = value_head, ref_model
        self.dist = dist or Dist.single()
        self.device = next(model.parameters()).device
        self.autocast_dtype = autocast_dtype
        self.keep_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        # a KV cache and gradient checkpointing do not mix in transformers: full passes then
        flag = next(
            (
                n
                for n in ("is_activation_checkpointing", "is_gradient_checkpointing")
                if hasattr(type(model), n)
            ),
            None,
        )
        checkpointing = bool(getattr(model, flag)) if flag else False
        self.share_prompts = config.batching.share_prompts and not checkpointing
        self.params = [p for group in optimizer.param_groups for p in group["params"]]

    # -- forward ----------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def forward(
        self,
        model: torch.nn.Module,
        batch: StepBatch,
        rows: Sequence[int],
        *,
        entropy: bool = False,
        values: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Teacher-forced pass over `rows`: per completion token [b, T] logprobs (at the sampling
        temperature), and optionally entropy and values. T = the longest completion in `rows`.

        With `batching.share_prompts` (the default), each distinct prompt goes through the model
        once and its KV cache is shared by its responses (gradients flow back through the cache),
        instead of once per response: the same numbers as a full pass over prompt + response, for
        a fraction of the compute when prompts are long and `rollout.n` is large."""
        prompts = [batch.prompt_ids[i] for i in rows]
        completions = [batch.completion_ids[i] for i in rows]
        with self._autocast():
            if self.share_prompts:
                logits, hidden = self._shared_prompt_pass(model, prompts, completions, values)
            else:
                logits, hidden = self._full_pass(model, prompts, completions, values)
        T = logits.shape[1]
        labels = _pad_ids(completions, T, self.pad_id, self.device)  # [b, T]
        temperature = self.config.rollout.temperature
        result = {"logprobs": token_logprobs(logits, labels, temperature)}
        if entropy:
            result["entropy"] = entropy_from_logits(logits.float() / temperature)
        if values:
            result["values"] = self.value_head(hidden)
        return result

    def _full_pass(
        self, model: torch.nn.Module, prompts: list, completions: list, values: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits [b, T, V] predicting each completion token (and the hidden states [b, T, H]
        they come from) from one pass over left-padded prompt + right-padded completion."""
        inputs = collate(prompts, completions, self.pad_id, self.device)
        P, T = inputs.prompt_len, inputs.response_len
        extra: dict[str, Any] = {"use_cache": False}
        if self.keep_logits:
            extra["logits_to_keep"] = T + 1
        out = model(
            input_ids=inputs.input_ids,
            attention_mask=inputs.attention_mask,
            position_ids=inputs.position_ids,
            output_hidden_states=values,
            **extra,
        )
        # column P - 1 + t predicts completion token t
        logits = out.logits[:, -(T + 1) : -1] if self.keep_logits else out.logits[:, P - 1 : -1]
        hidden = out.hidden_states[-1][:, P - 1 : P + T - 1] if values else None
        return logits, hidden

    def _shared_prompt_pass(
        self, model: torch.nn.Module, prompts: list, completions: list, values: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """As `_full_pass`, with one prefill per distinct prompt whose KV cache is copied to its
        responses (index_select: differentiable, so each prompt's gradient sums its responses')."""
        distinct: dict[tuple[int, ...], int] = {}
        owner = [distinct.setdefault(tuple(p), len(distinct)) for p in prompts]  # row -> prompt
        uniq = [list(p) for p in distinct]
        index = torch.tensor(owner, device=self.device)
        T = max(1, max(len(c) for c in completions))
        first = collate(uniq, [[]] * len(uniq), self.pad_id, self.device, response_len=1)
        P = first.prompt_len
        prompt_mask = first.attention_mask[:, :P]
        extra: dict[str, Any] = {"logits_to_keep": 1} if self.keep_logits else {}
        cache = DynamicCache(config=model.config)  # filled in place by both passes
        cache_kw = cache_keyword(model)
        out = model(
            input_ids=first.input_ids[:, :P],
            attention_mask=prompt_mask,
            position_ids=first.position_ids[:, :P],
            use_cache=True,
            output_hidden_states=values,
            **{cache_kw: cache},
            **extra,
        )
        logits = out.logits[:, -1:].index_select(0, index)  # [b, 1, V]: predicts token 0
        hidden = out.hidden_states[-1][:, -1:].index_select(0, index) if values else None
        if T == 1:
            return logits, hidden
        cache.reorder_cache(index)  # [u, ...] -> [b, ...]
        body = _pad_ids([c[: T - 1] for c in completions], T - 1, self.pad_id, self.device)
        body_mask = (
            torch.arange(T - 1, device=self.device)[None, :]
            < torch.tensor([min(len(c), T - 1) for c in completions], device=self.device)[:, None]
        ).long()  # [b, T - 1]
        start = first.position_ids[:, P - 1].index_select(0, index) + 1  # [b]
        out = model(
            input_ids=body,
            attention_mask=torch.cat([prompt_mask.index_select(0, index), body_mask], dim=1),
            position_ids=start[:, None] + torch.arange(T - 1, device=self.device)[None, :],
            use_cache=True,
            **{cache_kw: cache},
            output_hidden_states=values,
        )
        logits = torch.cat([logits, out.logits], dim=1)  # [b, T, V]
        if values:
            hidden = torch.cat([hidden, out.hidden_states[-1]], dim=1)  # [b, T, H]
        return logits, hidden

    # -- the step ----------------------------------------------------------------------------

    def _denominator(self, mask: torch.Tensor) -> torch.Tensor:
        """The minibatch normaliser: valid tokens (token-mean) or responses with a valid token
        (sequence modes), summed over ranks."""
        if self.config.algorithm.loss_agg == "token-mean":
            local = mask.sum()
        else:
            local = (mask.sum(dim=1) > 0).sum()
        total = self.dist.sum_scalar(local, self.device)
        # nothing to learn from (every response masked): a zero loss, not 0 / 0
        return torch.tensor(max(total, 1.0), device=self.device)

    def update(self, batch: StepBatch, step: int) -> dict[str, float]:
        """Advantages and the optimiser steps for one RL step; returns the step's statistics."""
        cfg, alg = self.config, self.config.algorithm
        rows = len(batch)
        lengths = torch.tensor([len(c) for c in batch.completion_ids])
        width = max(1, int(lengths.max()))
        # [B, T] response mask over the batch's longest completion
        mask = (torch.arange(width)[None, :] < lengths[:, None]).float().to(self.device)
        if alg.overlong_filter:
            mask = overlong_mask(batch.finish_reasons, mask)
        mask_bool = mask > 0

        num_minibatches = max(1, cfg.batch_size // cfg.minibatch_size)
        single_pass = cfg.batching.ppo_epochs == 1 and num_minibatches == 1
        use_rollout_lp = alg.old_logprobs == "rollout" and batch.rollout_logprobs is not None
        need_values = self.value_head is not None
        need_ref = self.ref_model is not None and alg.kl_coef > 0
        kl_in_reward = need_ref and alg.kl_in == "reward"
        need_old = kl_in_reward or not (single_pass or use_rollout_lp) or need_values

        old_lp = ref_lp = old_values = None
        if need_old or need_ref:
            old_lp, ref_lp, old_values = self._no_grad_pass(
                batch, width, policy=need_old, ref=need_ref, values=need_values
            )
        if use_rollout_lp:
            old_lp = _pad_rows(batch.rollout_logprobs, width, self.device)

        kl_tokens = None
        if kl_in_reward:
            kl_tokens = kl_penalty(old_lp, ref_lp, alg.kl_estimator) * mask
        advantages, returns = self._advantages(batch, mask, old_values, kl_tokens)

        stats = _Stats()
        order_rng = torch.Generator().manual_seed(derive_seed(cfg.run.seed, step, 17))
        global_rows = rows * self.dist.world_size
        offset = self.dist.rank * rows
        minibatch = cfg.minibatch_size
        for _ in range(cfg.batching.ppo_epochs):
            # one global order, the same on every rank: minibatch k is the same set of responses
            # as in a single process; each rank works on its own rows of it
            if cfg.batching.shuffle:
                order = torch.randperm(global_rows, generator=order_rng)
            else:
                order = torch.arange(global_rows)
            for start in range(0, global_rows, minibatch):
                chosen = order[start : start + minibatch]
                local = [int(i) - offset for i in chosen if offset <= int(i) < offset + rows]
                self._optimizer_step(
                    batch, local, mask, advantages, returns, old_lp, ref_lp, old_values, stats
                )
        out = stats.reduce(self.dist, self.device)
        out["advantage_mean"] = float(advantages[mask_bool].mean()) if mask_bool.any() else 0.0
        return out

    @torch.no_grad()
    def _no_grad_pass(
        self, batch: StepBatch, width: int, *, policy: bool, ref: bool, values: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        size = self.config.batching.forward_batch_size or self.config.micro_batch_size
        old = torch.zeros(len(batch), width, device=self.device) if policy else None
        ref_out = torch.zeros(len(batch), width, device=self.device) if ref else None
        vals = torch.zeros(len(batch), width, device=self.device) if values else None
        for start in range(0, len(batch), size):
            rows = list(range(start, min(start + size, len(batch))))
            if policy:
                result = self.forward(self.model, batch, rows, values=values)
                T = result["logprobs"].shape[1]
                old[rows, :T] = result["logprobs"].float()
                if values:
                    vals[rows, :T] = result["values"].float()
            if ref:
                result = self.forward(self.ref_model, batch, rows)
                T = result["logprobs"].shape[1]
                ref_out[rows, :T] = result["logprobs"].float()
        return old, ref_out, vals

    def _advantages(
        self,
        batch: StepBatch,
        mask: torch.Tensor,
        values: torch.Tensor | None,
        kl: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Advantages on the global batch (all ranks' rows gathered), this rank's rows kept."""
        alg, d = self.config.algorithm, self.dist
        rewards = batch.rewards.to(self.device)
        width = mask.shape[1]
        gathered_mask = d.all_gather_rows(mask)
        advantages, returns = compute_advantages(
            alg.advantage,
            rewards=d.all_gather_rows(rewards),
            response_mask=gathered_mask,
            group_size=batch.group_size,
            values=None if values is None else d.all_gather_rows(values),
            kl=None if kl is None else d.all_gather_rows(kl),
            kl_coef=alg.kl_coef if kl is not None else 0.0,
            gamma=alg.gamma,
            lam=alg.lam,
        )
        mine = d.local_slice(gathered_mask.shape[0])
        advantages = advantages[mine, :width]
        returns = None if returns is None else returns[mine, :width]
        return advantages, returns

    def _optimizer_step(
        self,
        batch: StepBatch,
        rows: list[int],
        mask: torch.Tensor,
        advantages: torch.Tensor,
        returns: torch.Tensor | None,
        old_lp: torch.Tensor | None,
        ref_lp: torch.Tensor | None,
        old_values: torch.Tensor | None,
        stats: _Stats,
    ) -> None:
        cfg, alg = self.config, self.config.algorithm
        denominator = self._denominator(mask[rows]) if rows else self._denominator(mask[:0])
        max_len = cfg.rollout.max_new_tokens
        agg = dict(agg=alg.loss_agg, denominator=denominator, max_len=max_len)
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        micro = cfg.micro_batch_size
        for start in range(0, len(rows), micro):
            part = rows[start : start + micro]
            out = self.forward(
                self.model, batch, part, entropy=True, values=self.value_head is not None
            )
            lp = out["logprobs"]
            T = lp.shape[1]
            m = mask[part, :T]
            old = lp.detach() if old_lp is None else old_lp[part, :T]
            loss, pstats = policy_loss(
                lp,
                old,
                advantages[part, :T],
                m,
                clip_low=alg.clip_low,
                clip_high=alg.clip_high,
                dual_clip=alg.dual_clip,
                **agg,
            )
            tokens = float(m.sum())
            stats.add_mean(pstats, tokens)
            stats.add_sum("loss/policy", loss.detach())
            entropy = out["entropy"]
            if alg.entropy_coef:
                loss = loss - alg.entropy_coef * aggregate(entropy, m, alg.loss_agg, **_kw(agg))
            stats.add_mean({"entropy": _masked_mean(entropy.detach(), m)}, tokens)
            if ref_lp is not None:
                kl = kl_penalty(lp, ref_lp[part, :T], alg.kl_estimator)
                if alg.kl_in == "loss":
                    loss = loss + alg.kl_coef * aggregate(kl, m, alg.loss_agg, **_kw(agg))
                stats.add_mean({"kl": _masked_mean(kl.detach(), m)}, tokens)
            if self.value_head is not None:
                vloss, vstats = value_loss(
                    out["values"],
                    old_values[part, :T],
                    returns[part, :T],
                    m,
                    clip=alg.value_clip,
                    **agg,
                )
                loss = loss + alg.vf_coef * vloss
                stats.add_sum("loss/value", vloss.detach())
                stats.add_mean(vstats, tokens)
            loss.backward()
            total = total + loss.detach()
        self.dist.all_reduce_grads(self.params)
        total_loss = self.dist.sum_scalar(total, self.device)
        clip = cfg.optim.grad_clip if cfg.optim.grad_clip is not None else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, clip))
        stats.add_update(total_loss, grad_norm)
        if not (math.isfinite(total_loss) and math.isfinite(grad_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            stats.skipped += 1
            return
        self.optimizer.step()


def _kw(agg: dict[str, Any]) -> dict[str, Any]:
    return {"denominator": agg["denominator"], "max_len": agg["max_len"]}


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def _pad_ids(
    rows: Sequence[Sequence[int]], width: int, pad: int, device: torch.device
) -> torch.Tensor:
    out = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        row = list(row)[:width]
        out[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out.to(device)


def _pad_rows(rows: Sequence[Sequence[float]], width: int, device: torch.device) -> torch.Tensor:
    out = torch.zeros(len(rows), width)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(list(row)[:width], dtype=torch.float32)
    return out.to(device)


class _Stats:
    """Token-weighted means, sums and per-update values of a step's statistics, reduced over
    ranks at the end."""

    def __init__(self) -> None:
        self.weighted: dict[str, float] = {}
        self.weights: dict[str, float] = {}
        self.sums: dict[str, float] = {}
        self.maxima: dict[str, float] = {}
        self.losses: list[float] = []
        self.grad_norms: list[float] = []
        self.skipped = 0

    def add_mean(self, values: dict[str, torch.Tensor], weight: float) -> None:
        for key, value in values.items():
            if key.startswith("loss/"):
                continue
            if key == "ratio_max":
                self.maxima[key] = max(self.maxima.get(key, float("-inf")), float(value))
                continue
            self.weighted[key] = self.weighted.get(key, 0.0) + float(value) * weight
            self.weights[key] = self.weights.get(key, 0.0) + weight

    def add_sum(self, key: str, value: torch.Tensor) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + float(value)

    def add_update(self, loss: float, grad_norm: float) -> None:
        self.losses.append(loss)
        self.grad_norms.append(grad_norm)

    def reduce(self, d: Dist, device: torch.device) -> dict[str, float]:
        keys = sorted(self.weighted)
        if d.enabled:  # every rank has the same keys: they come from the config, not the data
            flat = torch.tensor(
                [self.weighted[k] for k in keys] + [self.weights[k] for k in keys],
                dtype=torch.float64,
                device=device,
            )
            d.all_reduce(flat)
            values = flat.tolist()
            self.weighted = dict(zip(keys, values[: len(keys)]))
            self.weights = dict(zip(keys, values[len(keys) :]))
            for key in sorted(self.sums):
                self.sums[key] = d.sum_scalar(self.sums[key], device)
            for key in sorted(self.maxima):
                t = torch.tensor([self.maxima[key]], dtype=torch.float64, device=device)
                self.maxima[key] = float(d.all_reduce(t, op="max").item())
        out = {k: self.weighted[k] / self.weights[k] if self.weights[k] else 0.0 for k in keys}
        updates = max(1, len(self.losses))
        for key, value in self.sums.items():
            out[key] = value / updates
        out.update(self.maxima)
        finite = [g for g in self.grad_norms if math.isfinite(g)]
        out["loss"] = sum(self.losses) / updates if self.losses else 0.0
        out["grad_norm"] = sum(finite) / len(finite) if finite else float("nan")
        out["updates"] = float(len(self.losses))
        out["skipped_updates"] = float(self.skipped)
        return out


__all__ = [
    "Collated",
    "Learner",
    "StepBatch",
    "ValueHead",
    "build_optimizer",
    "collate",
]
