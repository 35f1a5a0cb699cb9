"""The engine's decode loop and the learner's shared-prompt pass pass their KV cache by the keyword
the installed transformers takes, so neither prints a deprecation warning (once per process, into
the RL progress bar) nor breaks when the old name is removed."""

from __future__ import annotations

import logging
import warnings

import torch

from reasonlab.config import load_config
from reasonlab.models import cache_keyword, tiny
from reasonlab.rl.config import TrainConfig
from reasonlab.rl.learner import Learner, StepBatch, build_optimizer
from reasonlab.rollout import SamplingParams
from reasonlab.rollout.hf import HFEngine


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_generate_and_shared_prompt_pass_warn_nothing():
    from transformers.utils import logging as hf_logging

    tokenizer = tiny.build_char_tokenizer()
    model = tiny.build_model(tokenizer, hidden_size=32, num_hidden_layers=2, seed=0)
    cfg = load_config(TrainConfig, None, ["rollout.n=2", "batching.prompts_per_step=2"])
    learner = Learner(
        model, build_optimizer(list(model.parameters()), cfg), cfg, pad_id=tokenizer.pad_token_id
    )
    assert learner.share_prompts
    engine = HFEngine(model, tokenizer)

    # transformers reports deprecations through its own logger, once per process per message:
    # forget what it has already said, and listen at WARNING whatever the environment set.
    hf_logging.warning_once.cache_clear()
    root = hf_logging.get_logger("transformers")
    records, level = _Records(), root.level
    root.addHandler(records)
    root.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            rollouts = engine.generate(
                ["12 + 7 =", "a b"], SamplingParams(n=2, max_new_tokens=5, seed=0)
            )
            batch = StepBatch.from_rollouts(rollouts, [1.0, 0.0, 0.5, 0.0], group_size=2)
            out = learner.forward(model, batch, list(range(len(batch))), entropy=True)
            out["logprobs"].sum().backward()
    finally:
        root.removeHandler(records)
        root.setLevel(level)
    assert records.messages == []
    assert torch.isfinite(out["logprobs"]).all()
    assert any(p.grad is not None for p in model.parameters())


def test_cache_keyword_follows_the_forward_signature():
    class NewName(torch.nn.Module):
        def forward(self, input_ids, cache=None, use_cache=None): ...

    class OldName(torch.nn.Module):
        def forward(self, input_ids, past_key_values=None, use_cache=None): ...

    assert cache_keyword(NewName()) == "cache"
    assert cache_keyword(OldName()) == "past_key_values"
