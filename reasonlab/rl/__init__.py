"""Reinforcement learning for reasoning LMs: the GRPO family, REINFORCE++, RLOO and PPO.

- `advantages.py`: advantage estimators (`compute_advantages`, registry `ADVANTAGES`).
- `losses.py`: per-token losses, loss aggregation, KL estimators, logits reductions (pure tensors).
- `trainer.py`: the loop (rollout -> score -> advantages -> loss -> update); `learner.py` (the
  update), `data.py` (the prompt stream), `checkpoint.py`, `distributed.py`, `config.py`.
"""

from reasonlab.rl.advantages import ADVANTAGES, compute_advantages
from reasonlab.rl.config import TrainConfig
from reasonlab.rl.losses import (
    AGGREGATIONS,
    KL_ESTIMATORS,
    POLICY_LOSSES,
    aggregate,
    entropy_from_logits,
    groups_with_signal,
    high_entropy_mask,
    kl_penalty,
    logprobs_and_entropy,
    overlong_mask,
    policy_loss,
    rollout_correction,
    token_logprobs,
    value_loss,
)
from reasonlab.rl.trainer import Trainer

__all__ = [
    "ADVANTAGES",
    "AGGREGATIONS",
    "KL_ESTIMATORS",
    "POLICY_LOSSES",
    "TrainConfig",
    "Trainer",
    "aggregate",
    "compute_advantages",
    "entropy_from_logits",
    "groups_with_signal",
    "high_entropy_mask",
    "kl_penalty",
    "logprobs_and_entropy",
    "overlong_mask",
    "policy_loss",
    "rollout_correction",
    "token_logprobs",
    "value_loss",
]
