"""Advantage estimators against values worked by hand (numbers in the comments)."""

from __future__ import annotations

import math

import pytest
import torch

from reasonlab.registry import UnknownNameError
from reasonlab.rl.advantages import ADVANTAGES, compute_advantages, discounted_returns

# two prompts x three samples; rows 0-2 are prompt 0, rows 3-5 prompt 1
REWARDS = torch.tensor([1.0, 0.0, 0.0, 3.0, 1.0, 2.0])
MASK = torch.tensor(
    [[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 1], [1, 1, 0]], dtype=torch.float32
)


def run(name: str, **kwargs):
    args = dict(rewards=REWARDS, response_mask=MASK, group_size=3)
    args.update(kwargs)
    return compute_advantages(name, **args)


def per_row(scores: list[float]) -> torch.Tensor:
    return torch.tensor(scores).unsqueeze(1) * MASK


def test_registry_names():
    assert ADVANTAGES.names() == [
        "dr_grpo",
        "gae",
        "grpo",
        "grpo_passk",
        "reinforce_pp",
        "reinforce_pp_baseline",
        "rloo",
    ]


def test_grpo_unbiased_std():
    # group 0: [1, 0, 0], mean 1/3, deviations [2/3, -1/3, -1/3],
    #   unbiased var = (4/9 + 1/9 + 1/9) / 2 = 1/3, std = 0.57735
    #   A = [1.1547, -0.57735, -0.57735]
    # group 1: [3, 1, 2], mean 2, deviations [1, -1, 0], var = 2/2 = 1, std = 1 -> A = [1, -1, 0]
    advantages, returns = run("grpo", eps=0.0)
    s = 1 / math.sqrt(1 / 3)
    expected = per_row([2 / 3 * s, -1 / 3 * s, -1 / 3 * s, 1.0, -1.0, 0.0])
    torch.testing.assert_close(advantages, expected)
    assert returns is None


def test_grpo_eps_and_constant_group():
    # a group with one reward for all gets 0 (0 / (0 + eps)), not NaN
    advantages, _ = compute_advantages(
        "grpo",
        rewards=torch.tensor([1.0, 1.0, 0.0, 2.0]),
        response_mask=torch.ones(4, 2),
        group_size=2,
        eps=0.5,
    )
    # group 1: [0, 2], mean 1, std = sqrt((1 + 1) / 1) = 1.41421 -> A = +-1 / (1.41421 + 0.5)
    a = 1 / (math.sqrt(2) + 0.5)
    torch.testing.assert_close(advantages, torch.tensor([[0, 0], [0, 0], [-a, -a], [a, a]]))


def test_dr_grpo_no_std():
    # group 0: r - 1/3; group 1: r - 2
    advantages, returns = run("dr_grpo")
    torch.testing.assert_close(advantages, per_row([2 / 3, -1 / 3, -1 / 3, 1.0, -1.0, 0.0]))
    assert returns is None


def test_grpo_passk_only_the_best_response_learns():
    # group 0: [1, 0, 0]: best row 0, gap 1 - 0 = 1, std 0.57735 -> 1.7321; rows 1, 2: 0
    # group 1: [3, 1, 2]: best row 3, gap 3 - 2 = 1, std 1 -> 1; rows 4, 5: 0
    advantages, returns = run("grpo_passk", eps=0.0)
    s = 1 / math.sqrt(1 / 3)
    torch.testing.assert_close(advantages, per_row([s, 0.0, 0.0, 1.0, 0.0, 0.0]))
    assert returns is None
    # tied maxima: no gap, no signal
    advantages, _ = compute_advantages(
        "grpo_passk",
        rewards=torch.tensor([1.0, 1.0, 0.0]),
        response_mask=torch.ones(3, 2),
        group_size=3,
    )
    assert torch.count_nonzero(advantages) == 0


def test_rloo_leave_one_out():
    # group 0: 1 - (0+0)/2 = 1, 0 - (1+0)/2 = -0.5, -0.5
    # group 1: 3 - (1+2)/2 = 1.5, 1 - (3+2)/2 = -1.5, 2 - (3+1)/2 = 0
    advantages, returns = run("rloo")
    torch.testing.assert_close(advantages, per_row([1.0, -0.5, -0.5, 1.5, -1.5, 0.0]))
    assert returns is None


def test_outcome_estimators_use_kl_in_reward():
    # kl summed over valid tokens: row 0: 0.1 + 0.3 = 0.4 (0.5 is masked), row 1: 0.2
    # scores with kl_coef 0.5: [1 - 0.2, 0 - 0.1] = [0.8, -0.1]; dr_grpo: mean 0.35 -> +-0.45
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    kl = torch.tensor([[0.1, 0.3, 0.5], [0.2, 7.0, 7.0]])
    advantages, _ = compute_advantages(
        "dr_grpo",
        rewards=torch.tensor([1.0, 0.0]),
        response_mask=mask,
        group_size=2,
        kl=kl,
        kl_coef=0.5,
    )
    torch.testing.assert_close(advantages, torch.tensor([[0.45, 0.45, 0.0], [-0.45, 0.0, 0.0]]))


def test_reinforce_pp_returns_and_whitening():
    # token rewards (kl_coef 0.5): row 0: [-0.05, -0.1, -0.15 + 1] ; row 1: [-0.2, -0.25, masked]
    # returns (gamma 1): row 0: [0.7, 0.75, 0.85]; row 1: [-0.45, -0.25, 0]
    # valid returns: mean = 1.6 / 5 = 0.32; deviations [0.38, 0.43, 0.53, -0.77, -0.57]
    # unbiased var = (0.1444 + 0.1849 + 0.2809 + 0.5929 + 0.3249) / 4 = 0.382
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 9.0]])
    advantages, returns = compute_advantages(
        "reinforce_pp",
        rewards=torch.tensor([1.0, 0.0]),
        response_mask=mask,
        group_size=1,
        kl=kl,
        kl_coef=0.5,
        eps=0.0,
    )
    torch.testing.assert_close(returns, torch.tensor([[0.7, 0.75, 0.85], [-0.45, -0.25, 0.0]]))
    std = math.sqrt(0.382)
    expected = torch.tensor([[0.38, 0.43, 0.53], [-0.77, -0.57, 0.0]]) / std
    torch.testing.assert_close(advantages, expected)


def test_discounted_returns_count_valid_tokens_only():
    # gamma 0.5, reward 1 at the end: [0.25, 0.5, 1]; with the middle token masked: [0.5, 0, 1]
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 5.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    torch.testing.assert_close(
        discounted_returns(rewards, mask, gamma=0.5), torch.tensor([[0.25, 0.5, 1.0], [0.5, 0, 1]])
    )


def test_reinforce_pp_reward_at_last_valid_token_and_empty_rows():
    # row 0 ends at t=1; row 1 has no valid token (an overlong sample masked out): all zero.
    # valid returns of row 0 (gamma 1): [2, 2] -> whitened: centred to 0 (std 0)
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    advantages, returns = compute_advantages(
        "reinforce_pp", rewards=torch.tensor([2.0, 5.0]), response_mask=mask, group_size=1
    )
    torch.testing.assert_close(returns, torch.tensor([[2.0, 2.0, 0.0], [0.0, 0.0, 0.0]]))
    torch.testing.assert_close(advantages, torch.zeros(2, 3))


def test_reinforce_pp_baseline():
    # group centring: [1, 0 | 4, 2] -> [0.5, -0.5 | 1, -1], rows masked [[1,1],[1,0],[1,1],[0,1]]
    # valid values: [0.5, 0.5, -0.5, 1, 1, -1]; mean = 1.5 / 6 = 0.25
    # deviations: [0.25, 0.25, -0.75, 0.75, 0.75, -1.25]; sum sq = 0.0625*2 + 0.5625*3 + 1.5625
    #   = 3.375, unbiased var = 3.375 / 5 = 0.675
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    advantages, returns = compute_advantages(
        "reinforce_pp_baseline",
        rewards=torch.tensor([1.0, 0.0, 4.0, 2.0]),
        response_mask=mask,
        group_size=2,
        eps=0.0,
    )
    expected = torch.tensor([[0.25, 0.25], [-0.75, 0.0], [0.75, 0.75], [0.0, -1.25]])
    torch.testing.assert_close(advantages, expected / math.sqrt(0.675))
    assert returns is None


def gae_one_response(**kwargs):
    """GAE on one 3-token response, values [0.5, 0.4, 0.2], reward 1 at the end, eps 0."""
    return compute_advantages(
        "gae",
        rewards=torch.tensor([1.0]),
        response_mask=torch.ones(1, 3),
        group_size=1,
        values=torch.tensor([[0.5, 0.4, 0.2]]),
        eps=0.0,
        **kwargs,
    )


def test_gae_lambda_one_is_return_minus_value():
    # gamma = lam = 1: deltas: t2: 1 - 0.2 = 0.8; t1: 0.2 - 0.4 = -0.2; t0: 0.4 - 0.5 = -0.1
    # A = [0.5, 0.6, 0.8] = 1 - V; returns = A + V = [1, 1, 1]
    # whitened: mean 19/30 = 0.6333; deviations [-0.1333, -0.0333, 0.1667];
    #   var = (0.017778 + 0.001111 + 0.027778) / 2 = 0.023333
    advantages, returns = gae_one_response()
    torch.testing.assert_close(returns, torch.ones(1, 3))
    expected = torch.tensor([[-2 / 15, -1 / 30, 1 / 6]]) / math.sqrt(0.07 / 3)
    torch.testing.assert_close(advantages, expected)


def test_gae_gamma_lambda():
    # gamma 0.9, lam 0.5:
    # deltas: t2: 1 - 0.2 = 0.8; t1: 0.9*0.2 - 0.4 = -0.22; t0: 0.9*0.4 - 0.5 = -0.14
    # A2 = 0.8; A1 = -0.22 + 0.45*0.8 = 0.14; A0 = -0.14 + 0.45*0.14 = -0.077
    # returns = A + V = [0.423, 0.54, 1.0]
    # whitened: mean 0.287667; deviations [-0.364667, -0.147667, 0.512333];
    #   var = (0.132982 + 0.021806 + 0.262485) / 2 = 0.208637, std 0.456768
    advantages, returns = gae_one_response(gamma=0.9, lam=0.5)
    torch.testing.assert_close(returns, torch.tensor([[0.423, 0.54, 1.0]]))
    torch.testing.assert_close(
        advantages, torch.tensor([[-0.79836, -0.32329, 1.12165]]), atol=1e-4, rtol=0
    )


def test_gae_skips_masked_tokens_and_applies_kl():
    # mask [1, 0, 1], values [0.5, 99, 0.2]: the masked token is skipped.
    # token rewards with kl_coef 1, kl [0.1, 9, 0.1]: [-0.1, 0, 1 - 0.1 = 0.9]
    # t2: delta = 0.9 - 0.2 = 0.7 = A2; t0: delta = -0.1 + 0.2 - 0.5 = -0.4, A0 = -0.4 + 0.7 = 0.3
    # returns = [0.8, 0, 0.9]; whitened over 2 tokens: mean 0.5, deviations -+0.2,
    #   var = 0.08 / 1, std 0.282843 -> -+0.707107
    advantages, returns = compute_advantages(
        "gae",
        rewards=torch.tensor([1.0]),
        response_mask=torch.tensor([[1, 0, 1]]),
        group_size=1,
        values=torch.tensor([[0.5, 99.0, 0.2]]),
        kl=torch.tensor([[0.1, 9.0, 0.1]]),
        kl_coef=1.0,
        eps=0.0,
    )
    torch.testing.assert_close(returns, torch.tensor([[0.8, 0.0, 0.9]]))
    h = 1 / math.sqrt(2)
    torch.testing.assert_close(advantages, torch.tensor([[-h, 0.0, h]]))


def test_gae_needs_values():
    with pytest.raises(ValueError, match="gae needs critic values"):
        run("gae")


def test_bool_mask_and_no_grad():
    rewards = torch.tensor([1.0, 0.0], requires_grad=True)
    advantages, _ = compute_advantages(
        "grpo",
        rewards=rewards,
        response_mask=torch.tensor([[True, False], [True, True]]),
        group_size=2,
    )
    assert not advantages.requires_grad
    assert advantages.dtype == torch.float32
    assert advantages[0, 1] == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(group_size=4), "batch size 6 is not a multiple of group_size 4"),
        (dict(group_size=0), "not a multiple of group_size 0"),
        (dict(rewards=torch.zeros(6, 1)), r"rewards must be 1-D \[batch\], got shape \(6, 1\)"),
        (dict(response_mask=torch.ones(5, 3)), r"batch = len\(rewards\) = 6, got shape \(5, 3\)"),
        (dict(kl=torch.zeros(6, 2)), r"kl must have the shape of response_mask \(6, 3\)"),
        (dict(values=torch.zeros(6, 4)), r"values must have the shape of response_mask"),
        (dict(gamma=1.5), "gamma and lam must be in"),
    ],
)
def test_validation_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        run("grpo", **kwargs)


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "grpo_passk", "rloo", "reinforce_pp_baseline"])
def test_group_estimators_need_groups(name):
    with pytest.raises(ValueError, match=f"{name} .* needs group_size >= 2, got 1"):
        run(name, group_size=1)


def test_unknown_estimator_lists_names():
    with pytest.raises(UnknownNameError, match="did you mean 'grpo'.*valid names: dr_grpo, gae"):
        run("gpro")
