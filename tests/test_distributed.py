"""Data parallel: two gloo processes, each with half of the groups, make the same update as one
process with the combined batch.

The update runs on fixed responses (no sampling), through the real `Learner` and `Dist.from_env`
(the environment torchrun sets: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). The recipes below
exercise what must be reduced across ranks: batch-whitened advantages (REINFORCE++ and GAE need
the whole batch), the KL to a reference model in the reward, minibatch normalisers (token and
sequence counts), gradient sums, and minibatches that mix the ranks' rows unevenly (shuffled,
several per epoch, two epochs).

AdamW runs with eps=1 here: its first steps move each weight by about lr * sign(g), which would
turn float round-off in a near-zero gradient (sums in a different order on two ranks) into an
lr-sized difference; with a large eps the update is proportional to g and round-off stays small.

The ranks wrap the model with `reasonlab.parallel.wrap_model` (DDP, or FSDP2 shards with a sharded
reference model; the value head stays whole and its gradient is summed by `Dist`): both sum the
ranks' gradients.

Run as a script (`python tests/test_distributed.py OUT PARALLEL`), this file is the worker of one
rank.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch
from ranks import launch_ranks, wait_ranks

from reasonlab.config import load_config
from reasonlab.models import tiny
from reasonlab.parallel import full_state_dict, wrap_model
from reasonlab.rl.config import TrainConfig
from reasonlab.rl.distributed import Dist
from reasonlab.rl.learner import Learner, StepBatch, ValueHead, build_optimizer

GROUP_SIZE, GROUPS, WORLD = 4, 4, 2

RECIPES = {
    "reinforce_pp_kl_in_reward": [
        "algorithm.advantage=reinforce_pp",
        "algorithm.kl_coef=0.05",
        "algorithm.kl_in=reward",
        "algorithm.loss_agg=token-mean",
        "algorithm.entropy_coef=0.01",
    ],
    "grpo_kl_loss_seq_mean": [
        "algorithm.advantage=grpo",
        "algorithm.kl_coef=0.05",
        "algorithm.loss_agg=seq-mean-token-mean",
    ],
    "ppo_gae_value_head": [
        "algorithm.advantage=gae",
        "algorithm.lam=0.95",
        "algorithm.loss_agg=seq-mean-token-sum-norm",
    ],
}
COMMON = [
    f"rollout.n={GROUP_SIZE}",
    f"batching.prompts_per_step={GROUPS}",
    "batching.minibatch_size=8",
    "batching.micro_batch_size=2",
    "batching.ppo_epochs=2",
    "optim.lr=0.05",
    "optim.eps=1.0",
    "optim.grad_clip=1.0",
]


def tokenizer():
    texts = ["12 + 34 = 46", "<think> 7 * 8 = 56 </think> <answer> 56 </answer>"] * 20
    return tiny.build_tokenizer(texts, vocab_size=300)


def combined_batch(seed: int = 0) -> StepBatch:
    rng = random.Random(seed)
    prompts, completions, rewards, reasons = [], [], [], []
    for _ in range(GROUPS):
        prompt = [rng.randrange(5, 200) for _ in range(rng.randint(3, 6))]
        for _ in range(GROUP_SIZE):
            prompts.append(prompt)
            completions.append([rng.randrange(5, 200) for _ in range(rng.randint(1, 9))])
            rewards.append(rng.random())
            reasons.append("stop")
    return StepBatch(prompts, completions, torch.tensor(rewards), reasons, GROUP_SIZE)


def rank_share(batch: StepBatch, dist: Dist) -> StepBatch:
    rows = dist.local_slice(len(batch))  # whole groups: 2 of the 4 per rank
    return StepBatch(
        batch.prompt_ids[rows],
        batch.completion_ids[rows],
        batch.rewards[rows],
        batch.finish_reasons[rows],
        batch.group_size,
    )


def train(recipe: str, dist: Dist, parallel: str = "none") -> dict[str, torch.Tensor]:
    """Two RL steps on the fixed batch (this rank's share of it); the final parameters."""
    torch.manual_seed(0)
    cfg = load_config(TrainConfig, None, COMMON + RECIPES[recipe])
    tok = tokenizer()
    model = tiny.build_model(tok, hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    model.eval()
    ref = None
    if cfg.algorithm.kl_coef:
        ref = tiny.build_model(
            tok, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, seed=1
        ).eval()
    wrapped = wrap_model(model, parallel=parallel)
    if ref is not None:
        wrap_model(ref, parallel=parallel, trainable=False)
    params = list(model.parameters())
    value_head = None
    if cfg.algorithm.advantage == "gae":
        value_head = ValueHead(32)
        with torch.no_grad():
            value_head.linear.weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
        params += list(value_head.parameters())
    learner = Learner(
        model,
        build_optimizer(params, cfg),
        cfg,
        pad_id=tok.pad_token_id,
        value_head=value_head,
        ref_model=ref,
        dist=dist,
        wrapped=wrapped,
    )
    batch = rank_share(combined_batch(), dist)
    for step in (1, 2):
        learner.update(batch, step)
    out = {k: v.detach().clone() for k, v in full_state_dict(model).items()}
    if value_head is not None:
        out.update({f"v_head.{k}": v.detach().clone() for k, v in value_head.state_dict().items()})
    return out


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_ranks_make_the_update_of_one_process_with_the_combined_batch(tmp_path, parallel):
    out = [str(tmp_path / f"rank{rank}.pt") for rank in range(WORLD)]
    wait_ranks(launch_ranks(lambda rank: [__file__, out[rank], parallel], WORLD))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    initial = train_nothing()
    for recipe in sorted(RECIPES):
        single = train(recipe, Dist.single())
        for key, value in single.items():
            where = f"{recipe}: {key}"
            for rank in ranks:
                assert torch.equal(rank[recipe][key], ranks[0][recipe][key]), f"{where}: diverged"
                torch.testing.assert_close(rank[recipe][key], value, atol=1e-6, rtol=0, msg=where)
            if not key.startswith("v_head"):
                assert not torch.equal(value, initial[key]), f"{where} did not move"


def train_nothing() -> dict[str, torch.Tensor]:
    tok = tokenizer()
    model = tiny.build_model(tok, hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    return dict(model.state_dict())


def test_dist_single_is_a_no_op():
    d = Dist.single()
    t = torch.tensor([1.0, 2.0])
    assert d.all_reduce(t).tolist() == [1.0, 2.0]
    assert d.all_gather_rows(t) is t
    assert d.local_slice(6) == slice(0, 6) and d.is_main and not d.enabled


def test_local_slice_shares_out_in_rank_order():
    """Even shares by default (an error otherwise); uneven ones, the first ranks taking one more,
    for a dynamic-sampling refill block (a rank may get none)."""
    assert [Dist(r, 3).local_slice(6) for r in range(3)] == [slice(0, 2), slice(2, 4), slice(4, 6)]
    with pytest.raises(ValueError, match="7 items do not split evenly over 3 ranks"):
        Dist(0, 3).local_slice(7)
    uneven = [Dist(r, 3).local_slice(7, even=False) for r in range(3)]
    assert uneven == [slice(0, 3), slice(3, 5), slice(5, 7)]
    assert [Dist(r, 2).local_slice(1, even=False) for r in range(2)] == [slice(0, 1), slice(1, 1)]


def _norm(params) -> float:
    grads = [p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad for p in params]
    return float(torch.cat([g.reshape(-1) for g in grads]).norm())


def test_clip_grad_norm_clips_plain_sharded_and_mixed_gradients(tmp_path):
    """`parallel.clip_grad_norm` scales the gradients to max_norm and returns the norm before:
    plain tensors, FSDP2 shards (DTensors, a 1-process gloo group) and the two together (a value
    head beside a sharded policy)."""
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from reasonlab.parallel import clip_grad_norm

    torch.manual_seed(0)
    plain = torch.nn.Linear(4, 3)
    (plain(torch.ones(2, 4)).sum() * 100).backward()
    before = _norm(plain.parameters())
    assert clip_grad_norm(plain.parameters(), 1.0) == pytest.approx(before)
    assert before > 10 and _norm(plain.parameters()) == pytest.approx(1.0, rel=1e-5)
    assert clip_grad_norm(plain.parameters(), float("inf")) == pytest.approx(1.0, rel=1e-5)

    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        body, head = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)), plain
        fully_shard(body)
        for params in (list(body.parameters()), [*body.parameters(), *head.parameters()]):
            body.zero_grad(), head.zero_grad()
            (head(body(torch.ones(2, 4))).sum() * 100).backward()
            before = _norm(params)
            assert clip_grad_norm(params, 1.0) == pytest.approx(before, rel=1e-5)
            assert before > 10 and _norm(params) == pytest.approx(1.0, rel=1e-5)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":  # one rank of the test above
    torch.set_num_threads(1)
    dist = Dist.from_env()
    try:
        results = {recipe: train(recipe, dist, sys.argv[2]) for recipe in sorted(RECIPES)}
        torch.save(results, Path(sys.argv[1]))
    finally:
        dist.close()
