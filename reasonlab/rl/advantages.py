"""Advantage estimators for RL on language models, as implemented here.

One entry point, `compute_advantages(name, rewards=..., response_mask=..., group_size=...)`, and a
registry `ADVANTAGES` of estimators. Every estimator returns token-level advantages `[B, T]` (zero on
masked tokens) and, for estimators that train a critic or report returns, token-level returns
`[B, T]` (else None).

Layout: row b of every tensor is one sampled response; rows `[g*group_size:(g+1)*group_size]` are the
samples of prompt g (the order `RolloutEngine.generate` returns). `response_mask[b, t] = 1` marks the
response tokens that take part in the loss; estimators recurse over valid tokens only, so a masked
token inside a response is skipped (its value, reward and advantage are ignored), and a row with no
valid token (e.g. an overlong sample masked out, DAPO) gets zero advantage.

Estimators (r_i: the outcome reward of response i; G: the group of i; n = group_size):

- `grpo` — GRPO, DeepSeekMath (Shao et al. 2024, arXiv:2402.03300), outcome supervision:
  A_i = (r_i - mean_G(r)) / (std_G(r) + eps), the same for every token of response i.
  std is the *unbiased* sample std (Bessel, n - 1), as `torch.std` in veRL's
  `compute_grpo_outcome_advantage` and TRL's `GRPOTrainer`.
- `dr_grpo` — Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical
  Perspective", arXiv:2503.20783): A_i = r_i - mean_G(r); dividing by the group std biases the update
  toward questions that are too easy or too hard, so it is dropped. (Dr. GRPO also drops the
  per-response length normalisation; that is the loss aggregation `seq-mean-token-sum-norm` in
  `reasonlab.rl.losses`, not an advantage matter.)
- `grpo_passk` — a pass@k-oriented GRPO (veRL's `grpo_passk`, after Tang et al. 2025,
  "Optimizing Language Models for Inference Time Objectives using RL", arXiv:2503.19595): only the
  best response of each group learns, A_{i*} = (r_max - r_second) / (std_G + eps), every other
  response 0 (the first of tied maxima is i*, and a tie gives 0). A group whose best sample improves
  is what pass@k rewards.
- `rloo` — REINFORCE Leave-One-Out (Ahmadian et al. 2024, "Back to Basics", arXiv:2402.14740;
  Kool et al. 2019): A_i = r_i - mean_{j in G, j != i} r_j = n / (n - 1) * (r_i - mean_G(r)).
- `reinforce_pp` — REINFORCE++ (Hu 2025, arXiv:2501.03262): token rewards
  r_t = -kl_coef * kl_t at every valid token, plus the outcome reward at the last valid token;
  returns G_t = sum_{s >= t, valid} gamma^(s - t) r_s (discounting counts valid tokens);
  advantages = G whitened over every valid token of the batch (global batch normalisation, no
  critic and no group baseline). Returns = G.
- `reinforce_pp_baseline` — REINFORCE++-baseline (same paper, v2): s_i = r_i - mean_G(r) broadcast
  to tokens, then whitened over every valid token of the batch (veRL's
  `compute_reinforce_plus_plus_baseline_outcome_advantage`).
- `gae` — PPO with Generalized Advantage Estimation (Schulman et al. 2016, arXiv:1506.02438):
  token rewards as in `reinforce_pp` (outcome at the last valid token, minus kl_coef * kl_t);
  delta_t = r_t + gamma * V_{t'} - V_t with t' the next valid token (V = 0 after the last one);
  A_t = delta_t + gamma * lam * A_{t'}; returns = A + V (the critic's target, before whitening);
  advantages whitened over the valid tokens of the batch, as veRL's `compute_gae_advantage_return`.

KL in the reward ("use_kl_in_reward" in veRL): when `kl` [B, T] and `kl_coef` > 0 are given, the
token estimators above subtract kl_coef * kl_t per token; the outcome estimators (grpo, dr_grpo,
rloo, reinforce_pp_baseline) use the sequence score r_i - kl_coef * sum_t kl_{i,t}, which is what
veRL's outcome estimators see after `apply_kl_penalty`. GRPO proper puts the KL in the loss instead
(`reasonlab.rl.losses.kl_penalty`); leave kl_coef = 0 for that.

Whitening (`masked_whiten`): (x - mean) / (std + eps) with mean and unbiased std over the valid
tokens of the whole batch. veRL writes (x - mean) * rsqrt(var + 1e-8); the two differ only in where
eps goes. With fewer than two valid tokens the result is zero (nothing to compare against).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from reasonlab.registry import Registry


@dataclass(frozen=True)
class AdvantageInputs:
    """The validated inputs every estimator receives (see `compute_advantages`)."""

    rewards: Tensor
    """[B] outcome reward of each response (float)."""
    response_mask: Tensor
    """[B, T] 1 for response tokens in the loss, 0 for padding (float)."""
    group_size: int
    """Responses per prompt, consecutive rows."""
    values: Tensor | None
    """[B, T] critic values V(s_t) (gae only)."""
    kl: Tensor | None
    """[B, T] per-token KL to the reference policy, or None."""
    kl_coef: float
    """Weight of the KL in the reward."""
    gamma: float
    """Discount per valid token."""
    lam: float
    """GAE lambda."""
    eps: float
    """Added to a std before dividing."""


Estimator = Callable[[AdvantageInputs], tuple[Tensor, Tensor | None]]
ADVANTAGES: Registry[Estimator] = Registry("advantage estimator")


def compute_advantages(
    name: str,
    *,
    rewards: Tensor,
    response_mask: Tensor,
    group_size: int,
    values: Tensor | None = None,
    kl: Tensor | None = None,
    kl_coef: float = 0.0,
    gamma: float = 1.0,
    lam: float = 1.0,
    eps: float = 1e-6,
) -> tuple[Tensor, Tensor | None]:
    """Token-level advantages [B, T] and returns [B, T] (or None) with the estimator `name`.

    rewards: [B] outcome reward per response. response_mask: [B, T] (bool or 0/1). values, kl:
    [B, T] or None. Rows are grouped by prompt, `group_size` consecutive rows per prompt.
    Computed without gradient: advantages are constants in the policy loss.
    """
    estimator = ADVANTAGES[name]
    inputs = _validate(rewards, response_mask, group_size, values, kl, kl_coef, gamma, lam, eps)
    with torch.no_grad():
        return estimator(inputs)


def _validate(
    rewards: Tensor,
    response_mask: Tensor,
    group_size: int,
    values: Tensor | None,
    kl: Tensor | None,
    kl_coef: float,
    gamma: float,
    lam: float,
    eps: float,
) -> AdvantageInputs:
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [batch], got shape {tuple(rewards.shape)}")
    if response_mask.dim() != 2 or response_mask.shape[0] != rewards.shape[0]:
        raise ValueError(
            f"response_mask must be [batch, T] with batch = len(rewards) = {rewards.shape[0]}, "
            f"got shape {tuple(response_mask.shape)}"
        )
    for label, tensor in (("values", values), ("kl", kl)):
        if tensor is not None and tensor.shape != response_mask.shape:
            raise ValueError(
                f"{label} must have the shape of response_mask {tuple(response_mask.shape)}, "
                f"got {tuple(tensor.shape)}"
            )
    batch = rewards.shape[0]
    if group_size < 1 or batch % group_size:
        raise ValueError(
            f"batch size {batch} is not a multiple of group_size {group_size}: rows must be "
            f"whole groups of samples of one prompt"
        )
    if not 0.0 <= gamma <= 1.0 or not 0.0 <= lam <= 1.0:
        raise ValueError(f"gamma and lam must be in [0, 1], got gamma={gamma}, lam={lam}")
    dtype = torch.promote_types(rewards.dtype, torch.float32)
    return AdvantageInputs(
        rewards=rewards.to(dtype),
        response_mask=response_mask.to(dtype),
        group_size=group_size,
        values=None if values is None else values.to(dtype),
        kl=None if kl is None else kl.to(dtype),
        kl_coef=float(kl_coef),
        gamma=float(gamma),
        lam=float(lam),
        eps=float(eps),
    )


# ----------------------------------------------------------------------------- shared pieces


def masked_whiten(x: Tensor, mask: Tensor, eps: float = 1e-6) -> Tensor:
    """(x - mean) / (std + eps) over the entries where mask is 1; zero where mask is 0.

    x, mask: [B, T]. mean and unbiased std are taken over all valid entries of the batch.
    """
    count = mask.sum()
    mean = (x * mask).sum() / count.clamp(min=1.0)
    centered = (x - mean) * mask
    var = (centered**2).sum() / (count - 1.0).clamp(min=1.0)
    return centered / (var.sqrt() + eps)


def token_rewards(inputs: AdvantageInputs) -> Tensor:
    """[B, T] per-token rewards: the outcome reward at each row's last valid token, minus
    kl_coef * kl_t on every valid token. Rows with no valid token get nothing."""
    mask = inputs.response_mask
    batch, length = mask.shape
    positions = torch.arange(length, device=mask.device).expand(batch, length)  # [B, T]
    last = torch.where(mask > 0, positions, -1).max(dim=1).values  # [B], -1: no valid token
    has_token = last >= 0
    out = torch.zeros_like(mask)
    rows = torch.arange(batch, device=mask.device)[has_token]
    out[rows, last[has_token]] = inputs.rewards[has_token]
    if inputs.kl is not None and inputs.kl_coef != 0.0:
        out = out - inputs.kl_coef * inputs.kl * mask
    return out


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """G_t = r_t + gamma * G_{t'} with t' the next valid token (G = 0 after the last one);
    masked tokens are skipped (they carry G_{t'} through) and get 0. rewards, mask: [B, T]."""
    running = torch.zeros_like(rewards[:, 0])  # [B]
    out = torch.zeros_like(rewards)
    for t in reversed(range(rewards.shape[1])):
        valid = mask[:, t]
        running = valid * (rewards[:, t] + gamma * running) + (1.0 - valid) * running
        out[:, t] = running * valid
    return out


def _group_view(scores: Tensor, group_size: int) -> Tensor:
    return scores.view(-1, group_size)  # [num_groups, group_size]


def _sequence_scores(inputs: AdvantageInputs) -> Tensor:
    """[B] r_i, minus kl_coef * sum of the valid tokens' KL when a KL is given."""
    scores = inputs.rewards
    if inputs.kl is not None and inputs.kl_coef != 0.0:
        scores = scores - inputs.kl_coef * (inputs.kl * inputs.response_mask).sum(dim=1)
    return scores


def _require_groups(inputs: AdvantageInputs, name: str) -> None:
    if inputs.group_size < 2:
        raise ValueError(
            f"{name} compares the samples of a prompt with each other and needs group_size >= 2, "
            f"got {inputs.group_size}"
        )


def _broadcast(scores: Tensor, mask: Tensor) -> Tensor:
    return scores.unsqueeze(1) * mask  # [B] -> [B, T]


# ----------------------------------------------------------------------------- estimators


@ADVANTAGES.register("grpo")
def grpo(inputs: AdvantageInputs) -> tuple[Tensor, None]:
    """A_i = (r_i - mean_G) / (std_G + eps), unbiased std (DeepSeekMath; veRL, TRL)."""
    _require_groups(inputs, "grpo")
    groups = _group_view(_sequence_scores(inputs), inputs.group_size)  # [num_groups, n]
    mean = groups.mean(dim=1, keepdim=True)
    std = groups.std(dim=1, keepdim=True, unbiased=True)
    scores = ((groups - mean) / (std + inputs.eps)).reshape(-1)  # [B]
    return _broadcast(scores, inputs.response_mask), None


@ADVANTAGES.register("dr_grpo")
def dr_grpo(inputs: AdvantageInputs) -> tuple[Tensor, None]:
    """A_i = r_i - mean_G (Dr. GRPO: no division by the group std)."""
    _require_groups(inputs, "dr_grpo")
    groups = _group_view(_sequence_scores(inputs), inputs.group_size)
    scores = (groups - groups.mean(dim=1, keepdim=True)).reshape(-1)
    return _broadcast(scores, inputs.response_mask), None


@ADVANTAGES.register("grpo_passk")
def grpo_passk(inputs: AdvantageInputs) -> tuple[Tensor, None]:
    """Only each group's best response gets A = (r_max - r_second) / (std_G + eps) (veRL)."""
    _require_groups(inputs, "grpo_passk")
    groups = _group_view(_sequence_scores(inputs), inputs.group_size)  # [num_groups, n]
    top = groups.topk(2, dim=1)  # values, indices: [num_groups, 2]
    std = groups.std(dim=1, unbiased=True)  # [num_groups]
    gap = (top.values[:, 0] - top.values[:, 1]) / (std + inputs.eps)  # [num_groups]
    scores = torch.zeros_like(groups).scatter_(1, top.indices[:, :1], gap[:, None])
    return _broadcast(scores.reshape(-1), inputs.response_mask), None


@ADVANTAGES.register("rloo")
def rloo(inputs: AdvantageInputs) -> tuple[Tensor, None]:
    """A_i = r_i - mean of the other n - 1 rewards of the group (RLOO)."""
    _require_groups(inputs, "rloo")
    groups = _group_view(_sequence_scores(inputs), inputs.group_size)
    n = inputs.group_size
    leave_one_out_mean = (groups.sum(dim=1, keepdim=True) - groups) / (n - 1)
    scores = (groups - leave_one_out_mean).reshape(-1)
    return _broadcast(scores, inputs.response_mask), None


@ADVANTAGES.register("reinforce_pp")
def reinforce_pp(inputs: AdvantageInputs) -> tuple[Tensor, Tensor]:
    """REINFORCE++: discounted returns of the per-token rewards, whitened over the batch."""
    returns = discounted_returns(token_rewards(inputs), inputs.response_mask, inputs.gamma)
    return masked_whiten(returns, inputs.response_mask, inputs.eps), returns


@ADVANTAGES.register("reinforce_pp_baseline")
def reinforce_pp_baseline(inputs: AdvantageInputs) -> tuple[Tensor, None]:
    """REINFORCE++-baseline: r_i - mean_G broadcast to tokens, whitened over the batch."""
    _require_groups(inputs, "reinforce_pp_baseline")
    groups = _group_view(_sequence_scores(inputs), inputs.group_size)
    scores = (groups - groups.mean(dim=1, keepdim=True)).reshape(-1)
    centered = _broadcast(scores, inputs.response_mask)
    return masked_whiten(centered, inputs.response_mask, inputs.eps), None


@ADVANTAGES.register("gae")
def gae(inputs: AdvantageInputs) -> tuple[Tensor, Tensor]:
    """PPO's GAE(gamma, lam) over valid tokens; returns = A + V; A whitened over the batch."""
    if inputs.values is None:
        raise ValueError("gae needs critic values: pass values=[B, T] (the value head's outputs)")
    rewards, values, mask = token_rewards(inputs), inputs.values, inputs.response_mask
    gamma, lam = inputs.gamma, inputs.lam
    next_value = torch.zeros_like(rewards[:, 0])  # [B] V of the next valid token
    next_advantage = torch.zeros_like(rewards[:, 0])  # [B] A of the next valid token
    advantages = torch.zeros_like(rewards)
    for t in reversed(range(rewards.shape[1])):
        valid = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * next_advantage
        # a masked token passes the next valid token's value and advantage through
        next_value = valid * values[:, t] + (1.0 - valid) * next_value
        next_advantage = valid * advantage + (1.0 - valid) * next_advantage
        advantages[:, t] = advantage * valid
    returns = (advantages + values) * mask
    return masked_whiten(advantages, mask, inputs.eps), returns
