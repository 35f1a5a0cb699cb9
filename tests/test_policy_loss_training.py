"""The policy losses and the rollout correction inside training: recipes per loss run, the config
refuses bad choices before any model loads, `old_logprobs=rollout` lines up with the trainer's
logprobs, and top-k sampling with the sampler's own logprobs gives a real mismatch that the
rollout correction measures and masks."""

from __future__ import annotations

import math
import tempfile
import zlib
from pathlib import Path

import pytest

from reasonlab.config import ConfigError, load_config
from reasonlab.models import tiny
from reasonlab.rl.config import TrainConfig, validate
from reasonlab.rl.losses import POLICY_LOSSES
from reasonlab.rl.trainer import RewardTerm, Trainer
from reasonlab.rollout import SamplingParams
from reasonlab.rollout.hf import HFEngine

LOSS_RECIPES = Path(__file__).resolve().parents[1] / "configs" / "losses"

SHRINK = [
    "batching.prompts_per_step=2",
    "batching.micro_batch_size=null",
    "rollout.max_new_tokens=8",
    "task.eval_size=2",
    "task.params={preset: tinyzero}",
    "model.tiny.corpus_examples=20",
    "run.eval_every=0",
    "run.progress=false",
    "run.num_threads=1",
    "run.log_rollouts_per_step=0",
]


def sevens(completions, **columns):
    """Share of '7' characters: a reward that differs between a random model's samples (so the
    advantages, and the update, are not zero)."""
    return [text.count("7") / max(1, len(text)) for text in completions]


def text_hash(completions, **columns):
    """A reward in [0, 1) that differs between any two different texts: every group has signal."""
    return [zlib.crc32(text.encode()) / 2**32 for text in completions]


def tiny_run(tmp_path: Path, recipe: Path | None, *overrides: str, reward=sevens) -> list[dict]:
    out = tempfile.mkdtemp(dir=tmp_path)  # a fresh run folder per call
    extra = [*SHRINK, f"run.out_dir={out}", *overrides]
    cfg = validate(load_config(TrainConfig, recipe, extra), source=str(recipe) if recipe else None)
    trainer = Trainer(cfg, reward_fns=[RewardTerm(reward.__name__, 1.0, reward)])
    return [trainer.train_step() for _ in range(cfg.run.steps)]


def test_there_is_a_recipe_per_loss():
    assert sorted(p.stem for p in LOSS_RECIPES.glob("*.yaml")) == POLICY_LOSSES.names()


@pytest.mark.parametrize("name", POLICY_LOSSES.names())
def test_each_loss_recipe_loads_and_trains_two_steps(tmp_path, name):
    path = LOSS_RECIPES / f"{name}.yaml"
    cfg = validate(load_config(TrainConfig, path), source=str(path))
    assert cfg.algorithm.policy_loss == name
    rows = tiny_run(tmp_path, path, "run.steps=2", "batching.minibatch_size=5")
    for row in rows:
        assert math.isfinite(row["loss"]) and row["updates"] == 2 and not row["bad_step"]
        for key in ("clip_fraction", "clip_fraction_seq", "trained_fraction", "ratio_min"):
            assert key in row, key
        assert row["ratio_min"] <= row["ratio_mean"] <= row["ratio_max"]


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        (["algorithm.policy_loss=gpso"], "algorithm.policy_loss", "did you mean 'gspo'"),
        (["algorithm.policy_loss=gspo"], "algorithm.clip_low", "3e-4 / 4e-4"),
        (
            ["algorithm.policy_loss=sapo", "algorithm.dual_clip=3"],
            "algorithm.dual_clip",
            "'sapo' does not use it; it takes: tau_pos, tau_neg",
        ),
        (["algorithm.tau_neg=-1", "algorithm.policy_loss=sapo"], "algorithm.tau_neg", "> 0"),
        (["algorithm.top_entropy_quantile=0"], "algorithm.top_entropy_quantile", "(0, 1]"),
        (["algorithm.rollout_is=tokens"], "algorithm.rollout_is", "token, sequence"),
        (
            ["algorithm.rollout_is=token", "algorithm.old_logprobs=rollout"],
            "algorithm.old_logprobs",
            "need old_logprobs=recompute",
        ),
        (["rollout.logprobs_mode=sampled"], "rollout.logprobs_mode", "raw, processed"),
    ],
)
def test_bad_loss_settings_fail_before_any_model_loads(overrides, field, message):
    with pytest.raises(ConfigError) as err:
        validate(load_config(TrainConfig, None, overrides), overrides=overrides)
    assert err.value.field == field
    assert message in str(err.value)
    # where it was set: the override when one set it, else the default ('<config>')
    set_here = any(o.startswith(field + "=") for o in overrides)
    assert ("override" in err.value.where) == set_here


# ----------------------------------------------------------------------------- rollout logprobs


def test_processed_logprobs_are_the_truncated_samplers():
    tokenizer = tiny.build_char_tokenizer()
    engine = HFEngine(tiny.build_model(tokenizer, hidden_size=32, seed=3), tokenizer)
    common = {"n": 2, "temperature": 0.7, "max_new_tokens": 6, "seed": 1, "top_k": 1}
    processed = engine.generate(["a"], SamplingParams(logprobs_mode="processed", **common))
    raw = engine.generate(["a"], SamplingParams(**common))
    assert [r.completion_ids for r in raw] == [r.completion_ids for r in processed]  # same draws
    # top_k=1: the kept token has probability 1 under the truncated sampler, < 1 under the model
    assert all(lp == 0.0 for r in processed for lp in r.logprobs)
    assert all(lp < 0.0 for r in raw for lp in r.logprobs)


def test_old_logprobs_rollout_lines_up_with_the_trainers_logprobs(tmp_path):
    # one on-policy pass: pi_old is the engine's logprobs, so the ratio is pi_trainer / pi_engine,
    # 1 up to float error when both score the same tokens at the same positions
    rows = tiny_run(tmp_path, None, "algorithm.old_logprobs=rollout", "rollout.n=4", "run.steps=2")
    for row in rows:
        assert abs(row["ratio_min"] - 1) < 1e-3 and abs(row["ratio_max"] - 1) < 1e-3, row
        assert math.isfinite(row["loss"]) and not row["bad_step"]
    # two minibatches: the second sees the policy after one update, pi_old still the engine's
    (row,) = tiny_run(
        tmp_path,
        None,
        "algorithm.old_logprobs=rollout",
        "rollout.n=4",
        "batching.minibatch_size=4",
        "optim.lr=1e-2",
        "run.steps=1",
        reward=text_hash,  # nonzero advantages whatever the samples
    )
    assert row["updates"] == 2 and row["ratio_max"] - row["ratio_min"] > 1e-2


def test_top_k_sampling_mismatch_is_measured_and_masked(tmp_path):
    common = ["rollout.n=4", "rollout.top_k=3", "run.steps=1", "algorithm.rollout_is=token"]
    # raw logprobs (the default): the engine scores with the model's full distribution, as the
    # trainer does: no mismatch to correct
    (raw,) = tiny_run(tmp_path, None, *common, "algorithm.rollout_rs=token")
    assert abs(raw["rollout_ratio_min"] - 1) < 1e-3 and abs(raw["rollout_ratio_max"] - 1) < 1e-3
    assert raw["rollout_masked_fraction"] == 0
    # processed logprobs: the truncated sampler's probabilities are larger than the model's, so
    # pi_old / pi_rollout <= 1 and the tiny random model's near-uniform distribution makes it small
    (processed,) = tiny_run(
        tmp_path, None, *common, "rollout.logprobs_mode=processed", "algorithm.rollout_rs=token"
    )
    assert processed["rollout_ratio_max"] <= 1 + 1e-4
    assert processed["rollout_ratio_min"] < 0.5
    assert processed["rollout_kl"] > 0.1
    # token rejection with the default band [1/2, 2]: the tokens below 1/2 leave the loss
    assert processed["rollout_masked_fraction"] > 0.5
    assert processed["rollout_is_weight_mean"] < 1
    assert math.isfinite(processed["loss"])


# ----------------------------------------------------------------------------- entropy


def test_top_entropy_quantile_trains_on_the_highest_entropy_share(tmp_path):
    (all_tokens,) = tiny_run(tmp_path, None, "rollout.n=4", "run.steps=1")
    assert all_tokens["trained_fraction"] == 1.0  # one on-policy pass: nothing clipped
    (top,) = tiny_run(
        tmp_path, None, "rollout.n=4", "run.steps=1", "algorithm.top_entropy_quantile=0.2"
    )
    assert 0.15 <= top["trained_fraction"] <= 0.3


def test_adaptive_entropy_coefficient_moves_toward_the_target(tmp_path):
    # a target above any entropy the model has: the coefficient rises by delta each step
    rows = tiny_run(
        tmp_path,
        None,
        "rollout.n=4",
        "run.steps=3",
        "algorithm.entropy_target=100",
        "algorithm.entropy_coef_delta=0.01",
    )
    assert [row["entropy_coef"] for row in rows] == pytest.approx([0.0, 0.01, 0.02])
    assert rows[0]["entropy_target"] == 100
    # a target of 0: above it, the bonus is off from the second step and the coefficient falls
    rows = tiny_run(
        tmp_path,
        None,
        "rollout.n=4",
        "run.steps=3",
        "algorithm.entropy_coef=0.05",
        "algorithm.entropy_target=0",
        "algorithm.entropy_coef_delta=0.01",
    )
    assert [row["entropy_coef"] for row in rows] == pytest.approx([0.05, 0.0, 0.0])


def test_adaptive_entropy_state_survives_a_resume(tmp_path):
    overrides = [
        *SHRINK,
        f"run.out_dir={tmp_path / 'run'}",
        "rollout.n=4",
        "run.steps=2",
        "run.save_every=2",
        "algorithm.entropy_target=100",
        "algorithm.entropy_coef_delta=0.01",
    ]
    cfg = validate(load_config(TrainConfig, None, overrides))
    first = Trainer(cfg, reward_fns=[RewardTerm("sevens", 1.0, sevens)])
    first.train()
    assert first.learner.entropy_coef == pytest.approx(0.02)
    cfg = validate(load_config(TrainConfig, None, [*overrides, "run.steps=3"]))
    resumed = Trainer(cfg, reward_fns=[RewardTerm("sevens", 1.0, sevens)], resume=True)
    assert resumed.learner.entropy_coef == pytest.approx(0.02)
    assert resumed.learner.last_entropy == pytest.approx(first.learner.last_entropy)
