"""Per-token RL losses, their aggregation, and the tensor helpers around them (pure functions).

Shapes: B responses, T response tokens, V vocabulary. Every `mask` is [B, T] with 1 on the tokens in
the loss. The per-token loss and its *aggregation* into a scalar are kept apart (as veRL's
`core_algos.py`): `policy_loss` and `value_loss` build a [B, T] loss matrix and hand it to
`aggregate(loss_mat, mask, mode)`, so a new aggregation is one function and one registry line.

- `policy_loss`: PPO's clipped surrogate (Schulman et al. 2017, arXiv:1707.06347) with asymmetric
  bounds ("clip-higher", DAPO: Yu et al. 2025, arXiv:2503.14476) and optional dual clip for negative
  advantages (Ye et al. 2020, "Mastering Complex Control in MOBA Games with Deep RL",
  arXiv:1912.09729). GRPO uses the same surrogate.
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

from collections.abc import Callable, Sequence

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


# ----------------------------------------------------------------------------- policy loss


def policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    agg: str = "token-mean",
    denominator: float | Tensor | None = None,
    max_len: int | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO clipped surrogate loss with clip-higher and optional dual clip, aggregated by `agg`.

    Per token (rho = exp(logprobs - old_logprobs), A = advantages):

        l = max(-A * rho, -A * clip(rho, 1 - clip_low, 1 + clip_high))
        l = min(l, -A * dual_clip)          where A < 0, when dual_clip = c > 1 is given

    then `aggregate(l, mask, agg, denominator=..., max_len=...)`. A clipped token has zero gradient;
    the dual clip bounds the loss of a negative-advantage token whose ratio has grown beyond c.

    Args (all [B, T]): logprobs (current policy, with grad), old_logprobs (the policy that sampled,
    constants), advantages (constants), mask (1 on response tokens in the loss).
    Returns: the scalar loss [] and detached stats []: `clip_fraction` (tokens whose clipped term
    is the active one), `clip_fraction_low` / `clip_fraction_high` (split by side: ratio below
    1 - clip_low with A < 0 / above 1 + clip_high with A > 0), `dual_clip_fraction`, `approx_kl`
    (k1: mean of old - new over valid tokens, veRL's `ppo_kl`), `approx_kl_k3` (k3 of
    KL(pi_old || pi), non-negative), `ratio_mean`, `ratio_max`.
    The log-ratio is clamped to [-20, 20] before exp (as veRL) so one wild token cannot overflow.
    """
    if not (logprobs.shape == old_logprobs.shape == advantages.shape == mask.shape):
        raise ValueError(
            "logprobs, old_logprobs, advantages and mask must have one shape [B, T], got "
            f"{tuple(logprobs.shape)}, {tuple(old_logprobs.shape)}, {tuple(advantages.shape)}, "
            f"{tuple(mask.shape)}"
        )
    if clip_low < 0 or clip_low >= 1 or clip_high < 0:
        raise ValueError(f"need 0 <= clip_low < 1 and clip_high >= 0, got {clip_low}, {clip_high}")
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1 (Ye et al. 2020 use 3), got {dual_clip}")
    mask = mask.to(logprobs.dtype)
    log_ratio = (logprobs - old_logprobs).clamp(-20.0, 20.0)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss_mat = torch.maximum(unclipped, clipped)
    is_clipped = clipped > unclipped  # the clipped term is active: zero gradient
    flags = {
        "clip_fraction": is_clipped,
        "clip_fraction_low": is_clipped & (advantages < 0),
        "clip_fraction_high": is_clipped & (advantages > 0),
    }
    if dual_clip is not None:
        bound = -advantages * dual_clip  # [B, T]
        negative = advantages < 0
        flags["dual_clip_fraction"] = negative & (loss_mat > bound)
        loss_mat = torch.where(negative, torch.minimum(loss_mat, bound), loss_mat)
    loss = aggregate(loss_mat, mask, agg, denominator=denominator, max_len=max_len)

    with torch.no_grad():
        stats = {name: _masked_mean(flag.to(mask.dtype), mask) for name, flag in flags.items()}
        stats["approx_kl"] = _masked_mean(-log_ratio, mask)
        stats["approx_kl_k3"] = _masked_mean(torch.expm1(log_ratio) - log_ratio, mask)
        stats["ratio_mean"] = _masked_mean(ratio, mask)
        stats["ratio_max"] = (
            ratio.masked_fill(mask == 0, float("-inf")).max() if mask.any() else ratio.new_ones(())
        )
    return loss, {name: value.detach() for name, value in stats.items()}


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
