"""Per-token RL losses, their aggregation, and the tensor helpers around them (pure functions).

Shapes: B responses, T response tokens, V vocabulary. Every `mask` is [B, T] with 1 on the tokens in
the loss. The per-token loss and its *aggregation* into a scalar are kept apart (as veRL's
`core_algos.py`): `policy_loss` and `value_loss` build a [B, T] loss matrix and hand it to
`aggregate(loss_mat, mask, mode)`, so a new aggregation is one function and one registry line.

- `policy_loss(..., loss=NAME)`: a policy loss from the registry `POLICY_LOSSES` (one function and
  one registry line each; `algorithm.policy_loss` in a recipe), times optional per-token weights,
  then aggregated: `ppo` (PPO's clipped surrogate, Schulman et al. 2017, arXiv:1707.06347, with
  clip-higher, dual clip or INTELLECT-2's delta; GRPO's; the default), `gspo` / `gspo_token`
  (sequence-level ratio, Qwen 2025), `cispo` (clipped IS weight, MiniMax-M1), `sapo` (soft gate),
  `gmpo` (geometric mean), `clip_cov` / `kl_cov` (Cui et al. 2025). Each function states its
  paper and equation.
- `high_entropy_mask` (train on the top-entropy tokens) and `rollout_correction` (truncated IS
  weights and rejection of tokens or responses whose pi_old / pi_rollout leaves a band).
- `value_loss`: PPO's clipped value loss.
- `kl_penalty`: the k1 / k2 / k3 estimators of KL(pi || pi_ref) from one sample
  (Schulman 2020, "Approximating KL Divergence", http://joschu.net/blog/kl-approx.html); as a
  *loss* their gradients differ: k1's is zero in expectation, k2's is that of KL(pi || pi_ref),
  k3's that of KL(pi_ref || pi) (see `kl_penalty`).
- `logprobs_and_entropy` (and `token_logprobs`, `entropy_from_logits`): reductions of [B, T, V]
  logits chunked in the forward and backward passes, so a large vocabulary does not multiply the
  peak memory.
- `overlong_mask` (DAPO overlong filtering) and `groups_with_signal` (DAPO dynamic sampling).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from reasonlab.registry import Registry

# ----------------------------------------------------------------------------- aggregation

Denominator = float | Tensor | None
Aggregation = Callable[[Tensor, Tensor, Denominator, int | None], Tensor]
AGGREGATIONS: Registry[Aggregation] = Registry("loss aggregation mode")


def aggregate(
    loss_mat: Tensor,
    mask: Tensor,
    mode: str,
    *,
    denominator: float | Tensor | None = None,
    max_len: int | None = None,
) -> Tensor:
    """Reduce a per-token loss [B, T] over the tokens where mask [B, T] is 1 to a scalar [].

    Modes (veRL's `agg_loss` names; m_{i,t} the mask, l_{i,t} the loss, |m_i| = sum_t m_{i,t}):

    - `token-mean`: sum_{i,t} m l / N, N = sum_{i,t} m (every token weighs the same; DAPO).
    - `seq-mean-token-mean`: (1/S) sum_i (sum_t m l / |m_i|) (each response weighs the same;
      the original GRPO objective).
    - `seq-mean-token-sum`: (1/S) sum_i sum_t m l.
    - `seq-mean-token-sum-norm`: sum_{i,t} m l / (B * max_len), B the number of responses *all*
      counted (an empty or masked-out response included) and max_len a constant such as
      max_new_tokens: Dr. GRPO (Liu et al. 2025, arXiv:2503.20783) drops the per-response length
      normalisation, so the normaliser must not depend on the data; this is TRL's `dr_grpo` loss
      (sum / (batch_size * max_completion_length)).

    S is the number of responses with at least one valid token (a response the mask empties, e.g.
    by overlong filtering, does not count), except in `seq-mean-token-sum-norm` (B, every row).
    `denominator`, when given, replaces N (token-mean), S or B (sequence modes): pass the count over
    the *whole* mini-batch, so the losses of its micro-batches (and of data-parallel ranks) add up
    to the mini-batch loss. With DDP, whose all-reduce averages gradients over W ranks, also
    multiply the loss by W.
    """
    if loss_mat.shape != mask.shape or loss_mat.dim() != 2:
        raise ValueError(
            f"loss_mat and mask must both be [B, T], got {tuple(loss_mat.shape)} and "
            f"{tuple(mask.shape)}"
        )
    return AGGREGATIONS[mode](loss_mat, mask.to(loss_mat.dtype), denominator, max_len)


def _count_or(denominator: Denominator, count: Tensor) -> Tensor | float:
    if denominator is None:
        return count.clamp(min=1.0)
    # a mini-batch with no valid token gives 0 / 0: make it 0 (without a device sync)
    if isinstance(denominator, Tensor):
        return denominator.clamp(min=1e-8)
    return max(float(denominator), 1e-8)


def _sequence_count(mask: Tensor) -> Tensor:
    return (mask.sum(dim=1) > 0).sum().to(mask.dtype)


@AGGREGATIONS.register("token-mean")
def _token_mean(
    loss_mat: Tensor, mask: Tensor, denominator: Denominator, max_len: int | None
) -> Tensor:
    return (loss_mat * mask).sum() / _count_or(denominator, mask.sum())


@AGGREGATIONS.register("seq-mean-token-mean")
def _seq_mean_token_mean(
    loss_mat: Tensor, mask: Tensor, denominator: Denominator, max_len: int | None
) -> Tensor:
    per_seq = (loss_mat * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # [B]
    return per_seq.sum() / _count_or(denominator, _sequence_count(mask))


@AGGREGATIONS.register("seq-mean-token-sum")
def _seq_mean_token_sum(
    loss_mat: Tensor, mask: Tensor, denominator: Denominator, max_len: int | None
) -> Tensor:
    per_seq = (loss_mat * mask).sum(dim=1)  # [B]
    return per_seq.sum() / _count_or(denominator, _sequence_count(mask))


@AGGREGATIONS.register("seq-mean-token-sum-norm")
def _seq_mean_token_sum_norm(
    loss_mat: Tensor, mask: Tensor, denominator: Denominator, max_len: int | None
) -> Tensor:
    if max_len is None or max_len <= 0:
        raise ValueError(
            "loss aggregation 'seq-mean-token-sum-norm' (Dr. GRPO) needs max_len > 0, the constant "
            f"that replaces each response's length (e.g. max_new_tokens); got {max_len}"
        )
    # a constant normaliser: every row counts, whatever its length (an empty one too)
    rows = mask.new_tensor(float(mask.shape[0]))
    return (loss_mat * mask).sum() / max_len / _count_or(denominator, rows)


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


# ----------------------------------------------------------------------------- policy losses


@dataclass
class PolicyTerms:
    """What a registered policy loss computes on [B, T] tensors, before aggregation."""

    loss_mat: Tensor
    """[B, T] per-token loss (with grad)."""
    ratio: Tensor
    """[B, T] the importance ratio the loss uses (per token, or its sequence's broadcast)."""
    clipped: Tensor
    """[B, T] bool: tokens whose clip (or IS-weight cap) is active."""
    trained: Tensor
    """[B, T] bool: tokens with a non-zero gradient."""
    extra: dict[str, Tensor] = field(default_factory=dict)
    """More [B, T] flags or values to average over valid tokens (e.g. one side of the clip)."""


PolicyLoss = Callable[..., PolicyTerms]
POLICY_LOSSES: Registry[PolicyLoss] = Registry("policy loss")
"""`algorithm.policy_loss` names. Each takes (logprobs, old_logprobs, advantages, mask) [B, T] and
keyword-only parameters named as the `AlgorithmConfig` fields that set them."""


def policy_loss_params(name: str) -> list[str]:
    """The keyword parameters of policy loss `name` (config field names, plus `generator`)."""
    signature = inspect.signature(POLICY_LOSSES[name])
    return [p.name for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY]


def _log_ratio(logprobs: Tensor, old_logprobs: Tensor) -> Tensor:
    # clamped (as veRL) so that one wild token cannot overflow exp
    return (logprobs - old_logprobs).clamp(-20.0, 20.0)


def _seq_mean(x: Tensor, mask: Tensor) -> Tensor:
    """[B, T] -> [B]: the mean over each row's valid tokens (0 for a row without one)."""
    return (x * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def _clipped_surrogate(
    ratio: Tensor, advantages: Tensor, clip_low: float, clip_high: float
) -> tuple[Tensor, Tensor, Tensor]:
    """max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high)) [B, T], the clipped term [B, T] and
    where it is the active one (zero gradient) [B, T] bool."""
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    return torch.maximum(unclipped, clipped), clipped, clipped > unclipped


@POLICY_LOSSES.register("ppo")
def ppo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    delta: float | None = None,
) -> PolicyTerms:
    """PPO's clipped surrogate (Schulman et al. 2017, arXiv:1707.06347, eq. 7), as GRPO uses it,
    with asymmetric bounds ("clip-higher", DAPO: Yu et al. 2025, arXiv:2503.14476):

        r = exp(logprobs - old_logprobs)                                     [B, T]
        l = max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high))

    Bounds for negative advantages, where a growing ratio is otherwise unbounded (either, not both):
    - `dual_clip` c > 1 (Ye et al. 2020, arXiv:1912.09729; veRL clip_ratio_c):
      l = min(l, -A c) where A < 0.
    - `delta` > 1 + clip_high, two-sided clipping (INTELLECT-2, Prime Intellect 2025,
      arXiv:2505.07291; TRL `delta`): r is capped at delta in the unclipped term,
      l = max(-A min(r, delta), -A clip(r, ...)). For delta = c this equals the dual clip in value and
      gradient; it is the INTELLECT-2/TRL way of writing it.
    A clipped (or capped) token has zero gradient.
    """
    ratio = torch.exp(_log_ratio(logprobs, old_logprobs))
    loss_mat, bound_term, is_clipped = _clipped_surrogate(ratio, advantages, clip_low, clip_high)
    if delta is not None:  # cap the unclipped term only, as INTELLECT-2
        capped_term = -advantages * ratio.clamp(max=delta)
        loss_mat = torch.maximum(capped_term, bound_term)
        is_clipped = bound_term > capped_term
    negative = advantages < 0
    frozen = is_clipped.clone()
    extra = {
        "clip_fraction_low": (is_clipped & negative).float(),
        "clip_fraction_high": (is_clipped & (advantages > 0)).float(),
    }
    if delta is not None:
        capped_flag = negative & (ratio > delta)
        extra["delta_clip_fraction"] = capped_flag.float()
        frozen |= ratio > delta
    if dual_clip is not None:
        bound = -advantages * dual_clip  # [B, T]
        dual = negative & (loss_mat > bound)
        extra["dual_clip_fraction"] = dual.float()
        loss_mat = torch.where(negative, torch.minimum(loss_mat, bound), loss_mat)
        frozen |= dual
    return PolicyTerms(loss_mat, ratio.detach(), is_clipped, ~frozen, extra)


def _gspo(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float,
    clip_high: float,
    token_gradients: bool,
) -> PolicyTerms:
    log_ratio = _log_ratio(logprobs, old_logprobs)
    seq_log_ratio = _seq_mean(log_ratio, mask)[:, None]  # [B] -> [B, 1]
    if token_gradients:
        # log s_{i,t} = sg[log s_i] + log pi_t - sg[log pi_t]: value s_i, gradient per token
        log_s = logprobs - logprobs.detach() + seq_log_ratio.detach()  # [B, T]
    else:
        log_s = seq_log_ratio.expand_as(logprobs)  # [B, T]
    ratio = torch.exp(log_s.clamp(max=10.0))  # the cap as veRL: exp(10) is far outside any clip
    loss_mat, _, is_clipped = _clipped_surrogate(ratio, advantages, clip_low, clip_high)
    return PolicyTerms(loss_mat, ratio.detach(), is_clipped, ~is_clipped)


@POLICY_LOSSES.register("gspo")
def gspo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 3e-4,
    clip_high: float = 4e-4,
) -> PolicyTerms:
    """GSPO, Group Sequence Policy Optimization (Zheng et al. 2025, Qwen, arXiv:2507.18071, eq. 5-7):
    one importance ratio per response, the geometric mean of its token ratios,

        s_i = exp((1/|y_i|) sum_t m_{i,t} (logprobs - old_logprobs)_{i,t})    [B] -> [B, T]
        l_{i,t} = max(-A_{i,t} s_i, -A_{i,t} clip(s_i, 1 - clip_low, 1 + clip_high))

    clipped per sequence: a clipped response gets no gradient at all. The ratio is a mean of
    log-ratios, so the paper's clip range is ~1e-4 (3e-4 / 4e-4), not PPO's 0.2. Aggregate with
    `seq-mean-token-mean` for the paper's (1/G) sum_i objective (veRL forces it; TRL's
    importance_sampling_level="sequence" keeps its loss_type). log s_i is capped at 10 (as veRL).
    """
    return _gspo(logprobs, old_logprobs, advantages, mask, clip_low, clip_high, False)


@POLICY_LOSSES.register("gspo_token")
def gspo_token_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 3e-4,
    clip_high: float = 4e-4,
) -> PolicyTerms:
    """GSPO-token (Zheng et al. 2025, arXiv:2507.18071, eq. 13-14): the same value as GSPO, with a
    per-token gradient so per-token advantages A_{i,t} weigh their own token:

        s_{i,t} = sg[s_i] * pi(y_t) / sg[pi(y_t)]                            [B, T]
        l_{i,t} = max(-A_{i,t} s_{i,t}, -A_{i,t} clip(s_{i,t}, 1 - clip_low, 1 + clip_high))

    With one advantage per response (GRPO) its gradient equals GSPO's (veRL's `gspo` is this form).
    """
    return _gspo(logprobs, old_logprobs, advantages, mask, clip_low, clip_high, True)


@POLICY_LOSSES.register("cispo")
def cispo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
) -> PolicyTerms:
    """CISPO, clipped IS-weight policy optimisation (MiniMax-M1, 2025, arXiv:2506.13585, eq. 4-5):
    clip the importance-sampling *weight* under a stop-gradient and keep every token's gradient,

        w = sg[clip(r, 1 - clip_low, 1 + clip_high)]                          [B, T]
        l = -w A logprobs

    so a token whose ratio left the band still learns (REINFORCE scaled by the capped weight)
    instead of being dropped as by PPO's clip. The paper sets no lower bound in practice
    (clip_low = 1 gives 0); TRL's `cispo` caps with epsilon_high alone, veRL's uses both bounds as
    here. The loss *value* contains logprobs, so it is not comparable with PPO's.
    """
    ratio = torch.exp(_log_ratio(logprobs, old_logprobs))
    weight = ratio.clamp(1.0 - clip_low, 1.0 + clip_high).detach()
    loss_mat = -weight * advantages * logprobs
    is_clipped = (ratio < 1.0 - clip_low) | (ratio > 1.0 + clip_high)
    return PolicyTerms(loss_mat, ratio.detach(), is_clipped, torch.ones_like(is_clipped))


@POLICY_LOSSES.register("sapo")
def sapo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    tau_pos: float = 1.0,
    tau_neg: float = 1.05,
) -> PolicyTerms:
    """SAPO, soft adaptive policy optimisation (Gao et al. 2025, Qwen, arXiv:2511.20347, eq. 5-6):
    a smooth temperature-controlled gate in place of the hard clip,

        tau = tau_pos where A > 0, else tau_neg                                [B, T]
        f(r) = (4 / tau) sigmoid(tau (r - 1));   l = -f(r) A

    f'(1) = 1 (the policy-gradient step at r = 1) and the gradient f'(r) = 4 s (1 - s), s the
    sigmoid, decays smoothly as r leaves 1, faster for larger tau (tau_neg > tau_pos damps
    negative updates more; the paper's 1.0 / 1.05 are TRL's sapo_temperature_pos / _neg and veRL's
    tau_pos / tau_neg). Nothing is clipped; `gate_grad_weight` logs f'(r), 1 at r = 1.
    """
    ratio = torch.exp(_log_ratio(logprobs, old_logprobs))
    tau = torch.where(advantages > 0, tau_pos, tau_neg).to(ratio.dtype)  # [B, T]
    gate = torch.sigmoid(tau * (ratio - 1.0))
    loss_mat = -(4.0 / tau) * gate * advantages
    g = gate.detach()
    none = torch.zeros_like(g, dtype=torch.bool)
    return PolicyTerms(
        loss_mat, ratio.detach(), none, ~none, {"gate_grad_weight": 4.0 * g * (1.0 - g)}
    )


@POLICY_LOSSES.register("gmpo")
def gmpo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.4,
    clip_high: float = 0.4,
) -> PolicyTerms:
    """GMPO, geometric-mean policy optimisation (Zhao et al. 2025, arXiv:2507.20673, eq. 4): the
    geometric mean of the token ratios, each clipped in log space in the direction that matters for
    the sign of the advantage,

        d_{i,t} = logprobs - old_logprobs;   sgn = sign(A_{i,t})              [B, T]
        c_{i,t} = sgn * min(sgn d, sgn clip(d, -clip_low, clip_high))
        R_i = exp((1/|y_i|) sum_t m c);   Abar_i = (1/|y_i|) sum_t m A          [B]
        l_i = -Abar_i R_i, broadcast to the tokens of response i               [B] -> [B, T]

    The clip range is in log space: the paper's (-0.4, 0.4) bounds each ratio to (e^-0.4, e^0.4).
    A clipped token gets no gradient. Aggregate with `seq-mean-token-mean` for the paper's (and
    veRL's `geo_mean`) mean over responses.
    """
    log_ratio = _log_ratio(logprobs, old_logprobs)
    sign = torch.sign(advantages)
    bounded = log_ratio.clamp(-clip_low, clip_high)
    clipped_log = sign * torch.minimum(sign * log_ratio, sign * bounded)  # [B, T]
    seq_ratio = torch.exp(_seq_mean(clipped_log, mask))  # [B]
    seq_loss = -_seq_mean(advantages, mask) * seq_ratio  # [B]
    loss_mat = seq_loss[:, None].expand_as(logprobs)  # [B] -> [B, T]
    is_clipped = (clipped_log != log_ratio) & (sign != 0)
    ratio = seq_ratio.detach()[:, None].expand_as(logprobs)
    return PolicyTerms(loss_mat, ratio, is_clipped, ~is_clipped)


def _covariance(advantages: Tensor, logprobs: Tensor, valid: Tensor) -> Tensor:
    """Cui et al.'s per-token centred product (A - mean A)(log pi - mean log pi) over the valid
    tokens [B, T] (means over valid tokens; no gradient)."""
    mask = valid.to(logprobs.dtype)
    lp = logprobs.detach()
    return (advantages - _masked_mean(advantages, mask)) * (lp - _masked_mean(lp, mask))


@POLICY_LOSSES.register("clip_cov")
def clip_cov_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    clip_cov_ratio: float = 2e-4,
    clip_cov_lb: float = 1.0,
    clip_cov_ub: float = 5.0,
    generator: torch.Generator | None = None,
) -> PolicyTerms:
    """Clip-Cov (Cui et al. 2025, "The Entropy Mechanism of Reinforcement Learning for Reasoning
    Language Models", arXiv:2505.22617, sec. 4): entropy falls fastest through tokens whose
    log-probability and advantage covary strongly, so detach a few of them. PPO's clipped loss,
    then, among the valid tokens the clip left alone with covariance in (clip_cov_lb, clip_cov_ub)
    (`_covariance`, [B, T]), max(1, int(clip_cov_ratio * N)) tokens drawn at random (N = valid
    tokens) get zero loss and zero gradient, as veRL's `clip_cov` (defaults are veRL's).
    `generator` seeds the draw. Means, counts and the draw are over the tokens of this call (a
    micro-batch in the learner, as in veRL), so the result depends on how a minibatch is cut.
    """
    ratio = torch.exp(_log_ratio(logprobs, old_logprobs))
    loss_mat, _, is_clipped = _clipped_surrogate(ratio, advantages, clip_low, clip_high)
    valid = mask > 0
    cov = _covariance(advantages, logprobs, valid)
    candidates = valid & ~is_clipped & (cov > clip_cov_lb) & (cov < clip_cov_ub)
    where = candidates.flatten().nonzero().squeeze(1)  # flat indices of candidates
    count = min(max(int(clip_cov_ratio * int(valid.sum())), 1), where.numel())
    pick = torch.randperm(where.numel(), generator=generator)[:count].to(where.device)
    detached = torch.zeros(valid.numel(), dtype=torch.bool, device=valid.device)
    detached[where[pick]] = True
    detached = detached.view_as(valid)  # [B*T] -> [B, T]
    loss_mat = loss_mat.masked_fill(detached, 0.0)
    return PolicyTerms(
        loss_mat,
        ratio.detach(),
        is_clipped,
        ~is_clipped & ~detached,
        {"cov_detached_fraction": detached.float()},
    )


@POLICY_LOSSES.register("kl_cov")
def kl_cov_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    kl_cov_ratio: float = 2e-4,
    kl_cov_coef: float = 1.0,
) -> PolicyTerms:
    """KL-Cov (Cui et al. 2025, arXiv:2505.22617, sec. 4): no clip; the k = max(1,
    int(kl_cov_ratio * N)) valid tokens with the largest covariance (`_covariance`) get a KL
    penalty on their ratio,

        l = -A r + kl_cov_coef |logprobs - old_logprobs|   on those k tokens   [B, T]
        l = -A r                                           elsewhere

    (veRL's `kl_cov`; kl_cov_coef is its ppo_kl_coef, defaults are veRL's). As Clip-Cov, the
    selection is over the tokens of this call (a micro-batch in the learner).
    """
    log_ratio = _log_ratio(logprobs, old_logprobs)
    ratio = torch.exp(log_ratio)
    valid = mask > 0
    cov = _covariance(advantages, logprobs, valid).masked_fill(~valid, float("-inf")).flatten()
    count = min(max(int(kl_cov_ratio * int(valid.sum())), 1), int(valid.sum()))
    penalised = torch.zeros_like(cov, dtype=torch.bool)
    penalised[torch.topk(cov, count).indices] = True
    penalised = penalised.view_as(valid)  # [B*T] -> [B, T]
    loss_mat = -advantages * ratio + penalised * (kl_cov_coef * log_ratio.abs())
    trained = torch.ones_like(valid)
    return PolicyTerms(
        loss_mat,
        ratio.detach(),
        torch.zeros_like(valid),
        trained,
        {"kl_cov_fraction": penalised.float()},
    )


def policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    loss: str = "ppo",
    weights: Tensor | None = None,
    agg: str = "token-mean",
    denominator: float | Tensor | None = None,
    max_len: int | None = None,
    **params: Any,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The policy loss `loss` (a `POLICY_LOSSES` name) with its `params`, times per-token `weights`,
    aggregated by `agg`: `aggregate(loss_mat * weights, mask, agg, denominator=..., max_len=...)`.

    Args (all [B, T]): logprobs (current policy, with grad), old_logprobs (the policy that sampled,
    constants), advantages (constants), mask (1 on response tokens in the loss), weights (optional
    constants: rollout-correction IS weights, a 0/1 high-entropy mask; a zero weight removes a
    token's loss but not its place in the denominator, as TRL and veRL).

    Returns the scalar loss [] and detached stats [], means over valid tokens unless said:
    `clip_fraction` (clip or IS cap active), `clip_fraction_seq` (share of responses with a clipped
    token; for GSPO, the clipped responses), the loss's own flags (`clip_fraction_low` / `_high`,
    `dual_clip_fraction`, ...), `trained_fraction` (tokens with a gradient: not clipped, weight
    not 0), `approx_kl` (k1 of the token log-ratios, veRL's ppo_kl), `approx_kl_k3`, `ratio_mean` /
    `ratio_min` / `ratio_max` (of the ratio the loss uses: per token, or per response for GSPO and
    GMPO).
    """
    shapes = [logprobs.shape, old_logprobs.shape, advantages.shape, mask.shape]
    if weights is not None:
        shapes.append(weights.shape)
    if len(set(shapes)) != 1 or logprobs.dim() != 2:
        raise ValueError(
            "logprobs, old_logprobs, advantages, mask (and weights) must have one shape [B, T], "
            f"got {', '.join(str(tuple(s)) for s in shapes)}"
        )
    fn = POLICY_LOSSES[loss]
    known = policy_loss_params(loss)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(
            f"policy loss {loss!r} takes no parameter {', '.join(unknown)}; its parameters: "
            f"{', '.join(known)}"
        )
    problems = policy_loss_problems(loss, params)
    if problems:
        raise ValueError(f"policy loss {loss!r}: " + "; ".join(f"{k}={m}" for k, m in problems))
    mask = mask.to(logprobs.dtype)
    terms = fn(logprobs, old_logprobs, advantages, mask, **params)
    loss_mat = terms.loss_mat if weights is None else terms.loss_mat * weights
    value = aggregate(loss_mat, mask, agg, denominator=denominator, max_len=max_len)

    with torch.no_grad():
        valid = mask > 0
        trained = terms.trained if weights is None else terms.trained & (weights != 0)
        stats = {
            "clip_fraction": _masked_mean(terms.clipped.to(mask.dtype), mask),
            "clip_fraction_seq": _any_per_row(terms.clipped & valid, valid),
            "trained_fraction": _masked_mean(trained.to(mask.dtype), mask),
        }
        stats.update({k: _masked_mean(v.to(mask.dtype), mask) for k, v in terms.extra.items()})
        log_ratio = _log_ratio(logprobs, old_logprobs).detach()
        stats["approx_kl"] = _masked_mean(-log_ratio, mask)
        stats["approx_kl_k3"] = _masked_mean(torch.expm1(log_ratio) - log_ratio, mask)
        stats.update(_ratio_stats(terms.ratio, valid, "ratio"))
    return value, {name: v.detach() for name, v in stats.items()}


def _any_per_row(flags: Tensor, valid: Tensor) -> Tensor:
    """Share of rows with a valid token whose `flags` [B, T] has a True."""
    rows = valid.any(dim=1)
    hit = flags.any(dim=1) & rows
    return hit.sum().to(torch.float32) / rows.sum().clamp(min=1).to(torch.float32)


def _ratio_stats(ratio: Tensor, valid: Tensor, prefix: str) -> dict[str, Tensor]:
    """`{prefix}_mean`, `_min`, `_max` of ratio [B, T] over the valid tokens (1 with none)."""
    if not valid.any():
        one = ratio.new_ones(())
        return {f"{prefix}_mean": one, f"{prefix}_min": one, f"{prefix}_max": one}
    picked = ratio[valid]
    return {
        f"{prefix}_mean": picked.mean(),
        f"{prefix}_min": picked.min(),
        f"{prefix}_max": picked.max(),
    }


def policy_loss_problems(name: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """(parameter, what is wrong) for each of `params` out of range for policy loss `name`, with
    the valid range and the paper's value. `rl.config.validate` reports the first one, with where
    it was set, before any model loads; `policy_loss` raises on any."""
    problems: list[tuple[str, str]] = []

    def need(key: str, ok: bool, rule: str) -> None:
        if key in params and not ok:
            problems.append((key, f"{params[key]!r}: {rule}"))

    p = params
    lo, hi = p.get("clip_low"), p.get("clip_high")
    if name in ("gspo", "gspo_token"):
        rule = "GSPO clips a sequence-mean ratio: need 0 < value <= 0.01 (the paper: 3e-4 / 4e-4)"
        need("clip_low", lo is not None and 0 < lo <= 0.01, rule)
        need("clip_high", hi is not None and 0 < hi <= 0.01, rule)
    elif name == "gmpo":
        rule = "GMPO clips log-ratios: need 0 < value <= 3 (the paper: 0.4, ratio in e^-0.4..e^0.4)"
        need("clip_low", lo is not None and 0 < lo <= 3, rule)
        need("clip_high", hi is not None and 0 < hi <= 3, rule)
    elif name == "cispo":
        need(
            "clip_low", lo is not None and 0 <= lo <= 1, "need 0 <= clip_low <= 1 (1: no lower cap)"
        )
        need("clip_high", hi is not None and hi >= 0, "need clip_high >= 0")
    else:
        need("clip_low", lo is not None and 0 <= lo < 1, "need 0 <= clip_low < 1")
        need("clip_high", hi is not None and hi >= 0, "need clip_high >= 0")
    c, delta = p.get("dual_clip"), p.get("delta")
    need("dual_clip", c is None or c > 1, "must be > 1 or null (Ye et al. 2020 use 3)")
    bound = 1 + (hi if isinstance(hi, (int, float)) else 0.0)
    need("delta", delta is None or delta > bound, f"must exceed 1 + clip_high = {bound} or be null")
    if c is not None and delta is not None:
        problems.append(("delta", "dual_clip and delta bound the same term (A < 0): set one"))
    for key in ("tau_pos", "tau_neg"):
        need(key, p.get(key) is not None and p[key] > 0, "must be > 0 (the paper: 1.0 / 1.05)")
    for key in ("clip_cov_ratio", "kl_cov_ratio"):
        need(key, p.get(key) is not None and 0 < p[key] <= 1, "must be in (0, 1] (veRL: 2e-4)")
    if "clip_cov_lb" in p and "clip_cov_ub" in p and not p["clip_cov_lb"] < p["clip_cov_ub"]:
        problems.append(
            ("clip_cov_lb", f"{p['clip_cov_lb']} must be < clip_cov_ub {p['clip_cov_ub']}")
        )
    need("kl_cov_coef", p.get("kl_cov_coef") is not None and p["kl_cov_coef"] >= 0, "must be >= 0")
    return problems


# ----------------------------------------------------------------------------- token selection


def high_entropy_mask(entropy: Tensor, mask: Tensor, quantile: float) -> Tensor:
    """Train only on the highest-entropy tokens ("forking tokens": Wang et al. 2025, "Beyond the
    80/20 Rule", arXiv:2506.01939; TRL `top_entropy_quantile`): 1.0 where entropy [B, T] is at or
    above the (1 - quantile) quantile of the valid tokens' entropies, else 0 ([B, T], no grad).
    quantile 1 keeps every token; the paper keeps the top 0.2."""
    if not 0 < quantile <= 1:
        raise ValueError(f"top_entropy_quantile must be in (0, 1], got {quantile}")
    valid = mask > 0
    if quantile == 1 or not valid.any():
        return valid.to(entropy.dtype)
    threshold = torch.quantile(entropy.detach()[valid].float(), 1.0 - quantile)
    return ((entropy.detach() >= threshold) & valid).to(entropy.dtype)


# ----------------------------------------------------------------------------- rollout correction

ROLLOUT_LEVELS = ("token", "sequence")
ROLLOUT_RS_LEVELS = ("token", "sequence", "geometric")


def rollout_correction(
    old_logprobs: Tensor,
    rollout_logprobs: Tensor,
    mask: Tensor,
    *,
    rollout_is: str | None = None,
    rollout_is_threshold: float = 2.0,
    rollout_rs: str | None = None,
    rollout_rs_threshold: float | None = None,
    rollout_rs_threshold_lower: float | None = None,
) -> tuple[Tensor | None, Tensor, dict[str, Tensor]]:
    """Correct for the gap between the engine that sampled and the trainer (truncated sampling,
    another engine or precision): the samples come from pi_rollout, the loss assumes pi_old.

    rho_t = exp(old_logprobs - rollout_logprobs) per token [B, T] (log clamped to [-20, 20]);
    over a response, rho_seq = prod_t rho_t and rho_geo = exp(mean_t log rho_t) [B].

    - `rollout_is`: truncated importance sampling (TIS: Yao et al. 2025, "Your efficient RL
      framework secretly brings you off-policy RL training"; veRL rollout_is, TRL
      vllm_importance_sampling_correction): weights min(rho, C) with C = rollout_is_threshold,
      per token (`token`) or one per response from rho_seq (`sequence`), to multiply the per-token
      loss.
    - `rollout_rs`: masked importance sampling / rejection (veRL rollout_rs, TRL's `*_mask` modes):
      drop tokens (`token`: rho_t) or whole responses (`sequence`: rho_seq; `geometric`: rho_geo)
      whose ratio leaves [lower, upper]; upper = rollout_rs_threshold (default
      rollout_is_threshold), lower = rollout_rs_threshold_lower (default 1 / upper).

    Returns (weights [B, T] or None, keep [B, T] 0/1 to multiply into the loss mask, stats):
    `rollout_ratio_mean` / `_min` / `_max` (rho_t over valid tokens), `rollout_is_weight_mean`,
    `rollout_masked_fraction` (valid tokens dropped), `rollout_kl` (mean of rollout - old, k1 of
    KL(pi_rollout || pi_old)).
    """
    if old_logprobs.shape != rollout_logprobs.shape or old_logprobs.shape != mask.shape:
        raise ValueError(
            f"old_logprobs, rollout_logprobs and mask must be one shape [B, T], got "
            f"{tuple(old_logprobs.shape)}, {tuple(rollout_logprobs.shape)}, {tuple(mask.shape)}"
        )
    if rollout_is is not None and rollout_is not in ROLLOUT_LEVELS:
        raise ValueError(f"rollout_is must be one of {', '.join(ROLLOUT_LEVELS)} or None")
    if rollout_rs is not None and rollout_rs not in ROLLOUT_RS_LEVELS:
        raise ValueError(f"rollout_rs must be one of {', '.join(ROLLOUT_RS_LEVELS)} or None")
    mask = mask.to(old_logprobs.dtype)
    valid = mask > 0
    log_rho = ((old_logprobs - rollout_logprobs) * mask).clamp(-20.0, 20.0)  # [B, T]
    rho = torch.exp(log_rho)
    log_seq = (log_rho.sum(dim=1)).clamp(-20.0, 20.0)  # [B]
    weights = None
    if rollout_is == "token":
        weights = rho.clamp(max=rollout_is_threshold)
    elif rollout_is == "sequence":
        weights = torch.exp(log_seq).clamp(max=rollout_is_threshold)[:, None].expand_as(rho)
    keep = torch.ones_like(mask)
    if rollout_rs is not None:
        upper = rollout_rs_threshold if rollout_rs_threshold is not None else rollout_is_threshold
        lower = rollout_rs_threshold_lower if rollout_rs_threshold_lower is not None else 1 / upper
        if rollout_rs == "token":
            inside = (rho >= lower) & (rho <= upper)  # [B, T]
        else:
            per_row = torch.exp(log_seq if rollout_rs == "sequence" else _seq_mean(log_rho, mask))
            inside = ((per_row >= lower) & (per_row <= upper))[:, None].expand_as(rho)
        keep = inside.to(mask.dtype)
    stats = _ratio_stats(rho, valid, "rollout_ratio")
    stats["rollout_is_weight_mean"] = (
        _masked_mean(weights, mask) if weights is not None else mask.new_ones(())
    )
    stats["rollout_masked_fraction"] = _masked_mean(1.0 - keep, mask)
    stats["rollout_kl"] = _masked_mean(-log_rho, mask)
    return weights, keep, {k: v.detach() for k, v in stats.items()}


# ----------------------------------------------------------------------------- value loss


def value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    *,
    clip: float | None = 0.2,
    agg: str = "token-mean",
    denominator: float | Tensor | None = None,
    max_len: int | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's clipped value loss, aggregated by `agg`.

    Per token (V = values with grad, V_old = old_values, R = returns, all [B, T]):

        l = 0.5 * max((V - R)^2, (clamp(V, V_old - clip, V_old + clip) - R)^2)

    (`clip=None`: l = 0.5 * (V - R)^2). The values themselves are clamped (not V_old plus a clamped
    difference, which rounds one float step away from V), so a token inside the clip range has
    exactly equal terms. Returns the scalar loss [] and detached stats: `vf_clip_fraction` (tokens
    where the clipped term is strictly larger, i.e. the active one, veRL's `vf_clipfrac`: only
    tokens outside the clip range can count), `vf_explained_variance` (1 - Var(R - V) / Var(R) over
    valid tokens), `values_mean`.
    """
    if not (values.shape == old_values.shape == returns.shape == mask.shape):
        raise ValueError(
            "values, old_values, returns and mask must have one shape [B, T], got "
            f"{tuple(values.shape)}, {tuple(old_values.shape)}, {tuple(returns.shape)}, "
            f"{tuple(mask.shape)}"
        )
    mask = mask.to(values.dtype)
    squared = (values - returns) ** 2
    if clip is None:
        loss_mat, is_clipped = squared, torch.zeros_like(mask, dtype=torch.bool)
    else:
        clipped_values = torch.clamp(values, old_values - clip, old_values + clip)
        squared_clipped = (clipped_values - returns) ** 2
        loss_mat = torch.maximum(squared, squared_clipped)
        is_clipped = squared_clipped > squared
    loss = 0.5 * aggregate(loss_mat, mask, agg, denominator=denominator, max_len=max_len)
    with torch.no_grad():
        returns_mean = _masked_mean(returns, mask)
        returns_var = _masked_mean((returns - returns_mean) ** 2, mask)
        error = returns - values
        error_var = _masked_mean((error - _masked_mean(error, mask)) ** 2, mask)
        stats = {
            "vf_clip_fraction": _masked_mean(is_clipped.to(mask.dtype), mask),
            "vf_explained_variance": 1.0 - error_var / returns_var.clamp(min=1e-8),
            "values_mean": _masked_mean(values, mask),
        }
    return loss, {name: value.detach() for name, value in stats.items()}


# ----------------------------------------------------------------------------- KL estimators

KL_ESTIMATORS: Registry[Callable[[Tensor], Tensor]] = Registry("KL estimator")
"""Each maps log_r = ref_logprobs - logprobs [B, T] (tokens sampled from pi) to a per-token estimate
of KL(pi || pi_ref)."""

KL_ESTIMATORS.add("k1", lambda log_r: -log_r)
KL_ESTIMATORS.add("k2", lambda log_r: 0.5 * log_r**2)


@KL_ESTIMATORS.register("k3")
def _k3(log_r: Tensor) -> Tensor:
    # clamps as veRL's "low_var_kl": exp of a huge log-ratio would be inf
    log_r = log_r.clamp(-20.0, 20.0)
    return (torch.expm1(log_r) - log_r).clamp(-10.0, 10.0)


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor, estimator: str = "k3") -> Tensor:
    """Per-token estimate [B, T] of KL(pi || pi_ref) from tokens sampled from pi.

    With log_r = ref_logprobs - logprobs (Schulman 2020, "Approximating KL Divergence"):

    - `k1` = -log_r = logprobs - ref_logprobs: unbiased, high variance, can be negative.
    - `k2` = 0.5 * log_r^2: biased, low variance, non-negative.
    - `k3` = exp(log_r) - log_r - 1: unbiased, low variance, non-negative; the GRPO paper's KL term
      (DeepSeekMath eq. 4). Computed as expm1(log_r) - log_r with log_r clamped to [-20, 20] and the
      result to [-10, 10] (as veRL's `low_var_kl`), so a token the reference finds impossible cannot
      blow up the loss; a clamped token gets zero gradient.

    As a value (kl_in=reward, or logged) each estimates KL(pi || pi_ref). As a *loss* on tokens
    sampled from pi (the sampling not differentiated), the expected gradients are, with
    g = grad log pi(x) and E_pi[g] = 0 (Tang & Munos 2025, "On a few pitfalls in KL divergence
    gradient estimation for RL", arXiv:2506.09477; per token, each token's own distribution, not
    the effect on later tokens):

    - k1: E_pi[g] = 0. No pull towards the reference at all, only noise; the config refuses it
      with kl_in=loss.
    - k2: E_pi[(log pi - log pi_ref) g] = grad KL(pi || pi_ref), the reverse KL the value estimates.
    - k3: E_pi[(1 - pi_ref / pi) g] = -sum_x pi_ref(x) grad log pi(x) = grad KL(pi_ref || pi), the
      *forward* KL (mass-covering), not the KL it estimates as a value. GRPO and veRL's
      `low_var_kl` use it so; pick k2 for the gradient of KL(pi || pi_ref).

    logprobs (with grad when the KL is in the loss) and ref_logprobs: [B, T].
    """
    if logprobs.shape != ref_logprobs.shape:
        raise ValueError(
            f"logprobs and ref_logprobs must have one shape, got {tuple(logprobs.shape)} and "
            f"{tuple(ref_logprobs.shape)}"
        )
    return KL_ESTIMATORS[estimator](ref_logprobs - logprobs)


# ----------------------------------------------------------------------------- logits reductions

CHUNK_ELEMENTS = 1 << 22
"""Default size of one chunk of the logits reductions: 2^22 float32 values (16 MiB), i.e. 27
positions of a 152k vocabulary (Qwen2.5's) or 8k of a 512-token one."""


class _ChunkedSoftmaxStats(torch.autograd.Function):
    """Per position of logits z [N, V] at temperature tau (p = softmax(z / tau)): the label's
    logprob log p_y and the entropy H = -sum_v p_v log p_v, both [N], one chunk of rows at a time
    in float32 (float64 for float64 logits), forward and backward.

    Backward, per chunk (the chunk's softmax recomputed from the logits and the saved logsumexp):
        dlog p_y / dz_v = (1[v = y] - p_v) / tau,    dH / dz_v = -p_v (log p_v + H) / tau.
    So beyond the logits and their gradient (which the lm_head's backward needs anyway), only one
    chunk's float32 blocks exist at a time: no float32 copy, softmax or log-softmax of the whole
    [N, V] is kept for the backward pass, and an output that is not differentiated (the entropy when
    it is only logged) costs no backward work at all.
    """

    @staticmethod
    def forward(ctx, logits, labels, temperature, chunk_rows):  # type: ignore[override]
        rows = logits.shape[0]  # logits [N, V], labels [N]
        dtype = torch.promote_types(logits.dtype, torch.float32)  # float32, or float64
        logprobs = torch.empty(rows, dtype=dtype, device=logits.device)
        entropy = torch.empty_like(logprobs)
        lse = torch.empty_like(logprobs)
        for start in range(0, rows, chunk_rows):
            part = slice(start, start + chunk_rows)
            z = logits[part].to(dtype) / temperature  # [c, V]
            lse[part] = torch.logsumexp(z, dim=-1)
            logprobs[part] = z.gather(-1, labels[part, None])[:, 0] - lse[part]
            z.sub_(lse[part, None])  # log p [c, V]
            entropy[part] = -(z.exp() * z).sum(dim=-1)
        ctx.save_for_backward(logits, labels, lse, entropy)
        ctx.temperature, ctx.chunk_rows = temperature, chunk_rows
        ctx.set_materialize_grads(False)
        return logprobs, entropy

    @staticmethod
    def backward(ctx, grad_logprobs, grad_entropy):  # type: ignore[override]
        logits, labels, lse, entropy = ctx.saved_tensors
        if grad_logprobs is None and grad_entropy is None:
            return None, None, None, None
        tau, chunk_rows = ctx.temperature, ctx.chunk_rows
        grad = torch.empty_like(logits)  # [N, V], the logits' dtype
        for start in range(0, logits.shape[0], chunk_rows):
            part = slice(start, start + chunk_rows)
            log_p = logits[part].to(lse.dtype) / tau - lse[part, None]  # [c, V]
            p = log_p.exp()
            if grad_entropy is not None:  # -p (log p + H) dL/dH, in log_p's memory
                g = log_p.add_(entropy[part, None]).mul_(p).mul_(-grad_entropy[part, None])
                if grad_logprobs is not None:
                    g.sub_(p.mul_(grad_logprobs[part, None]))
            else:
                g = p.mul_(-grad_logprobs[part, None])
            if grad_logprobs is not None:  # + 1[v = y] dL/dlog p_y
                g.scatter_add_(-1, labels[part, None], grad_logprobs[part, None])
            grad[part] = g.div_(tau)
        return grad, None, None, None


def _chunk_rows(vocab: int, chunk_rows: int | None) -> int:
    if chunk_rows is None:
        return max(1, CHUNK_ELEMENTS // max(1, vocab))
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    return chunk_rows


def logprobs_and_entropy(
    logits: Tensor, labels: Tensor, temperature: float = 1.0, *, chunk_rows: int | None = None
) -> tuple[Tensor, Tensor]:
    """log softmax(logits / temperature)[label] and the entropy of softmax(logits / temperature)
    per position: logits [B, T, V], labels [B, T] -> ([B, T], [B, T]) float32, both differentiable.

    Divide by the sampling temperature so these are the sampling distribution's. Computed in
    float32 over chunks of `chunk_rows` positions (default: `CHUNK_ELEMENTS` values per chunk) in
    the forward *and* the backward pass (`_ChunkedSoftmaxStats`), so the memory beyond the logits
    and their gradient is one chunk, whatever the vocabulary: no [B, T, V] float32 copy,
    log-softmax or softmax is materialised or kept for backward. Either output may be left out of
    the loss (the entropy when only logged): it then costs nothing in the backward pass.
    """
    if temperature <= 0:
        raise ValueError(
            f"temperature must be > 0 (greedy sampling has no logprobs), got {temperature}"
        )
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"logits [B, T, V] and labels [B, T] disagree: {tuple(logits.shape)} vs "
            f"{tuple(labels.shape)}"
        )
    vocab = logits.shape[-1]
    flat = logits.reshape(-1, vocab)  # [B*T, V]
    flat_labels = labels.reshape(-1).to(device=logits.device, dtype=torch.long)  # [B*T]
    logprobs, entropy = _ChunkedSoftmaxStats.apply(
        flat, flat_labels, float(temperature), _chunk_rows(vocab, chunk_rows)
    )
    return logprobs.view(labels.shape), entropy.view(labels.shape)


def token_logprobs(
    logits: Tensor, labels: Tensor, temperature: float = 1.0, *, chunk_rows: int | None = None
) -> Tensor:
    """log softmax(logits / temperature)[label] per position: logits [B, T, V], labels [B, T] ->
    [B, T] float32 (the sampling distribution's logprob); chunked forward and backward as
    `logprobs_and_entropy`."""
    return logprobs_and_entropy(logits, labels, temperature, chunk_rows=chunk_rows)[0]


def entropy_from_logits(
    logits: Tensor, temperature: float = 1.0, *, chunk_rows: int | None = None
) -> Tensor:
    """Entropy H = -sum_v p_v log p_v of p = softmax(logits / temperature) at each position:
    logits [B, T, V] -> [B, T] float32, differentiable; chunked forward and backward as
    `logprobs_and_entropy` (use that one when the logprobs are needed too: one pass for both)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    labels = torch.zeros(logits.shape[:-1], dtype=torch.long, device=logits.device)
    return logprobs_and_entropy(logits, labels, temperature, chunk_rows=chunk_rows)[1]


# ----------------------------------------------------------------------------- DAPO helpers


def overlong_mask(finish_reasons: Sequence[str], response_mask: Tensor) -> Tensor:
    """DAPO's overlong filtering (Yu et al. 2025, sec. 3.4): response_mask [B, T] with the rows of
    truncated samples (finish reason 'length') zeroed, so a response cut off by max_new_tokens is not
    punished or rewarded for an answer it had no room to give."""
    if len(finish_reasons) != response_mask.shape[0]:
        raise ValueError(
            f"{len(finish_reasons)} finish reasons for {response_mask.shape[0]} rows of response_mask"
        )
    keep = torch.tensor(
        [reason != "length" for reason in finish_reasons], device=response_mask.device
    )  # [B]
    return response_mask * keep.unsqueeze(1).to(response_mask.dtype)


def groups_with_signal(rewards: Tensor, group_size: int) -> Tensor:
    """DAPO's dynamic sampling filter (Yu et al. 2025, sec. 3.2): BoolTensor [num_groups], True for
    prompts whose group of rewards [B] (consecutive rows) is not all equal. A group where every sample
    gets the same reward has zero group-relative advantage and adds no gradient."""
    if rewards.dim() != 1 or group_size < 1 or rewards.shape[0] % group_size:
        raise ValueError(
            f"rewards must be [B] with B a multiple of group_size {group_size}, got "
            f"{tuple(rewards.shape)}"
        )
    groups = rewards.view(-1, group_size)  # [num_groups, group_size]
    return groups.max(dim=1).values != groups.min(dim=1).values
