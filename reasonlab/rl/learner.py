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
   `batching.group_by_length` cuts it (and the no-grad pass) longest response first, so a pass
   pads to lengths close to its own rows' instead of the step's longest.
   Loss = policy_loss (`algorithm.policy_loss` from `reasonlab.rl.losses.POLICY_LOSSES`: PPO clip
   with clip-higher, dual clip or delta; GSPO, CISPO, SAPO, GMPO, Clip-Cov, KL-Cov), its per-token
   loss times the rollout-correction weights and the high-entropy token mask when set,
   + kl_coef * KL (kl_in=loss) - entropy_coef * entropy + vf_coef * value_loss (gae); gradients
   clipped to `grad_clip`.
   Rollout correction (`algorithm.rollout_is` / `rollout_rs`, veRL's names): the recomputed pi_old
   against the engine's sampling logprobs gives truncated IS weights and/or drops tokens or
   responses whose ratio leaves a band (`reasonlab.rl.losses.rollout_correction`); it forces the
   no-grad pass even for a single on-policy pass.
   `seq-mean-token-sum-norm` (Dr. GRPO) divides by every response of the minibatch times
   max_new_tokens, a constant (TRL's `dr_grpo`). The entropy comes from the same chunked pass as
   the logprobs (`losses.logprobs_and_entropy`) and is only differentiated when entropy_coef > 0.
   These passes run in training mode (dropout disabled in the model when the Learner is built), so
   transformers' gradient checkpointing takes effect; the no-grad pass runs in the caller's mode.
   A non-finite loss or gradient norm skips that optimiser step (no update, AdamW state
   untouched) and is counted in `skipped_updates`.

Teacher-forced passes (`Learner.forward`) put prompts left-padded and responses right-padded so
every response starts at one column, with position ids counted from each row's first real token
(as the rollout engine does), and score each response token at the sampling temperature. By default
each distinct prompt runs once and its KV cache is shared by its responses (`share_prompts`),
gradients flowing back through the cache; with gradient checkpointing that cache is a
`_ReplayCache`, which a layer's replay in the backward pass leaves unchanged.

The PPO critic is `ValueHead`, a linear head on the policy's last hidden state (a shared trunk, as
TRL's `AutoModelForCausalLMWithValueHead`), trained by the same optimiser; veRL's separate critic
model is not implemented.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import DynamicCache

from reasonlab.models import cache_keyword, disable_dropout
from reasonlab.parallel import Wrapped, clip_grad_norm
from reasonlab.records import Rollout
from reasonlab.rl.advantages import compute_advantages
from reasonlab.rl.config import TrainConfig
from reasonlab.rl.data import derive_seed
from reasonlab.rl.distributed import Dist
from reasonlab.rl.losses import (
    aggregate,
    high_entropy_mask,
    kl_penalty,
    logprobs_and_entropy,
    overlong_mask,
    policy_loss,
    policy_loss_params,
    rollout_correction,
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
        wrapped: Wrapped | None = None,
        ref_context: Any = None,
    ):
        self.model, self.optimizer, self.config = model, optimizer, config
        self.pad_id = pad_id
        self.value_head, self.ref_model = value_head, ref_model
        self.dist = dist or Dist.single()
        # the policy as trained: its DDP wrapper or FSDP2 shards (reasonlab.parallel.wrap_model)
        self.wrapped = wrapped or Wrapped(model, model, "none")
        # LoRA: ref_model is the policy itself, run inside ref_context() (adapters disabled)
        self.ref_context = ref_context or contextlib.nullcontext
        if self.dist.enabled and self.wrapped.kind == "none":
            raise ValueError(
                f"{self.dist.world_size} data-parallel processes, but the model is not wrapped for "
                "data parallelism: set model.parallel to ddp or fsdp (reasonlab.parallel.wrap_model)"
            )
        self.device = next(model.parameters()).device
        self.autocast_dtype = autocast_dtype
        self.keep_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        # the update runs in training mode (transformers checkpoints only there): dropout off
        disable_dropout(model)
        flag = next(
            (
                n
                for n in ("is_activation_checkpointing", "is_gradient_checkpointing")
                if hasattr(type(model), n)
            ),
            None,
        )
        self.checkpointing = bool(getattr(model, flag)) if flag else False
        # transformers drops a KV cache in checkpointed layers unless they may keep it; the shared
        # prompt pass then needs a cache that the backward replay of a layer leaves unchanged
        # FSDP2 all-gathers parameters at every forward call, so every rank must make the same
        # calls; the shared-prompt pass makes one or two by the responses' length: full passes
        self.share_prompts = (
            config.batching.share_prompts
            and not self.wrapped.sharded
            and (not self.checkpointing or _replayable_cache_supported(model))
        )
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        alg = config.algorithm
        self.loss_params = {
            k: getattr(alg, k) for k in policy_loss_params(alg.policy_loss) if k != "generator"
        }
        self.loss_rng: torch.Generator | None = None  # seeded each step for clip_cov's draw
        # adaptive entropy control: the coefficient and the entropy of the last update (the
        # trainer checkpoints both)
        self.entropy_coef = alg.entropy_coef
        self.last_entropy: float | None = None

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
        temperature), and optionally entropy (one chunked pass with the logprobs; differentiable,
        but it costs no backward work unless a loss uses it) and values. T = the longest completion
        in `rows`.

        With `batching.share_prompts` (the default), each distinct prompt goes through the model
        once and its KV cache is shared by its responses (gradients flow back through the cache),
        instead of once per response: the same numbers as a full pass over prompt + response, for
        a fraction of the compute when prompts are long and `rollout.n` is large. With gradient
        checkpointing too (non-reentrant, transformers >= 5 layers that may keep a cache)."""
        prompts = [batch.prompt_ids[i] for i in rows]
        completions = [batch.completion_ids[i] for i in rows]
        # gradient passes of the policy go through its DDP wrapper (its backward hooks reduce)
        train = model is self.model and torch.is_grad_enabled()
        call = self.wrapped.module if train else model
        with self._autocast():
            if self.share_prompts:
                logits, hidden = self._shared_prompt_pass(model, call, prompts, completions, values)
            else:
                logits, hidden = self._full_pass(model, call, prompts, completions, values)
        T = logits.shape[1]
        labels = _pad_ids(completions, T, self.pad_id, self.device)  # [b, T]
        temperature = self.config.rollout.temperature
        # chunked over positions, forward and backward: no float32 copy of the [b, T, V] logits
        if entropy:
            logprobs, entropies = logprobs_and_entropy(logits, labels, temperature)
            result = {"logprobs": logprobs, "entropy": entropies}
        else:
            result = {"logprobs": token_logprobs(logits, labels, temperature)}
        if values:
            result["values"] = self.value_head(hidden)
        return result

    def _full_pass(
        self, model: torch.nn.Module, call: Any, prompts: list, completions: list, values: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits [b, T, V] predicting each completion token (and the hidden states [b, T, H]
        they come from) from one pass over left-padded prompt + right-padded completion.
        `call`: what runs the pass (`model`, or its DDP wrapper)."""
        inputs = collate(prompts, completions, self.pad_id, self.device)
        P, T = inputs.prompt_len, inputs.response_len
        extra: dict[str, Any] = {"use_cache": False}
        if self.keep_logits:
            extra["logits_to_keep"] = T + 1
        out = call(
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
        self, model: torch.nn.Module, call: Any, prompts: list, completions: list, values: bool
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
        replay = self.checkpointing and torch.is_grad_enabled() and model.training
        cache_kw = cache_keyword(model)
        # one call through a DDP wrapper per pass (DDP may communicate in a forward call: ranks
        # must make the same calls): the last one
        prefill = call if T == 1 else model
        if replay:  # our own cache, which checkpointed layers keep (see _ReplayCache)
            cache = _replay_cache_class()()
            use_cache = False  # the layers fill the given cache; no warning about it
        else:
            cache = DynamicCache(config=model.config)  # filled in place by both passes
            use_cache = True
        with _layers_keep_cache(model, replay):
            out = prefill(
                input_ids=first.input_ids[:, :P],
                attention_mask=prompt_mask,
                position_ids=first.position_ids[:, :P],
                use_cache=use_cache,
                output_hidden_states=values,
                **{cache_kw: cache},
                **extra,
            )
        logits = out.logits[:, -1:].index_select(0, index)  # [b, 1, V]: predicts token 0
        hidden = out.hidden_states[-1][:, -1:].index_select(0, index) if values else None
        if T == 1:
            return logits, hidden
        if replay:
            cache = cache.select(index)  # [u, ...] -> [b, ...], frozen
        else:
            cache.reorder_cache(index)  # [u, ...] -> [b, ...]
        body = _pad_ids([c[: T - 1] for c in completions], T - 1, self.pad_id, self.device)
        body_mask = (
            torch.arange(T - 1, device=self.device)[None, :]
            < torch.tensor([min(len(c), T - 1) for c in completions], device=self.device)[:, None]
        ).long()  # [b, T - 1]
        start = first.position_ids[:, P - 1].index_select(0, index) + 1  # [b]
        with _layers_keep_cache(model, replay):
            out = call(
                input_ids=body,
                attention_mask=torch.cat([prompt_mask.index_select(0, index), body_mask], dim=1),
                position_ids=start[:, None] + torch.arange(T - 1, device=self.device)[None, :],
                use_cache=use_cache,
                output_hidden_states=values,
                **{cache_kw: cache},
            )
        logits = torch.cat([logits, out.logits], dim=1)  # [b, T, V]
        if values:
            hidden = torch.cat([hidden, out.hidden_states[-1]], dim=1)  # [b, T, H]
        return logits, hidden

    # -- the step ----------------------------------------------------------------------------

    def _denominator(self, mask: torch.Tensor) -> torch.Tensor:
        """The minibatch normaliser, summed over ranks: valid tokens (token-mean), every response
        (seq-mean-token-sum-norm, Dr. GRPO's constant: empty ones too), or responses with a valid
        token (the other sequence modes)."""
        agg = self.config.algorithm.loss_agg
        if agg == "token-mean":
            local = mask.sum()
        elif agg == "seq-mean-token-sum-norm":
            local = mask.shape[0]
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
        correct = alg.rollout_is is not None or alg.rollout_rs is not None
        if correct and batch.rollout_logprobs is None:
            raise ValueError(
                "algorithm.rollout_is / rollout_rs compare pi_old with the engine's sampling "
                "logprobs, but this batch has none (the engine returned no per-token logprobs)"
            )
        need_values = self.value_head is not None
        need_ref = self.ref_model is not None and alg.kl_coef > 0
        kl_in_reward = need_ref and alg.kl_in == "reward"
        need_old = kl_in_reward or not (single_pass or use_rollout_lp) or need_values or correct

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
        is_weights = None
        if correct:
            rollout_lp = _pad_rows(batch.rollout_logprobs, width, self.device)
            is_weights, keep, rstats = rollout_correction(
                old_lp,
                rollout_lp,
                mask,
                rollout_is=alg.rollout_is,
                rollout_is_threshold=alg.rollout_is_threshold,
                rollout_rs=alg.rollout_rs,
                rollout_rs_threshold=alg.rollout_rs_threshold,
                rollout_rs_threshold_lower=alg.rollout_rs_threshold_lower,
            )
            stats.add_mean(rstats, float(mask.sum()))
            mask = mask * keep  # rejected tokens leave the loss and its normaliser
        if "generator" in policy_loss_params(alg.policy_loss):
            self.loss_rng = torch.Generator().manual_seed(derive_seed(cfg.run.seed, step, 29))
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
                # every rank makes as many passes as the busiest one (DDP and FSDP2 communicate
                # in them): the ranks' shares of a shuffled minibatch differ
                owners = torch.bincount(chosen // rows, minlength=self.dist.world_size)
                passes = max(1, math.ceil(int(owners.max()) / cfg.micro_batch_size))
                with _training_mode(self.model):  # for gradient checkpointing; dropout is off
                    self._optimizer_step(
                        batch,
                        local,
                        passes,
                        mask,
                        advantages,
                        returns,
                        old_lp,
                        ref_lp,
                        old_values,
                        stats,
                        is_weights,
                    )
        out = stats.reduce(self.dist, self.device)
        # over every rank's response tokens, as the other statistics (a rank's mean alone differs)
        tokens = self.dist.sum_scalar(float(mask_bool.sum()), self.device)
        total = self.dist.sum_scalar(float(advantages[mask_bool].sum()), self.device)
        out["advantage_mean"] = total / tokens if tokens else 0.0
        out["entropy_coef"] = self._entropy_weight()
        if alg.entropy_target is not None and "entropy" in out:
            self.last_entropy = out["entropy"]
            step_size = alg.entropy_coef_delta
            below = out["entropy"] < alg.entropy_target
            self.entropy_coef = max(0.0, self.entropy_coef + (step_size if below else -step_size))
            out["entropy_target"] = alg.entropy_target
        return out

    def _entropy_weight(self) -> float:
        """The entropy bonus's weight this step: entropy_coef, or with entropy_target (Skywork-OR1)
        the adaptive coefficient while the last update's entropy was at or below the target (one
        step behind, so every micro-batch and rank uses the same weight)."""
        target = self.config.algorithm.entropy_target
        if target is None:
            return self.config.algorithm.entropy_coef
        if self.last_entropy is not None and self.last_entropy > target:
            return 0.0
        return self.entropy_coef

    @torch.no_grad()
    def _no_grad_pass(
        self, batch: StepBatch, width: int, *, policy: bool, ref: bool, values: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        size = self.config.batching.forward_batch_size or self.config.micro_batch_size
        old = torch.zeros(len(batch), width, device=self.device) if policy else None
        ref_out = torch.zeros(len(batch), width, device=self.device) if ref else None
        vals = torch.zeros(len(batch), width, device=self.device) if values else None
        order = list(range(len(batch)))
        if self.config.batching.group_by_length:
            order = self._longest_first(batch, order)
        for start in range(0, len(batch), size):
            rows = order[start : start + size]
            if policy:
                result = self.forward(self.model, batch, rows, values=values)
                T = result["logprobs"].shape[1]
                old[rows, :T] = result["logprobs"].float()
                if values:
                    vals[rows, :T] = result["values"].float()
            if ref:
                with self.ref_context():
                    result = self.forward(self.ref_model, batch, rows)
                T = result["logprobs"].shape[1]
                ref_out[rows, :T] = result["logprobs"].float()
        return old, ref_out, vals

    @staticmethod
    def _longest_first(batch: StepBatch, rows: list[int]) -> list[int]:
        """`rows` by completion length, longest first (ties keep their order): consecutive
        micro-batches then hold responses of similar length (`batching.group_by_length`)."""
        return sorted(rows, key=lambda i: -len(batch.completion_ids[i]))

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
        passes: int,
        mask: torch.Tensor,
        advantages: torch.Tensor,
        returns: torch.Tensor | None,
        old_lp: torch.Tensor | None,
        ref_lp: torch.Tensor | None,
        old_values: torch.Tensor | None,
        stats: _Stats,
        is_weights: torch.Tensor | None = None,
    ) -> None:
        cfg, alg = self.config, self.config.algorithm
        denominator = self._denominator(mask[rows]) if rows else self._denominator(mask[:0])
        max_len = cfg.rollout.max_new_tokens
        agg = dict(agg=alg.loss_agg, denominator=denominator, max_len=max_len)
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        micro = cfg.micro_batch_size
        if cfg.batching.group_by_length:
            rows = self._longest_first(batch, rows)
        for index in range(passes):
            part = rows[index * micro : (index + 1) * micro]
            idle = not part  # a pass this rank makes only to join the others' communication
            with self.wrapped.grad_sync(index == passes - 1):
                loss = self._micro_loss(
                    batch,
                    part or [0],
                    mask,
                    advantages,
                    returns,
                    old_lp,
                    ref_lp,
                    old_values,
                    None if idle else stats,
                    is_weights,
                    agg,
                )
                (loss * 0 if idle else loss).backward()
            if not idle:
                total = total + loss.detach()
        if self.value_head is not None and self.dist.enabled:
            # the value head sits outside the wrapped policy: its gradient is summed here
            self.dist.all_reduce_grads(self.value_head.parameters())
        total_loss = self.dist.sum_scalar(total, self.device)
        clip = cfg.optim.grad_clip if cfg.optim.grad_clip is not None else float("inf")
        grad_norm = clip_grad_norm(self.params, clip)
        stats.add_update(total_loss, grad_norm)
        if not (math.isfinite(total_loss) and math.isfinite(grad_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            stats.skipped += 1
            return
        self.optimizer.step()

    def _micro_loss(
        self,
        batch: StepBatch,
        part: list[int],
        mask: torch.Tensor,
        advantages: torch.Tensor,
        returns: torch.Tensor | None,
        old_lp: torch.Tensor | None,
        ref_lp: torch.Tensor | None,
        old_values: torch.Tensor | None,
        stats: _Stats | None,
        is_weights: torch.Tensor | None,
        agg: dict[str, Any],
    ) -> torch.Tensor:
        """One micro-batch's share of the minibatch loss (statistics into `stats` unless None)."""
        alg = self.config.algorithm
        stats = stats if stats is not None else _Stats()
        out = self.forward(
            self.model, batch, part, entropy=True, values=self.value_head is not None
        )
        lp = out["logprobs"]
        T = lp.shape[1]
        m = mask[part, :T]
        old = lp.detach() if old_lp is None else old_lp[part, :T]
        entropy = out["entropy"]
        weights = None if is_weights is None else is_weights[part, :T]
        if alg.top_entropy_quantile < 1:
            keep = high_entropy_mask(entropy, m, alg.top_entropy_quantile)
            weights = keep if weights is None else weights * keep
        params = dict(self.loss_params)
        if self.loss_rng is not None:
            params["generator"] = self.loss_rng
        loss, pstats = policy_loss(
            lp,
            old,
            advantages[part, :T],
            m,
            loss=alg.policy_loss,
            weights=weights,
            **params,
            **agg,
        )
        tokens = float(m.sum())
        per_seq = {k: v for k, v in pstats.items() if k.endswith("_seq")}
        stats.add_mean({k: v for k, v in pstats.items() if k not in per_seq}, tokens)
        stats.add_mean(per_seq, float((m.sum(dim=1) > 0).sum()))
        stats.add_sum("loss/policy", loss.detach())
        entropy_weight = self._entropy_weight()
        if entropy_weight:
            loss = loss - entropy_weight * aggregate(entropy, m, alg.loss_agg, **_kw(agg))
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
        return loss


@contextlib.contextmanager
def _training_mode(model: torch.nn.Module) -> Iterator[None]:
    """Training mode for the update (transformers applies gradient checkpointing only there; with
    dropout disabled it computes what eval mode does), the previous mode restored after."""
    was_training = model.training
    model.train()
    try:
        yield
    finally:
        model.train(was_training)


def _checkpointed_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    try:
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:  # transformers < 4.52
        return []
    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


def _replayable_cache_supported(model: torch.nn.Module) -> bool:
    """Whether the shared-prompt pass can run under this model's gradient checkpointing: its layers
    honour `_can_checkpoint_with_cache` (transformers >= 5), the cache has per-layer states, and
    the checkpoint is non-reentrant (a reentrant one would send no gradient to the prompt's KV
    cache, which is not an explicit input of the layer)."""
    try:
        from transformers.cache_utils import DynamicCache
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:
        return False
    if not hasattr(GradientCheckpointingLayer, "_can_checkpoint_with_cache"):
        return False
    if not hasattr(DynamicCache(), "layers"):
        return False
    layers = _checkpointed_layers(model)
    funcs = [getattr(m, "_gradient_checkpointing_func", None) for m in layers]
    return bool(layers) and all(
        isinstance(f, functools.partial) and f.keywords.get("use_reentrant") is False for f in funcs
    )


@contextlib.contextmanager
def _layers_keep_cache(model: torch.nn.Module, keep: bool) -> Iterator[None]:
    """Let checkpointed layers keep the KV cache they are given (transformers otherwise drops it
    in training mode, as replaying a layer in the backward pass would write its cache twice); only
    with a `_ReplayCache`, whose states a replay leaves unchanged. The flag is read when a layer is
    called, not when it is replayed."""
    layers = _checkpointed_layers(model) if keep else []
    for layer in layers:
        layer._can_checkpoint_with_cache = True
    try:
        yield
    finally:
        for layer in layers:
            del layer._can_checkpoint_with_cache  # back to the class's value


@functools.cache
def _replay_cache_class() -> type:
    """`_ReplayCache`, a transformers `DynamicCache` that gradient checkpointing can replay.

    A checkpointed layer runs its forward twice: in the forward pass and again in the backward
    pass, to recompute what it did not store. A `DynamicCache` would append the layer's keys and
    values a second time. This one never grows a layer that holds states already: while recording
    (the prompt pass) a replay overwrites them with the same values; once `select`ed for the
    responses (frozen) it returns prompt states ++ new states and stores nothing, so a replay sees
    the prompt exactly as the forward pass did. Gradients flow from the responses' attention back
    into the prompt's keys and values (`index_select` and `cat` are differentiable)."""
    from transformers.cache_utils import DynamicCache

    class _ReplayCache(DynamicCache):
        frozen = False

        def update(self, key_states, value_states, layer_idx, *args, **kwargs):
            if layer_idx < len(self.layers) and self.layers[layer_idx].get_seq_length() > 0:
                layer = self.layers[layer_idx]
                if self.frozen:  # [b, heads, P + t, head_dim]
                    return (
                        torch.cat([layer.keys, key_states], dim=-2),
                        torch.cat([layer.values, value_states], dim=-2),
                    )
                layer.keys, layer.values = key_states, value_states  # a replayed prompt pass
                return key_states, value_states
            return super().update(key_states, value_states, layer_idx, *args, **kwargs)

        def select(self, index: torch.Tensor) -> _ReplayCache:
            """A frozen copy with rows `index` of each layer's states ([u, ...] -> [b, ...])."""
            out = _ReplayCache()
            for i, layer in enumerate(self.layers):
                keys, values = (
                    layer.keys.index_select(0, index),
                    layer.values.index_select(0, index),
                )
                DynamicCache.update(out, keys, values, i)
            out.frozen = True
            return out

    return _ReplayCache


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
        self.minima: dict[str, float] = {}
        self.losses: list[float] = []
        self.grad_norms: list[float] = []
        self.skipped = 0

    def add_mean(self, values: dict[str, torch.Tensor], weight: float) -> None:
        for key, value in values.items():
            if key.startswith("loss/"):
                continue
            if key.endswith("_max"):
                self.maxima[key] = max(self.maxima.get(key, float("-inf")), float(value))
                continue
            if key.endswith("_min"):
                self.minima[key] = min(self.minima.get(key, float("inf")), float(value))
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
            for key in sorted(self.minima):
                t = torch.tensor([self.minima[key]], dtype=torch.float64, device=device)
                self.minima[key] = float(d.all_reduce(t, op="min").item())
        out = {k: self.weighted[k] / self.weights[k] if self.weights[k] else 0.0 for k in keys}
        updates = max(1, len(self.losses))
        for key, value in self.sums.items():
            out[key] = value / updates
        out.update(self.maxima)
        out.update(self.minima)
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
