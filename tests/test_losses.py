"""Losses, aggregation modes, KL estimators and logits reductions against hand-worked values."""

from __future__ import annotations

import math

import pytest
import torch

from reasonlab.registry import UnknownNameError
from reasonlab.rl.losses import (
    AGGREGATIONS,
    aggregate,
    entropy_from_logits,
    groups_with_signal,
    kl_penalty,
    logprobs_and_entropy,
    overlong_mask,
    policy_loss,
    token_logprobs,
    value_loss,
)

LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # row 2: no valid token

# ----------------------------------------------------------------------------- aggregation


def test_aggregation_modes_by_hand():
    assert AGGREGATIONS.names() == [
        "seq-mean-token-mean",
        "seq-mean-token-sum",
        "seq-mean-token-sum-norm",
        "token-mean",
    ]
    # valid tokens: row 0: 1, 2; row 1: 4; row 2 has none and does not count as a sequence
    # token-mean: (1 + 2 + 4) / 3
    assert aggregate(LOSS, MASK, "token-mean").item() == pytest.approx(7 / 3)
    # seq-mean-token-mean: (mean(1, 2) + 4) / 2 = (1.5 + 4) / 2
    assert aggregate(LOSS, MASK, "seq-mean-token-mean").item() == pytest.approx(2.75)
    # seq-mean-token-sum: (3 + 4) / 2
    assert aggregate(LOSS, MASK, "seq-mean-token-sum").item() == pytest.approx(3.5)
    # seq-mean-token-sum-norm (Dr. GRPO, TRL dr_grpo), max_len 4: a constant normaliser of
    # 3 responses x 4, the empty response counted: (3 + 4) / (3 * 4)
    got = aggregate(LOSS, MASK, "seq-mean-token-sum-norm", max_len=4)
    assert got.item() == pytest.approx(7 / 12)


def test_dr_grpo_normaliser_does_not_depend_on_lengths():
    # the same tokens' losses, whatever the other responses' lengths (even empty): each token
    # weighs 1 / (B * max_len)
    loss = torch.ones(2, 4, requires_grad=True)
    for other_row in ([1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]):
        mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], other_row])
        (grad,) = torch.autograd.grad(
            aggregate(loss, mask, "seq-mean-token-sum-norm", max_len=4), loss
        )
        assert grad[0].tolist() == [1 / 8, 1 / 8, 0.0, 0.0]


def test_aggregation_with_denominator():
    # token-mean over 10 tokens in the whole mini-batch: 7 / 10
    assert aggregate(LOSS, MASK, "token-mean", denominator=10).item() == pytest.approx(0.7)
    # seq-mean-token-mean over 5 sequences: 5.5 / 5
    got = aggregate(LOSS, MASK, "seq-mean-token-mean", denominator=torch.tensor(5.0))
    assert got.item() == pytest.approx(1.1)


@pytest.mark.parametrize(
    ("mode", "denominator"),
    [
        ("token-mean", MASK.sum()),
        ("seq-mean-token-mean", 2),
        ("seq-mean-token-sum", 2),
        ("seq-mean-token-sum-norm", 3),  # every response, the empty one too
    ],
)
def test_micro_batches_with_global_denominator_sum_to_full_batch(mode, denominator):
    full = aggregate(LOSS, MASK, mode, max_len=4)
    parts = [
        aggregate(LOSS[rows], MASK[rows], mode, denominator=denominator, max_len=4)
        for rows in (slice(0, 1), slice(1, 3))
    ]
    torch.testing.assert_close(sum(parts), full)


def test_aggregation_errors():
    with pytest.raises(UnknownNameError, match="did you mean 'token-mean'.*valid names"):
        aggregate(LOSS, MASK, "token_mean")
    with pytest.raises(ValueError, match="needs max_len > 0.*max_new_tokens"):
        aggregate(LOSS, MASK, "seq-mean-token-sum-norm")
    with pytest.raises(ValueError, match="must both be"):
        aggregate(LOSS, MASK[:, :2], "token-mean")


def test_all_masked_is_zero_not_nan():
    for mode in ("token-mean", "seq-mean-token-mean"):
        assert aggregate(LOSS, torch.zeros(3, 3), mode).item() == 0.0
        for zero in (0, torch.tensor(0.0)):
            assert aggregate(LOSS, torch.zeros(3, 3), mode, denominator=zero).item() == 0.0


# ----------------------------------------------------------------------------- policy loss


def logprobs_for(ratios: list[float], old: float = -1.0) -> tuple[torch.Tensor, torch.Tensor]:
    old_logprobs = torch.full((1, len(ratios)), old)
    logprobs = (old_logprobs + torch.tensor([ratios]).log()).requires_grad_(True)
    return logprobs, old_logprobs


def test_policy_loss_by_hand_with_clip_higher():
    # clip_low 0.2 -> lower bound 0.8; clip_high 0.28 -> upper bound 1.28
    # t0: A=+1, rho=1.1 inside     -> -1.1          (gradient -A*rho = -1.1)
    # t1: A=+1, rho=1.5 > 1.28     -> max(-1.5, -1.28) = -1.28, clipped high, gradient 0
    # t2: A=-1, rho=0.5 < 0.8      -> max(0.5, 0.8) = 0.8, clipped low, gradient 0
    # t3: A=-1, rho=0.9 inside     -> 0.9           (gradient 0.9)
    # t4: A=+1, rho=0.5 (low side, A>0: not clipped) -> max(-0.5, -0.8) = -0.5 (gradient -0.5)
    # t5: A=-1, rho=1.5 (high side, A<0: not clipped) -> max(1.5, 1.28) = 1.5 (gradient 1.5)
    # token-mean: (-1.1 - 1.28 + 0.8 + 0.9 - 0.5 + 1.5) / 6 = 0.32 / 6
    logprobs, old = logprobs_for([1.1, 1.5, 0.5, 0.9, 0.5, 1.5])
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0, 1.0, -1.0]])
    loss, stats = policy_loss(logprobs, old, advantages, torch.ones(1, 6), clip_high=0.28)
    assert loss.item() == pytest.approx(0.32 / 6, abs=1e-6)
    loss.backward()
    expected_grad = torch.tensor([[-1.1, 0.0, 0.0, 0.9, -0.5, 1.5]]) / 6
    torch.testing.assert_close(logprobs.grad, expected_grad)
    assert stats["clip_fraction"].item() == pytest.approx(2 / 6)
    assert stats["clip_fraction_low"].item() == pytest.approx(1 / 6)
    assert stats["clip_fraction_high"].item() == pytest.approx(1 / 6)
    assert "dual_clip_fraction" not in stats
    # ratio mean: (1.1 + 1.5 + 0.5 + 0.9 + 0.5 + 1.5) / 6 = 1.0; max 1.5
    assert stats["ratio_mean"].item() == pytest.approx(1.0)
    assert stats["ratio_max"].item() == pytest.approx(1.5)
    # k1: mean of -log(rho)
    k1 = -sum(math.log(r) for r in [1.1, 1.5, 0.5, 0.9, 0.5, 1.5]) / 6
    assert stats["approx_kl"].item() == pytest.approx(k1, abs=1e-6)
    assert not any(value.requires_grad for value in stats.values())


@pytest.mark.parametrize(
    ("ratio", "advantage", "clip_low", "clip_high", "clipped"),
    [
        (1.25, 1.0, 0.2, 0.2, True),  # above 1.2 with A > 0
        (1.25, 1.0, 0.2, 0.28, False),  # clip-higher widens the upper bound only
        (1.19, 1.0, 0.2, 0.2, False),
        (0.78, 1.0, 0.2, 0.28, False),  # the lower bound never binds for A > 0
        (0.78, -1.0, 0.2, 0.28, True),  # below 0.8 with A < 0
        (0.82, -1.0, 0.2, 0.28, False),
        (0.78, -1.0, 0.25, 0.2, False),  # a wider lower bound: 0.75
        (1.35, -1.0, 0.2, 0.28, False),  # the upper bound never binds for A < 0
    ],
)
def test_clip_boundaries_low_and_high_separately(ratio, advantage, clip_low, clip_high, clipped):
    logprobs, old = logprobs_for([ratio])
    loss, stats = policy_loss(
        logprobs,
        old,
        torch.tensor([[advantage]]),
        torch.ones(1, 1),
        clip_low=clip_low,
        clip_high=clip_high,
    )
    loss.backward()
    bound = 1 + clip_high if advantage > 0 else 1 - clip_low
    if clipped:
        assert loss.item() == pytest.approx(-advantage * bound)
        assert logprobs.grad.item() == 0.0
    else:
        assert loss.item() == pytest.approx(-advantage * ratio)
        assert logprobs.grad.item() == pytest.approx(-advantage * ratio)
    assert stats["clip_fraction"].item() == float(clipped)


def test_gradient_at_ratio_one_is_minus_advantage_over_tokens():
    old = torch.tensor([[-0.5, -1.0, -2.0], [-0.3, -0.7, -0.9]])
    logprobs = old.clone().requires_grad_(True)
    advantages = torch.tensor([[0.5, -1.0, 2.0], [3.0, -0.25, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # 5 tokens
    loss, stats = policy_loss(logprobs, old, advantages, mask)
    loss.backward()
    torch.testing.assert_close(logprobs.grad, -advantages * mask / 5)
    # loss = -sum(A) / 5 over valid tokens = -(0.5 - 1 + 2 + 3 - 0.25) / 5
    assert loss.item() == pytest.approx(-4.25 / 5)
    assert stats["clip_fraction"].item() == 0.0
    assert stats["approx_kl"].item() == 0.0
    assert stats["approx_kl_k3"].item() == 0.0


def test_dual_clip():
    # A = -1, c = 3: rho = 4 -> standard loss max(4, 0.8) = 4, dual: min(4, 3) = 3, gradient 0
    #                rho = 2 -> 2 < 3 unchanged, gradient -A*rho = 2
    # A = +1, rho = 4 -> -1.2 (clipped high; dual clip does not touch A > 0)
    # token-mean: (3 + 2 - 1.2) / 3
    logprobs, old = logprobs_for([4.0, 2.0, 4.0])
    advantages = torch.tensor([[-1.0, -1.0, 1.0]])
    loss, stats = policy_loss(logprobs, old, advantages, torch.ones(1, 3), dual_clip=3.0)
    assert loss.item() == pytest.approx(3.8 / 3)
    loss.backward()
    torch.testing.assert_close(logprobs.grad, torch.tensor([[0.0, 2.0, 0.0]]) / 3)
    assert stats["dual_clip_fraction"].item() == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="dual_clip=0.9: must be > 1"):
        policy_loss(logprobs, old, advantages, torch.ones(1, 3), dual_clip=0.9)


def test_policy_loss_aggregation_passes_through():
    # A = 1 everywhere at ratio 1: per-token loss -1. Mask rows [1, 1, 1] and [1, 0, 0]:
    # seq-mean-token-sum-norm, max_len 6: (-3 + -1) / (2 * 6) = -1/3
    logprobs = torch.zeros(2, 3)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    loss, _ = policy_loss(
        logprobs, logprobs, torch.ones(2, 3), mask, agg="seq-mean-token-sum-norm", max_len=6
    )
    assert loss.item() == pytest.approx(-1 / 3)
    loss, _ = policy_loss(logprobs, logprobs, torch.ones(2, 3), mask, denominator=8)
    assert loss.item() == pytest.approx(-4 / 8)


def test_policy_loss_shape_error():
    with pytest.raises(ValueError, match="must have one shape"):
        policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2), torch.ones(2, 3))


# ----------------------------------------------------------------------------- value loss


def test_value_loss_clipped_by_hand():
    # t0: V=1, V_old=0.5, R=1: (1-1)^2 = 0; clipped V = 0.5 + 0.2 = 0.7 -> 0.09; max 0.09 (clipped)
    # t1: V=2, V_old=1, R=0: 4; clipped V = 1.2 -> 1.44; max 4
    # t2: masked
    # loss = 0.5 * (0.09 + 4) / 2 = 1.0225
    values = torch.tensor([[1.0, 2.0, 50.0]], requires_grad=True)
    old_values = torch.tensor([[0.5, 1.0, 0.0]])
    returns = torch.tensor([[1.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    loss, stats = value_loss(values, old_values, returns, mask, clip=0.2)
    assert loss.item() == pytest.approx(1.0225)
    loss.backward()
    # gradient: t0 clipped term active -> 0; t1: 0.5 * 2 * (2 - 0) / 2 = 1
    torch.testing.assert_close(values.grad, torch.tensor([[0.0, 1.0, 0.0]]))
    assert stats["vf_clip_fraction"].item() == pytest.approx(0.5)
    # no clip: 0.5 * (0 + 4) / 2 = 1
    loss, _ = value_loss(values, old_values, returns, mask, clip=None)
    assert loss.item() == pytest.approx(1.0)


def test_value_clip_fraction_counts_only_tokens_outside_the_clip_range():
    # old + clamp(v - old) rounds one float step away from v, so an unclipped token's clipped
    # term could be the larger one and be counted as clipped
    gen = torch.Generator().manual_seed(0)
    values, old_values, returns = torch.randn(3, 64, 512, generator=gen).unbind(0)
    mask = torch.ones(64, 512)
    clip = 0.2
    _, stats = value_loss(values, old_values, returns, mask, clip=clip)
    outside = (values - old_values).abs() > clip
    clipped = torch.clamp(values, old_values - clip, old_values + clip)
    active = outside & ((clipped - returns) ** 2 > (values - returns) ** 2)
    assert 0 < active.float().mean() < outside.float().mean()
    assert stats["vf_clip_fraction"].item() == pytest.approx(active.float().mean().item(), abs=0)
    # all inside the range: nothing is clipped
    _, stats = value_loss(values, values + 0.1 * values.tanh(), returns, mask, clip=clip)
    assert stats["vf_clip_fraction"].item() == 0.0


# ----------------------------------------------------------------------------- KL estimators


def test_kl_estimators_by_hand():
    # pi = 0.5, pi_ref = 0.25: log_r = log(0.25 / 0.5) = -0.693147
    # k1 = -log_r = 0.693147; k2 = 0.5 * 0.480453 = 0.240227; k3 = 0.5 + 0.693147 - 1 = 0.193147
    logprobs = torch.tensor([[math.log(0.5)]])
    ref = torch.tensor([[math.log(0.25)]])
    assert kl_penalty(logprobs, ref, "k1").item() == pytest.approx(0.693147, abs=1e-6)
    assert kl_penalty(logprobs, ref, "k2").item() == pytest.approx(0.240227, abs=1e-6)
    assert kl_penalty(logprobs, ref, "k3").item() == pytest.approx(0.193147, abs=1e-6)
    # equal policies: every estimator is 0
    for name in ("k1", "k2", "k3"):
        assert kl_penalty(ref, ref, name).item() == 0.0


def test_k3_is_clamped_and_finite():
    # log_r = +100 would overflow exp; clamped to 20 then the estimate to 10. log_r = -100:
    # clamped to -20: exp(-20) + 20 - 1 = 19 -> 10
    logprobs = torch.tensor([[0.0, 0.0]], requires_grad=True)
    ref = torch.tensor([[100.0, -100.0]])
    kl = kl_penalty(logprobs, ref, "k3")
    torch.testing.assert_close(kl, torch.tensor([[10.0, 10.0]]))
    kl.sum().backward()
    assert torch.isfinite(logprobs.grad).all()


def test_kl_gradient_of_k3():
    # d k3 / d logprob = -exp(log_r) + 1 = 1 - pi_ref / pi = 1 - 0.5 = 0.5
    logprobs = torch.tensor([[math.log(0.5)]], requires_grad=True)
    kl_penalty(logprobs, torch.tensor([[math.log(0.25)]]), "k3").sum().backward()
    assert logprobs.grad.item() == pytest.approx(0.5)


def _categorical_kl_gradients(estimator: str) -> dict[str, torch.Tensor]:
    """On a categorical policy pi = softmax(theta) over 5 outcomes: the expected gradient of the
    estimator used as a loss on samples x ~ pi (exact expectation: sum_x pi(x) grad k(x), pi(x)
    not differentiated, as sampling is not), and the exact gradients of both KL directions."""
    gen = torch.Generator().manual_seed(3)
    theta = torch.randn(5, generator=gen, dtype=torch.float64, requires_grad=True)
    ref_logp = torch.log_softmax(torch.randn(5, generator=gen, dtype=torch.float64), -1)
    logp = torch.log_softmax(theta, -1)
    # [1, 5]: one "token" per outcome, its logprob and the reference's
    per_outcome = kl_penalty(logp[None, :], ref_logp[None, :], estimator)[0]
    expected = (logp.exp().detach() * per_outcome).sum()
    (sampled,) = torch.autograd.grad(expected, theta, retain_graph=True)
    reverse = (logp.exp() * (logp - ref_logp)).sum()  # KL(pi || ref)
    forward = (ref_logp.exp() * (ref_logp - logp)).sum()  # KL(ref || pi)
    (reverse_grad,) = torch.autograd.grad(reverse, theta, retain_graph=True)
    (forward_grad,) = torch.autograd.grad(forward, theta)
    return {"sampled": sampled, "reverse": reverse_grad, "forward": forward_grad}


def test_kl_estimators_as_losses_follow_the_documented_gradients():
    k1 = _categorical_kl_gradients("k1")
    torch.testing.assert_close(k1["sampled"], torch.zeros(5, dtype=torch.float64))
    k2 = _categorical_kl_gradients("k2")
    torch.testing.assert_close(k2["sampled"], k2["reverse"])
    k3 = _categorical_kl_gradients("k3")
    torch.testing.assert_close(k3["sampled"], k3["forward"])
    # the two directions do differ here, so the checks above tell them apart
    assert (k3["forward"] - k3["reverse"]).abs().max() > 0.05


def test_kl_estimators_as_losses_by_monte_carlo():
    # the same with actual samples: 200k draws, the mean gradient within 0.01 of the exact one
    gen = torch.Generator().manual_seed(4)
    theta = torch.randn(5, generator=gen, dtype=torch.float64, requires_grad=True)
    ref_logp = torch.log_softmax(torch.randn(5, generator=gen, dtype=torch.float64), -1)
    logp = torch.log_softmax(theta, -1)
    draws = torch.multinomial(logp.exp().detach(), 200_000, replacement=True, generator=gen)
    reverse = (logp.exp() * (logp - ref_logp)).sum()
    forward = (ref_logp.exp() * (ref_logp - logp)).sum()
    for name, target in (("k2", reverse), ("k3", forward)):
        loss = kl_penalty(logp[draws][None, :], ref_logp[draws][None, :], name).mean()
        (sampled,) = torch.autograd.grad(loss, theta, retain_graph=True)
        (exact,) = torch.autograd.grad(target, theta, retain_graph=True)
        torch.testing.assert_close(sampled, exact, atol=0.01, rtol=0)


def test_unknown_kl_estimator():
    with pytest.raises(
        UnknownNameError, match="unknown KL estimator 'k4'.*valid names: k1, k2, k3"
    ):
        kl_penalty(torch.zeros(1, 1), torch.zeros(1, 1), "k4")


# ----------------------------------------------------------------------------- logits


def test_token_logprobs_by_hand():
    # logits [0, log 3]: p = [0.25, 0.75]; label 1 -> log 0.75 = -0.287682
    # temperature 2: logits [0, log(3)/2] -> p1 = sqrt(3) / (1 + sqrt(3)) = 0.633975 -> -0.455746
    logits = torch.tensor([[[0.0, math.log(3)], [0.0, math.log(3)]]])  # [1, 2, 2]
    labels = torch.tensor([[1, 0]])
    torch.testing.assert_close(
        token_logprobs(logits, labels), torch.tensor([[math.log(0.75), math.log(0.25)]])
    )
    hot = token_logprobs(logits, labels, temperature=2.0)
    assert hot[0, 0].item() == pytest.approx(-0.455746, abs=1e-6)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        token_logprobs(logits, labels, temperature=0.0)


def test_token_logprobs_chunked_matches_log_softmax_with_grad():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=gen, requires_grad=True)
    labels = torch.randint(0, 11, (3, 5), generator=gen)
    chunked = token_logprobs(logits, labels, temperature=0.7, chunk_rows=4)
    reference = torch.log_softmax(logits / 0.7, dim=-1).gather(-1, labels.unsqueeze(-1))[..., 0]
    torch.testing.assert_close(chunked, reference)
    (grad,) = torch.autograd.grad(chunked.sum(), logits)
    (expected,) = torch.autograd.grad(reference.sum(), logits)
    torch.testing.assert_close(grad, expected)
    assert token_logprobs(logits.bfloat16(), labels).dtype == torch.float32


def test_entropy_by_hand_and_chunked():
    # uniform over 4: log 4; p = [0.25, 0.75]:
    #   -(0.25 ln 0.25 + 0.75 ln 0.75) = 0.346574 + 0.215762 = 0.562335
    uniform = entropy_from_logits(torch.zeros(1, 1, 4))
    assert uniform.item() == pytest.approx(math.log(4))
    two = entropy_from_logits(torch.tensor([[[0.0, math.log(3)]]]))
    assert two.item() == pytest.approx(0.562335, abs=1e-6)
    logits = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(1))
    expected = torch.distributions.Categorical(logits=logits).entropy()
    torch.testing.assert_close(entropy_from_logits(logits, chunk_rows=2), expected)
    hot = torch.distributions.Categorical(logits=logits / 0.5).entropy()
    torch.testing.assert_close(entropy_from_logits(logits, 0.5, chunk_rows=4), hot)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("chunk_rows", [1, 4, 15, None])
def test_chunked_logprobs_and_entropy_match_unchunked_with_gradients(temperature, chunk_rows):
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 5, 11, generator=gen, requires_grad=True)
    labels = torch.randint(0, 11, (3, 5), generator=gen)
    weights = torch.randn(2, 3, 5, generator=gen)
    logprobs, entropy = logprobs_and_entropy(logits, labels, temperature, chunk_rows=chunk_rows)
    scaled = logits / temperature
    ref_logprobs = torch.log_softmax(scaled, dim=-1).gather(-1, labels.unsqueeze(-1))[..., 0]
    ref_entropy = torch.distributions.Categorical(logits=scaled).entropy()
    torch.testing.assert_close(logprobs, ref_logprobs)
    torch.testing.assert_close(entropy, ref_entropy)
    # gradients of the logprobs alone, the entropy alone (a bonus), and both together
    for ours, reference in [
        ((weights[0] * logprobs).sum(), (weights[0] * ref_logprobs).sum()),
        ((weights[1] * entropy).sum(), (weights[1] * ref_entropy).sum()),
        (
            (weights[0] * logprobs + weights[1] * entropy).sum(),
            (weights[0] * ref_logprobs + weights[1] * ref_entropy).sum(),
        ),
    ]:
        (grad,) = torch.autograd.grad(ours, logits, retain_graph=True)
        (expected,) = torch.autograd.grad(reference, logits, retain_graph=True)
        torch.testing.assert_close(grad, expected)


def test_logprobs_and_entropy_gradcheck_in_float64():
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 3, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 7, (2, 3), generator=gen)
    assert torch.autograd.gradcheck(
        lambda x: logprobs_and_entropy(x, labels, 0.5, chunk_rows=2), (logits,)
    )


def test_only_the_logits_themselves_are_kept_for_backward():
    """A 150k vocabulary must not multiply the memory: beyond the logits (kept by reference), what
    the reductions save for the backward pass is O(positions), not O(positions x vocabulary)."""
    gen = torch.Generator().manual_seed(6)
    logits = torch.randn(4, 8, 1000, generator=gen, requires_grad=True)
    labels = torch.randint(0, 1000, (4, 8), generator=gen)
    saved: list[torch.Tensor] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        logprobs, entropy = logprobs_and_entropy(logits, labels, 0.7, chunk_rows=8)
        (logprobs.sum() + 0.01 * entropy.sum()).backward()
    others = [t for t in saved if t.untyped_storage().data_ptr() != logits.data_ptr()]
    assert sum(t.numel() for t in others) <= 4 * logits[..., 0].numel()


# ----------------------------------------------------------------------------- DAPO helpers


def test_overlong_mask_zeroes_truncated_rows():
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    got = overlong_mask(["stop", "stop", "length"], mask)
    torch.testing.assert_close(got, torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="2 finish reasons for 3 rows"):
        overlong_mask(["stop", "length"], mask)


def test_groups_with_signal():
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.5, 0.0, 0.0, 0.0])
    assert groups_with_signal(rewards, 3).tolist() == [False, True, False]
    with pytest.raises(ValueError, match="multiple of group_size 4"):
        groups_with_signal(rewards, 4)
