"""LoRA through peft (`model.lora`): an RL run trains the adapters alone, the KL reference is the
base model (the policy with its adapters disabled, no second copy), checkpoints hold the adapters
and resume from them, and the run ends with a merged model that computes what the policy does."""

from __future__ import annotations

import copy

import pytest
import torch

from reasonlab.config import ConfigError, load_config
from reasonlab.rl.config import TrainConfig, validate
from reasonlab.rl.learner import StepBatch
from reasonlab.rl.trainer import RewardTerm, Trainer, build_tiny_model, build_tiny_tokenizer

peft = pytest.importorskip("peft")

OVERRIDES = [
    "model.tiny={hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, "
    "intermediate_size: 64, vocab_size: 300, corpus_examples: 50}",
    "model.lora={r: 4, alpha: 8}",
    "task.name=countdown",
    "task.eval_size=4",
    "rollout.n=4",
    "rollout.max_new_tokens=8",
    "rewards.scheme=null",
    "algorithm.kl_coef=0.1",
    "batching.prompts_per_step=2",
    "optim.lr=0.05",
    "run.steps=2",
    "run.progress=false",
    "run.num_threads=1",
]


def sevens(completions, **columns) -> list[float]:
    """Share of '7's plus a length term: rewards that differ within a group (a signal)."""
    return [text.count("7") / max(1, len(text)) + len(text) / 100 for text in completions]


def _trainer(out_dir, **kwargs) -> tuple[Trainer, torch.nn.Module]:
    cfg = load_config(TrainConfig, None, [*OVERRIDES, f"run.out_dir={out_dir}"])
    from reasonlab import tasks

    task = tasks.get("countdown")
    tokenizer = build_tiny_tokenizer(task, cfg)
    model = build_tiny_model(tokenizer, cfg)
    base = copy.deepcopy(model)
    reward = [RewardTerm("sevens", 1.0, sevens)]
    trainer = Trainer(cfg, model=model, tokenizer=tokenizer, task=task, reward_fns=reward, **kwargs)
    return trainer, base


def _batch() -> StepBatch:
    prompts = [[5, 6, 7, 8], [9, 10, 11]]
    completions = [[12, 13, 14], [15, 16, 17, 18, 19]]
    return StepBatch(prompts, completions, torch.zeros(2), ["stop", "stop"], 2)


def test_lora_trains_adapters_only_and_the_reference_is_the_base_model(tmp_path):
    trainer, base = _trainer(tmp_path / "run")
    assert trainer.ref_model is trainer.model  # no second copy
    trainer.train()

    policy = dict(trainer.model.named_parameters())
    adapters = {k for k in policy if "lora_" in k}
    assert adapters and all(policy[k].requires_grad for k in adapters)
    base_params = dict(base.named_parameters())
    for key, value in policy.items():
        if key in adapters:
            continue
        # peft renames a wrapped linear's weight to `....base_layer.weight`
        name = key.replace(".base_layer", "")
        assert torch.equal(value, base_params[name]), f"{key} changed"
    moved = [k for k in adapters if "lora_B" in k and policy[k].abs().max() > 0]
    assert moved, "no adapter moved (lora_B starts at zero)"

    # the reference logprobs (adapters disabled) are the base model's; the policy's are not
    learner, batch = trainer.learner, _batch()
    with torch.no_grad(), learner.ref_context():
        ref = learner.forward(trainer.ref_model, batch, [0, 1])["logprobs"]
    with torch.no_grad():
        policy_lp = learner.forward(trainer.model, batch, [0, 1])["logprobs"]
        learner.model = base  # the same pass through the untouched base model
        base_lp = learner.forward(base, batch, [0, 1])["logprobs"]
        learner.model = trainer.model
    torch.testing.assert_close(ref, base_lp, rtol=0, atol=1e-6)
    assert (policy_lp - base_lp).abs().max() > 1e-4

    # checkpoints hold the adapters; the merged export computes what the policy does
    last = tmp_path / "run" / "checkpoints" / "step_000002" / "model"
    assert (last / "adapter_model.safetensors").is_file()
    assert not (last / "model.safetensors").exists()
    from reasonlab import models

    merged, _ = models.load(str(tmp_path / "run" / "merged"), dtype="float32", device="cpu")
    ids = torch.tensor([[5, 6, 7, 8, 12, 13]])
    with torch.no_grad():
        want = trainer.model(input_ids=ids).logits
        got = merged(input_ids=ids).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_lora_resume_restores_the_adapters(tmp_path):
    trainer, _ = _trainer(tmp_path / "run")
    trainer.train()
    weights = {k: v.clone() for k, v in trainer.model.named_parameters() if "lora_" in k}
    resumed, _ = _trainer(tmp_path / "run", resume=True)
    assert resumed.step == 2
    for key, value in resumed.model.named_parameters():
        if "lora_" in key:
            assert torch.equal(value, weights[key]), key


def test_lora_config_errors_name_the_field():
    cfg = load_config(TrainConfig, None, [*OVERRIDES, "model.parallel=fsdp"])
    with pytest.raises(ConfigError, match="model.lora"):
        validate(cfg)
    cfg = load_config(TrainConfig, None, [*OVERRIDES, "model.lora.r=0"])
    with pytest.raises(ConfigError, match="model.lora.r"):
        validate(cfg)
