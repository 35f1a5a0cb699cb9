"""SFT losses: `loss_fn(model, batch) -> (mean over the batch's loss tokens, their count)`, the
contract of `reasonlab.models.pretrain.supervised_step`. A new loss is one function and one line
in `LOSSES`.

- `nll`: next-token cross-entropy on the data (`models.pretrain.nll_loss`; pretraining's loss).
- `kd`: supervised knowledge distillation (Hinton et al. 2015) on the data: per target token, the
  forward KL(teacher || student) of the two next-token distributions, both at temperature T
  (logits / T; no T^2 factor, as TRL's GKDTrainer).
- `gkd`: generalised knowledge distillation (Agarwal et al. 2024, "On-Policy Distillation of
  Language Models"): per target token, the generalised Jensen-Shannon divergence
  `JSD(beta) = beta * KL(p_T || m) + (1 - beta) * KL(p_S || m)`, `m = beta * p_T + (1 - beta) *
  p_S`, taken as forward KL(p_T || p_S) at beta = 0 and reverse KL(p_S || p_T) at beta = 1 (where
  the mixture form vanishes), as TRL's GKDTrainer. The on-policy part (a share `lmbda` of the
  steps train on the student's own samples) is the trainer's (`SFTTrainer._on_policy`).

Teacher and student must share a tokenizer (`check_same_tokenizer`): the losses compare the two
distributions token id by token id.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F

from reasonlab.models.pretrain import nll_loss, predicted_logits
from reasonlab.registry import Registry


def generalized_jsd(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float, temperature: float
) -> torch.Tensor:
    """Per-token JSD(beta) of [N, V] logits (see the module doc); returns [N]."""
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)  # [N, V]
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)  # [N, V]
    if beta == 0:
        return (t.exp() * (t - s)).sum(-1)  # KL(teacher || student)
    if beta == 1:
        return (s.exp() * (s - t)).sum(-1)  # KL(student || teacher)
    mixture = torch.logsumexp(
        torch.stack([t + torch.log(torch.tensor(beta)), s + torch.log(torch.tensor(1 - beta))]),
        dim=0,
    )  # log m, [N, V]
    kl_teacher = (t.exp() * (t - mixture)).sum(-1)
    kl_student = (s.exp() * (s - mixture)).sum(-1)
    return beta * kl_teacher + (1 - beta) * kl_student


def distill_loss(
    model: Any,
    batch: dict[str, torch.Tensor],
    *,
    teacher: Any,
    beta: float,
    temperature: float,
) -> tuple[torch.Tensor, int]:
    """Mean JSD(beta) between student and teacher over the target tokens of `batch`."""
    student, labels = predicted_logits(model, batch)  # [N, V], [N]
    with torch.no_grad():
        teacher_logits, _ = predicted_logits(teacher, batch)
    return generalized_jsd(student, teacher_logits, beta, temperature).mean(), len(labels)


LOSSES: Registry[Any] = Registry("SFT loss")
"""name -> factory(teacher=, temperature=, beta=) of a `loss_fn`."""
LOSSES.add("nll", lambda **_: nll_loss)
LOSSES.add(
    "kd",
    lambda *, teacher, temperature, **_: functools.partial(
        distill_loss, teacher=teacher, beta=0.0, temperature=temperature
    ),
)
LOSSES.add(
    "gkd",
    lambda *, teacher, temperature, beta, **_: functools.partial(
        distill_loss, teacher=teacher, beta=beta, temperature=temperature
    ),
)


def check_same_tokenizer(student: Any, teacher: Any) -> None:
    """Raise ValueError unless the two tokenizers map the same text to the same ids."""
    if student.get_vocab() != teacher.get_vocab():
        raise ValueError(
            "token-level distillation needs teacher and student to share a tokenizer (the losses "
            f"compare distributions id by id); the vocabularies differ ({len(student)} vs "
            f"{len(teacher)} entries). Distil across tokenizers with `reasonlab sample` from the "
            "teacher and loss nll on its text"
        )


__all__ = ["LOSSES", "check_same_tokenizer", "distill_loss", "generalized_jsd"]
