"""The policy-loss registry against hand-worked values and against reference computations written
from the peers' published definitions (TRL GRPOTrainer, veRL core_algos), values and gradients;
the high-entropy token mask; the rollout correction (TIS and rejection)."""

from __future__ import annotations

import math

import pytest
import torch

from reasonlab.registry import UnknownNameError
from reasonlab.rl.losses import (
    POLICY_LOSSES,
    high_entropy_mask,
    policy_loss,
    policy_loss_problems,
    rollout_correction,
)

ALL = ["cispo", "clip_cov", "gmpo", "gspo", "gspo_token", "kl_cov", "ppo", "sapo"]
# parameters that make each loss do something on ratios within ~[0.5, 2]
PARAMS = {
    "ppo": {"clip_low": 0.2, "clip_high": 0.28},
    "gspo": {"clip_low": 3e-4, "clip_high": 4e-4},
    "gspo_token": {"clip_low": 3e-4, "clip_high": 4e-4},
    "cispo": {"clip_low": 1.0, "clip_high": 0.28},
    "sapo": {"tau_pos": 1.0, "tau_neg": 1.05},
    "gmpo": {"clip_low": 0.4, "clip_high": 0.4},
    "clip_cov": {"clip_cov_ratio": 0.1, "clip_cov_lb": 0.0, "clip_cov_ub": 5.0},
    "kl_cov": {"kl_cov_ratio": 0.1, "kl_cov_coef": 1.0},
}


def random_inputs(seed: int = 0, rows: int = 4, cols: int = 6, per_token_adv: bool = False):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(rows, cols, generator=g) * 3 - 0.1
    new = (old + torch.randn(rows, cols, generator=g) * 0.3).requires_grad_(True)
    if per_token_adv:
        adv = torch.randn(rows, cols, generator=g)
    else:
        adv = torch.randn(rows, 1, generator=g).expand(rows, cols).clone()
    lengths = torch.tensor([cols, cols - 2, 1, cols - 1][:rows])
    mask = (torch.arange(cols)[None, :] < lengths[:, None]).float()
    return new, old, adv, mask


def grad_of(fn, logprobs):
    leaf = logprobs.detach().clone().requires_grad_(True)
    value = fn(leaf)
    (grad,) = torch.autograd.grad(value, leaf)
    return value.detach(), grad


def ours(name, agg="token-mean", **extra):
    def run(lp, old, adv, mask):
        params = {**PARAMS[name], **extra}
        if name == "clip_cov":  # its random draw, the same on every call
            params["generator"] = torch.Generator().manual_seed(0)
        return policy_loss(lp, old, adv, mask, loss=name, agg=agg, **params)[0]

    return run


def masked_token_mean(x, mask):
    return (x * mask).sum() / mask.sum()


def seq_mean_token_mean(x, mask):
    per_row = (x * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return per_row[mask.sum(-1) > 0].mean()


# ----------------------------------------------------------------------------- the registry


def test_registry_names_and_unknown_name_lists_the_valid_ones():
    assert POLICY_LOSSES.names() == ALL
    lp, old, adv, mask = random_inputs()
    with pytest.raises(UnknownNameError, match="did you mean 'gspo'.*valid names: cispo, clip_cov"):
        policy_loss(lp, old, adv, mask, loss="gpso")


def test_a_parameter_the_loss_does_not_take_is_an_error_listing_its_parameters():
    lp, old, adv, mask = random_inputs()
    with pytest.raises(ValueError, match="'sapo' takes no parameter clip_low; .* tau_pos, tau_neg"):
        policy_loss(lp, old, adv, mask, loss="sapo", clip_low=0.2)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("gspo", {"clip_low": 0.2, "clip_high": 4e-4}, "clip_low.*3e-4 / 4e-4"),
        ("gspo_token", {"clip_low": -1e-4, "clip_high": 4e-4}, "clip_low"),
        ("gmpo", {"clip_low": 0.4, "clip_high": 10.0}, "clip_high.*0.4"),
        ("ppo", {"clip_low": 1.5, "clip_high": 0.2}, "clip_low"),
        ("ppo", {"clip_low": 0.2, "clip_high": 0.2, "delta": 1.1}, "delta.*1.2"),
        ("ppo", {"dual_clip": 3.0, "delta": 4.0}, "set one"),
        ("sapo", {"tau_pos": 0.0, "tau_neg": 1.05}, "tau_pos"),
        ("kl_cov", {"kl_cov_ratio": 0.0, "kl_cov_coef": 1.0}, "kl_cov_ratio"),
        ("clip_cov", {"clip_cov_lb": 5.0, "clip_cov_ub": 1.0}, "clip_cov_lb"),
    ],
)
def test_out_of_range_parameters_are_named(name, params, message):
    problems = policy_loss_problems(name, params)
    assert problems, f"{name} {params} passed"
    assert any(__import__("re").search(message, f"{k} {m}") for k, m in problems), problems


# ----------------------------------------------------------------------------- PPO (default)


def ppo_reference(lp, old, adv, mask, clip_low=0.2, clip_high=0.2, dual_clip=None, delta=None):
    """PPO-clip, token-mean; `delta` as TRL's two-sided GRPO (coef_1 capped, -min of the two),
    `dual_clip` as veRL's clip_ratio_c."""
    coef_1 = torch.exp(lp - old)
    coef_2 = torch.clamp(coef_1, 1 - clip_low, 1 + clip_high)
    if delta is not None:
        coef_1 = torch.clamp(coef_1, max=delta)
    per_token = -torch.min(coef_1 * adv, coef_2 * adv)
    if dual_clip is not None:
        per_token = torch.where(adv < 0, torch.min(per_token, -adv * dual_clip), per_token)
    return masked_token_mean(per_token, mask)


@pytest.mark.parametrize("extra", [{}, {"dual_clip": 3.0}, {"delta": 1.6}])
def test_ppo_matches_the_reference_value_and_gradient(extra):
    lp, old, adv, mask = random_inputs(1, per_token_adv=True)
    lp = (old + torch.randn(old.shape, generator=torch.Generator().manual_seed(3))).detach()
    got, got_grad = grad_of(lambda x: ours("ppo", **extra)(x, old, adv, mask), lp)
    want, want_grad = grad_of(lambda x: ppo_reference(x, old, adv, mask, 0.2, 0.28, **extra), lp)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad, want_grad)


def test_ppo_is_the_default_and_delta_equals_dual_clip():
    lp, old, adv, mask = random_inputs(2, per_token_adv=True)
    lp = (old + 2 * torch.randn(old.shape, generator=torch.Generator().manual_seed(4))).detach()
    default, default_grad = grad_of(lambda x: policy_loss(x, old, adv, mask)[0], lp)
    ppo, ppo_grad = grad_of(
        lambda x: policy_loss(x, old, adv, mask, loss="ppo", clip_low=0.2, clip_high=0.2)[0], lp
    )
    assert torch.equal(default, ppo) and torch.equal(default_grad, ppo_grad)
    dual, dual_grad = grad_of(lambda x: ours("ppo", dual_clip=2.0)(x, old, adv, mask), lp)
    delta, delta_grad = grad_of(lambda x: ours("ppo", delta=2.0)(x, old, adv, mask), lp)
    torch.testing.assert_close(dual, delta)
    torch.testing.assert_close(dual_grad, delta_grad)


def test_delta_by_hand():
    # ratios 5 and 0.5 with A = -1, delta 3: min(r, 3) caps the first at 3 (no gradient); the
    # second is clipped at 0.8 (-A * 0.8 > -A * 0.5): no gradient either; a third, r = 1, learns
    old = torch.zeros(1, 3)
    lp = torch.tensor([[math.log(5.0), math.log(0.5), 0.0]])
    adv = -torch.ones(1, 3)
    value, grad = grad_of(lambda x: policy_loss(x, old, adv, torch.ones(1, 3), delta=3.0)[0], lp)
    assert value.item() == pytest.approx((3.0 + 0.8 + 1.0) / 3)
    torch.testing.assert_close(grad, torch.tensor([[0.0, 0.0, 1.0 / 3]]))
    _, stats = policy_loss(lp, old, adv, torch.ones(1, 3), delta=3.0)
    assert stats["delta_clip_fraction"].item() == pytest.approx(1 / 3)
    assert stats["trained_fraction"].item() == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------- GSPO


def gspo_reference_trl(lp, old, adv, mask, eps_low, eps_high):
    """TRL importance_sampling_level="sequence": the per-sequence mean log-ratio, unsqueezed to
    [B, 1], then the clipped surrogate per token; loss_type grpo (per sequence mean, then mean)."""
    log_ratio = lp - old
    log_w = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)
    coef_1 = torch.exp(log_w)
    coef_2 = torch.clamp(coef_1, 1 - eps_low, 1 + eps_high)
    per_token = -torch.min(coef_1 * adv, coef_2 * adv)
    return seq_mean_token_mean(per_token, mask)


def gspo_token_reference_verl(lp, old, adv, mask, low, high):
    """veRL `gspo`: log s_{i,t} = log pi - sg(log pi) + sg(seq mean log-ratio)."""
    seq = ((lp - old) * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    log_s = lp - lp.detach() + seq.detach().unsqueeze(-1)
    s = torch.exp(torch.clamp(log_s, max=10.0))
    per_token = torch.maximum(-adv * s, -adv * torch.clamp(s, 1 - low, 1 + high))
    return seq_mean_token_mean(per_token, mask)


@pytest.mark.parametrize("per_token_adv", [False, True])
def test_gspo_and_gspo_token_match_trl_and_verl(per_token_adv):
    lp, old, adv, mask = random_inputs(5, per_token_adv=per_token_adv)
    # sequence log-ratios within ~1e-3 so some responses clip and some do not
    noise = torch.randn(old.shape, generator=torch.Generator().manual_seed(6)) * 1e-3
    lp = (old + noise).detach()
    agg = "seq-mean-token-mean"
    got, got_grad = grad_of(lambda x: ours("gspo", agg)(x, old, adv, mask), lp)
    want, want_grad = grad_of(lambda x: gspo_reference_trl(x, old, adv, mask, 3e-4, 4e-4), lp)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad, want_grad)
    tok, tok_grad = grad_of(lambda x: ours("gspo_token", agg)(x, old, adv, mask), lp)
    ref, ref_grad = grad_of(lambda x: gspo_token_reference_verl(x, old, adv, mask, 3e-4, 4e-4), lp)
    torch.testing.assert_close(tok, ref)
    torch.testing.assert_close(tok_grad, ref_grad)
    torch.testing.assert_close(tok, got)  # one value
    if per_token_adv:  # per-token advantages: the two gradients differ
        assert not torch.allclose(tok_grad, got_grad)
    else:  # one advantage per response: GSPO-token's gradient is GSPO's (the paper, sec. 4.3)
        torch.testing.assert_close(tok_grad, got_grad)


def test_gspo_by_hand_clips_a_whole_sequence_and_ignores_padding():
    old = torch.zeros(2, 3)
    # row 0: log-ratios 1e-3, 1e-3 (mean 1e-3 > 4e-4: clipped, A > 0); its padded token has a
    # wild log-ratio that must not count. row 1: log-ratios 2e-4, 0, -2e-4 (mean 0: inside)
    lp = torch.tensor([[1e-3, 1e-3, 50.0], [2e-4, 0.0, -2e-4]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    adv = torch.tensor([[1.0, 1.0, 1.0], [-2.0, -2.0, -2.0]])
    value, grad = grad_of(
        lambda x: policy_loss(
            x, old, adv, mask, loss="gspo", clip_low=3e-4, clip_high=4e-4, agg="seq-mean-token-mean"
        )[0],
        lp,
    )
    # row 0: -1 * 1.0004; row 1: -(-2) * exp(0) = 2; mean over 2 responses
    assert value.item() == pytest.approx((-1.0004 + 2.0) / 2, abs=1e-6)
    # row 0 clipped: no gradient; row 1: d/dlp_t of 2 exp(mean) / 2 = 1/3 per token
    torch.testing.assert_close(grad, torch.tensor([[0.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]]))
    _, stats = policy_loss(lp, old, adv, mask, loss="gspo", clip_low=3e-4, clip_high=4e-4)
    assert stats["clip_fraction_seq"].item() == pytest.approx(0.5)
    assert stats["clip_fraction"].item() == pytest.approx(2 / 5)
    assert stats["ratio_max"].item() == pytest.approx(math.exp(1e-3))


# ----------------------------------------------------------------------------- CISPO


def cispo_reference(lp, old, adv, mask, low, high):
    """veRL `cispo` / MiniMax-M1 eq. 4: -sg(clip(r, 1 - low, 1 + high)) A log pi."""
    ratio = torch.exp(lp - old)
    weight = torch.clamp(ratio, 1 - low, 1 + high).detach()
    return masked_token_mean(-weight * adv * lp, mask)


def test_cispo_matches_the_reference_and_keeps_clipped_tokens_gradient():
    lp, old, adv, mask = random_inputs(7, per_token_adv=True)
    got, got_grad = grad_of(lambda x: ours("cispo")(x, old, adv, mask), lp)
    want, want_grad = grad_of(lambda x: cispo_reference(x, old, adv, mask, 1.0, 0.28), lp)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad, want_grad)
    # by hand: ratio 2 with A = 1 is capped at 1.28 and still learns; PPO drops it
    old1, lp1, adv1, mask1 = (
        torch.zeros(1, 1),
        torch.tensor([[math.log(2.0)]]),
        torch.ones(1, 1),
        torch.ones(1, 1),
    )
    _, grad = grad_of(lambda x: ours("cispo")(x, old1, adv1, mask1), lp1)
    assert grad.item() == pytest.approx(-1.28)
    _, ppo_grad = grad_of(lambda x: ours("ppo")(x, old1, adv1, mask1), lp1)
    assert ppo_grad.item() == 0.0
    _, stats = policy_loss(lp1, old1, adv1, mask1, loss="cispo", clip_low=1.0, clip_high=0.28)
    assert stats["clip_fraction"].item() == 1.0 and stats["trained_fraction"].item() == 1.0


# ----------------------------------------------------------------------------- SAPO


def sapo_reference(lp, old, adv, mask, tau_pos, tau_neg):
    """TRL/veRL `sapo`: gate (4 / tau) sigmoid(tau (r - 1)), tau by the sign of A."""
    ratio = torch.exp(lp - old)
    tau = torch.where(adv > 0, torch.tensor(tau_pos), torch.tensor(tau_neg))
    gate = torch.sigmoid(tau * (ratio - 1)) * 4 / tau
    return masked_token_mean(-gate * adv, mask)


def test_sapo_matches_the_reference_and_by_hand_at_ratio_one():
    lp, old, adv, mask = random_inputs(8, per_token_adv=True)
    got, got_grad = grad_of(lambda x: ours("sapo")(x, old, adv, mask), lp)
    want, want_grad = grad_of(lambda x: sapo_reference(x, old, adv, mask, 1.0, 1.05), lp)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad, want_grad)
    # at r = 1: value -2A / tau, gradient -A (the policy gradient), whatever tau
    old1 = torch.zeros(1, 2)
    adv1 = torch.tensor([[1.0, -1.0]])
    value, grad = grad_of(lambda x: ours("sapo")(x, old1, adv1, torch.ones(1, 2)), old1.clone())
    assert value.item() == pytest.approx((-2.0 / 1.0 + 2.0 / 1.05) / 2, abs=1e-6)
    torch.testing.assert_close(grad, torch.tensor([[-0.5, 0.5]]))


# ----------------------------------------------------------------------------- GMPO


def gmpo_reference_verl(lp, old, adv, mask, low, high):
    """veRL `geo_mean`: sign-aware log-space clip, exp of the mean per response, times the mean
    advantage; the mean over responses."""
    d = lp - old
    sgn = torch.sign(adv)
    d_clamp = torch.clamp(d, -low, high)
    d_min = sgn * torch.min(sgn * d, sgn * d_clamp)
    n = mask.sum(-1)
    ratio = torch.exp((d_min * mask).sum(-1) / n)
    a = (adv * mask).sum(-1) / n
    return (-a * ratio).mean()


def test_gmpo_matches_verl_and_by_hand():
    lp, old, adv, mask = random_inputs(9, per_token_adv=True)
    lp = (old + torch.randn(old.shape, generator=torch.Generator().manual_seed(10)) * 0.5).detach()
    got, got_grad = grad_of(lambda x: ours("gmpo", "seq-mean-token-mean")(x, old, adv, mask), lp)
    want, want_grad = grad_of(lambda x: gmpo_reference_verl(x, old, adv, mask, 0.4, 0.4), lp)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad, want_grad)
    # by hand: log-ratios 0.5 (clipped to 0.4 for A > 0) and 0: R = exp(0.2), loss -exp(0.2);
    # the clipped token has no gradient, the other d/dlp (-exp(0.2)) = -exp(0.2) / 2
    old1 = torch.zeros(1, 2)
    lp1 = torch.tensor([[0.5, 0.0]])
    value, grad = grad_of(
        lambda x: ours("gmpo", "seq-mean-token-mean")(x, old1, torch.ones(1, 2), torch.ones(1, 2)),
        lp1,
    )
    assert value.item() == pytest.approx(-math.exp(0.2))
    torch.testing.assert_close(grad, torch.tensor([[0.0, -math.exp(0.2) / 2]]))


# ----------------------------------------------------------------------------- Clip-Cov, KL-Cov


def centred_product(lp, adv, mask):
    valid = mask > 0
    a_mean = adv[valid].mean()
    l_mean = lp.detach()[valid].mean()
    return (adv - a_mean) * (lp.detach() - l_mean)


def test_clip_cov_detaches_a_high_covariance_token_by_hand():
    # one row of 4 valid tokens, ratio 1: PPO gradient -A/4 each. Covariances (A - 0)(lp - mean):
    # token 0: 2 * 1.5 = 3 (in (1, 5): the only candidate); others below 1
    old = torch.tensor([[1.5, -0.5, -0.5, -0.5]])
    adv = torch.tensor([[2.0, -2.0 / 3, -2.0 / 3, -2.0 / 3]])
    cov = centred_product(old, adv, torch.ones(1, 4))
    assert cov[0, 0].item() == pytest.approx(3.0) and (cov[0, 1:] < 1).all()
    value, grad = grad_of(
        lambda x: policy_loss(x, old, adv, torch.ones(1, 4), loss="clip_cov", clip_cov_ratio=0.25)[
            0
        ],
        old.clone(),
    )
    # token 0 detached: loss 0, no gradient; the others -A r / 4
    assert value.item() == pytest.approx(3 * (2.0 / 3) / 4)
    torch.testing.assert_close(grad, torch.tensor([[0.0, 1 / 6, 1 / 6, 1 / 6]]))
    _, stats = policy_loss(old, old, adv, torch.ones(1, 4), loss="clip_cov", clip_cov_ratio=0.25)
    assert stats["cov_detached_fraction"].item() == pytest.approx(0.25)


def test_clip_cov_draw_is_seeded_and_never_picks_padding_or_clipped_tokens():
    lp, old, adv, mask = random_inputs(11, rows=4, cols=6, per_token_adv=True)
    params = {"loss": "clip_cov", "clip_cov_ratio": 0.3, "clip_cov_lb": -10.0, "clip_cov_ub": 10.0}

    def grads(seed):
        gen = torch.Generator().manual_seed(seed)
        return grad_of(lambda x: policy_loss(x, old, adv, mask, generator=gen, **params)[0], lp)[1]

    torch.testing.assert_close(grads(0), grads(0))
    ppo_grad = grad_of(lambda x: policy_loss(x, old, adv, mask)[0], lp)[1]
    zeroed = (grads(0) == 0) & (ppo_grad != 0)
    assert int(zeroed.sum()) == int(0.3 * mask.sum())  # 5 of 17 valid tokens detached
    assert not (zeroed & (mask == 0)).any()


def kl_cov_reference_verl(lp, old, adv, mask, ratio_k, coef):
    """veRL `kl_cov`: the top-k covariance tokens get -A r + coef |log r|, others -A r."""
    log_r = lp - old
    ratio = torch.exp(log_r)
    losses = -adv * ratio
    valid = mask > 0
    flat_idx = valid.flatten().nonzero().squeeze(1)
    a, lv = adv[valid], lp.detach()[valid]
    cov = (a - a.mean()) * (lv - lv.mean())
    k = max(1, int(len(cov) * ratio_k))
    top = flat_idx[torch.topk(cov, k).indices]
    penalised = torch.zeros(valid.numel(), dtype=torch.bool)
    penalised[top] = True
    losses = torch.where(penalised.view_as(valid), losses + coef * log_r.abs(), losses)
    return masked_token_mean(losses, mask)


def test_kl_cov_matches_verl():
    lp, old, adv, mask = random_inputs(12, per_token_adv=True)
    got, got_grad = grad_of(lambda x: ours("kl_cov", kl_cov_ratio=0.2)(x, old, adv, mask), lp)
    want, want_grad = grad_of(lambda x: kl_cov_reference_verl(x, old, adv, mask, 0.2, 1.0), lp)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad, want_grad)


# ----------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("name", [n for n in ALL if n != "kl_cov"])
def test_zero_advantages_give_no_gradient(name):
    lp, old, _, mask = random_inputs(13)
    _, grad = grad_of(lambda x: ours(name)(x, old, torch.zeros_like(old), mask), lp)
    assert torch.count_nonzero(grad) == 0


@pytest.mark.parametrize("name", ALL)
def test_padding_changes_nothing(name):
    lp, old, adv, mask = random_inputs(14, per_token_adv=True)
    value, grad = grad_of(lambda x: ours(name)(x, old, adv, mask), lp)
    pad = mask == 0
    lp2 = lp.detach().masked_fill(pad, 30.0)
    old2 = old.masked_fill(pad, -30.0)
    adv2 = adv.masked_fill(pad, 100.0)
    value2, grad2 = grad_of(lambda x: ours(name)(x, old2, adv2, mask), lp2)
    torch.testing.assert_close(value, value2)
    torch.testing.assert_close(grad * mask, grad2 * mask)
    assert torch.count_nonzero(grad2 * pad) == 0


@pytest.mark.parametrize("name", ALL)
def test_weights_scale_each_token_and_stats_are_finite(name):
    lp, old, adv, mask = random_inputs(15, per_token_adv=True)
    weights = torch.rand(old.shape, generator=torch.Generator().manual_seed(16))
    params = PARAMS[name]
    got, stats = policy_loss(lp, old, adv, mask, loss=name, weights=weights, **params)
    assert torch.isfinite(got)
    assert all(torch.isfinite(v) for v in stats.values())
    for key in ("clip_fraction", "clip_fraction_seq", "trained_fraction", "ratio_min"):
        assert key in stats
    if name in ("ppo", "cispo", "sapo"):  # token-local losses: the weight multiplies the token
        single = policy_loss(lp, old, adv, mask * 0 + mask, loss=name, **params)[0]
        assert not torch.isclose(got, single)


# ----------------------------------------------------------------------------- entropy mask


def test_high_entropy_mask_by_hand():
    entropy = torch.tensor([[0.1, 0.5, 0.9, 0.3, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])  # the padded 5.0 does not count
    # valid entropies 0.1, 0.3, 0.5, 0.9: the 0.5 quantile is 0.4 -> keep 0.5 and 0.9
    keep = high_entropy_mask(entropy, mask, 0.5)
    assert keep.tolist() == [[0.0, 1.0, 1.0, 0.0, 0.0]]
    assert high_entropy_mask(entropy, mask, 1.0).tolist() == [mask[0].tolist()]
    with pytest.raises(ValueError, match="top_entropy_quantile"):
        high_entropy_mask(entropy, mask, 0.0)


# ----------------------------------------------------------------------------- rollout correction


def test_rollout_correction_by_hand():
    # pi_old / pi_rollout per token: row 0: 2.5, 1.0; row 1: 0.25, 1.0 (its last token padding)
    old = torch.log(torch.tensor([[0.5, 0.4], [0.1, 0.3]]))
    rollout = torch.log(torch.tensor([[0.2, 0.4], [0.4, 0.9]]))
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    weights, keep, stats = rollout_correction(old, rollout, mask, rollout_is="token")
    torch.testing.assert_close(weights * mask, torch.tensor([[2.0, 1.0], [0.25, 0.0]]))
    assert keep.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert stats["rollout_ratio_max"].item() == pytest.approx(2.5)
    assert stats["rollout_ratio_min"].item() == pytest.approx(0.25)
    assert stats["rollout_ratio_mean"].item() == pytest.approx((2.5 + 1.0 + 0.25) / 3)
    assert stats["rollout_is_weight_mean"].item() == pytest.approx((2.0 + 1.0 + 0.25) / 3)
    # sequence: one weight per response, the product of its valid ratios (2.5, 0.25), capped at 2
    weights, _, _ = rollout_correction(old, rollout, mask, rollout_is="sequence")
    torch.testing.assert_close(weights * mask, torch.tensor([[2.0, 2.0], [0.25, 0.0]]))
    # token rejection in [1/2, 2]: 2.5 and 0.25 leave
    _, keep, stats = rollout_correction(old, rollout, mask, rollout_rs="token")
    assert (keep * mask).tolist() == [[0.0, 1.0], [0.0, 0.0]]
    assert stats["rollout_masked_fraction"].item() == pytest.approx(2 / 3)
    # geometric: row 0 exp(mean(log 2.5, 0)) = 1.58 stays in [1/2, 2]; row 1: 0.25 leaves
    _, keep, _ = rollout_correction(old, rollout, mask, rollout_rs="geometric")
    assert keep.tolist() == [[1.0, 1.0], [0.0, 0.0]]
    # sequence with a band [0.2, 3]: products 2.5 and 0.25 both stay
    _, keep, _ = rollout_correction(
        old,
        rollout,
        mask,
        rollout_rs="sequence",
        rollout_rs_threshold=3.0,
        rollout_rs_threshold_lower=0.2,
    )
    assert keep.tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_on_policy_ppo_cispo_gspo_token_and_kl_cov_have_one_gradient():
    """At ratio 1 (the first update after sampling, or the only one when a step makes one
    update) no clip or weight cap is active and KL-Cov's penalty has zero gradient, so these four
    give the vanilla policy gradient: the `policy_losses` experiment measured the same per-seed
    figures for them with one update per step (docs/findings.md), hence its 4 updates per step.
    GSPO, GMPO and SAPO differ already there (per-response ratios or the gate's slope)."""
    new, old, adv, mask = random_inputs(seed=3)
    old = new.detach().clone()  # on-policy: every ratio is exactly 1
    agg = "seq-mean-token-mean"
    grads = {}
    for name in ("ppo", "cispo", "gspo_token", "kl_cov"):
        _, grads[name] = grad_of(lambda lp, n=name: ours(n, agg=agg)(lp, old, adv, mask), new)
    for name in ("cispo", "gspo_token", "kl_cov"):
        torch.testing.assert_close(grads[name], grads["ppo"], rtol=1e-6, atol=1e-7, msg=name)
    assert grads["ppo"].abs().max() > 0
    # and off-policy they part (the reason the experiment runs several updates per step)
    new, old, adv, mask = random_inputs(seed=3)
    _, ppo = grad_of(lambda lp: ours("ppo", agg=agg)(lp, old, adv, mask), new)
    _, cispo = grad_of(lambda lp: ours("cispo", agg=agg)(lp, old, adv, mask), new)
    assert not torch.allclose(ppo, cispo)
